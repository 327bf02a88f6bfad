"""Training-step speed and peak memory of the headline LoRA/QLoRA recipes on one GPU, against the plan's estimate.

Each configuration is a resolved Plan of `recipes/llama31-8b-chat-sft-lora.yaml` (with `quantization.method=bnb-4bit`
for QLoRA) on one GPU of the chosen hardware profile, with attention `sdpa` or `flash_attention_2` and packing on or
off. Its model is the plan's architecture from the shipped table (Llama-3-8B) with random weights made on the GPU: no
weights, tokenizer or data are read or downloaded. The step is the trainer's: TRL's fused LM head
(`model(..., labels=..., fused_lm_head=True, use_cache=False)`), bf16 autocast, the PEFT adapter (QLoRA's cast to
bf16 as SFTTrainer does), activation checkpointing where the plan has it, gradient clipping and the plan's
optimizer. Rows are random token ids made by TRL's own collator: unpacked, `micro × max_length` with an all-ones
attention mask; packed, one padding-free row of `micro × max_length` tokens whose documents are `max_length / 4`
tokens long (position ids restarting at 0, flash attention's `cu_seq_lens`). Every token is a label, so the fused
head scores all of them (chat SFT with assistant-only loss scores fewer). After the warm-up steps (2), the timed
steps (10) give:

- tokens/s: tokens per step × steps ÷ seconds, between two `torch.cuda.synchronize()`;
- MFU: 6 · N · tokens/s ÷ the GPU's dense bf16 peak, N the model's total parameter count. 6 · N counts the frozen
  weights' backward (their weight gradients, which LoRA never computes) as if they were trained, the conventional
  figure; attention's own FLOPs and the recompute of activation checkpointing are not counted;
- peak memory: `torch.cuda.max_memory_allocated()` over the warm-up and timed steps (its counter reset once the model
  is built), against the plan's estimate without its `runtime_overhead` item (the CUDA context and allocator slack,
  which `max_memory_allocated` does not see either).

On a machine with one H100 or H200 (nothing is downloaded):

    python benchmarks/gpu_step.py --profile h100-80gb --json gpu.json
    python benchmarks/gpu_step.py --profile h200-141gb --micro-batch 8 --check-packing

It needs the `train` extra (torch with CUDA, transformers, TRL, PEFT, bitsandbytes); flash-attn optionally (without it
the flash_attention_2 rows say they were skipped). `--check-packing` also checks, on a small random Llama in bf16 with
flash_attention_2 (and sdpa beside it, for the bf16 noise), that a padding-free packed row gives each document's
tokens the log-probabilities they have alone (max abs difference < 2e-2). `--tiny --device cpu` runs the same
code on the repository's tiny Llama (`recipes/tiny/sft-lora.yaml`, random weights) for two steps, without MFU or
CUDA memory: the test suite's smoke test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: a Hub name fails at once
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

GiB = 1024**3
RECIPE = ROOT / "recipes" / "llama31-8b-chat-sft-lora.yaml"
TINY_RECIPE = ROOT / "recipes" / "tiny" / "sft-lora.yaml"
# QLoRA as recipes/llama3-dpo-qlora.yaml writes it; the compute dtype is the plan's (bf16 on a bf16 GPU)
QLORA = ["quantization.method=bnb-4bit", "quantization.quant_type=nf4", "quantization.double_quant=true"]
CONFIGS = [("lora", []), ("qlora", QLORA)]
ATTENTIONS = ("sdpa", "flash_attention_2")
DOCUMENTS_PER_ROW = 4  # packed rows: documents of max_length / 4 tokens
# dense (no sparsity) bf16 tensor-core peak by device name, the first match in order
PEAK_BF16 = [
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("A100", 312e12),
]
PACKING_TOLERANCE = 2e-2  # bf16: max |log p packed - log p alone| over every scored token


def plan_for(recipe: Path, overrides: list[str]) -> Any:
    """The resolved Plan of `recipe` with `overrides` (`recipe plan --set` strings), as `recipe plan` resolves it."""
    from runner.plan import probe_packages, resolve
    from schemas import load

    loaded = load(recipe, overrides)
    if loaded.recipe is None or loaded.errors:
        raise ValueError("; ".join(d.message for d in loaded.diagnostics if d.is_error))
    return resolve(loaded.recipe, probe_packages())


def flash_attention_missing(device: str) -> Optional[str]:
    """Why flash_attention_2 cannot run here, or None when it can."""
    if not device.startswith("cuda"):
        return "flash_attention_2 runs on CUDA only"
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:  # not installed, or built for another torch/CUDA
        return f"flash_attn is not importable ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def quantize_4bit(model: Any, args: dict, device: str) -> None:
    """Replace the linear layers bitsandbytes would quantize by `bnb.nn.Linear4bit`, quantized on `device` as the plan's
    BitsAndBytesConfig says (quant type, double quantization, compute and storage dtypes). Skipped, as transformers
    and `runner/measure/fake.py` skip them: the LM head, a reward score head and `llm_int8_skip_modules`."""
    import bitsandbytes as bnb
    from torch import nn

    from runner.common.models import torch_dtype

    if not args.get("load_in_4bit"):
        raise NotImplementedError("only 4-bit bitsandbytes plans are benchmarked")
    skip = {"lm_head", "score", *(args.get("llm_int8_skip_modules") or [])}
    spec = dict(
        compress_statistics=bool(args.get("bnb_4bit_use_double_quant")),
        quant_type=args.get("bnb_4bit_quant_type", "fp4"),
        quant_storage=torch_dtype(args.get("bnb_4bit_quant_storage", "uint8")),
    )
    compute = torch_dtype(args.get("bnb_4bit_compute_dtype", "float32"))
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is not nn.Linear or name in skip:
                continue
            layer = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None, compute_dtype=compute, device="meta"
            )
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, module=layer, **spec).to(device)
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, name, layer)  # the bf16 weight is freed with `child`
    model.is_loaded_in_4bit = True  # what transformers' bnb quantizer sets; PEFT and TRL read it


def build(plan: Any, device: str) -> Any:
    """The plan's model with random weights on `device`, as the training process holds it: dtype and attention,
    4-bit layers, TRL's fused LM head, the PEFT adapter (bf16 for QLoRA, as SFTTrainer casts it), checkpointing."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from runner.common.models import peft_config, torch_dtype
    from runner.measure.step import cast_quantized_adapter, checkpointing_kwargs, model_config
    from schemas.objectives import facts

    kind = facts(plan.recipe.objective.kind)
    if kind.reward_head or kind.generates or not kind.fused_lm_head:
        raise NotImplementedError(f"{plan.recipe.objective.kind}: only fused-LM-head objectives (sft) are benchmarked")
    if plan.peft is None:
        raise NotImplementedError("only PEFT plans are benchmarked (full fine-tuning of 8B needs DeepSpeed)")
    config = model_config(plan)
    dtype = torch_dtype(plan.dtype)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=plan.attention)
    if plan.quantization is not None:
        quantize_4bit(model, plan.quantization["args"], device)
    add_fused_lm_head(model, outputs=kind.fused_outputs)
    model = get_peft_model(model, peft_config(plan.peft))
    cast_quantized_adapter(plan, model)
    if plan.gradient_checkpointing:
        model.activation_checkpointing_enable(checkpointing_kwargs(plan))
        model.enable_input_require_grads()
    model.train()
    return model


