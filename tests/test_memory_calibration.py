"""The memory estimate stays within 10% of a measured training step.

Each configuration is a shipped recipe moved onto a smaller real architecture (so the measurement runs in seconds),
planned as `recipe plan` plans it, then one training step of that plan is run at full size with fake tensors
(`runner.measure`: torch's FakeTensorMode and MemTracker, two steps, the peak of the second) and its peak compared
with the estimate, the runtime overhead (the CUDA context, which fake tensors cannot see) left out. The cases cover
LoRA without checkpointing (every block's activations), QLoRA DPO with checkpointing (4-bit storage, dropout
masks, the reference forward), full fine-tuning with float32 master weights (its peak at the optimizer step), and
a trainer that materialises the logits (SimPO).
"""

from __future__ import annotations

import pytest

from runner.cli import load_and_plan

from conftest import ROOT

# case -> (shipped recipe, --set overrides, the moment the estimate puts the peak at)
CASES = {
    "lora-sft-no-checkpointing": (
        "llama31-8b-chat-sft-lora.yaml",
        ["model.name_or_path=meta-llama/Llama-3.2-1B", "training.max_length=512"],
        "start of backward",
    ),
    "qlora-dpo-checkpointed": (
        "llama3-dpo-qlora.yaml",
        ["model.name_or_path=meta-llama/Llama-3.2-1B", "training.max_length=512"],
        "start of backward",
    ),
    "full-sft-float32-master-weights": (
        "bloom-1b1-lima-sft-full.yaml",
        ["model.name_or_path=openai-community/gpt2", "hardware.gpus_per_node=1", "hardware.zero=none"],
        "optimizer step",
    ),
    "simpo-logits": (
        "gpt2-hh-rlhf-dpo-lora.yaml",
        ["objective.kind=simpo", "training.gradient_checkpointing=false"],
        "start of backward",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_estimate_within_10_percent_of_a_measured_step(case):
    from runner.measure.step import measure

    name, overrides, phase = CASES[case]
    loaded, plan = load_and_plan(str(ROOT / "recipes" / name), overrides)
    assert plan is not None, [d.message for d in loaded.diagnostics]
    assert plan.memory["peak_phase"] == phase
    measured = measure(plan)
    memory = plan.memory
    estimate = memory["per_gpu_gb"] - memory["breakdown"]["runtime_overhead"]
    assert measured.total > 0.1  # a real step was measured, not an empty one
    assert abs(estimate / measured.total - 1) <= 0.10, (
        f"{case}: estimate {estimate:.3f} GiB ({memory['breakdown']}, peak at the {memory['peak_phase']}) vs "
        f"measured {measured.total:.3f} GiB ({measured.to_json()})"
    )
