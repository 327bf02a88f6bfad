"""`recipe merge` and `recipe chat` on adapters made directly with PEFT on the tiny model (the end-to-end
tests in test_e2e_after_training.py do the same on adapters that `recipe run` trained)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from conftest import ROOT, torch

TINY = str(ROOT / "assets" / "tiny-llama")


def make_adapter(directory: Path, config) -> Path:
    """Save a PEFT adapter of `config` on the tiny model, with random (non-zero) weights, and the tokenizer."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32), config)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(TINY).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig

    root = tmp_path_factory.mktemp("adapters")
    return {
        "lora": make_adapter(
            root / "lora",
            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
        ),
        "dora": make_adapter(
            root / "dora",
            LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules="all-linear",
                use_dora=True,
                init_lora_weights=False,
                task_type="CAUSAL_LM",
            ),
        ),
        "ia3": make_adapter(
            root / "ia3",
            IA3Config(
                target_modules=["k_proj", "v_proj", "down_proj"],
                feedforward_modules=["down_proj"],
                init_ia3_weights=False,
                task_type="CAUSAL_LM",
            ),
        ),
        "prefix": make_adapter(root / "prefix", PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM")),
    }


def logits(model, text: str):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(TINY)(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def adapter_model(directory: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32), directory).eval()


