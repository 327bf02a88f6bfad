"""A probe inside every training process of a test run (on PYTHONPATH only in tests/test_distributed.py).

Active only when RECIPE_PROBE_DIR is set. It changes nothing; it records, per rank, as JSON in that folder:
- load-rankN.json: around each `from_pretrained`: whether DeepSpeed ZeRO-3 was active when loading began, and
  what the loaded model holds in this process (parameters partitioned by ZeRO-3, elements held locally, dtypes,
  4-bit parameters and their storage dtype);
- engine-rankN.json: the model as DeepSpeed's engine holds it once built (what each process keeps after
  sharding);
- step-rankN.json: the first optimizer step: the dtypes of the tensors the optimizer updates, and the share of
  elements with a non-zero gradient that the step changed.
The assertions are made by the test on these files, which the processes themselves wrote.

RECIPE_BNB_CPU_PATH (independently of the probe) forces which CPU path bitsandbytes' 4-bit layers take, whatever
this CPU is: `avx512bf16` makes `Linear4bit` see a CPU with AVX512-BF16 (as on Sapphire Rapids and later: an eval
forward then repacks its weights into the layout of the fused bf16 kernel), `plain` one without it. Only the
layers' detection is forced; the fused kernel itself (AVX512-BF16 instructions in libbitsandbytes_cpu) is
registered only where the CPU has it, so on other CPUs an eval forward over repacked weights runs bitsandbytes'
default kernel. With RECIPE_PROBE_DIR set, the probe also records, per rank, what the layers were told
(`bnb-rankN.json`) and how many 4-bit layers were saved in the repacked layout (`save-rankN.json`, at exit).
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path

PROBE_DIR = os.environ.get("RECIPE_PROBE_DIR")
BNB_CPU_PATH = os.environ.get("RECIPE_BNB_CPU_PATH")  # avx512bf16 | plain | unset (detect)


def _write(name: str, record: dict) -> None:
    rank = os.environ.get("RANK", "0")
    path = Path(PROBE_DIR) / f"{name}-rank{rank}.json"
    existing = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*existing, record], indent=1))


def _describe(model) -> dict:
    params = list(model.parameters())
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    four_bit = [p for p in params if type(p).__name__ == "Params4bit"]
    import torch

    return {
        "process_group_ready": torch.distributed.is_initialized(),
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "devices": sorted({str(p.device) for p in params}),
        "class": type(model).__name__,
        "parameters": len(params),
        "partitioned": len(partitioned),
        "total_elements": sum(getattr(p, "ds_numel", p.numel()) for p in params),
        "local_elements": sum(p.numel() for p in params),  # a ZeRO-3 partitioned parameter holds none
        "shard_elements": sum(p.ds_tensor.numel() for p in partitioned if getattr(p, "ds_tensor", None) is not None),
        "dtypes": sorted({str(p.dtype) for p in params}),
        "dtype_of": {n: str(p.dtype) for n, p in model.named_parameters() if p.dtype != params[0].dtype},
        "four_bit": len(four_bit),
        "four_bit_storage": sorted({str(p.dtype) for p in four_bit}),
    }


def _patch_from_pretrained(module) -> None:
    original = module.PreTrainedModel.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        zero3 = is_deepspeed_zero3_enabled()
        model = original(cls, *args, **kwargs)
        _write("load", {"zero3_during_load": zero3, **_describe(model)})
        return model

    module.PreTrainedModel.from_pretrained = classmethod(from_pretrained)
    _watch_first_step()


def _patch_engine(module) -> None:
    original = module.DeepSpeedEngine.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        _write("engine", {"zero_stage": self.zero_optimization_stage(), **_describe(self.module)})

    module.DeepSpeedEngine.__init__ = __init__


def _watch_first_step() -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    state: dict = {"done": False}

    def tensors(optimizer):
        return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]

    def before(optimizer, args, kwargs):
        if not state["done"]:
            state["before"] = [(p, p.detach().clone(), p.grad.detach() != 0) for p in tensors(optimizer)]

    def after(optimizer, args, kwargs):
        if state["done"] or "before" not in state:
            return
        state["done"] = True
        moved = graded = 0
        for p, old, nonzero in state.pop("before"):
            changed = (p.detach() != old) & nonzero
            moved += int(changed.sum())
            graded += int(nonzero.sum())
        _write(
            "step",
            {
                "optimizer": type(optimizer).__name__,
                "dtypes": sorted({str(p.dtype) for p in tensors(optimizer)}),
                "elements_with_gradient": graded,
                "moved": moved,
                "moved_share": moved / graded if graded else None,
                "lr": [g["lr"] for g in optimizer.param_groups],
            },
        )

    register_optimizer_step_pre_hook(before)
    register_optimizer_step_post_hook(after)
    del torch


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after a module is first imported."""

    def __init__(self, callbacks: dict):
        self.callbacks = callbacks

    def find_spec(self, name, path, target=None):
        if name not in self.callbacks:
            return None
        callback = self.callbacks.pop(name)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            callback(module)

        spec.loader.exec_module = exec_module
        return spec


def _force_bnb_cpu_path(module) -> None:
    """bitsandbytes.nn.modules: `Linear4bit.__init__` reads `has_avx512bf16()` from this module's namespace."""
    if BNB_CPU_PATH not in ("avx512bf16", "plain"):
        raise SystemExit(f"RECIPE_BNB_CPU_PATH={BNB_CPU_PATH!r}: expected avx512bf16 or plain")
    forced = BNB_CPU_PATH == "avx512bf16"
    module.has_avx512bf16 = lambda: forced
    if PROBE_DIR:
        _write("bnb", {"forced": BNB_CPU_PATH, "layers_told_avx512bf16": module.has_avx512bf16()})
        _watch_save(module)


def _watch_save(module) -> None:
    """Every 4-bit layer written into a state dict (checkpoints, the adapter, the final save): how many were still
    repacked, and told to repack; one record per process when it exits."""
    import atexit

    counts = {"saved_layers": 0, "repacked_at_save": 0, "layer_uses_avx512bf16_layout": 0}
    original = module.Linear4bit._save_to_state_dict

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        state = getattr(self.weight, "quant_state", None)
        if state is not None:
            counts["saved_layers"] += 1
            counts["repacked_at_save"] += bool(getattr(state, "packing_format_for_cpu", False))
            counts["layer_uses_avx512bf16_layout"] += bool(self.support_avx512bf16_for_cpu)
        return original(self, destination, prefix, keep_vars)

    module.Linear4bit._save_to_state_dict = _save_to_state_dict
    atexit.register(lambda: counts["saved_layers"] and _write("save", counts))


callbacks: dict = {}
if PROBE_DIR:
    callbacks.update({"transformers.modeling_utils": _patch_from_pretrained, "deepspeed.runtime.engine": _patch_engine})
if BNB_CPU_PATH:
    callbacks["bitsandbytes.nn.modules"] = _force_bnb_cpu_path
if callbacks:
    sys.meta_path.insert(0, _AfterImport(callbacks))