def optimizer_for(plan: Any, params: list) -> Any:
    """The plan's optimizer: torch's through `runner/measure/step.py`; bitsandbytes' as the Trainer makes them."""
    from runner.measure.step import STATE_BYTES, _optimizer

    name = plan.trainer["args"].get("optim", plan.recipe.training.optimizer)
    if name not in STATE_BYTES:
        return _optimizer(plan, params)
    import tempfile

    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=tmp, optim=name))
    return cls(params, **kwargs)


def document_lengths(total: int, documents: int) -> list[int]:
    """`total` tokens cut into `documents` documents of equal length (the last takes the remainder)."""
    size = max(1, total // documents)
    lengths = [size] * (total // size)
    if total % size:
        lengths.append(total % size)
    return lengths


def make_batch(plan: Any, micro: int, length: int, vocab: int, device: str, seed: int = 0) -> dict:
    """A batch of random token ids made by TRL's collator as the plan's trainer makes it: `micro` rows of `length`
    with an attention mask, or (padding-free) one row of every token, documents told apart by their position ids
    (packed: `DOCUMENTS_PER_ROW` documents per `length` tokens; padding-free without packing: one per row), with
    the `cu_seq_lens_*`/`max_length_*` flash attention's variable-length kernel reads."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    training = plan.resolved["training"]
    ids = torch.randint(0, vocab, (micro, length), generator=torch.Generator().manual_seed(seed))
    examples: list[dict] = [{"input_ids": row.tolist()} for row in ids]
    if training["padding_free"] and training["packing"]:
        for example in examples:
            example["seq_lengths"] = document_lengths(length, DOCUMENTS_PER_ROW)
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=training["padding_free"])
    batch = collator(examples)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA; the CPU runs synchronously)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def peak_flops(device: str, override_tflops: Optional[float]) -> Optional[float]:
    """The dense bf16 peak FLOP/s of the device (`--peak-tflops` first), None when not known."""
    if override_tflops:
        return override_tflops * 1e12
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def run_config(plan: Any, device: str, micro: int, length: int, warmup: int, steps: int, peak: Optional[float]) -> dict:
    """Build the plan's model, run `warmup` then `steps` timed training steps; speed, MFU and peak memory."""
    import torch

    from runner.measure.step import _loss

    torch.manual_seed(0)
    model = build(plan, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_for(plan, trainable)
    clip = plan.trainer["args"].get("max_grad_norm") or 0.0
    batch = make_batch(plan, micro, length, plan.architecture.vocab_size, device)
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    tokens = int(batch["input_ids"].numel())
    low = torch.bfloat16 if plan.precision == "bf16" else torch.float16
    autocast = torch.autocast(torch.device(device).type, dtype=low, enabled=plan.precision in ("bf16", "fp16"))
    cuda = device.startswith("cuda")

    def step() -> Any:
        with autocast:
            loss = _loss(plan, model, batch["input_ids"], batch["labels"], **extra)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(trainable, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - start
    rate = tokens * steps / seconds
    memory = plan.memory
    estimate = memory["per_gpu_gb"] - memory["breakdown"].get("runtime_overhead", 0.0)
    measured = torch.cuda.max_memory_allocated(device) / GiB if cuda else None
    training = plan.resolved["training"]
    return {
        "micro_batch": micro,
        "max_length": length,
        "padding_free": training["padding_free"],
        "gradient_checkpointing": plan.gradient_checkpointing,
        "precision": plan.precision,
        "optimizer": plan.trainer["args"].get("optim"),
        "tokens_per_step": tokens,
        "warmup_steps": warmup,
        "steps": steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(rate, 1),
        "mfu": round(6 * plan.architecture.total_params * rate / peak, 4) if peak else None,
        "total_params": plan.architecture.total_params,
        "peak_gib": round(measured, 3) if measured is not None else None,
        "reserved_gib": round(torch.cuda.max_memory_reserved(device) / GiB, 3) if cuda else None,
        "estimate_gib": round(estimate, 3),
        "estimate_runtime_overhead_gib": memory["breakdown"].get("runtime_overhead", 0.0),
        "estimate_breakdown": memory["breakdown"],
        "estimate_phase": memory.get("peak_phase"),
        "ratio": round(estimate / measured, 3) if measured else None,
        "trainable_params": sum(p.numel() for p in trainable),
        "plan_trainable_params": memory.get("trainable_params"),
        "loss": round(float(loss), 4),
    }


def packing_check(device: str, attention: str, dtype_name: str = "bfloat16") -> dict:
    """On a small random Llama (hidden 256, 2 layers): the largest |log p| difference of a scored token between a
    padding-free packed row of five documents and each document alone (TRL's collator and fused LM head, as
    SFTTrainer scores them), and, for scale, the same when the row is run as one sequence (what a leak between
    documents looks like)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    from trl.trainer.utils import add_fused_lm_head

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
        max_position_embeddings=2048,
        use_cache=False,
    )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention).eval()
    add_fused_lm_head(model)
    g = torch.Generator().manual_seed(1)
    documents = [torch.randint(3, 1024, (n,), generator=g).tolist() for n in (37, 128, 64, 201, 90)]
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)

    def scored(batch: dict) -> Any:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.no_grad():
            out = model(**batch, use_cache=False, fused_lm_head=True)
        return out.log_probs[out.label_mask].float()

    packed = collator([{"input_ids": d} for d in documents])
    alone = torch.cat([scored(collator([{"input_ids": d}])) for d in documents])
    together = scored(packed)
    n = packed["input_ids"].shape[1]
    mixed = {  # the same tokens and labels as one sequence: every document sees those before it
        "input_ids": packed["input_ids"],
        "labels": packed["labels"],
        "position_ids": torch.arange(n)[None],
    }
    leak = scored(mixed)
    diff = float((together - alone).abs().max())
    return {
        "attention": attention,
        "dtype": dtype_name,
        "documents": [len(d) for d in documents],
        "tokens": n,
        "max_abs_diff": diff,
        "as_one_sequence_max_abs_diff": float((leak - alone).abs().max()),
        "tolerance": PACKING_TOLERANCE,
        "ok": diff < PACKING_TOLERANCE,
    }


def versions() -> dict:
    """Versions of the libraries the step runs on (None: not importable)."""
    import importlib

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "flash_attn"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:
            out[name] = None
    import torch

    out["cuda"] = torch.version.cuda
    return out


def fmt(value: Optional[float], spec: str) -> str:
    """`value` formatted, or n/a."""
    return "n/a" if value is None else format(value, spec)


HEADER = (
    f"{'config':12} {'attention':17} {'packed':6} {'tokens/s':>10} {'MFU %':>6} {'peak GiB':>9} {'est GiB':>8} "
    f"{'est/meas':>8}"
)


def row_line(row: dict) -> str:
    mfu = None if row["mfu"] is None else 100 * row["mfu"]
    return (
        f"{row['label']:12} {row['attention']:17} {'yes' if row['packed'] else 'no':6} "
        f"{row['tokens_per_s']:10.1f} {fmt(mfu, '6.1f'):>6} {fmt(row['peak_gib'], '9.2f'):>9} "
        f"{row['estimate_gib']:8.2f} {fmt(row['ratio'], '8.3f'):>8}"
    )


def overrides_for(args: argparse.Namespace, profile: str, attention: str, packed: bool, quantization: list) -> list:
    """The `recipe plan --set` strings of one configuration on one GPU of `profile`."""
    return [
        f"hardware.profile={profile}",
        "hardware.gpus_per_node=1",
        f"model.attention={attention}",
        f"training.packing={str(packed).lower()}",
        f"training.micro_batch_size={args.micro_batch}",
        f"training.global_batch_size={args.micro_batch}",  # one micro batch per optimizer step
        *([f"training.max_length={args.max_length}"] if args.max_length else []),
        *quantization,
        *args.set,
    ]


def benchmark(recipe: Path, overrides: list, device: str, warmup: int, steps: int, peak: Optional[float]) -> dict:
    """Plan one configuration and run it; a plan that does not resolve raises (one it says does not fit runs)."""
    plan = plan_for(recipe, overrides)
    errors = [p for p in plan.problems if p.severity == "error"]
    if any(p.rule != "memory-fit" for p in errors):
        raise ValueError("the plan does not resolve: " + "; ".join(p.message for p in errors))
    q = plan.quantization
    return {
        "label": f"QLoRA {q['args'].get('bnb_4bit_quant_type')}" if q else f"LoRA {plan.precision}",
        "overrides": overrides,
        "plan_fits": not errors,
        **run_config(plan, device, plan.micro_batch_size, plan.resolved["training"]["max_length"], warmup, steps, peak),
    }


def check_packing(device: str, flash_missing: Optional[str]) -> list[dict]:
    """Run and print the packing check with bf16 sdpa (its noise where documents are kept apart) and, where it can
    run, flash_attention_2."""
    attentions = ["sdpa"]
    if flash_missing:
        print(f"packing check with flash_attention_2: skipped: {flash_missing}")
    else:
        attentions.append("flash_attention_2")
    checks = []
    for attention in attentions:
        try:
            check = packing_check(device, attention)
        except Exception as exc:
            print(f"packing check with {attention}: failed: {type(exc).__name__}: {str(exc)[:300]}")
            checks.append({"attention": attention, "ok": False, "error": str(exc)})
            continue
        checks.append(check)
        print(
            f"packing check ({attention}, {check['dtype']}, hidden 256, 2 layers, documents {check['documents']}):"
            f" max |log p packed - log p alone| = {check['max_abs_diff']:.2e} (tolerance"
            f" {check['tolerance']:.0e}): {'PASS' if check['ok'] else 'FAIL'}; the row run as one sequence"
            f" differs by {check['as_one_sequence_max_abs_diff']:.2e}"
        )
    return checks


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="h100-80gb", help="hardware profile the plans use (schemas/profiles)")
    parser.add_argument("--device", default="cuda", help="torch device (cuda, cuda:1, cpu with --tiny)")
    parser.add_argument("--micro-batch", type=int, default=4, help="rows per step (default 4: fits 80 GB per plan)")
    parser.add_argument("--max-length", type=int, help="tokens per row (default: the recipe's, 1024)")
    parser.add_argument("--steps", type=int, help="timed steps (default 10; 2 with --tiny)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU, instead of the device-name table")
    parser.add_argument(
        "--only",
        help="run the configurations named by all these words: lora|qlora sdpa|flash_attention_2 packed|unpacked",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another recipe override")
    parser.add_argument("--check-packing", action="store_true", help="check packed rows keep documents apart")
    parser.add_argument("--tiny", action="store_true", help="the tiny Llama of recipes/tiny/sft-lora.yaml instead")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.micro_batch < 1 or (args.steps is not None and args.steps < 1) or args.warmup < 0:
        parser.error("--micro-batch and --steps must be at least 1, --warmup at least 0")

    import warnings

    warnings.filterwarnings("ignore")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    device = args.device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or smoke-test with --tiny --device cpu", file=sys.stderr)
        return 2
    if args.tiny and not cuda:
        torch.set_num_threads(1)  # the tiny model's matmuls are too small to share; on a busy CPU threads only wait
    recipe = TINY_RECIPE if args.tiny else RECIPE
    profile = args.profile if cuda else "cpu"
    steps = args.steps if args.steps is not None else (2 if args.tiny else 10)
    peak = peak_flops(device, args.peak_tflops)
    info = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "profile": profile,
        "recipe": str(recipe.relative_to(ROOT)),
        "peak_flops": peak,
        "versions": versions(),
    }
    print(f"device: {info['device']}; profile {profile}; recipe {info['recipe']}")
    print("versions: " + ", ".join(f"{k} {v or 'none'}" for k, v in info["versions"].items()))
    if peak:
        source = "--peak-tflops" if args.peak_tflops else "by device name"
        print(f"MFU against a dense bf16 peak of {peak / 1e12:.0f} TFLOP/s ({source})")
    else:
        print(f"MFU: n/a ({'no GPU' if not cuda else 'peak unknown for this device: give --peak-tflops'})")

    rows: list[dict] = []
    skipped: list[dict] = []
    flash_missing = flash_attention_missing(device)
    print(HEADER, flush=True)
    for config, quantization in CONFIGS:
        for attention in ATTENTIONS:
            for packed in (False, True):
                name = f"{config} {attention} {'packed' if packed else 'unpacked'}"
                if args.only and not set(args.only.lower().split()) <= set(name.split()):
                    continue
                entry = {"config": config, "attention": attention, "packed": packed}
                if attention == "flash_attention_2" and flash_missing:
                    print(f"{name}: skipped: {flash_missing}", flush=True)
                    skipped.append({**entry, "reason": flash_missing})
                    continue
                overrides = overrides_for(args, profile, attention, packed, quantization)
                try:
                    row = {**entry, **benchmark(recipe, overrides, device, args.warmup, steps, peak)}
                except Exception as exc:  # OOM, a missing package: say why, go on with the next
                    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                    print(f"{name}: failed: {reason}", flush=True)
                    skipped.append({**entry, "reason": reason})
                    row = None
                gc.collect()  # the fused head's closure keeps the model in a reference cycle
                if cuda:
                    torch.cuda.empty_cache()
                if row is not None:
                    rows.append(row)
                    print(row_line(row) + ("" if row["plan_fits"] else "  (the plan says it does not fit)"), flush=True)
    print(
        f"tokens/s: tokens per step × {steps} timed step(s) ÷ their seconds, after {args.warmup} warm-up step(s).\n"
        "MFU %: 6·N·tokens/s ÷ peak, N all parameters of the model; 6·N counts the frozen weights' backward as if\n"
        "  they were trained (the conventional figure); attention FLOPs and checkpointing's recompute not counted.\n"
        "peak GiB: torch.cuda.max_memory_allocated over warm-up and timed steps, reset after the model was built.\n"
        "est GiB: the plan's memory estimate (`recipe plan`) without its runtime_overhead item (the CUDA context)."
    )
    checks = check_packing(device, flash_missing) if args.check_packing else []
    if args.json:
        payload = {**info, "steps": steps, "warmup_steps": args.warmup, "rows": rows, "skipped": skipped}
        args.json.write_text(json.dumps({**payload, "packing_checks": checks}, indent=1), encoding="utf-8")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
