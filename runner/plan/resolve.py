"""`resolve(recipe, probe) -> Plan`: a pure function that decides and explains.

It imports no torch and reads nothing but shipped tables and, for a model given as
a local directory, its config.json. What is installed comes in through `probe`
(`runner.plan.probe.probe_packages()` in the commands), so tests can state it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile
from schemas.objectives import facts

from . import arguments, launchfiles
from .architecture import Architecture, find_architecture
from .memory import SAFETY_MARGIN, Estimate, GiB, TrainingShape, estimate, offload_cpu_bytes
from .types import Decision, Plan, Problem

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def _pow2_divisors(n: int) -> list[int]:
    out, b = [], 1
    while b <= n:
        if n % b == 0:
            out.append(b)
        b *= 2
    return sorted(out, reverse=True)


# training.optimizer values DeepSpeed's CPU Adam stands in for when optimizer states are offloaded
OFFLOAD_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")
SIXTEEN_BIT = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

# Attention implementations transformers offers per model type besides `eager` (tests/test_plan.py checks this
# table against the installed model classes' `_supports_sdpa` and `_supports_flash_attn`).
ATTENTION = {
    "bloom": (),
    "mamba": (),
    "gemma2": ("flash_attention_2",),
}
ATTENTION_DEFAULT = ("sdpa", "flash_attention_2")  # every other model type the shipped table knows


# Packing and padding-free rows keep documents apart only through the position ids TRL restarts at 0 for each
# document: transformers turns them into a block-diagonal mask (eager, sdpa, flex attention) or gives
# FlashAttention-2 each document's bounds. These model types' forwards do not, so the documents of a row attend to
# each other (tests/test_packing.py measures every model type below against the installed transformers).
PACKING_CONTAMINATES = {
    "bloom": "BLOOM builds its causal mask and ALiBi bias without the position ids",
    "mamba": "Mamba has no attention to mask: its convolution and scan run across the whole row",
}
# Model types whose packed rows give each document exactly the loss it has alone (tests/test_packing.py).
PACKING_PROVEN = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2", "gpt_neox", "falcon"}
)
# The transformers release both tables were measured on: the one constraints.txt pins (tests/test_packing.py)
PACKING_PROVEN_ON = "5.24.0"

# Model types Liger 0.8.5 patches (`liger_kernel.transformers.monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN`), of the
# decoder-only ones this program knows.
LIGER_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "granite",
     "smollm3"}
)  # fmt: skip


def attention_choices(arch: Optional[Architecture]) -> Optional[tuple[str, ...]]:
    """What the model type supports besides `eager`; None when the model is not known (nothing is checked)."""
    if arch is None:
        return None
    return ATTENTION.get(arch.model_type, ATTENTION_DEFAULT)


def _precision(r: Recipe, hw: HardwareProfile, out: list[Decision], problems: list[Problem]) -> str:
    """The arithmetic of forward and backward: bf16, fp16 (both mixed precision) or fp32."""
    dtype = r.model.dtype
    if dtype == "auto":
        if hw.is_gpu and hw.bf16:
            precision = "bf16"
            why = f"{hw.name} computes in bfloat16 natively (compute capability {hw.compute_capability})"
        elif hw.is_gpu:
            precision = "fp16"
            why = (
                f"{hw.name} has no bfloat16 (compute capability {hw.compute_capability}); float16 with dynamic "
                "loss scaling"
            )
        else:
            precision, why = "fp32", "CPU training runs in float32"
    else:
        precision = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]
        why = f"model.dtype is {dtype}"
        if precision == "fp16" and not hw.is_gpu:
            problems.append(
                Problem(
                    ("model", "dtype"),
                    "float16 mixed precision needs a GPU; on CPU use float32 or bfloat16",
                    "fp16-needs-gpu",
                )
            )
    out.append(Decision("precision", precision, why))
    return precision


def _tf32(r: Recipe, hw: HardwareProfile, out: list[Decision]) -> Optional[bool]:
    """TrainingArguments' `tf32`: True, False, or None (not set: PyTorch's default, off for matmuls)."""
    if r.training.tf32 != "auto":
        return r.training.tf32
    if hw.is_gpu and (hw.compute_capability or 0) >= 8.0:
        out.append(
            Decision(
                "tf32",
                True,
                f"{hw.name} has TF32 (compute capability {hw.compute_capability}): float32 products outside "
                "autocast run several times faster with 10-bit mantissas",
            )
        )
        return True
    return None


def load_dtype(r: Recipe, precision: str, zero: Optional[int]) -> tuple[str, str]:
    """(dtype the model's weights load in, why): where the weights the optimizer updates live."""
    sixteen = SIXTEEN_BIT[precision]
    if r.adapter.kind != "full":
        adapter, why = adapter_dtype(r, zero, sixteen)
        frozen = f"the frozen base ({r.quantization.method})" if r.is_quantized else "the frozen base"
        return sixteen, f"{frozen} loads in the training precision; the adapter's weights train in {adapter}: {why}"
    if precision == "fp32":
        return "float32", "full fine-tuning in float32: weights, gradients and optimizer states are float32"
    if r.training.master_weights == "bfloat16":
        return "bfloat16", (
            "pure bfloat16, as training.master_weights asks: the optimizer updates bfloat16 weights and updates "
            "below bfloat16's resolution are lost"
        )
    if zero is None:
        return "float32", (
            f"float32 master weights: the model loads in float32, forward and backward run under {precision} "
            "autocast, and the optimizer updates the float32 weights"
        )
    return sixteen, (
        f"DeepSpeed ZeRO-{zero} keeps {sixteen} weights on the GPU and float32 master copies (with the optimizer "
        f"states) in its optimizer, made from the {sixteen}-rounded weights"
    )


def adapter_dtype(r: Recipe, zero: Optional[int], load: str) -> tuple[str, str]:
    """(dtype of the adapter's trainable weights, why), as TRL and PEFT (the versions we pin) make them."""
    if r.is_quantized and facts(r.objective.kind).quantized_adapter_bf16:
        return "bfloat16", f"TRL's {r.objective.kind} trainer casts the adapter of a quantized model to bfloat16"
    if zero == 3 and load != "float32":
        return load, "under ZeRO-3 TRL keeps the adapter in the base's dtype (DeepSpeed gathers one dtype)"
    return "float32", "PEFT keeps adapter weights in float32"


def _attention(
    r: Recipe, hw: HardwareProfile, precision: str, arch: Optional[Architecture], probe: dict, out: list[Decision],
    problems: list[Problem],
) -> str:  # fmt: skip
    chosen = r.model.attention
    if arch is not None and arch.is_mamba:
        out.append(Decision("attention", "none", f"{arch.model_type} is a state-space model without attention"))
        return "eager"
    supported = attention_choices(arch)
    if chosen != "auto":
        if supported is not None and chosen != "eager" and chosen not in supported:
            offered = ", ".join(("eager", *supported))
            problems.append(
                Problem(
                    ("model", "attention"),
                    f"{arch.model_type} models do not support `{chosen}` attention in transformers "  # type: ignore[union-attr]
                    f"(they offer: {offered}); set `attention: auto` or one of those",
                    "attention-unsupported",
                )
            )
        out.append(Decision("attention", chosen, "set in the recipe"))
        return chosen
    if supported is not None and not supported:
        value, why = "eager", f"{arch.model_type} models support only eager attention in transformers"  # type: ignore[union-attr]
    elif not hw.is_gpu:
        value, why = "sdpa", "CPU: PyTorch scaled-dot-product attention"
    elif (hw.compute_capability or 0) < 8.0:
        value, why = "sdpa", f"FlashAttention-2 needs compute capability 8.0+, {hw.name} has {hw.compute_capability}"
    elif precision == "fp32":
        value, why = "sdpa", "FlashAttention-2 does not run in float32"
    elif probe.get("flash_attn"):
        value, why = (
            "flash_attention_2",
            f"{hw.name} is Ampere or newer and flash-attn {probe['flash_attn']} is installed",
        )
    else:
        value, why = "sdpa", "flash-attn is not installed here (pip install flash-attn to use FlashAttention-2)"
    if value == "sdpa" and supported is not None and "sdpa" not in supported:
        value, why = "eager", f"{why}; {arch.model_type} models do not support sdpa in transformers"  # type: ignore[union-attr]
    out.append(Decision("attention", value, why))
    return value


def _padding_free(
    r: Recipe, hw: HardwareProfile, arch: Optional[Architecture], attention: str, out: list[Decision],
    problems: list[Problem],
) -> bool:  # fmt: skip
    """Whether a micro batch's sequences go into one row without padding (always so with packing), and whether the
    model keeps that row's documents apart."""
    t = r.training
    if not facts(r.objective.kind).packing:
        return False  # the rules refuse packing or padding_free: true here
    padding_free = t.packing if t.padding_free == "auto" else t.padding_free
    if not padding_free:
        return False
    field = ("training", "packing" if t.packing else "padding_free")
    model_type = arch.model_type if arch is not None else None
    if model_type in PACKING_CONTAMINATES:
        problems.append(
            Problem(
                field,
                f"the documents of a {'packed' if t.packing else 'padding-free'} row would attend to each other: "
                f"{PACKING_CONTAMINATES[model_type]} (transformers {PACKING_PROVEN_ON}); set `{field[1]}: false`",
                "packing-contaminates",
            )
        )
    elif model_type not in PACKING_PROVEN:
        problems.append(
            Problem(
                field,
                f"documents in one row stay apart only if the model builds its attention mask from the position ids; "
                f"not verified for {model_type or 'this model'} (verified on transformers {PACKING_PROVEN_ON}: "
                f"{', '.join(sorted(PACKING_PROVEN))})",
                "packing-unverified",
                "warning",
            )
        )
    if attention == "flash_attention_2":
        how = "FlashAttention-2's variable-length kernel gets each document's bounds"
    else:
        how = f"transformers turns them into a block-diagonal mask for {attention}"
        if hw.is_gpu and attention == "sdpa":
            how += " (with a mask, sdpa runs its memory-efficient kernel instead of FlashAttention)"
    proven = f" (proven for {model_type} on transformers {PACKING_PROVEN_ON})" if model_type in PACKING_PROVEN else ""
    if t.packing:
        out.append(
            Decision(
                "packing",
                "best-fit decreasing, padding-free",
                f"sequences packed into rows of up to {t.max_length} tokens and a micro batch's rows concatenated; "
                f"each document's position ids restart at 0 and {how}{proven}",
            )
        )
    else:
        out.append(
            Decision(
                "padding-free",
                True,
                f"a micro batch's sequences concatenated into one row without padding (each truncated to "
                f"{t.max_length} tokens first); each one's position ids restart at 0 and {how}{proven}",
            )
        )
    return True


def _kernels(
    r: Recipe, hw: HardwareProfile, arch: Optional[Architecture], probe: dict, out: list[Decision],
    problems: list[Problem],
) -> str:  # fmt: skip
    """`liger` or `none`: Liger's Triton kernels replace the model's norms, gated MLP activations and RoPE."""
    choice = r.training.kernels
    model_type = arch.model_type if arch is not None else None
    supported = model_type is None or model_type in LIGER_MODEL_TYPES
    what = "Liger's RMSNorm, SwiGLU/GeGLU and RoPE kernels; TRL keeps its own fused LM head for the loss"
    if choice == "none":
        out.append(Decision("kernels", "none", "set in the recipe"))
        return "none"
    if choice == "liger":
        if not hw.is_gpu:
            problems.append(
                Problem(
                    ("training", "kernels"),
                    f"Liger's kernels are Triton GPU kernels and the hardware profile '{hw.name}' has no GPU; "
                    "set `kernels: auto` (none on a CPU) or `none`",
                    "kernels-need-gpu",
                )
            )
        elif not supported:
            problems.append(
                Problem(
                    ("training", "kernels"),
                    f"Liger has no kernels for {model_type} models (it patches: "
                    f"{', '.join(sorted(LIGER_MODEL_TYPES))}); set `kernels: none`",
                    "kernels-unsupported-model",
                )
            )
        out.append(Decision("kernels", "liger", f"set in the recipe: {what}"))
        return "liger"
    if not hw.is_gpu:
        why = "CPU: Liger's kernels are Triton GPU kernels"
    elif model_type is None or model_type not in LIGER_MODEL_TYPES:
        why = f"Liger has no kernels for {model_type or 'an unknown model type'}"
    elif not probe.get("liger_kernel"):
        why = "liger-kernel is not installed here (pip install liger-kernel to use its fused kernels)"
    else:
        out.append(Decision("kernels", "liger", f"liger-kernel {probe['liger_kernel']} is installed: {what}"))
        return "liger"
    out.append(Decision("kernels", "none", why))
    return "none"


# PEFT (`_check_lora_target_modules_mamba`) refuses LoRA-like adapters on these Mamba modules
MAMBA_LORA_REFUSED = ("out_proj", "conv1d")


def _mamba_problems(r: Recipe) -> list[Problem]:
    """What fails or silently does nothing on a Mamba model (transformers 5.23's `MambaMixer`, PEFT 0.21): the
    mixer multiplies by `dt_proj.weight` directly instead of calling the layer, so a 4-/8-bit dt_proj fails at the
    first forward and an adapter on it never receives a gradient; PEFT refuses out_proj and conv1d."""
    out = []
    a, q = r.adapter, r.quantization
    if a.kind in ("lora", "dora"):
        targets = a.target_modules
        refused = [m for m in MAMBA_LORA_REFUSED if targets == "all-linear" or m in targets]
        if refused:
            out.append(
                Problem(
                    ("adapter", "target_modules"),
                    f"PEFT refuses LoRA on a Mamba model's {' and '.join(refused)} when it builds the adapter; "
                    "target in_proj and x_proj instead",
                    "mamba-lora-targets",
                )
            )
        if targets == "all-linear" or "dt_proj" in targets:
            out.append(
                Problem(
                    ("adapter", "target_modules"),
                    "an adapter on a Mamba model's dt_proj never trains: the mixer multiplies by `dt_proj.weight` "
                    "directly, bypassing the adapter; target in_proj and x_proj",
                    "mamba-lora-targets",
                )
            )
    if q.method != "none" and "dt_proj" not in q.skip_modules:
        out.append(
            Problem(
                ("quantization", "skip_modules"),
                "a quantized Mamba dt_proj fails at the first forward (the mixer multiplies by `dt_proj.weight` "
                "directly); keep it unquantized: `skip_modules: [dt_proj, lm_head]`",
                "mamba-quantized-dt-proj",
            )
        )
    return out


def trainable_params(r: Recipe, arch: Architecture, notes: list[str]) -> int:
    a = r.adapter
    h, layers = arch.hidden_size, arch.num_hidden_layers
    if a.kind == "full":
        return arch.total_params
    if a.kind in ("lora", "dora"):
        n, unknown = arch.lora_params(a.target_modules, a.r, dora=a.kind == "dora")
        if unknown:
            notes.append(f"target modules {unknown} are not known for {arch.model_type}; counted as none")
        for m in a.modules_to_save:
            n += arch.embedding_params if "embed" in m else (arch.vocab_size * h if "head" in m else 0)
        return n
    if a.kind == "prefix":
        n = a.num_virtual_tokens * layers * 2 * h
        if a.prefix_projection:
            enc = a.encoder_hidden_size or h
            n += a.num_virtual_tokens * h + h * enc + enc * layers * 2 * h
        return n
    if a.kind == "prompt":
        return a.num_virtual_tokens * h
    if a.kind == "p-tuning":
        enc = a.encoder_hidden_size
        return a.num_virtual_tokens * h + h * enc + (a.encoder_num_layers - 1) * enc * enc + enc * h
    # ia3: a vector on keys, values and the feed-forward input of every layer
    return layers * (2 * arch.kv_dim + (arch.intermediate_size or 4 * h))


def _candidates(r: Recipe, hw: HardwareProfile, world: int) -> list[tuple[Optional[int], str]]:
    """(ZeRO stage or None, offload) in order of preference: the least sharding first."""
    zero, offload = r.hardware.zero, r.hardware.offload
    if zero == "none" or r.training.master_weights == "bfloat16":  # DeepSpeed always keeps fp32 master copies
        return [(None, "none")]
    if zero != "auto":
        offloads = [offload] if offload != "auto" else ["none", "optimizer"] + (["all"] if zero == 3 else [])
        return [(zero, o) for o in offloads if not (o == "all" and zero != 3) and not (o == "optimizer" and zero == 0)]
    if not hw.is_gpu:
        return [(None, "none")]
    if offload not in ("auto", "none"):
        stages = [1, 2, 3] if offload == "optimizer" else [3]
        return [(s, offload) for s in stages]
    out: list[tuple[Optional[int], str]] = [(None, "none")]
    if world > 1:
        out += [(1, "none"), (2, "none"), (3, "none")]
    if offload == "auto" and r.training.optimizer in OFFLOAD_OPTIMIZERS:
        out += [(2, "optimizer"), (3, "optimizer"), (3, "all")]
    if r.quantization.method == "bnb-8bit":
        out = [c for c in out if c[0] != 3]
    return out


def _shape(
    r: Recipe,
    arch: Architecture,
    hw: HardwareProfile,
    *,
    world,
    zero,
    offload,
    load_dtype,
    precision,
    attention,
    trainable,
    micro,
    gc,
    padding_free=False,
    kernels="none",
) -> TrainingShape:
    o, a, kind = r.objective, r.adapter, facts(r.objective.kind)
    lora = a.kind in ("lora", "dora")
    wrapped = tuple(arch.lora_modules(a.target_modules)[0]) if lora else ()
    return TrainingShape(
        arch=arch,
        world_size=world,
        zero=zero,
        offload=offload,
        weight_bytes=DTYPE_BYTES[load_dtype],
        autocast_copies=a.kind == "full" and precision != "fp32" and load_dtype == "float32",
        adapter_bytes=DTYPE_BYTES[adapter_dtype(r, zero, load_dtype)[0]],
        activation_bytes=4 if precision == "fp32" else 2,
        quantization=r.quantization.method,
        double_quant=r.quantization.double_quant,
        adapter=a.kind,
        trainable_params=trainable,
        optimizer=r.training.optimizer,
        micro_batch_size=micro,
        max_length=r.training.max_length,
        gradient_checkpointing=gc,
        attention=attention,
        sequences_per_example=kind.sequences_per_example,
        logits_tokens_per_sequence=o.max_completion_length if kind.generates else None,
        vocab_logits=not kind.reward_head,
        reference_model=a.kind == "full" and kind.reference_model and getattr(o, "beta", 1) > 0,
        reward_model=kind.generates and bool(o.reward_model),
        fused_lm_head=kind.fused_lm_head,
        lora_modules=wrapped,
        lora_rank=a.r if lora else 0,
        lora_dropout=a.dropout if lora else 0.0,
        accelerator=hw.accelerator,
        padding_free=padding_free,
        liger=kernels == "liger",
    )


def _suggestions(r: Recipe, best: Estimate, available: float) -> list[str]:
    out = []
    if r.adapter.kind == "full":
        out.append("train an adapter (`adapter: {kind: lora}`), or QLoRA with `quantization: {method: bnb-4bit}`")
    elif r.quantization.method == "none":
        out.append("load the base model in 4 bits (`quantization: {method: bnb-4bit}`, QLoRA)")
    if r.training.micro_batch_size not in ("auto", 1):
        out.append("a smaller `training.micro_batch_size` (the global batch stays the same)")
    if r.training.gradient_checkpointing is False:
        out.append("`training.gradient_checkpointing: true` (or `auto`)")
    if best.breakdown.get("logits", 0) + best.breakdown.get("activations", 0) > available / 3:
        out.append("a shorter `training.max_length`")
    out.append("more GPUs (`hardware.gpus_per_node`, `hardware.nodes`) with `zero: auto`, or a larger GPU profile")
    if r.hardware.offload in ("none",):
        out.append("`hardware.offload: auto` to move optimizer states or parameters to CPU memory")
    return out


@dataclass
class Fit:
    """The outcome of the memory search: how the run is sharded and batched, and what it needs per GPU."""

    zero: Optional[int]
    offload: str
    gradient_checkpointing: bool
    micro_batch_size: int
    memory: dict


def _micro_options(r: Recipe, per_rank: int) -> list[int]:
    if r.training.micro_batch_size != "auto":
        return [r.training.micro_batch_size]
    options = _pow2_divisors(per_rank)
    if r.objective.kind == "kto":
        options = [m for m in options if m >= 2] or options
    return options


def _gc_options(r: Recipe) -> list[bool]:
    gc = r.training.gradient_checkpointing
    if gc != "auto":
        return [gc]
    return [False] if r.adapter.kind == "prefix" else [False, True]


def _fit_unknown(
    r: Recipe, precision: str, available: float, arch_source: str, micro_options: list[int], problems: list[Problem]
) -> Fit:
    """No architecture to count: safe defaults, and a warning that memory was not estimated."""
    gc = r.training.gradient_checkpointing
    problems.append(
        Problem(
            ("model", "name_or_path"),
            f"memory not estimated: {arch_source}; ZeRO, micro batch and checkpointing use safe defaults",
            "memory-unknown",
            "warning",
        )
    )
    zero = r.hardware.zero if r.hardware.zero not in ("auto", "none") else None
    return Fit(
        zero=zero,
        offload=r.hardware.offload if r.hardware.offload != "auto" else "none",
        gradient_checkpointing=gc if gc != "auto" else r.adapter.kind != "prefix",
        micro_batch_size=micro_options[-1] if micro_options else 1,
        memory={
            "per_gpu_gb": None,
            "available_gb": available,
            "breakdown": {},
            "fits": None,
            "architecture": arch_source,
        },
    )


def _fit(
    r: Recipe,
    hw: HardwareProfile,
    world: int,
    arch: Architecture,
    arch_source: str,
    *,
    precision: str,
    attention: str,
    padding_free: bool,
    kernels: str,
    available: float,
    micro_options: list[int],
    problems: list[Problem],
) -> Fit:
    """The first (least sharded, least recomputing, largest micro batch) configuration that fits the memory."""
    notes: list[str] = []
    trainable = trainable_params(r, arch, notes)
    chosen: Optional[tuple] = None
    best: Optional[tuple] = None
    cpu_short = 0.0  # the least CPU memory an offload plan would have needed, when CPU memory ruled it out
    for zero_c, offload_c in _candidates(r, hw, world):
        for gc in _gc_options(r):
            for micro in micro_options:
                dtype, _ = load_dtype(r, precision, zero_c)
                shape = _shape(
                    r,
                    arch,
                    hw,
                    world=world,
                    zero=zero_c,
                    offload=offload_c,
                    load_dtype=dtype,
                    precision=precision,
                    attention=attention,
                    padding_free=padding_free,
                    kernels=kernels,
                    trainable=trainable,
                    micro=micro,
                    gc=gc,
                )
                est = estimate(shape)
                cpu_gb = offload_cpu_bytes(shape, r.hardware.nodes) / GiB
                cpu_ok = cpu_gb <= hw.cpu_ram_gb * SAFETY_MARGIN
                if not cpu_ok:
                    cpu_short = min(cpu_short or cpu_gb, cpu_gb)
                if cpu_ok and (best is None or est.total < best[4].total):
                    best = (zero_c, offload_c, gc, micro, est, cpu_gb)
                if est.total <= available * SAFETY_MARGIN and cpu_ok:
                    chosen = (zero_c, offload_c, gc, micro, est, cpu_gb)
                    break
                if best is None:
                    best = (zero_c, offload_c, gc, micro, est, cpu_gb)
            if chosen:
                break
        if chosen:
            break
    zero, offload, gc, micro, est, cpu_gb = chosen or best  # type: ignore[misc]
    if chosen is None:
        problems.append(
            Problem(("hardware", "profile"), _does_not_fit(r, hw, est, available, cpu_gb, cpu_short), "memory-fit")
        )
    for n in notes:
        problems.append(Problem(("adapter", "target_modules"), n, "memory-estimate", "warning"))
    memory = {
        "per_gpu_gb": round(est.total, 2),
        "available_gb": available,
        "offload_cpu_gb_per_node": round(cpu_gb, 1),
        "cpu_ram_gb": hw.cpu_ram_gb,
        "breakdown": est.breakdown,
        "peak_phase": est.phase,
        "fits": chosen is not None,
        "architecture": arch_source,
        "total_params": arch.total_params,
        "trainable_params": trainable,
    }
    return Fit(zero, offload, gc, micro, memory)


def _does_not_fit(
    r: Recipe, hw: HardwareProfile, est: Estimate, available: float, cpu_gb: float, cpu_short: float
) -> str:
    unit = "GPU" if hw.is_gpu else "process"
    text = (
        f"does not fit: the smallest plan needs {est.total:.1f} GiB per {unit} but {hw.name} has {available:.1f} GiB "
        f"({int(SAFETY_MARGIN * 100)}% usable)"
    )
    if cpu_gb:
        text += f", and its CPU offload {cpu_gb:.0f} GiB of {hw.cpu_ram_gb:g} GiB CPU memory per node"
    if cpu_short:
        text += (
            f"; offloading to CPU would need {cpu_short:.0f} GiB of CPU memory per node, more than {hw.name}'s "
            f"{hw.cpu_ram_gb:g} GiB"
        )
    return text + ". Try: " + "; ".join(_suggestions(r, est, available))


def _explain_fit(r: Recipe, hw: HardwareProfile, world: int, fit: Fit, known: bool, out: list[Decision]) -> int:
    """Decisions for micro batch, accumulation, checkpointing, ZeRO and offload; returns the accumulation steps."""
    t, micro, global_batch = r.training, fit.micro_batch_size, r.training.global_batch_size
    if t.micro_batch_size == "auto":
        why = (
            "the largest power of two dividing the per-process batch that fits the memory"
            if known
            else "memory unknown: the smallest"
        )
        out.append(Decision("micro_batch_size", micro, why))
    else:
        out.append(Decision("micro_batch_size", micro, "set in the recipe"))
    accumulation = max(1, global_batch // (micro * world)) if global_batch % world == 0 else 1
    out.append(
        Decision(
            "gradient_accumulation_steps",
            accumulation,
            f"global batch {global_batch} = micro {micro} × accumulation {accumulation} × world {world}",
        )
    )
    gc = fit.gradient_checkpointing
    if t.gradient_checkpointing == "auto":
        if r.adapter.kind == "prefix":
            why = "prefix tuning cannot use it"
        else:
            why = "needed to fit the memory" if gc else "not needed: the plan fits without recomputation"
        out.append(Decision("gradient_checkpointing", gc, why))
    else:
        out.append(Decision("gradient_checkpointing", gc, "set in the recipe"))
    if r.hardware.zero == "auto":
        if fit.zero is None:
            why = "one process per node needs no sharding" if world == 1 else "plain data parallelism fits"
            if not hw.is_gpu:
                why = "CPU processes: plain data parallelism (gloo)" if world > 1 else "one CPU process"
        else:
            why = f"the least sharding that fits {hw.name}"
        out.append(Decision("zero", fit.zero if fit.zero is not None else "none (no DeepSpeed)", why))
    else:
        out.append(Decision("zero", fit.zero, "set in the recipe"))
    if r.hardware.offload != "auto":
        why = "set in the recipe"
    else:
        why = "not needed" if fit.offload == "none" else "needed to fit the memory"
    out.append(Decision("offload", fit.offload, why))
    return accumulation


def _check_quant_storage(
    r: Recipe, quant: Optional[dict], zero: Optional[int], dtype: str, out: list[Decision], problems: list[Problem]
) -> None:
    """Under ZeRO-3 the packed 4-bit weights are sharded with the rest: their storage dtype must be the load dtype."""
    if not quant or zero != 3 or "bnb_4bit_quant_storage" not in quant["args"]:
        return
    storage = quant["args"]["bnb_4bit_quant_storage"]
    if r.quantization.quant_storage == "auto":
        why = f"ZeRO-3 shards parameters of one dtype: the packed 4-bit weights are stored as {dtype}, the load dtype"
        out.append(Decision("bnb_4bit_quant_storage", storage, why))
    elif storage != dtype:
        problems.append(
            Problem(
                ("quantization", "quant_storage"),
                f"ZeRO-3 shards the packed 4-bit weights together with the {dtype} weights of the rest of the model, "
                f"so their storage must be {dtype}, not {storage}; set `quant_storage: auto` (or {dtype})",
                "quant-storage-vs-zero3",
            )
        )


def _resolved_recipe(
    r: Recipe,
    *,
    precision: str,
    dtype: str,
    attention: str,
    fit: Fit,
    compute_dtype: str,
    quant: Optional[dict],
    targs: dict,
    padding_free: bool,
    kernels: str,
) -> dict:
    """The recipe with defaults filled and every `auto` replaced by what was decided: it stands alone.

    `model.dtype` is the training precision's dtype (what a recipe says); the dtype the weights load in, which
    for full fine-tuning may be float32 master weights, is the plan's `dtype`.
    """
    resolved = r.model_dump(mode="json")
    resolved.pop("extends", None)  # already merged in
    resolved["model"].update(dtype=SIXTEEN_BIT[precision], attention=attention)
    resolved["training"].update(
        micro_batch_size=fit.micro_batch_size,
        gradient_checkpointing=fit.gradient_checkpointing,
        eval_on_start=targs["eval_on_start"],
        padding_free=padding_free,
        kernels=kernels,
        tf32=bool(targs.get("tf32")),
    )
    if r.objective.kind == "sft":
        resolved["objective"].update(
            assistant_only_loss=targs["assistant_only_loss"], completion_only_loss=targs["completion_only_loss"]
        )
    if r.adapter.kind == "full" and precision != "fp32":
        resolved["training"]["master_weights"] = dtype if dtype == "bfloat16" and fit.zero is None else "float32"
    resolved["hardware"].update(zero=fit.zero if fit.zero is not None else "none", offload=fit.offload)
    resolved["output"]["dir"] = r.output_dir
    if r.is_quantized:
        resolved["quantization"].update(compute_dtype=compute_dtype)
        if quant and "bnb_4bit_quant_storage" in quant["args"]:
            resolved["quantization"]["quant_storage"] = quant["args"]["bnb_4bit_quant_storage"]
    return resolved


def resolve(recipe: Recipe, probe: Optional[dict[str, Optional[str]]] = None) -> Plan:
    """Decide everything the run needs, explain each decision, and report what cannot work.

    The steps, in order: world size; precision and load dtype; architecture; attention; the memory search
    (ZeRO stage, offload, checkpointing, micro batch); the batch arithmetic; then the library arguments and
    launch files that carry those decisions, and the resolved recipe.
    """
    r, probe = recipe, probe or {}
    hw = r.hardware.resolved_profile()
    world = r.hardware.world_size
    decisions: list[Decision] = []
    problems: list[Problem] = []
    decisions.append(
        Decision("world_size", world, f"{r.hardware.gpus_per_node} process(es) per node × {r.hardware.nodes} node(s)")
    )

    precision = _precision(r, hw, decisions, problems)
    arch, arch_source = find_architecture(r.model.name_or_path)
    attention = _attention(r, hw, precision, arch, probe, decisions, problems)
    padding_free = _padding_free(r, hw, arch, attention, decisions, problems)
    kernels = _kernels(r, hw, arch, probe, decisions, problems)
    compute_dtype = r.quantization.compute_dtype if r.quantization.compute_dtype != "auto" else SIXTEEN_BIT[precision]

    available = hw.gpu_memory_gb if hw.is_gpu else hw.cpu_ram_gb / world
    global_batch = r.training.global_batch_size
    micro_options = _micro_options(r, global_batch // world if global_batch % world == 0 else 0)
    if arch is not None and arch.is_mamba:
        problems += _mamba_problems(r)
    if arch is None:
        fit = _fit_unknown(r, precision, available, arch_source, micro_options, problems)
        decisions.append(Decision("memory", "unknown", arch_source))
    else:
        fit = _fit(
            r,
            hw,
            world,
            arch,
            arch_source,
            precision=precision,
            attention=attention,
            padding_free=padding_free,
            kernels=kernels,
            available=available,
            micro_options=micro_options,
            problems=problems,
        )
    dtype, dtype_why = load_dtype(r, precision, fit.zero)  # for full fine-tuning it depends on the ZeRO stage
    decisions.append(Decision("model dtype", dtype, dtype_why))
    accumulation = _explain_fit(r, hw, world, fit, arch is not None, decisions)
    if r.is_quantized:
        why = "follows the model dtype" if r.quantization.compute_dtype == "auto" else "set in the recipe"
        decisions.append(Decision("bnb compute dtype", compute_dtype, why))

    zero, micro, gc = fit.zero, fit.micro_batch_size, fit.gradient_checkpointing
    output_dir = r.output_dir
    launch_dir = f"{output_dir}/launch"
    ds_file = f"{launch_dir}/ds_config.json" if zero is not None else None
    objective = facts(r.objective.kind)
    targs = arguments.trainer_args(
        r,
        output_dir=output_dir,
        precision=precision,
        micro_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=gc,
        world_size=world,
        on_cpu=not hw.is_gpu,
        deepspeed_config=ds_file,
        kernels=kernels,
        tf32=_tf32(r, hw, decisions),
    )
    decisions.append(Decision("trained tokens", r.objective.kind, arguments.trains_on(r)))
    if r.training.save_total_limit == "auto":
        best = " and the one with the lowest eval loss" if "metric_for_best_model" in targs else ""
        decisions.append(
            Decision("checkpoints kept", targs["save_total_limit"], f"the last {targs['save_total_limit']}{best}")
        )
    if r.model.special_tokens.all:
        if r.adapter.kind == "full":
            why = "set on the tokenizer; any the vocabulary lacks are added and their new embedding rows train"
        else:
            why = "set on the tokenizer; an adapter cannot train new embedding rows, so only a pad token may be new"
        decisions.append(Decision("special tokens", r.model.special_tokens.all, why))
    if objective.generates:
        decisions.append(
            Decision(
                "max_length",
                r.training.max_length,
                f"TRL's {r.objective.kind} trainer takes no prompt limit: prompts go in whole and "
                f"objective.max_completion_length ({r.objective.max_completion_length}) caps each completion; "
                "training.max_length is the prompt-plus-completion length the memory estimate assumes",
            )
        )
    for what, per_epoch in (("eval", r.training.evals_per_epoch), ("save", r.training.saves_per_epoch)):
        steps = targs.get(f"{what}_steps")
        if per_epoch and isinstance(steps, float):
            decisions.append(
                Decision(
                    f"{what}_steps",
                    round(steps, 6),
                    f"{per_epoch} per epoch over {r.training.epochs:g} epoch(s): every {steps:.4g} of the run's "
                    "steps (transformers rounds the product up to whole steps)",
                )
            )
    start_from = getattr(r.adapter, "start_from", None)
    if start_from:
        reference = " and, frozen, as the reference model" if objective.reference_model else ""
        decisions.append(Decision("adapter start", start_from, f"training continues from this adapter{reference}"))
    if r.training.eval_on_start == "auto":
        evaluates = targs["eval_on_start"]
        why = "a baseline before the first step, for every later evaluation" if evaluates else "no eval data"
        decisions.append(Decision("eval_on_start", evaluates, why))
    ds = None
    if zero is not None:
        ds = launchfiles.deepspeed_config(
            stage=zero,
            offload=fit.offload,
            precision=precision,
            micro_batch_size=micro,
            gradient_accumulation_steps=accumulation,
            world_size=world,
            max_grad_norm=r.training.max_grad_norm,
            arch=arch,
            learning_rate=r.training.learning_rate,
            weight_decay=r.training.weight_decay,
        )
        if "optimizer" in ds:
            decisions.append(
                Decision(
                    "optimizer",
                    "DeepSpeed CPU AdamW",
                    f"optimizer states are offloaded to CPU memory: DeepSpeed's CPU Adam runs the AdamW update of "
                    f"training.optimizer {r.training.optimizer} (same betas, eps, weight decay) there",
                )
            )
    quant = arguments.quantization_args(r, compute_dtype, zero, dtype)
    _check_quant_storage(r, quant, zero, dtype, decisions, problems)
    acc = launchfiles.accelerate_config(
        world_size=world,
        nodes=r.hardware.nodes,
        gpus_per_node=r.hardware.gpus_per_node,
        precision=precision,
        on_cpu=not hw.is_gpu,
        deepspeed_file=ds_file,
        zero=zero,
    )
    argv = launchfiles.launch_argv(launch_dir=launch_dir, nodes=r.hardware.nodes, deepspeed=zero is not None)
    resolved = _resolved_recipe(
        r,
        precision=precision,
        dtype=dtype,
        attention=attention,
        fit=fit,
        compute_dtype=compute_dtype,
        quant=quant,
        targs=targs,
        padding_free=padding_free,
        kernels=kernels,
    )

    return Plan(
        recipe=r,
        resolved=resolved,
        world_size=world,
        precision=precision,
        dtype=dtype,
        attention=attention,
        micro_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=gc,
        zero=zero,
        offload=fit.offload,
        trainer={"class": objective.trainer, "config_class": objective.config, "args": targs},
        peft=arguments.peft_args(r),
        quantization=quant,
        deepspeed=ds,
        accelerate=acc,
        launch=argv,
        memory=fit.memory,
        hardware=hw,
        architecture=arch,
        output_dir=output_dir,
        launch_dir=launch_dir,
        decisions=decisions,
        problems=problems,
    )
