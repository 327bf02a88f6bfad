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
