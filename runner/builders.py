"""Turn a plan's `{"class", "args"}` specs into library objects (imports the libraries; used by training only)."""

from __future__ import annotations

import importlib
from typing import Any


def import_dotted(dotted: str) -> Any:
    """`trl.DPOTrainer` -> the class."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def peft_config(spec: dict) -> Any:
    """The PEFT config of a plan's `peft` entry; nested options become their PEFT classes."""
    args = dict(spec["args"])
    if isinstance(args.get("runtime_config"), dict):
        from peft import LoraRuntimeConfig

        args["runtime_config"] = LoraRuntimeConfig(**args["runtime_config"])
    return import_dotted(spec["class"])(**args)


def quantization_config(spec: dict) -> Any:
    """transformers.BitsAndBytesConfig from a plan's `quantization` entry (dtype names become torch dtypes)."""
    import torch

    args = dict(spec["args"])
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        if isinstance(args.get(key), str):
            args[key] = getattr(torch, args[key])
    return import_dotted(spec["class"])(**args)
