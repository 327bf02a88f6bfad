"""One training step of a plan's model, at full size with fake tensors, its peak memory counted by category.

What runs is what the training process runs, from the plan: the model class and dtype, the attention
implementation, the quantized layers (stand-ins of the same storage, see `fake.py`), the PEFT adapter with the
dtype TRL gives it, activation checkpointing, the trainer's loss path (TRL's fused LM head where the trainer adds
it; the model's logits and the trainer's log-softmax where it does not; the reference forward of DPO-family
objectives, with the adapter disabled), bf16/fp16 autocast, and the optimizer the plan names. Two steps run, so the
second starts with the optimizer state already allocated; the peak is over both.

Not run here, each counted by the estimator from its own source instead: DeepSpeed (its partitioning has no fake
implementation), DDP's gradient buckets (they need a process group), generation for online RL, the CUDA context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from runner.common.models import import_dotted, peft_config, torch_dtype
from runner.plan.architecture import config_fields
from runner.plan.types import Plan
from schemas.objectives import facts

GiB = 1024**3
CATEGORIES = {  # MemTracker's reference types -> the estimate's words
    "Parameter": "weights",
    "Buffer": "weights",
    "Gradient": "gradients",
    "Optstate": "optimizer_states",
    "Activation": "activations",
    "Temp": "temporaries",
    "Other": "temporaries",
}


@dataclass
class Measurement:
    phases: dict[str, dict[str, float]]  # phase -> GiB by category at that phase's peak (the last step's)
    notes: list[str] = field(default_factory=list)

    @property
    def phase(self) -> str:
        """The phase of the step's peak."""
        return max(self.phases, key=lambda p: sum(self.phases[p].values()))

    @property
    def peak(self) -> dict[str, float]:
        return self.phases[self.phase]

    @property
    def total(self) -> float:
        return sum(self.peak.values())

    def to_json(self) -> dict:
        return {
            "peak_gb": round(self.total, 3),
            "phase": self.phase,
            "breakdown": {k: round(v, 3) for k, v in self.peak.items()},
            "phases": {p: round(sum(b.values()), 3) for p, b in self.phases.items()},
            "notes": self.notes,
        }


def model_config(plan: Plan) -> Any:
    """The transformers config of the plan's model: its local config.json, or the shipped architecture table."""
    from transformers import AutoConfig

    fields = dict(config_fields(plan.recipe.model.name_or_path))
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields)
    config.use_cache = False
    return config


