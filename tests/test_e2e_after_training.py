"""After training, end to end: `recipe run` trains the tiny model, then `recipe merge` and `recipe chat` use the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, torch
from conftest import recipe_process as recipe

pytestmark = pytest.mark.e2e
PROBE = "A sentence no probe of the merge check used: the green heron waits."


@pytest.fixture(scope="module")
def runs(trained_runs):
    """The session's full runs of the two tiny recipes (conftest.TRAINED), shared with test_e2e.py.

    Prefix tuning is covered on a PEFT-made adapter in test_merge_chat.py (its training in test_e2e.py)."""
    return {name: trained_runs(name)[0] for name in ("sft-lora", "dpo-qlora")}


def logits(model, tokenizer, text: str):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def adapter_on_unquantized_base(run_dir: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ROOT / "assets" / "tiny-llama", dtype=torch.float32)
    return PeftModel.from_pretrained(base, run_dir).eval()


def test_merged_lora_run_reproduces_the_adapter_and_chats_the_same(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = runs["sft-lora"]
    proc = recipe("merge", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged_dir = run_dir / "merged"
    assert proc.stdout.strip() == str(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert torch.allclose(
        logits(merged, tokenizer, PROBE),
        logits(adapter_on_unquantized_base(run_dir), tokenizer, PROBE),
        atol=1e-4,
        rtol=1e-4,
    )
    assert (merged_dir / "recipe.lock.yaml").read_text() == (run_dir / "recipe.lock.yaml").read_text()
    assert f"merged into `{ROOT}/assets/tiny-llama` in float32" in (merged_dir / "README.md").read_text()
    again = recipe("merge", str(run_dir))
    assert again.returncode == 1 and "already exists and is not empty" in again.stderr

    question = "What color is the lemon?"
    from_adapter = recipe(
        "chat", str(run_dir), "--temperature", "0", "--max-new-tokens", "16", "--show-prompt", stdin=question + "\n"
    )
    from_merged = recipe("chat", str(merged_dir), "--temperature", "0", "--max-new-tokens", "16", "--prompt", question)
    assert from_adapter.returncode == 0 and from_merged.returncode == 0, from_adapter.stderr + from_merged.stderr
    assert from_adapter.stdout.strip() and from_adapter.stdout == from_merged.stdout
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    assert rendered in from_adapter.stderr and rendered.endswith("<|im_start|>assistant\n")


def test_merged_qlora_run_reproduces_the_adapter_and_reports_the_gap_to_the_4bit_model(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = runs["dpo-qlora"]
    to = tmp_path / "dpo-merged"
    proc = recipe("merge", str(run_dir), "--to", str(to))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "against the quantized model as trained" in proc.stderr and "reloaded unquantized" in proc.stderr
    config = json.loads((to / "config.json").read_text())
    assert "quantization_config" not in config  # a plain float32 model, loadable without bitsandbytes
    record = json.loads((to / "merge.json").read_text())
    assert record["check"]["relative_error"] < 1e-4 and record["check"]["top1_agreement"] == 1.0
    # NF4 rounding of the base weights is what separates the merged model from the model as trained
    assert (
        0 < record["against_quantized"]["relative_error"] < 0.3
        and record["against_quantized"]["top1_agreement"] >= 0.75
    )
    tokenizer = AutoTokenizer.from_pretrained(to)
    merged = AutoModelForCausalLM.from_pretrained(to, dtype=torch.float32)
    assert torch.allclose(
        logits(merged, tokenizer, PROBE),
        logits(adapter_on_unquantized_base(run_dir), tokenizer, PROBE),
        atol=1e-4,
        rtol=1e-4,
    )
    # --dequantize merges into the NF4 weights the adapter was trained on: the merged model is the model as trained
    # on a CPU whose bitsandbytes takes its AVX512-BF16 path (forced: tests/probe/sitecustomize.py) too: the model
    # as trained is compared through the forward training ran, not the fused bfloat16 inference kernel
    avx512bf16 = {"PYTHONPATH": str(ROOT / "tests" / "probe"), "RECIPE_BNB_CPU_PATH": "avx512bf16"}
    proc = recipe("merge", str(run_dir), "--to", str(to), "--dequantize", "--overwrite", env=avx512bf16)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((to / "merge.json").read_text())
    assert (
        record["dequantized"]
        and record["against_quantized"]["relative_error"] < 1e-4
        and record["against_quantized"]["top1_agreement"] == 1.0
    )
    assert "quantization_config" not in json.loads((to / "config.json").read_text())
    chat = recipe(
        "chat",
        str(run_dir),
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
        "--prompt",
        "Which color does the panther have?",
    )
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-2000:]
    assert "(4-bit float32, cpu)" in chat.stderr  # the adapter talks through the base as it was trained
