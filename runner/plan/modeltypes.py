"""What the program knows about each model type (config.json's `model_type`), in one table.

Attention implementations, whether packed rows keep their documents apart, Liger's kernels and the shape of the
feed-forward block: adding a model type adds a row here (and, for its shape, `architectures.yaml`); the tests that
measure each column against the installed libraries read the same rows (tests/test_precision.py for attention,
tests/test_packing.py for packing, tests/test_structure.py for coverage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The transformers release the attention and packing columns were measured on: the one constraints.txt pins
# (tests/test_precision.py and tests/test_packing.py measure them again against the installed one and check the pin;
# scripts/update-lock.sh moves both).
PACKING_PROVEN_ON = "5.24.0"

# Attention implementations transformers offers besides `eager`, for a model type without its own row.
ATTENTION_DEFAULT = ("sdpa", "flash_attention_2")


@dataclass(frozen=True)
class ModelType:
    """One model type's facts. Every column has the value an unknown model type gets."""

    # attention implementations transformers offers besides `eager` (`_supports_sdpa`, `_supports_flash_attn`)
    attention: tuple[str, ...] = ATTENTION_DEFAULT
    # packed / padding-free rows keep documents apart: each document's loss equals its loss alone
    packing_proven: bool = False
    # why the documents of a packed row attend to each other ("" when they do not, or nobody has measured)
    packing_contaminates: str = ""
    # Liger 0.8.5 patches it (`liger_kernel.transformers.monkey_patch.MODEL_TYPE_TO_APPLY_LIGER_FN`)
    liger: bool = False
    # gate_proj/up_proj/down_proj feed-forward (SwiGLU/GeGLU) rather than fc1/fc2
    gated_mlp: bool = False
    # the one linear layer that projects queries, keys and values together ("" for separate q/k/v projections)
    fused_qkv: str = ""
    # a state-space model without attention (Mamba)
    state_space: bool = False


UNKNOWN = ModelType()

_LLAMA_LIKE = ModelType(packing_proven=True, liger=True, gated_mlp=True)

MODEL_TYPES: dict[str, ModelType] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": ModelType(liger=True, gated_mlp=True),
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": ModelType(attention=("flash_attention_2",), packing_proven=True, liger=True, gated_mlp=True),
    "gemma3_text": ModelType(liger=True, gated_mlp=True),
    "phi3": _LLAMA_LIKE,
    "olmo": ModelType(gated_mlp=True),
    "olmo2": ModelType(liger=True, gated_mlp=True),
    "granite": ModelType(liger=True, gated_mlp=True),
    "smollm3": ModelType(liger=True, gated_mlp=True),
    "gpt2": ModelType(packing_proven=True, fused_qkv="c_attn"),
    "gpt_neox": ModelType(packing_proven=True, fused_qkv="query_key_value"),
    "bloom": ModelType(
        attention=(),
        packing_contaminates="BLOOM builds its causal mask and ALiBi bias without the position ids",
        fused_qkv="query_key_value",
    ),
    "falcon": ModelType(packing_proven=True, fused_qkv="query_key_value"),
    "mamba": ModelType(
        attention=(),
        packing_contaminates="Mamba has no attention to mask: its convolution and scan run across the whole row",
        state_space=True,
    ),
}


def model_type(name: Optional[str]) -> ModelType:
    """The row of a model type; an unknown one (or None) gets the defaults, which claim nothing proven."""
    if name is None:
        return UNKNOWN
    if name in MODEL_TYPES:
        return MODEL_TYPES[name]
    return ModelType(attention=(), state_space=True) if name.startswith("mamba") else UNKNOWN


# Views of single columns, for messages that list them and for the tests that measure each column.
ATTENTION = {t: f.attention for t, f in MODEL_TYPES.items() if f.attention != ATTENTION_DEFAULT}
PACKING_CONTAMINATES = {t: f.packing_contaminates for t, f in MODEL_TYPES.items() if f.packing_contaminates}
PACKING_PROVEN = frozenset(t for t, f in MODEL_TYPES.items() if f.packing_proven)
LIGER_MODEL_TYPES = frozenset(t for t, f in MODEL_TYPES.items() if f.liger)