def _build(plan: Plan, config: Any, notes: list[str]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from .fake import quantize

    kind = facts(plan.recipe.objective.kind)
    dtype = torch_dtype(plan.dtype)
    if dtype == "auto":
        dtype = getattr(config, "dtype", None) or torch.float32
    attention = plan.attention
    if attention not in ("eager", "sdpa"):
        notes.append(f"attention {attention} measured as sdpa (its kernel is not installed; both keep O(tokens) state)")
        attention = "sdpa"
    with torch.device("meta"):
        if kind.reward_head:
            config.num_labels = 1
            if config.pad_token_id is None:  # the run takes it from the tokenizer; the reward head reads it
                config.pad_token_id = 0
            model = AutoModelForSequenceClassification.from_config(config, dtype=dtype, attn_implementation=attention)
        else:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
        q = plan.quantization
        if q is not None:
            args = q["args"]
            bits = 4 if args.get("load_in_4bit") else 8
            skip = {"lm_head", "score", *(args.get("llm_int8_skip_modules") or [])}
            compute = torch_dtype(args.get("bnb_4bit_compute_dtype", "float32")) if bits == 4 else dtype
            storage = torch_dtype(args.get("bnb_4bit_quant_storage", "uint8")) if bits == 4 else torch.int8
            quantize(model, skip, compute, storage, bool(args.get("bnb_4bit_use_double_quant")), bits)
            notes.append(f"bitsandbytes {bits}-bit layers stood in for by their storage and a dequantized temporary")
        if kind.fused_lm_head:
            from trl.trainer.utils import add_fused_lm_head

            add_fused_lm_head(model, outputs=kind.fused_outputs)
        if plan.peft is not None:
            from peft import get_peft_model

            autocast_adapter = not (plan.zero == 3 and q is None)
            # DoRA's `ephemeral_gpu_offload` moves its initialisation to the GPU; the step is the same without it
            spec = {**plan.peft, "args": {k: v for k, v in plan.peft["args"].items() if k != "runtime_config"}}
            model = get_peft_model(model, peft_config(spec), autocast_adapter_dtype=autocast_adapter)
    if plan.gradient_checkpointing:
        model.activation_checkpointing_enable(checkpointing_kwargs(plan))
        if plan.peft is not None:
            model.enable_input_require_grads()
    model.train()
    return model


def _materialize(plan: Plan, model: Any) -> None:
    """Fake storage for every parameter and buffer (inside the fake mode), then TRL's QLoRA adapter cast."""
    import torch
    from torch import nn

    # `to_empty` from meta to fake tensors, one new tensor per parameter object so that tied weights stay tied
    made: dict[int, Any] = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, t in table.items():
                if t is None:
                    continue
                if id(t) not in made:
                    new = torch.empty(t.shape, dtype=t.dtype, device="cpu")
                    made[id(t)] = (
                        nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
                    )
                table[name] = made[id(t)]
    cast_quantized_adapter(plan, model)


def cast_quantized_adapter(plan: Plan, model: Any) -> None:
    """TRL's cast of a quantized model's adapter to bfloat16 (SFTTrainer and the other main trainers; DoRA's
    magnitude vector stays float32)."""
    import torch

    if (
        plan.quantization is not None
        and plan.peft is not None
        and facts(plan.recipe.objective.kind).quantized_adapter_bf16
    ):
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_magnitude_vector" not in name:
                p.data = p.data.to(torch.bfloat16)


def _optimizer(plan: Plan, params: list) -> Any:
    import torch

    name = plan.recipe.training.optimizer
    lr = 1e-5
    if name == "adamw_torch_fused":
        return torch.optim.AdamW(params, lr=lr, fused=True)
    if name in ("adamw_torch", "adamw"):
        return torch.optim.AdamW(params, lr=lr, foreach=True)  # torch's default on CUDA
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, foreach=True)
    if name in STATE_BYTES:  # bitsandbytes' optimizers: in-place CUDA kernels over states of their own size
        from .fake import StateSizedOptimizer

        return StateSizedOptimizer(params, STATE_BYTES[name])
    raise ValueError(f"the measurement runs torch optimizers only, not {name}")


# bitsandbytes optimizers: their state per parameter, whatever the parameter's dtype (two moments, 32-bit or 8-bit
# with one float32 absmax per block of 256)
STATE_BYTES = {
    "paged_adamw_32bit": 8.0,
    "adamw_bnb_8bit": 2 * (1 + 4 / 256),
    "adamw_8bit": 2 * (1 + 4 / 256),
    "paged_adamw_8bit": 2 * (1 + 4 / 256),
}


def checkpointing_kwargs(plan: Plan) -> Optional[dict]:
    """The activation checkpointing settings the plan gives TrainingArguments (non-reentrant), which the trainer
    passes to `activation_checkpointing_enable`."""
    return plan.trainer["args"].get("activation_checkpointing_kwargs")


