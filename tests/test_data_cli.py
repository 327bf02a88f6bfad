"""`recipe data`: rows as the trainer gets them, and the chat-templated text with the trained-on part marked."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT

TINY = ROOT / "recipes" / "tiny"


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    """The tiny recipes name their data relative to the repository root."""
    monkeypatch.chdir(ROOT)


def test_rows_as_the_trainer_receives_them(cli):
    code, out, _ = cli("data", str(TINY / "kto-lora.yaml"), "--head", "2", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2
    assert set(rows[0]) == {"prompt", "completion", "label"} and rows[0]["prompt"][0]["role"] == "user"


def test_template_marks_completions_of_preference_pairs(cli):
    code, out, _ = cli("data", str(TINY / "dpo-qlora.yaml"), "--head", "1", "--template", "--json")
    (row,) = json.loads(out)
    assert code == 0
    for key in ("chosen", "rejected"):
        before, marked = row[key].split("«")
        assert before.startswith("<|im_start|>user\n") and before.endswith("<|im_start|>assistant\n")
        assert marked.endswith("<|im_end|>\n»")


def test_assistant_only_loss_marks_only_assistant_turns(cli):
    code, out, _ = cli(
        "data",
        str(TINY / "sft-lora.yaml"),
        "--split",
        "eval",
        "--head",
        "1",
        "--template",
    )  # assistant turns only is the default for conversations
    assert code == 0 and "32 rows in eval" in out
    text = out.split("--- row 0 ---\n")[1].split("\n\n«…»")[0]
    assert text.startswith("<|im_start|>user\n") and text.count("«") == 1 and "«<|im_start|>" not in text
    code, out, _ = cli(
        "data", str(TINY / "sft-lora.yaml"), "--head", "1", "--template", "--set", "objective.assistant_only_loss=false"
    )
    assert out.split("--- row 0 ---\n")[1].startswith("«<|im_start|>user")  # whole conversation trained


def test_data_error_is_a_message_not_a_traceback(cli):
    code, _, err = cli("data", str(TINY / "sft-lora.yaml"), "--set", "datasets.train.0.format=lima")
    assert (
        code == 1
        and f"datasets.train.0 (jsonl:{ROOT}/assets/data/messages-train.jsonl)" in err
        and "conversations" in err
    )
    assert "Traceback" not in err


def test_check_prints_counts_and_token_statistics_and_json_for_ci(cli, tmp_path):
    code, out, _ = cli("data", str(TINY / "dpo-qlora.yaml"), "--check")
    assert code == 0 and "verdict: every row is usable" in out and "steps per epoch: 16 (global batch 8)" in out
    assert "train: 128 rows," in out and "length p50" in out and "█" in out
    bad = tmp_path / "bad.jsonl"
    rows = (ROOT / "assets/data/preference-train.jsonl").read_text().splitlines()
    bad.write_text("\n".join([*rows[:3], '{"prompt": "q", "chosen": "same", "rejected": "same"}']) + "\n")
    code, out, _ = cli(
        "data",
        str(TINY / "dpo-qlora.yaml"),
        "--check",
        "--format",
        "json",
        "--set",
        f"datasets.train.0.source=jsonl:{bad}",
    )
    result = json.loads(out)
    assert code == 1 and result["check"]["refused"] and "tokens" not in result
    assert result["check"]["examples"]["identical-pair"][0]["location"] == f"{bad}:4"
    code, out, _ = cli(
        "data", str(TINY / "dpo-qlora.yaml"), "--check", "--format", "json",
        "--set", f"datasets.train.0.source=jsonl:{bad}", "--set", "datasets.bad_rows=skip",
    )  # fmt: skip
    result = json.loads(out)
    assert code == 0 and result["check"]["skipped"] == {"identical-pair": 1}
    assert result["tokens"]["train"]["rows"] == 3 and result["tokens"]["steps_per_epoch"] == 1
    assert 0 < result["tokens"]["train"]["trained_share"] < 1
