"""Which tokens each SFT run trains on: the assistant's turns of conversations by default, completions of
prompt-completion rows, every token when asked; checked on the labels the real trainer builds."""

from __future__ import annotations

import pytest

from runner.plan import resolve
from schemas import load

from conftest import ROOT

SFT = ROOT / "recipes" / "tiny" / "sft-lora.yaml"


def supervised(recipe_overrides: list[str], monkeypatch) -> tuple[list[str], int, int]:
    """(supervised texts per row, supervised positions, all positions) of the first batch the trainer builds."""
    monkeypatch.chdir(ROOT)
    from runner.run.trainer import build_trainer

    loaded = load(SFT, ["training.max_steps=1", *recipe_overrides])
    plan = resolve(loaded.recipe, {})
    trainer = build_trainer(plan)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    labels, ids = batch["labels"], batch["input_ids"]
    tokenizer = trainer.processing_class
    texts = [tokenizer.decode(ids[i][labels[i] != -100]) for i in range(len(ids))]
    real = (
        int((ids != tokenizer.pad_token_id).sum())
        if "attention_mask" not in batch
        else int(batch["attention_mask"].sum())
    )
    return texts, int((labels != -100).sum()), real


def test_conversations_train_on_the_assistant_turns_by_default(monkeypatch):
    texts, trained, total = supervised([], monkeypatch)
    for text in texts:  # the assistant's answer and its end of turn, nothing of the question
        assert text.endswith("<|im_end|>") and "<|im_start|>" not in text and "?" not in text, text
    assert trained < total / 2


def test_every_token_when_the_recipe_says_so(monkeypatch):
    texts, trained, total = supervised(["objective.assistant_only_loss=false"], monkeypatch)
    assert all(text.startswith("<|im_start|>user") for text in texts)
    assert trained == total


def test_the_plan_says_which_tokens_are_trained():
    plan = resolve(load(SFT).recipe, {})
    (d,) = [d for d in plan.decisions if d.what == "trained tokens"]
    assert "assistant's turns" in d.why and plan.trainer["args"]["assistant_only_loss"] is True
    assert plan.resolved["objective"]["assistant_only_loss"] is True
    alpaca = resolve(load(ROOT / "recipes" / "gpt2-triviaqa-sft-lora.yaml").recipe, {})
    assert (
        alpaca.trainer["args"]["completion_only_loss"] is True
        and alpaca.trainer["args"]["assistant_only_loss"] is False
    )
    dpo = resolve(load(ROOT / "recipes" / "llama3-dpo-qlora.yaml").recipe, {})
    assert "prompt, which is not trained" in next(d.why for d in dpo.decisions if d.what == "trained tokens")


def test_a_template_that_cannot_mark_assistant_turns_is_refused_before_launch(tmp_path, monkeypatch):
    from runner.run.preflight import check_assistant_mask

    monkeypatch.chdir(ROOT)
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    plan = resolve(load(SFT, [f"model.chat_template={plain}"]).recipe, {})
    (problem,) = check_assistant_mask(plan)
    assert problem.field == "objective.assistant_only_loss" and "assistant_only_loss: false" in problem.message
    assert (
        check_assistant_mask(
            resolve(load(SFT, [f"model.chat_template={plain}", "objective.assistant_only_loss=false"]).recipe, {})
        )
        == []
    )
    assert check_assistant_mask(resolve(load(SFT).recipe, {})) == []


@pytest.mark.parametrize("field, fmt", [("assistant_only_loss", "text"), ("completion_only_loss", "messages")])
def test_loss_scope_that_does_not_fit_the_data_is_a_located_error(field, fmt, tmp_path):
    source = "text:assets/data/text-train.txt" if fmt == "text" else "jsonl:assets/data/messages-train.jsonl"
    loaded = load(
        SFT, [f"objective.{field}=true", f"datasets.train.0.source={source}", f"datasets.train.0.format={fmt}"]
    )
    (d,) = [d for d in loaded.diagnostics if d.rule == "loss-scope-vs-format"]
    assert d.field == f"objective.{field}" and d.location.via_set  # located where it was set: --set here
