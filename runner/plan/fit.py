"""The memory search: the least sharded, least recomputing, largest-micro-batch configuration that fits the GPU
(ZeRO stage, offload, gradient checkpointing, micro batch), and the decisions that explain it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from schemas import Recipe
from schemas.adapters import adapter_facts
from schemas.hardware import HardwareProfile
from schemas.objectives import facts

from .architecture import Architecture
from .memory import SAFETY_MARGIN, Estimate, GiB, TrainingShape, estimate, offload_cpu_bytes
from .precision import DTYPE_BYTES, adapter_dtype, load_dtype
from .types import Decision, Problem


def _pow2_divisors(n: int) -> list[int]:
    out, b = [], 1
    while b <= n:
        if n % b == 0:
            out.append(b)
        b *= 2
    return sorted(out, reverse=True)


# training.optimizer values DeepSpeed's CPU Adam stands in for when optimizer states are offloaded
OFFLOAD_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")


def trainable_params(r: Recipe, arch: Architecture, notes: list[str]) -> int:
    a = r.adapter
    h, layers = arch.hidden_size, arch.num_hidden_layers
    if a.kind == "full":
        return arch.total_params
    if adapter_facts(a.kind).low_rank:
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


def candidates(r: Recipe, hw: HardwareProfile, world: int) -> list[tuple[Optional[int], str]]:
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


def training_shape(
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
    lora = adapter_facts(a.kind).low_rank
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


def micro_options(r: Recipe, per_rank: int) -> list[int]:
    if r.training.micro_batch_size != "auto":
        return [r.training.micro_batch_size]
    options = _pow2_divisors(per_rank)
    fewest = facts(r.objective.kind).min_micro_batch
    options = [m for m in options if m >= fewest] or options
    return options


def _gc_options(r: Recipe) -> list[bool]:
    gc = r.training.gradient_checkpointing
    if gc != "auto":
        return [gc]
    return [False, True] if adapter_facts(r.adapter.kind).gradient_checkpointing else [False]


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
        gradient_checkpointing=gc if gc != "auto" else adapter_facts(r.adapter.kind).gradient_checkpointing,
        micro_batch_size=micro_options[-1] if micro_options else 1,
        memory={
            "per_gpu_gb": None,
            "available_gb": available,
            "breakdown": {},
            "fits": None,
            "architecture": arch_source,
        },
    )


def _search(
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
    for zero_c, offload_c in candidates(r, hw, world):
        for gc in _gc_options(r):
            for micro in micro_options:
                dtype, _ = load_dtype(r, precision, zero_c)
                shape = training_shape(
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


def memory_search(
    r: Recipe,
    hw: HardwareProfile,
    arch: Optional[Architecture],
    arch_source: str,
    *,
    precision: str,
    attention: str,
    padding_free: bool,
    kernels: str,
    decisions: list[Decision],
    problems: list[Problem],
) -> Fit:
    """How the run is sharded and batched: searched against the memory when the architecture is known, safe
    defaults (and a warning) when it is not."""
    world = r.hardware.world_size
    available = hw.gpu_memory_gb if hw.is_gpu else hw.cpu_ram_gb / world
    global_batch = r.training.global_batch_size
    options = micro_options(r, global_batch // world if global_batch % world == 0 else 0)
    if arch is None:
        found = _fit_unknown(r, precision, available, arch_source, options, problems)
        decisions.append(Decision("memory", "unknown", arch_source))
        return found
    return _search(
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
        micro_options=options,
        problems=problems,
    )


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


def explain_fit(r: Recipe, hw: HardwareProfile, world: int, fit: Fit, known: bool, out: list[Decision]) -> int:
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
        if not adapter_facts(r.adapter.kind).gradient_checkpointing:
            why = f"{adapter_facts(r.adapter.kind).label} cannot use it"
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
