"""Precision and hardware rules: dtypes, master weights, DeepSpeed sharding and offload, and what the GPU supports."""

from __future__ import annotations

from typing import Iterable, Iterator

from ..recipe import Recipe
from .core import Finding, rule


@rule("master-weights-full-only", "training.master_weights applies to full fine-tuning; adapters train in float32.")
def master_weights_full_only(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights != "auto" and r.adapter.kind != "full":
        yield (
            ("training", "master_weights"),
            (
                f"a {r.adapter.kind} adapter's weights always train in float32 (PEFT keeps them so) while the base "
                "stays frozen; remove `master_weights` or set it to `auto`"
            ),
        )


@rule("pure-bf16-needs-bf16", "Pure bfloat16 training (master_weights: bfloat16) needs model.dtype: bfloat16.")
def pure_bf16_needs_bf16(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights == "bfloat16" and r.model.dtype != "bfloat16":
        yield (
            ("training", "master_weights"),
            (
                f"pure bfloat16 training updates bfloat16 weights, but model.dtype is {r.model.dtype}; set "
                "`model.dtype: bfloat16`, or `master_weights: auto` for float32 master weights"
            ),
        )


@rule("pure-bf16-vs-deepspeed", "DeepSpeed always keeps float32 master weights: pure bfloat16 runs without ZeRO.")
def pure_bf16_vs_deepspeed(r: Recipe) -> Iterable[Finding]:
    if r.training.master_weights == "bfloat16" and r.hardware.zero not in ("auto", "none"):
        yield (
            ("training", "master_weights"),
            (
                f"DeepSpeed ZeRO-{r.hardware.zero} keeps float32 master copies of the weights in its optimizer, so "
                "pure bfloat16 is not available with it; set `hardware.zero: none` or `master_weights: auto`"
            ),
        )


@rule("offload-replaces-optimizer", "Offloaded optimizer states run DeepSpeed's CPU AdamW: other optimizers refused.")
def offload_replaces_optimizer(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload in ("optimizer", "all") and r.training.optimizer not in ("adamw_torch", "adamw_torch_fused"):
        yield (
            ("training", "optimizer"),
            (
                f"with `hardware.offload: {r.hardware.offload}` the optimizer runs in CPU memory as DeepSpeed's CPU "
                f"AdamW, not {r.training.optimizer}; use `optimizer: adamw_torch`, or `offload: none`"
            ),
        )


@rule("bnb-8bit-vs-zero3", "8-bit bitsandbytes weights cannot be sharded by ZeRO-3.")
def bnb_8bit_vs_zero3(r: Recipe) -> Iterable[Finding]:
    if r.quantization.method == "bnb-8bit" and r.hardware.zero == 3:
        yield (
            ("hardware", "zero"),
            "ZeRO-3 cannot partition bnb-8bit weights; use bnb-4bit (QLoRA) with ZeRO-3, or ZeRO 0-2 with bnb-8bit",
        )


@rule("param-offload-needs-zero3", "Offloading parameters (offload: all) needs ZeRO stage 3.")
def param_offload_needs_zero3(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload == "all" and r.hardware.zero in ("none", 0, 1, 2):
        yield (
            ("hardware", "offload"),
            f"parameter offload needs ZeRO-3, but `zero` is {r.hardware.zero}; set `zero: 3` (or "
            f"`auto`) or `offload: optimizer`",
        )


@rule("offload-needs-zero", "Offloading optimizer states needs ZeRO stage 1 or higher.")
def offload_needs_zero(r: Recipe) -> Iterable[Finding]:
    if r.hardware.offload == "optimizer" and r.hardware.zero in ("none", 0):
        yield ("hardware", "offload"), f"optimizer offload needs ZeRO stage 1, 2 or 3, but `zero` is {r.hardware.zero}"


def _bf16_fields(r: Recipe) -> Iterator[tuple]:
    if r.model.dtype == "bfloat16":
        yield ("model", "dtype")
    if r.is_quantized and r.quantization.compute_dtype == "bfloat16":
        yield ("quantization", "compute_dtype")


@rule("bf16-needs-ampere", "bfloat16 needs a GPU of compute capability 8.0 or newer (Ampere).")
def bf16_needs_ampere(r: Recipe) -> Iterable[Finding]:
    hw = r.hardware.resolved_profile()
    if hw.is_gpu and not hw.bf16:
        for path in _bf16_fields(r):
            yield (
                path,
                (
                    f"{hw.name} (compute capability {hw.compute_capability}) has no bfloat16; use "
                    f"`float16` (trained with loss "
                    "scaling) or `auto`"
                ),
            )


@rule("flash-attention-needs-ampere", "FlashAttention-2 needs a GPU of compute capability 8.0 or newer.")
def flash_attention_needs_ampere(r: Recipe) -> Iterable[Finding]:
    if r.model.attention != "flash_attention_2":
        return
    hw = r.hardware.resolved_profile()
    if not hw.is_gpu:
        yield (
            ("model", "attention"),
            "FlashAttention-2 runs only on NVIDIA GPUs; this recipe targets a CPU. Use `sdpa` or `auto`",
        )
    elif (hw.compute_capability or 0) < 8.0:
        yield (
            ("model", "attention"),
            f"FlashAttention-2 needs compute capability 8.0+, {hw.name} has "
            f"{hw.compute_capability}; use `sdpa` or `auto`",
        )


@rule("flash-attention-vs-float32", "FlashAttention-2 computes in float16/bfloat16 only.")
def flash_attention_vs_float32(r: Recipe) -> Iterable[Finding]:
    if r.model.attention == "flash_attention_2" and r.model.dtype == "float32":
        yield (
            ("model", "attention"),
            "FlashAttention-2 does not run in float32; set `model.dtype` to bfloat16/float16 or use `sdpa`",
        )


@rule("tf32-needs-ampere", "TF32 matrix multiplies need an NVIDIA GPU of compute capability 8.0 or newer.")
def tf32_needs_ampere(r: Recipe) -> Iterable[Finding]:
    hw = r.hardware.resolved_profile()
    if r.training.tf32 is True and not (hw.is_gpu and (hw.compute_capability or 0) >= 8.0):
        where = "a CPU" if not hw.is_gpu else f"{hw.name} (compute capability {hw.compute_capability})"
        yield ("training", "tf32"), f"{where} has no TF32 (transformers refuses `tf32`); use `auto` or `false`"
