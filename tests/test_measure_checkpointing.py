"""The measured step (`recipe plan --measure`) and the GPU benchmark check activations the way the run will: with
the plan's checkpointing settings, which the Trainer passes from `activation_checkpointing_kwargs`."""

from __future__ import annotations

import importlib.util

import pytest

from runner.plan import resolve
from schemas import load

from conftest import ROOT

SFT = ROOT / "recipes" / "tiny" / "sft-lora.yaml"


@pytest.fixture
def enabled(monkeypatch):
    """The settings each `activation_checkpointing_enable` call received."""
    from transformers import PreTrainedModel

    calls = []
    real = PreTrainedModel.activation_checkpointing_enable

    def record(self, kwargs=None):
        calls.append(kwargs)
        return real(self, kwargs)

    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", record)
    return calls


def _plan(checkpointing: bool):
    return resolve(load(SFT, [f"training.gradient_checkpointing={str(checkpointing).lower()}"]).recipe, {})


def test_the_measured_step_checkpoints_with_the_plans_settings(enabled):
    from runner.measure.step import _build, model_config

    plan = _plan(True)
    assert plan.trainer["args"]["activation_checkpointing_kwargs"] == {"use_reentrant": False}
    _build(plan, model_config(plan), [])
    assert enabled == [{"use_reentrant": False}]
    enabled.clear()
    _build(_plan(False), model_config(_plan(False)), [])
    assert enabled == []


def test_the_gpu_benchmark_checkpoints_with_the_plans_settings(enabled):
    spec = importlib.util.spec_from_file_location("gpu_step", ROOT / "benchmarks" / "gpu_step.py")
    gpu_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_step)
    gpu_step.build(_plan(True), "cpu")
    assert enabled == [{"use_reentrant": False}]
