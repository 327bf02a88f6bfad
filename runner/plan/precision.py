"""Precision: the arithmetic of forward and backward, the dtype the weights load in, the adapter's dtype, TF32 and
bitsandbytes' compute dtype and storage."""

from __future__ import annotations

from typing import Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile
from schemas.objectives import facts

from .types import Decision, Problem

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
SIXTEEN_BIT = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def decide_precision(r: Recipe, hw: HardwareProfile, out: list[Decision], problems: list[Problem]) -> str:
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


def decide_tf32(r: Recipe, hw: HardwareProfile, out: list[Decision]) -> Optional[bool]:
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


def compute_dtype(r: Recipe, precision: str, out: list[Decision]) -> str:
    """bitsandbytes' compute dtype: the recipe's, else the training precision's 16-bit dtype."""
    q = r.quantization
    dtype = q.compute_dtype if q.compute_dtype != "auto" else SIXTEEN_BIT[precision]
    if r.is_quantized:
        why = "follows the model dtype" if q.compute_dtype == "auto" else "set in the recipe"
        out.append(Decision("bnb compute dtype", dtype, why))
    return dtype


def quant_storage(r: Recipe, zero: Optional[int], dtype: str) -> str:
    """bnb_4bit_quant_storage: the recipe's, else the load dtype under ZeRO-3 (which shards the packed 4-bit weights
    with the rest of the model, one dtype for all) and uint8 otherwise."""
    storage = r.quantization.quant_storage
    if storage != "auto":
        return storage
    return dtype if zero == 3 else "uint8"


def decide_quant_storage(
    r: Recipe, zero: Optional[int], dtype: str, out: list[Decision], problems: list[Problem]
) -> Optional[str]:
    """The packed 4-bit weights' storage dtype (None unless 4-bit); under ZeRO-3 it must be the load dtype."""
    if r.quantization.method != "bnb-4bit":
        return None
    storage = quant_storage(r, zero, dtype)
    if zero != 3:
        return storage
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
    return storage
