"""Pieces of the training entry point that need no training: chat templates and remote code."""

from __future__ import annotations

from runner.common.models import recipe_tokenizer, remote_code_allowed
from schemas import load

from conftest import ROOT

SFT = ROOT / "recipes" / "tiny" / "sft-lora.yaml"
MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def tokenizer_of(recipe):
    """The tokenizer as training loads it (runner.run.trainer.load_for_training)."""
    return recipe_tokenizer(recipe)


def test_tokenizer_own_template_named_template_and_jinja_file(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    own = tokenizer_of(load(SFT).recipe).apply_chat_template(MESSAGES, tokenize=False)
    assert own.startswith("<|im_start|>user\nHi<|im_end|>")
    named = tokenizer_of(load(SFT, ["model.chat_template=llama3"]).recipe).apply_chat_template(MESSAGES, tokenize=False)
    assert named.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>")
    jinja = tmp_path / "mine.jinja"
    jinja.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    mine = tokenizer_of(load(SFT, [f"model.chat_template={jinja}"]).recipe).apply_chat_template(
        MESSAGES, tokenize=False
    )
    assert mine == "[user] Hi\n[assistant] Hello\n"


def test_remote_code_needs_both_the_recipe_and_the_flag():
    asks = load(SFT, ["model.trust_remote_code=true"]).recipe
    plain = load(SFT).recipe
    assert remote_code_allowed(asks, True) is True
    assert remote_code_allowed(asks, False) is False
    assert remote_code_allowed(plain, True) is False


def test_unknown_chat_template_is_refused_before_launch():
    from runner.run.preflight import check_chat_template

    assert check_chat_template(load(SFT, ["model.chat_template=llama3"]).recipe) == []
    (problem,) = check_chat_template(load(SFT, ["model.chat_template=llama9"]).recipe)
    assert problem.field == "model.chat_template" and problem.message.startswith("'llama9'")
    assert "chatml, llama3" in problem.message
