"""Per-GPU memory estimate for a training configuration, with a breakdown, calibrated term by term.

The peak of a training step is the largest of three moments, each a sum of what is alive then:
- the end of the forward pass: weights, optimizer states, every saved activation, the loss's working memory;
- the start of the backward pass: the same, plus the backward's working set (and the LM head's gradient, which the
  fused LM head allocates first, when the head trains);
- the optimizer step: weights, gradients, optimizer states and the step's temporaries.
DDP's gradient buckets, a reference or reward model and the runtime overhead are alive at all three.

Sources and calibration. Weights and model states under DeepSpeed follow DeepSpeed's own estimators
(`estimate_zero2_model_states_mem_needs`, `estimate_zero3_model_states_mem_needs`): for P trainable parameters on N
GPUs, ZeRO-2 needs 2P + 18P/N bytes per GPU and ZeRO-3 4·(largest layer) + 18P/N, where 18 = 2 (16-bit
gradients) + 4 (fp32 gradients) + 4 (fp32 master weights) + 8 (Adam moments); `tests/test_plan.py` checks this
against those functions. Everything else was measured: one training step of the real architectures at full size,
built from the plan and run with fake tensors (`runner/measure`, `benchmarks/memory.py`, figures in
benchmarks/README.md), and `tests/test_memory_calibration.py` keeps the estimate within 10% of that measurement in
CI. Each term below names what it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .architecture import Architecture

GiB = 1024**3
RUNTIME_OVERHEAD_GB = 1.0  # CUDA context, cuBLAS/cuDNN workspaces, allocator slack (fake tensors cannot see it)
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
# torch's multi-tensor ("foreach") AdamW, the default on CUDA for `adamw_torch`, computes the denominator of every
# parameter at once: one more copy of the trainable parameters during the step (measured: 8B full fine-tuning,
# 14.96 GiB of bf16 weights, 14.96 GiB more during the step). The fused kernels and bitsandbytes update in place.
FOREACH_OPTIMIZERS = {"adamw_torch", "adamw", "ademamix", "adagrad", "rmsprop"}

# bitsandbytes bytes per quantized parameter: 4-bit values, plus one fp32 absmax per block of 64
# (double quantization stores it in 8 bits, with an fp32 constant per 256 blocks).
BNB4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
BNB8_BYTES = 1.0 + 4 / 4096  # int8 values and a row-wise scale

# TRL's fused LM head (`trl.kernels.chunked_logprob`): the logits of at most 4,096 tokens × 32,768 vocabulary
# entries at a time, in the compute dtype (`TOKEN_CHUNK_SIZE`, `_CHUNKED_LOGPROB_CHUNK_SIZE`)
FUSED_TOKENS, FUSED_VOCAB = 4096, 32768


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
    fused_lm_head: bool = True  # TRL scores tokens through its tiled LM head (no [tokens, vocabulary] logits)
    reference_model: bool = False  # a separate frozen copy of the policy (full fine-tuning of DPO/KTO...)
    reward_model: bool = False  # a reward model of the policy's size (online RL)
    lora_modules: tuple[str, ...] = ()  # the block's linear layers an adapter wraps (names of arch.linear_modules())
    lora_rank: int = 0
    lora_dropout: float = 0.0
    accelerator: str = "cuda"
    adapter_bytes: float = 4.0  # bytes per adapter weight (float32 in PEFT; bfloat16 where TRL casts it)
    autocast_copies: bool = False  # float32 weights under bf16/fp16 autocast: a 16-bit copy of each is cast and kept
    padding_free: bool = False  # a micro batch's rows concatenated into one (packing): attention spans the whole row
    liger: bool = False  # Liger's RMSNorm and SwiGLU kernels


@dataclass
class Estimate:
    breakdown: dict[str, float] = field(default_factory=dict)  # GiB per item, at the peak
    phase: str = ""  # the moment of the step the peak is at

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
    """Without DeepSpeed: every process holds the trainable weights, their gradients and optimizer states, and the
    optimizer step its temporaries."""
    t = s.trainable_params
    param_bytes = s.weight_bytes if s.adapter == "full" else s.adapter_bytes
    kind, amount = OPTIMIZER_STATE.get(s.optimizer, ("x", 2))
    state = t * (amount * param_bytes if kind == "x" else amount)
    step = t * param_bytes if s.optimizer in FOREACH_OPTIMIZERS else 0.0
    return {"weights": t * param_bytes, "gradients": t * param_bytes, "optimizer": state, "step": step}


def _tokens(s: TrainingShape) -> int:
    return s.micro_batch_size * s.sequences_per_example * s.max_length


def key_length(s: TrainingShape) -> int:
    """Keys each query is scored against in the attention: a sequence's, or with padding-free rows the whole
    concatenated row's (the documents are kept apart by a block-diagonal mask of that size, not by shorter rows)."""
    return s.micro_batch_size * s.max_length if s.padding_free else s.max_length


