"""The resolved recipe: the recipe with defaults filled and every `auto` replaced by what the plan decided, so it
stands alone (the training process validates it again, and the lock file keeps it)."""

from __future__ import annotations

from typing import Optional

from schemas import Recipe

from .fit import Fit
from .precision import SIXTEEN_BIT
from .training import Loop


def resolved_recipe(
    r: Recipe,
    *,
    precision: str,
    dtype: str,
    attention: str,
    fit: Fit,
    loop: Loop,
    compute_dtype: str,
    quant_storage: Optional[str],
    padding_free: bool,
    kernels: str,
) -> dict:
    """`model.dtype` is the training precision's dtype (what a recipe says); the dtype the weights load in, which
    for full fine-tuning may be float32 master weights, is the plan's `dtype`."""
    resolved = r.model_dump(mode="json")
    resolved.pop("extends", None)  # already merged in
    resolved["model"].update(dtype=SIXTEEN_BIT[precision], attention=attention)
    resolved["training"].update(
        micro_batch_size=fit.micro_batch_size,
        gradient_checkpointing=fit.gradient_checkpointing,
        eval_on_start=loop.eval_on_start,
        padding_free=padding_free,
        kernels=kernels,
        tf32=bool(loop.tf32),
    )
    if r.objective.kind == "sft":
        resolved["objective"].update(
            assistant_only_loss=loop.loss.assistant_only, completion_only_loss=loop.loss.completion_only
        )
    if r.adapter.kind == "full" and precision != "fp32":
        resolved["training"]["master_weights"] = dtype if dtype == "bfloat16" and fit.zero is None else "float32"
    resolved["hardware"].update(zero=fit.zero if fit.zero is not None else "none", offload=fit.offload)
    resolved["output"]["dir"] = r.output_dir
    if r.is_quantized:
        resolved["quantization"].update(compute_dtype=compute_dtype)
        if quant_storage is not None:
            resolved["quantization"]["quant_storage"] = quant_storage
    return resolved
