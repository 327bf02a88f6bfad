"""Per-GPU memory estimate for a training configuration, with a breakdown.

Model states under DeepSpeed follow DeepSpeed's own estimators
(`estimate_zero2_model_states_mem_needs`, `estimate_zero3_model_states_mem_needs`):
for P trainable parameters on N GPUs, ZeRO-2 needs 2P + 18P/N bytes per GPU and
ZeRO-3 4·(largest layer) + 18P/N, where 18 = 2 (16-bit gradients) + 4 (fp32
gradients) + 4 (fp32 master weights) + 8 (Adam moments). `tests/test_plan.py`
checks this against those functions. Frozen weights (the base model under an
adapter) add their own bytes, sharded only by ZeRO-3.

Without DeepSpeed, trainable parameters keep their own dtype: adapters are float32 (PEFT), or
bfloat16 where TRL casts them (a quantized base, `resolve.adapter_dtype`); a fully fine-tuned model
trains in the dtype it was loaded in (float32 master weights under mixed precision, with a 16-bit
autocast copy of each weight), with gradients and optimizer moments of that dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .architecture import Architecture

GiB = 1024**3
RUNTIME_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS/cuDNN workspaces, allocator slack
SAFETY_MARGIN = 0.9  # a plan "fits" when its estimate is at most this share of the memory

# Optimizer state bytes per trainable parameter: a multiple of the parameter's bytes ("x") or absolute bytes.
OPTIMIZER_STATE = {
    "adamw_torch": ("x", 2),
    "adamw_torch_fused": ("x", 2),
    "adamw_8bit": ("b", 2),
    "adamw_bnb_8bit": ("b", 2),
    "paged_adamw_8bit": ("b", 2),
    "paged_adamw_32bit": ("b", 8),
    "adamw_torch_8bit": ("b", 2),
    "adamw_torch_4bit": ("b", 1),
    "ademamix": ("x", 3),
    "adafactor": ("b", 0.5),
    "sgd": ("x", 0),
    "adagrad": ("x", 1),
    "rmsprop": ("x", 1),
    "lion_8bit": ("b", 1),
    "lion_32bit": ("b", 4),
    "paged_lion_8bit": ("b", 1),
    "paged_lion_32bit": ("b", 4),
}

# bitsandbytes bytes per quantized parameter: 4-bit values, plus one fp32 absmax per block of 64
# (double quantization stores it in 8 bits, with an fp32 constant per 256 blocks).
BNB4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
BNB8_BYTES = 1.0 + 4 / 4096  # int8 values and a row-wise scale


@dataclass(frozen=True)
class TrainingShape:
    """Everything the estimate depends on, decided by the resolver."""

    arch: Architecture
    world_size: int
    zero: Optional[int]  # None: no DeepSpeed
    offload: str  # none | optimizer | all
    weight_bytes: float  # bytes per (unquantized) model weight: 2 for bf16/fp16, 4 for fp32
    activation_bytes: float  # 2 under bf16/fp16 autocast, 4 in fp32
    quantization: str  # none | bnb-4bit | bnb-8bit
    double_quant: bool
    adapter: str  # full | lora | dora | prefix | prompt | p-tuning | ia3
    trainable_params: int
    optimizer: str
    micro_batch_size: int
    max_length: int
    gradient_checkpointing: bool
    attention: str
    sequences_per_example: int = 1  # 2 when chosen and rejected go through the model together
    logits_tokens_per_sequence: Optional[int] = None  # default max_length; online RL scores completions only
    vocab_logits: bool = True  # False for a reward model's scalar head
    reference_model: bool = False  # a separate frozen copy of the policy (full fine-tuning of DPO/KTO...)
    reward_model: bool = False  # a reward model of the policy's size (online RL)
    lora_dropout_inputs: int = 0  # features per layer whose inputs LoRA dropout copies
    accelerator: str = "cuda"
    adapter_bytes: float = 4.0  # bytes per adapter weight (float32 in PEFT; bfloat16 where TRL casts it)
    autocast_copies: bool = False  # float32 weights under bf16/fp16 autocast: a 16-bit copy of each is cast and kept


@dataclass
class Estimate:
    breakdown: dict[str, float] = field(default_factory=dict)  # GiB per item

    @property
    def total(self) -> float:
        return sum(self.breakdown.values())


def frozen_weight_bytes(s: TrainingShape) -> float:
    """Bytes of the weights that do not train (the whole model under an adapter, nothing in full fine-tuning)."""
    a = s.arch
    if s.adapter == "full":
        return 0.0
    if s.quantization == "none":
        return a.total_params * s.weight_bytes
    per_param = BNB4_BYTES[s.double_quant] if s.quantization == "bnb-4bit" else BNB8_BYTES
    return a.quantizable_params * per_param + (a.total_params - a.quantizable_params) * s.weight_bytes


def deepspeed_model_states(
    trainable: int, stage: int, world: int, offload: str, largest_layer: int
) -> dict[str, float]:
    """DeepSpeed's per-GPU bytes for the trainable parameters' weights, gradients and optimizer states."""
    t, n = trainable, world
    if stage == 3:
        buffer = 4 * largest_layer
        if offload == "all":
            return {"weights": buffer, "gradients": 0.0, "optimizer": 0.0}
        if offload == "optimizer":
            return {"weights": buffer + 2 * t / n, "gradients": 0.0, "optimizer": 0.0}
        return {"weights": buffer + 2 * t / n, "gradients": 4 * t / n, "optimizer": 12 * t / n}
    if offload == "optimizer":  # ZeRO-Offload keeps only the 16-bit weights on the GPU
        return {"weights": 2 * t, "gradients": 0.0, "optimizer": 0.0}
    if stage == 2:
        return {"weights": 2 * t, "gradients": 6 * t / n, "optimizer": 12 * t / n}
    if stage == 1:
        return {"weights": 2 * t, "gradients": 2 * t + 4 * t / n, "optimizer": 12 * t / n}
    return {"weights": 2 * t, "gradients": 6 * t, "optimizer": 12 * t}


def plain_model_states(s: TrainingShape) -> dict[str, float]:
    """Without DeepSpeed: every process holds the trainable weights, their gradients and optimizer states."""
    t = s.trainable_params
    param_bytes = s.weight_bytes if s.adapter == "full" else s.adapter_bytes
    kind, amount = OPTIMIZER_STATE.get(s.optimizer, ("x", 2))
    state = t * (amount * param_bytes if kind == "x" else amount)
    return {"weights": t * param_bytes, "gradients": t * param_bytes, "optimizer": state}


def activation_bytes(s: TrainingShape) -> float:
    a = s.arch
    tokens = s.micro_batch_size * s.sequences_per_example * s.max_length
    b = s.activation_bytes
    h = a.hidden_size
    if a.is_mamba:
        per_token_layer = b * (h + 10 * a.expand * h) + 4 * a.expand * h * a.state_size / 8
    else:
        i = a.intermediate_size or 4 * h
        mlp = 4 * i if a.gated_mlp else 2 * i
        per_token_layer = b * (5 * h + 2 * a.kv_dim + mlp + s.lora_dropout_inputs)
    per_layer = tokens * per_token_layer
    if s.attention == "eager" and not a.is_mamba:
        seqs = s.micro_batch_size * s.sequences_per_example
        per_layer += seqs * a.num_attention_heads * s.max_length**2 * (b + 4)  # fp32 softmax and its 16-bit copy
    if s.gradient_checkpointing:
        # Each layer keeps only its input; one layer is recomputed at a time in the backward pass.
        return a.num_hidden_layers * tokens * h * b + per_layer
    return a.num_hidden_layers * per_layer


def logits_bytes(s: TrainingShape) -> float:
    """The output logits and the float32 copies the loss makes (log-softmax kept for the backward)."""
    if not s.vocab_logits:
        return 0.0
    per_seq = s.logits_tokens_per_sequence or s.max_length
    tokens = s.micro_batch_size * s.sequences_per_example * per_seq
    return tokens * s.arch.vocab_size * (s.activation_bytes + 4 + 4)


def offload_cpu_bytes(s: TrainingShape, nodes: int) -> float:
    """CPU memory per node that ZeRO-Offload needs, by DeepSpeed's estimators (buffer factor 1.5)."""
    if s.zero is None or s.offload == "none":
        return 0.0
    t, gpus, factor = s.trainable_params, s.world_size, 1.5
    if s.zero == 3:
        return t * (18 if s.offload == "all" else 16) / nodes * factor
    return t * max(4 * gpus, 16) * factor


