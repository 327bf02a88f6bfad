"""benchmarks/gpu_step.py runs end to end: its --tiny mode steps the tiny Llama through the same code as the GPU
benchmark (plan, random-weight model, 4-bit layers, adapter, TRL's collator and fused head, optimizer) on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_tiny_benchmark_measures_lora_and_qlora_packed_and_unpacked(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_step.py", "--tiny", "--device", "cpu", "--check-packing", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    rows = {(r["config"], r["attention"], r["packed"]): r for r in result["rows"]}
    for config in ("lora", "qlora"):
        for packed in (False, True):
            row = rows[(config, "sdpa", packed)]
            assert row["tokens_per_s"] > 0 and row["padding_free"] is packed
            assert row["trainable_params"] == row["plan_trainable_params"]  # the adapter the plan counted
            assert row["mfu"] is None and row["peak_gib"] is None  # no GPU: n/a
            assert 0 < row["loss"] < 10  # ln(320) = 5.8 for random weights over the tiny vocabulary
    # flash_attention_2 needs CUDA: each of its rows says it was skipped, and why
    assert {(s["config"], s["packed"]) for s in result["skipped"] if s["attention"] == "flash_attention_2"} == {
        (c, p) for c in ("lora", "qlora") for p in (False, True)
    }
    (check,) = result["packing_checks"]
    assert check["attention"] == "sdpa" and check["ok"]
    assert check["as_one_sequence_max_abs_diff"] > 10 * check["tolerance"]  # a leak would show
    assert "LoRA fp32" in done.stdout and "QLoRA nf4" in done.stdout