@pytest.mark.parametrize("kind", ["lora", "dora", "ia3"])
def test_merge_reproduces_the_adapter_model(cli, adapters, tmp_path, kind):
    from transformers import AutoModelForCausalLM

    to = tmp_path / "merged"
    code, out, err = cli("merge", str(adapters[kind]), "--to", str(to))
    assert code == 0, err
    assert out.strip() == str(to) and "check: adapter vs merged on 3 probes" in err
    merged = AutoModelForCausalLM.from_pretrained(to)  # a plain transformers model: no PEFT needed
    assert not any("lora" in n or "ia3" in n for n, _ in merged.named_parameters())
    text = "A sentence the merge check never saw: purple owls."
    reference = logits(adapter_model(adapters[kind]), text)
    assert torch.allclose(logits(merged, text), reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(
        logits(AutoModelForCausalLM.from_pretrained(TINY), text), reference, atol=1e-2
    )  # the adapter matters
    record = json.loads((to / "merge.json").read_text())
    assert (
        record["dtype"] == "float32"
        and record["check"]["relative_error"] < 1e-4
        and record["check"]["top1_agreement"] == 1.0
    )
    assert (to / "chat_template.jinja").read_text() == (Path(TINY) / "chat_template.jinja").read_text()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary directory left behind


def test_merge_in_bfloat16_saves_bfloat16_weights(cli, adapters, tmp_path):
    from safetensors import safe_open

    code, _, err = cli("merge", str(adapters["lora"]), "--to", str(tmp_path / "m"), "--dtype", "bfloat16")
    assert code == 0, err
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "bfloat16"


def test_prefix_tuning_merge_is_refused(cli, adapters, tmp_path):
    code, out, err = cli("merge", str(adapters["prefix"]), "--to", str(tmp_path / "m"))
    assert code == 1 and out == ""
    assert f"{adapters['prefix']}/adapter_config.json: peft_type PREFIX_TUNING" in err
    assert "prefix tuning adapter cannot be merged" in err and "virtual tokens" in err and "recipe chat" in err
    assert not (tmp_path / "m").exists()
    code, out, err = cli(
        "chat",
        str(adapters["prefix"]),
        "--prompt",
        "What color is the lemon?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "6",
    )
    assert code == 0 and out.strip(), err  # what cannot be merged is used as an adapter


def test_a_merge_that_does_not_reproduce_the_adapter_writes_nothing(cli, adapters, tmp_path, monkeypatch):
    from peft.tuners.lora import layer

    monkeypatch.setattr(layer.Linear, "merge", lambda self, *a, **k: None)  # a merge that forgets the LoRA weights
    code, _, err = cli("merge", str(adapters["lora"]), "--to", str(tmp_path / "m"))
    assert code == 1
    assert "the merged model does not reproduce the adapter model" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_merge_refusals_name_what_to_do(cli, adapters, tmp_path):
    code, _, err = cli("merge", TINY)
    assert code == 1 and "holds a whole model" in err
    code, _, err = cli("merge", str(tmp_path / "missing"))
    assert code == 1 and "no such directory" in err
    (tmp_path / "run" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-40").mkdir()
    code, _, err = cli("merge", str(tmp_path / "run"))
    assert code == 1 and "no final adapter" in err and "checkpoint-40" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = cli("merge", str(adapters["lora"]), "--to", str(taken))
    assert code == 1 and "already exists and is not empty" in err and "--overwrite" in err
    assert (taken / "keep.txt").read_text() == "mine"
    code, _, err = cli("merge", str(adapters["lora"]), "--to", str(taken), "--overwrite")
    assert code == 0 and not (taken / "keep.txt").exists() and (taken / "model.safetensors").exists()
    code, _, err = cli("merge", str(adapters["lora"]), "--to", str(tmp_path / "d"), "--dequantize")
    assert code == 1 and "did not train on quantized weights" in err and not (tmp_path / "d").exists()
    code, _, err = cli("merge", str(adapters["lora"]), "--base", str(tmp_path / "nowhere"))
    assert code == 1 and "is not a directory from here" in err and "--base" in err


def greedy(model, tokenizer, messages: list[dict], max_new_tokens: int) -> str:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    from runner.after.chat import stop_token_ids

    with torch.no_grad():
        out = model.generate(
            **prompt,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, prompt["input_ids"].shape[-1] :], skip_special_tokens=True).strip()


def test_chat_answers_standard_input_through_the_chat_template(cli, adapters, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setattr("sys.stdin", io.StringIO("What color is the lemon?\n"))
    code, out, err = cli(
        "chat",
        str(adapters["lora"]),
        "--temperature",
        "0",
        "--max-new-tokens",
        "12",
        "--system",
        "Answer briefly.",
        "--show-prompt",
    )
    assert code == 0, err
    tokenizer = AutoTokenizer.from_pretrained(adapters["lora"])
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What color is the lemon?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>") and f"---\n{rendered}\n---" in err
    expected = greedy(adapter_model(adapters["lora"]), tokenizer, messages, 12)
    assert expected and out.strip() == expected
    assert "loading LoRA adapter" in err


def test_chat_session_keeps_the_conversation_and_resets(adapters):
    from runner.after.chat import Chat, open_model

    model, tokenizer, _ = open_model(str(adapters["lora"]), log=lambda line: None)
    chat = Chat(model, tokenizer, max_new_tokens=6, temperature=0)
    first = chat.reply("What color is the lemon?", io.StringIO())
    chat.reply("And the canary?", io.StringIO())
    assert [m["role"] for m in chat.messages()] == ["user", "assistant", "user", "assistant"]
    assert chat.messages()[1]["content"] == first
    assert chat.prompt_text().count("<|im_start|>user") == 2
    chat.reset()
    assert chat.messages() == []


def test_chat_refuses_a_reward_model_and_empty_input(cli, tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1)
    get_peft_model(model, LoraConfig(r=4, task_type="SEQ_CLS")).save_pretrained(tmp_path / "rm")
    code, _, err = cli("chat", str(tmp_path / "rm"), "--prompt", "hi")
    assert code == 1 and "is a reward model" in err and "does not generate" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    code, _, err = cli("chat", TINY)
    assert code == 1 and "standard input is empty" in err and "--prompt" in err


def test_interactive_chat_reads_turns_until_exit(adapters, monkeypatch):
    from runner.after.chat import Chat, interactive, open_model

    model, tokenizer, _ = open_model(str(adapters["lora"]), log=lambda line: None)
    chat = Chat(model, tokenizer, max_new_tokens=4, temperature=0)
    turns = iter(["What color is the lemon?", "", "/reset", "And the canary?", "/exit", "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(turns))
    out, said = io.StringIO(), []
    interactive(chat, out, said.append, None)
    assert out.getvalue().count("model> ") == 2 and next(turns) == "never read"
    assert [m["content"] for m in chat.messages() if m["role"] == "user"] == [
        "And the canary?"
    ]  # /reset dropped the first
    assert "(new conversation)" in said and "/exit" in said[0]


def test_merge_of_a_reward_adapter_keeps_its_trained_score_head(cli, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1)
    get_peft_model(base, LoraConfig(r=4, task_type="SEQ_CLS", init_lora_weights=False)).save_pretrained(tmp_path / "rm")
    code, _, err = cli("merge", str(tmp_path / "rm"), "--to", str(tmp_path / "merged"))
    assert code == 0, err
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    torch.manual_seed(1)  # a freshly initialised score head differs from the trained one that the adapter saved
    adapter = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1), tmp_path / "rm"
    )
    ids = AutoTokenizer.from_pretrained(TINY)("A chosen answer.", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**ids).logits, adapter(**ids).logits, atol=1e-5)


def test_an_adapter_without_its_tokenizer_gets_the_template_its_recipe_trained_with(adapters, tmp_path):
    import shutil

    import yaml

    from runner.common.trained import inspect, load_trained_tokenizer
    from schemas import load

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(adapters["lora"] / name, run_dir / name)
    recipe = load(
        ROOT / "recipes/tiny/sft-lora.yaml", [f"model.name_or_path={TINY}", "model.chat_template=llama3"]
    ).recipe
    (run_dir / "recipe.lock.yaml").write_text(yaml.safe_dump({"recipe": recipe.model_dump(mode="json")}))
    tokenizer = load_trained_tokenizer(inspect(str(run_dir)))
    assert tokenizer.chat_template == (ROOT / "runner/templates/llama3.jinja").read_text()


def test_an_online_rl_reward_model_scores_with_its_own_tokenizer(tmp_path):
    """GRPO/RLOO against a reward run: its adapter merged into its base, and the tokenizer (chat template) it trained
    with, not the policy's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

    from runner.run.trainer import load_reward_model

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1)
    get_peft_model(base, LoraConfig(r=4, task_type="SEQ_CLS", init_lora_weights=False)).save_pretrained(tmp_path / "rm")
    own = AutoTokenizer.from_pretrained(TINY)
    own.chat_template = (ROOT / "runner/templates/llama3.jinja").read_text()  # the reward run's template
    own.save_pretrained(tmp_path / "rm")
    model, tokenizer = load_reward_model(str(tmp_path / "rm"), "float32", trust_remote_code=False)
    assert isinstance(model, PreTrainedModel) and model.config.num_labels == 1
    assert tokenizer.chat_template == own.chat_template != AutoTokenizer.from_pretrained(TINY).chat_template
    assert load_reward_model("org/some-reward-model", "float32", trust_remote_code=False) == (
        "org/some-reward-model",
        None,
    )  # a Hub id: TRL loads the model and its own tokenizer
