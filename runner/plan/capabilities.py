"""What the model type allows and the target machine offers: attention, packed rows, fused kernels, and what a
Mamba model refuses. The facts come from the model-type table (runner/plan/modeltypes.py)."""

from __future__ import annotations

from typing import Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile
from schemas.objectives import facts

from .architecture import Architecture
from .modeltypes import LIGER_MODEL_TYPES, PACKING_PROVEN, PACKING_PROVEN_ON, UNKNOWN
from .types import Decision, Problem


def decide_attention(
    r: Recipe, hw: HardwareProfile, precision: str, arch: Optional[Architecture], probe: dict, out: list[Decision],
    problems: list[Problem],
) -> str:  # fmt: skip
    chosen = r.model.attention
    if arch is not None and arch.is_mamba:
        out.append(Decision("attention", "none", f"{arch.model_type} is a state-space model without attention"))
        return "eager"
    supported = None if arch is None else arch.facts.attention  # besides eager; None: not known, not checked
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


def decide_padding_free(
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
    facts_of = arch.facts if arch is not None else UNKNOWN
    if facts_of.packing_contaminates:
        problems.append(
            Problem(
                field,
                f"the documents of a {'packed' if t.packing else 'padding-free'} row would attend to each other: "
                f"{facts_of.packing_contaminates} (transformers {PACKING_PROVEN_ON}); set `{field[1]}: false`",
                "packing-contaminates",
            )
        )
    elif not facts_of.packing_proven:
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
    proven = f" (proven for {model_type} on transformers {PACKING_PROVEN_ON})" if facts_of.packing_proven else ""
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


def decide_kernels(
    r: Recipe, hw: HardwareProfile, arch: Optional[Architecture], probe: dict, out: list[Decision],
    problems: list[Problem],
) -> str:  # fmt: skip
    """`liger` or `none`: Liger's Triton kernels replace the model's norms, gated MLP activations and RoPE."""
    choice = r.training.kernels
    model_type = arch.model_type if arch is not None else None
    supported = arch is None or arch.facts.liger
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
    elif arch is None or not arch.facts.liger:
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


def mamba_problems(r: Recipe) -> list[Problem]:
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
