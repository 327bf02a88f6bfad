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
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path

PROBE_DIR = os.environ.get("RECIPE_PROBE_DIR")


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


if PROBE_DIR:
    sys.meta_path.insert(
        0,
        _AfterImport(
            {"transformers.modeling_utils": _patch_from_pretrained, "deepspeed.runtime.engine": _patch_engine}
        ),
    )