def estimate(s: TrainingShape) -> Estimate:
    """Per-GPU (per-process on CPU) memory, in GiB, by item."""
    a = s.arch
    frozen = frozen_weight_bytes(s)
    if s.zero is not None:
        states = deepspeed_model_states(s.trainable_params, s.zero, s.world_size, s.offload, a.largest_layer_params)
        if s.zero == 3:
            frozen = 0.0 if s.offload == "all" else frozen / s.world_size
    else:
        states = plain_model_states(s)
    copies = 0.0
    copy_bytes = a.total_params * s.weight_bytes
    if s.zero == 3:
        copy_bytes = 0.0 if s.offload == "all" else copy_bytes / s.world_size
    if s.reference_model:
        copies += copy_bytes
    reward = copy_bytes if s.reward_model else 0.0
    out = {
        "weights": (frozen + states["weights"]) / GiB,
        "gradients": states["gradients"] / GiB,
        "optimizer_states": states["optimizer"] / GiB,
        "activations": activation_bytes(s) / GiB,
        "logits": logits_bytes(s) / GiB,
        "reference_model": copies / GiB,
        "reward_model": reward / GiB,
        # autocast casts each float32 weight to 16 bits for its matmul and keeps the copy for the backward pass
        "autocast_copies": (a.total_params * 2 if s.autocast_copies else 0.0) / GiB,
        "runtime_overhead": RUNTIME_OVERHEAD_GB if s.accelerator == "cuda" else 0.5,
    }
    return Estimate({k: round(v, 3) for k, v in out.items()})
