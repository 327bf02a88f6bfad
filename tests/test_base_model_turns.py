"""A base model whose tokenizer has no chat template and no ChatML markers (built like Llama-2's: only <s>, </s>,
<unk>): every rendered assistant turn ends with a token generation stops at, and a short run teaches it to stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from conftest import recipe_process as run

MESSAGES = ROOT / "assets" / "data" / "messages-train.jsonl"


def llama2_like(directory: Path) -> Path:
    """A tokenizer with only <s>, </s> and <unk> as special tokens and no chat template, and a random tiny Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = []
    for line in MESSAGES.read_text().splitlines():
        corpus += [m["content"] for m in json.loads(line)["messages"]]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus + ["### User: ### Assistant:\n"] * 5, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return llama2_like(tmp_path_factory.mktemp("llama2-like") / "model")


def test_a_template_less_tokenizer_gets_turns_that_end_with_its_eos(base_model):
    from runner.common.models import load_tokenizer, stop_token_ids, turn_end

    tokenizer = load_tokenizer(str(base_model))
    assert "<|im_end|>" not in tokenizer.get_vocab()
    stop, _ = turn_end(tokenizer)
    assert stop == "</s>" and tokenizer.convert_tokens_to_ids(stop) in stop_token_ids(tokenizer)
    # every assistant turn of a multi-turn conversation, as tokenized for training, ends with the eos token
    messages = [
        {"role": "user", "content": "What is the color of a canary?"},
        {"role": "assistant", "content": "The canary is yellow."},
        {"role": "user", "content": "And the sky?"},
        {"role": "assistant", "content": "The sky is blue."},
    ]
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    ends = [ids[i] for i in range(len(ids)) if mask[i] and (i + 1 == len(ids) or not mask[i + 1])]
    assert ends == [tokenizer.eos_token_id] * 2


def test_chatml_on_such_a_tokenizer_is_refused_before_launch(base_model, monkeypatch):
    from runner.plan import resolve
    from runner.run.preflight import check_turn_end
    from schemas import load

    monkeypatch.chdir(ROOT)
    recipe = ROOT / "recipes" / "tiny" / "sft-lora.yaml"
    plan = resolve(load(recipe, [f"model.name_or_path={base_model}", "model.chat_template=chatml"]).recipe, {})
    (problem,) = check_turn_end(plan)
    assert problem.field == "model.chat_template"
    assert problem.message.startswith("model.chat_template 'chatml' ends an assistant turn with")
    assert "chat_template: base" in problem.message
    assert check_turn_end(resolve(load(recipe, [f"model.name_or_path={base_model}"]).recipe, {})) == []


@pytest.mark.e2e
@pytest.mark.parametrize(
    "template",
    [
        [],  # no template: the eos-ended `base` fallback
        [  # ChatML with its markers added as special tokens, <|im_end|> the new eos
            "--set", "model.chat_template=chatml",
            "--set", "model.special_tokens={eos: '<|im_end|>', additional: ['<|im_start|>']}",
        ],
    ],
    ids=["base-template", "chatml-tokens-added"],
)  # fmt: skip
def test_a_short_run_teaches_the_base_model_to_stop(base_model, tmp_path, template):
    out = tmp_path / "run"
    proc = run(
        "run", "recipes/tiny/sft-lora.yaml",
        "--set", f"model.name_or_path={base_model}",
        *template,
        "--set", "adapter={kind: full}",
        "--set", "training.epochs=4",
        "--set", "training.eval_every=null",
        "--set", "training.save_every=null",
        "--set", f"output.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompts = [json.loads(line)["messages"][:1] for line in MESSAGES.read_text().splitlines()[:8]]
    stopped = 0
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out_ids = model.generate(**ids, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        stopped += int(tokenizer.eos_token_id in out_ids[0, ids["input_ids"].shape[-1] :].tolist())
    assert stopped >= 6, f"the model emitted its end-of-sequence token in {stopped} of {len(prompts)} answers"


def test_new_eos_tokens_with_lora_are_refused_before_launch(base_model, monkeypatch):
    from runner.plan import resolve
    from runner.run.preflight import check_special_tokens
    from schemas import load

    monkeypatch.chdir(ROOT)
    recipe = ROOT / "recipes" / "tiny" / "sft-lora.yaml"
    chatml = [f"model.name_or_path={base_model}", "model.chat_template=chatml"]
    tokens = "model.special_tokens={eos: '<|im_end|>', additional: ['<|im_start|>']}"
    (problem,) = check_special_tokens(resolve(load(recipe, [*chatml, tokens]).recipe, {}))
    assert problem.field == "model.special_tokens"
    assert problem.message.startswith("<|im_end|>, <|im_start|> are not in the vocabulary")
    assert check_special_tokens(resolve(load(recipe, [*chatml, tokens, "adapter={kind: full}"]).recipe, {})) == []
    assert (
        check_special_tokens(resolve(load(recipe, [*chatml, "model.special_tokens={pad: '<pad>'}"]).recipe, {})) == []
    )