def layer_activation_bytes(s: TrainingShape) -> float:
    """Bytes one block keeps for the backward pass, per token (measured tensor by tensor, see the module doc).

    - each norm keeps its input in float32 (RMSNorm upcasts; LayerNorm runs in float32 under autocast): 4h; Liger's
      RMSNorm keeps it in the compute dtype (`LigerRMSNormFunction` saves X and a per-row float32 rstd);
    - attention keeps q, k, v, its output and the softmax statistics; sdpa repeats grouped k/v heads to the query
      heads (unless there is a single one) and turns the padding mask into a float bias per layer; FlashAttention-2
      keeps k/v as they are and takes no mask; eager also keeps the softmax probabilities;
    - a linear layer whose weight trains keeps its input, once for the layers that share it (q/k/v, gate/up);
    - an adapter keeps its own 16-bit copy of the input per wrapped layer when its weights are float32 (PEFT casts
      the input, autocast casts it back) or when LoRA dropout makes a new tensor (with a 1-byte mask), and shares the
      layer's input otherwise; its rank-r intermediate; DoRA also keeps the base layer's output twice;
    - the MLP keeps its gate and up projections and the activation's output (gated), or the activation's input;
      Liger's SwiGLU keeps only the gate and up projections (`LigerSiLUMulFunction` recomputes the activation).

    With padding-free rows (packing) the attention's key length is the concatenated row's (`key_length`).
    """
    a, b = s.arch, s.activation_bytes
    h, q, i = a.hidden_size, a.q_dim, a.intermediate_size or 4 * a.hidden_size
    if a.is_mamba:
        return b * (h + 10 * a.expand * h) + 4 * a.expand * h * a.state_size / 8
    out = 2 * (b if s.liger else 4) * h
    if s.attention == "flash_attention_2":
        kv = a.kv_dim
    else:
        kv = a.kv_dim if a.kv_heads == 1 else q
    out += b * (2 * q + 2 * kv) + 4 * a.num_attention_heads
    keys = key_length(s)
    if s.attention == "sdpa":
        out += b * keys
    elif s.attention == "eager":
        out += a.num_attention_heads * keys * (b + 4)  # fp32 softmax and its 16-bit copy
    out += ((2 if s.liger else 3) if a.gated_mlp else 1) * b * i
    modules = a.linear_modules()
    for group in a.linear_groups():
        d = modules[group[0]][0]
        if s.adapter == "full":
            out += b * d
            continue
        wrapped = [m for m in group if m in s.lora_modules]
        if not wrapped:
            continue
        own_copy = s.adapter_bytes != b or s.lora_dropout > 0
        out += len(wrapped) * (b + (1 if s.lora_dropout > 0 else 0)) * d if own_copy else b * d
        out += len(wrapped) * b * s.lora_rank
        if s.adapter == "dora":
            out += sum(2 * b * modules[m][1] for m in wrapped)
    return out


def dora_constant_bytes(s: TrainingShape) -> float:
    """DoRA computes its weight norm from `lora_B(lora_A(eye(in_features)))` each forward and keeps the identity
    matrix for the backward: in_features² 16-bit values per wrapped layer, whatever the batch."""
    if s.adapter != "dora":
        return 0.0
    modules = s.arch.linear_modules()
    layers = 1 if s.gradient_checkpointing else s.arch.num_hidden_layers  # checkpointed: one block at a time
    return layers * sum(s.activation_bytes * modules[m][0] ** 2 for m in s.lora_modules)


def activation_bytes(s: TrainingShape) -> float:
    """Saved activations at the end of the forward pass (with checkpointing: each block's input; the block
    recomputed during the backward is `recomputed_bytes`)."""
    a = s.arch
    tokens = _tokens(s)
    per_layer = tokens * layer_activation_bytes(s)
    # the embeddings' output and the final norm's float32 input, once
    model = tokens * (s.activation_bytes + 4) * a.hidden_size
    if s.gradient_checkpointing:
        residual = 4 if s.autocast_copies else s.activation_bytes  # the residual stream is in the weights' dtype
        return a.num_hidden_layers * tokens * a.hidden_size * residual + model + dora_constant_bytes(s)
    return a.num_hidden_layers * per_layer + model + dora_constant_bytes(s)


def backward_working_bytes(s: TrainingShape) -> float:
    """The backward pass's working set at its start: the gradients of one block's activations (measured: about
    four intermediate-sized tensors of the compute dtype with a gated MLP, two without)."""
    a = s.arch
    i = a.intermediate_size or 4 * a.hidden_size
    return _tokens(s) * (4 if a.gated_mlp else 2) * s.activation_bytes * i


def recomputed_bytes(s: TrainingShape) -> float:
    """With checkpointing, the block whose backward runs is recomputed first: its activations, one block at a time."""
    return _tokens(s) * layer_activation_bytes(s) if s.gradient_checkpointing else 0.0