def _loss(plan: Plan, model: Any, input_ids: Any, labels: Any, **extra: Any) -> Any:
    """The trainer's loss, as its compute_loss computes it (see the TRL sources cited per branch); `extra` carries
    padding-free rows' position ids."""
    import torch

    kind = facts(plan.recipe.objective.kind)
    if kind.reward_head:  # trl.RewardTrainer: a score per sequence, chosen above rejected
        scores = model(input_ids=input_ids).logits.squeeze(-1)
        chosen, rejected = scores.chunk(2)
        return -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    if kind.fused_lm_head:  # SFTTrainer/DPOTrainer/KTOTrainer.compute_loss: `model(..., fused_lm_head=True)`
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True, use_cache=False, **extra)
        if not kind.reference_model or plan.recipe.adapter.kind == "full":
            return out.loss
        # DPOTrainer._compute_loss: the reference forward without gradients, the adapter disabled and activation
        # checkpointing switched off, while the policy's activations are held
        from trl.models.utils import disable_gradient_checkpointing

        with torch.no_grad(), disable_gradient_checkpointing(model, None), model.disable_adapter():
            ref = model(input_ids=input_ids, labels=labels, fused_lm_head=True).log_probs
        return (out.log_probs - ref).sum()
    # experimental CPO/ORPO: the model's full logits, then the trainer's log-softmax per token
    trainer = import_dotted(plan.trainer["class"])
    logits = model(input_ids=input_ids).logits
    logps = trainer.get_batch_logps(logits, labels, average_log_prob=True)
    half = logits.shape[0] // 2
    nll = torch.nn.functional.cross_entropy(
        logits[:half, :-1].reshape(-1, logits.shape[-1]), labels[:half, 1:].reshape(-1)
    )
    return logps.sum() + nll


def measure(plan: Plan, *, steps: int = 2) -> Measurement:
    """Peak memory of a training step of `plan` on one process, by category (GiB)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .fake import Tracker, cuda_like

    kind = facts(plan.recipe.objective.kind)
    if kind.generates:
        raise ValueError("online RL samples completions each step; its step is not measured here")
    notes: list[str] = []
    if plan.zero is not None:
        notes.append(f"measured without DeepSpeed ZeRO-{plan.zero} (one process holds every shard)")
    config = model_config(plan)
    model = _build(plan, config, notes)
    rows = plan.micro_batch_size * kind.sequences_per_example
    autocast = plan.precision in ("bf16", "fp16")  # the Trainer runs forward under autocast for either
    low = torch.bfloat16 if plan.precision == "bf16" else torch.float16
    with FakeTensorMode(), cuda_like():
        _materialize(plan, model)
        length = plan.recipe.training.max_length
        extra = {}
        if plan.resolved["training"]["padding_free"]:  # TRL's padding-free collator: one row, position ids restarting
            extra["position_ids"] = torch.arange(length).repeat(rows)[None]
            rows, length = 1, rows * length
        input_ids = torch.zeros(rows, length, dtype=torch.long)
        labels = torch.zeros_like(input_ids)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = _optimizer(plan, trainable)
        tracker = Tracker()
        tracker.track_frozen(model)
        tracker.track_external(model, optimizer)
        phases: dict[str, dict[str, float]] = {}
        with tracker:
            for _ in range(steps):  # the last step's phases count: the optimizer state exists by then
                with torch.autocast("cpu", dtype=low, enabled=autocast):
                    loss = _loss(plan, model, input_ids, labels, **extra)
                phases["forward"] = _phase_peak(tracker)
                loss.backward()
                del loss
                phases["backward"] = _phase_peak(tracker)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                phases["optimizer step"] = _phase_peak(tracker)
    return Measurement(phases=phases, notes=notes)


def _phase_peak(tracker: Any) -> dict[str, float]:
    """The peak since the last call, by category; the next phase's peak starts from what is allocated now."""
    (device,) = tracker._peak_mem_snap
    snapshot = tracker._peak_mem_snap[device]
    out: dict[str, float] = {}
    for ref, name in CATEGORIES.items():
        out[name] = out.get(name, 0.0) + snapshot.get(ref, 0) / GiB
    current = tracker.get_tracker_snapshot("current")[device]
    tracker._peak_mem[device] = current["Total"]
    tracker._peak_mem_snap[device] = dict(current)
    return out