def loss_bytes(s: TrainingShape) -> dict[str, float]:
    """The loss's memory: forward working set, and what the backward adds first.

    With TRL's fused LM head the logits are computed a tile at a time (`FUSED_TOKENS` × `FUSED_VOCAB` in the
    compute dtype) from a copy of the final hidden states; its backward accumulates the hidden states' gradient in
    float32 and, when the head trains, the head's gradient in float32 then cast to the weights' dtype. Without it
    (the experimental ORPO/CPO trainers, a model computing its own loss) the logits are materialised: 16-bit logits,
    a float32 log-softmax kept for the backward, and its 16-bit gradient (measured 10 bytes per token per vocabulary
    entry at the forward's end, plus the same again during the backward).
    """
    if not s.vocab_logits:
        return {"forward": 0.0, "backward": 0.0}
    a = s.arch
    per_seq = s.logits_tokens_per_sequence or s.max_length
    tokens = s.micro_batch_size * s.sequences_per_example * per_seq
    b = s.activation_bytes
    if s.fused_lm_head:
        tile = min(tokens, FUSED_TOKENS) * FUSED_VOCAB * b  # allocated at full width, whatever the vocabulary
        forward = tile + tokens * b * a.hidden_size
        backward = tile + tokens * 4 * a.hidden_size
        if s.adapter == "full":
            backward += a.vocab_size * a.hidden_size * (4 + s.weight_bytes)
        return {"forward": forward, "backward": backward}
    logits = tokens * a.vocab_size * (b + 4 + 4)
    return {"forward": logits, "backward": tokens * a.vocab_size * b}


def offload_cpu_bytes(s: TrainingShape, nodes: int) -> float:
    """CPU memory per node that ZeRO-Offload needs, by DeepSpeed's estimators (buffer factor 1.5)."""
    if s.zero is None or s.offload == "none":
        return 0.0
    t, gpus, factor = s.trainable_params, s.world_size, 1.5
    if s.zero == 3:
        return t * (18 if s.offload == "all" else 16) / nodes * factor
    return t * max(4 * gpus, 16) * factor


def ddp_bucket_bytes(s: TrainingShape) -> float:
    """DDP's gradient buckets: without `gradient_as_bucket_view` (accelerate's and the Trainer's default) they are a
    second copy of every trainable gradient, allocated when the model is wrapped and kept for the whole run."""
    if s.world_size <= 1 or s.zero is not None:
        return 0.0
    return s.trainable_params * (s.weight_bytes if s.adapter == "full" else s.adapter_bytes)


def estimate(s: TrainingShape) -> Estimate:
    """Per-GPU (per-process on CPU) memory at the step's peak, in GiB, by item."""
    a = s.arch
    frozen = frozen_weight_bytes(s)
    if s.zero is not None:
        states = deepspeed_model_states(s.trainable_params, s.zero, s.world_size, s.offload, a.largest_layer_params)
        states["step"] = 0.0  # DeepSpeed's optimizers update their flat partitions in place
        if s.zero == 3:
            frozen = 0.0 if s.offload == "all" else frozen / s.world_size
    else:
        states = plain_model_states(s)
    persistent = s.zero is not None  # DeepSpeed allocates its gradient partitions and buckets at start-up
    copy_bytes = a.total_params * s.weight_bytes
    if s.zero == 3:
        copy_bytes = 0.0 if s.offload == "all" else copy_bytes / s.world_size
    always = {
        "weights": frozen + states["weights"],
        **({"gradients": states["gradients"]} if persistent else {}),
        "ddp_buckets": ddp_bucket_bytes(s),
        "reference_model": copy_bytes if s.reference_model else 0.0,
        "reward_model": copy_bytes if s.reward_model else 0.0,
    }
    # autocast casts each float32 weight to 16 bits for its matmul and keeps the copy for the backward pass (freed
    # once the backward is done)
    autocast = a.total_params * 2 if s.autocast_copies else 0.0
    loss = loss_bytes(s)
    activations = activation_bytes(s)
    logits_kept = 0.0 if s.fused_lm_head or not s.vocab_logits else loss["forward"]
    # the loss's backward runs first and frees its working memory; then the last block is recomputed (with
    # checkpointing) and its backward runs
    recomputed, working = recomputed_bytes(s), backward_working_bytes(s)
    block_first = recomputed + working >= loss["backward"]
    moments = {
        "end of forward": {
            "optimizer_states": states["optimizer"],
            "activations": activations,
            "logits": logits_kept,
            "temporaries": loss["forward"] - logits_kept,
            "autocast_copies": autocast,
        },
        "start of backward": {
            "optimizer_states": states["optimizer"],
            "activations": activations + (recomputed if block_first else 0.0),
            "logits": logits_kept,
            "temporaries": working if block_first else loss["backward"],
            "autocast_copies": autocast,
        },
        "optimizer step": {
            "gradients": 0.0 if persistent else states["gradients"],
            "optimizer_states": states["optimizer"],
            "temporaries": states["step"],
        },
    }
    phase = max(moments, key=lambda m: sum(moments[m].values()))
    out = {"weights": 0.0, "gradients": 0.0, "optimizer_states": 0.0, "activations": 0.0, "logits": 0.0}
    out.update({"temporaries": 0.0, "autocast_copies": 0.0, **always})
    for k, v in moments[phase].items():
        out[k] += v
    out = {k: v / GiB for k, v in out.items()}
    out["runtime_overhead"] = RUNTIME_OVERHEAD_GB if s.accelerator == "cuda" else 0.5
    return Estimate({k: round(v, 3) for k, v in out.items()}, phase)
