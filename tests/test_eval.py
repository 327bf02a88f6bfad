"""`recipe eval` on the tiny model: each task's numbers against the same numbers computed directly with the model."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from conftest import HH_RLHF, ROOT, torch

TINY = ROOT / "assets" / "tiny-llama"
QA = ROOT / "assets" / "data" / "triviaqa-eval.jsonl"


def write_run(out, extra=(), seed=0):
    """A run's output without training: a LoRA adapter with random (non-zero) weights on the tiny Llama, the run's
    tokenizer, and the lock file of the tiny SFT recipe (with `extra` overrides)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from runner.common.models import recipe_tokenizer
    from schemas import load

    loaded = load(ROOT / "recipes/tiny/sft-lora.yaml", [f"output.dir={out}", *extra])
    assert loaded.ok, [d.text() for d in loaded.diagnostics]
    tokenizer = recipe_tokenizer(loaded.recipe)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32)
    config = LoraConfig(r=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "recipe.lock.yaml").write_text(yaml.safe_dump({"recipe": loaded.recipe.model_dump(mode="json")}))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def opened(run_dir):
    from runner.common.trained import open_model

    model, tokenizer, _ = open_model(str(run_dir), log=lambda line: None)
    return model, tokenizer


def evaluate(run_dir, **kwargs):
    from runner.after.evaluate import evaluate as run

    lines = []
    report = run(str(run_dir), log=lines.append, **kwargs)
    return report, lines


def task_entry(run_dir, which, name):
    return json.loads((run_dir / "eval" / "results.json").read_text())["models"][which]["tasks"][name]


def samples(entry):
    return [json.loads(line) for line in open(entry["samples"], encoding="utf-8")]


def test_answers_are_scored_after_triviaqas_normalisation():
    from runner.common import answers

    accepted = answers.aliases({"value": "Mars", "aliases": ["Mars", "The Red Planet"]})
    assert answers.exact_match_score("the red planet.", accepted) == 1.0
    assert answers.exact_match_score("Venus", accepted) == 0.0
    assert answers.token_f1("red planet Mars", accepted) == pytest.approx(0.8)  # 2 of 3 words against "red planet"
    assert answers.first_line("\n  Paris\nand more") == "Paris"


def test_batched_generation_equals_one_prompt_at_a_time(opened):
    """Left-padded batches of different prompt lengths give each prompt the answer it gets alone."""
    from runner.after.evaltasks import Renderer, generate
    from runner.common.models import stop_token_ids
    from schemas.evaluation import Generation

    model, tokenizer = opened
    rows = [json.loads(line) for line in QA.read_text().splitlines()[:8]]
    renderer = Renderer(tokenizer, templated=True)
    prompts = [renderer.prompt_ids([{"role": "user", "content": r["question"]}]) for r in rows]
    assert len({len(p) for p in prompts}) > 1, "the prompts should differ in length, so that batches pad"
    g = Generation(max_new_tokens=12)
    batched = generate(model, tokenizer, prompts, g, 8, stop_token_ids(tokenizer))
    alone = [generate(model, tokenizer, [p], g, 1, stop_token_ids(tokenizer))[0] for p in prompts]
    assert batched == alone
    assert any(batched)


def test_exact_match_scores_the_models_own_answers(run_dir, opened, tmp_path):
    """Rows whose accepted answers include what the model answers alone score 1, the others 0: 0.5 exactly."""
    from runner.after.evaltasks import Renderer, generate
    from runner.common.models import stop_token_ids
    from schemas.evaluation import Generation

    model, tokenizer = opened
    rows = [json.loads(line) for line in QA.read_text().splitlines()[:6]]
    renderer = Renderer(tokenizer, templated=True)
    own = [
        generate(model, tokenizer, [renderer.prompt_ids([{"role": "user", "content": r["question"]}])],
                 Generation(max_new_tokens=16), 1, stop_token_ids(tokenizer))[0].splitlines()[0]
        for r in rows
    ]  # fmt: skip
    data = tmp_path / "qa.jsonl"
    with data.open("w") as f:
        for i, (row, answer) in enumerate(zip(rows, own)):
            aliases = [answer.upper() + "."] if i % 2 == 0 else ["an answer it never gives"]
            f.write(json.dumps({"question": row["question"], "answer": {"value": "x", "aliases": aliases}}) + "\n")
    out = write_run(tmp_path / "run", [
        f"evaluation.tasks=[{{name: own, kind: exact-match, data: {{source: 'jsonl:{data}', format: triviaqa}}}}]",
        "evaluation.generation.max_new_tokens=16",
    ])  # fmt: skip
    report, lines = evaluate(out)
    entry = task_entry(out, "trained", "own")
    assert entry["metrics"]["exact_match"] == 0.5 and entry["rows"] == 6
    assert [s["answer"] for s in samples(entry)] == own
    assert "own" in report.table() and "exact_match" in report.table()


def direct_completion_logp(model, tokenizer, prompt, completion) -> float:
    """log p(completion | prompt) summed over the completion's tokens: one forward of the templated text."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    assert full_text.startswith(prompt_text)
    ids = tokenizer(full_text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return sum(logps[i - 1, ids[0, i]].item() for i in range(start, ids.shape[1]))


def test_preference_accuracy_and_margin_from_the_models_log_likelihoods(run_dir, opened):
    model, tokenizer = opened
    out = write_run(run_dir.parent / "prefs", [
        "evaluation.tasks=[{name: prefs, kind: preference, data: {source: "
        f"'jsonl:{ROOT}/assets/data/preference-eval.jsonl', format: preference}}}}]",
        "evaluation.limit=8",
        "evaluation.batch_size=3",
    ])  # fmt: skip
    evaluate(out)
    entry = task_entry(out, "trained", "prefs")
    rows = [json.loads(line) for line in (ROOT / "assets/data/preference-eval.jsonl").read_text().splitlines()[:8]]
    got = samples(entry)
    for row, sample in zip(rows, got):
        assert sample["chosen_logp"] == pytest.approx(
            direct_completion_logp(model, tokenizer, row["prompt"], row["chosen"]), abs=1e-3
        )
        assert sample["rejected_logp"] == pytest.approx(
            direct_completion_logp(model, tokenizer, row["prompt"], row["rejected"]), abs=1e-3
        )
    assert entry["metrics"]["accuracy"] == sum(s["chosen_logp"] > s["rejected_logp"] for s in got) / 8
    assert entry["metrics"]["margin"] == pytest.approx(sum(s["margin"] for s in got) / 8)


def test_preference_on_real_hh_rlhf_rows(tmp_path):
    """300 real HH-RLHF rows (tests/fixtures/data; fails when missing): the first 12 read through the hh-rlhf preset;
    dialogues longer than the model's 512 positions keep their answer and the end of the prompt, and are counted."""
    assert HH_RLHF.is_file(), f"{HH_RLHF} is missing"
    out = write_run(tmp_path / "run", [
        f"evaluation.tasks=[{{name: hh, kind: preference, data: {{source: 'jsonl:{HH_RLHF}', format: hh-rlhf}}}}]",
        "evaluation.limit=12",
    ])  # fmt: skip
    report, _ = evaluate(out, base=True)
    trained, base = task_entry(out, "trained", "hh"), task_entry(out, "base", "hh")
    assert trained["rows"] == base["rows"] == 12
    got = samples(trained)
    assert all(math.isfinite(s["chosen_logp"]) and s["chosen_logp"] < 0 for s in got)
    assert 0.0 <= trained["metrics"]["accuracy"] <= 1.0
    # the base is the adapter switched off: the adapter changed the log-likelihoods
    assert [s["chosen_logp"] for s in got] != [s["chosen_logp"] for s in samples(base)]
    assert "reward_accuracy" in trained["metrics"] and "BASE" in report.table()


def test_harness_task_from_a_local_yaml_file_runs_on_the_adapter_and_on_the_base(run_dir, opened, tmp_path):
    """A custom lm-evaluation-harness task (YAML + a jsonl beside it, named relative to the YAML): the harness's
    log-likelihood of each choice equals the model's own, with the adapter and without it."""
    model, tokenizer = opened
    rows = [
        {"question": "What color is the lemon?", "choices": ["yellow", "blue", "black"], "label": 0},
        {"question": "What color is the sapphire?", "choices": ["red", "blue", "white"], "label": 1},
        {"question": "What color is a panther?", "choices": ["green", "orange", "black"], "label": 2},
    ]
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "colors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "colors.yaml").write_text(
        "task: color_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: colors.jsonl\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    report, _ = evaluate(run_dir, tasks=[str(folder / "colors.yaml")], base=True, chat_template=False)

    def loglikelihood(context: str, continuation: str) -> float:
        whole = tokenizer(context + continuation)["input_ids"]
        start = len(tokenizer(context)["input_ids"])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0, :-1].float(), -1)
        return sum(logps[i - 1, whole[i]].item() for i in range(start, len(whole)))

    found = {}
    for which in ("trained", "base"):
        entry = task_entry(run_dir, which, "colors")
        got = samples(entry)
        assert len(got) == 3 and entry["kind"] == "lm-eval"
        if which == "base":
            with model.disable_adapter():
                expected = [[loglikelihood(r["question"], " " + c) for c in r["choices"]] for r in rows]
        else:
            expected = [[loglikelihood(r["question"], " " + c) for c in r["choices"]] for r in rows]
        harness = [[float(x.split(",")[0].strip("([ ")) for x in s["response"]] for s in got]
        assert sum(harness, []) == pytest.approx(sum(expected, []), abs=1e-3), which
        accuracy = sum(max(range(3), key=lambda i: e[i]) == r["label"] for e, r in zip(expected, rows)) / 3
        assert entry["metrics"]["acc"] == pytest.approx(accuracy)
        found[which] = expected
    assert sum(found["trained"], []) != pytest.approx(sum(found["base"], []), abs=1e-3)
    assert "colors" in report.table()


def test_win_rate_scores_answers_and_references_with_the_reward_model(run_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from runner.common.models import load_tokenizer

    scorer = tmp_path / "reward"
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1).save_pretrained(scorer)
    load_tokenizer(str(run_dir), keep_template=True).save_pretrained(scorer)
    out = write_run(tmp_path / "run", [
        f"evaluation.tasks=[{{name: wins, kind: win-rate, reward_model: '{scorer}', "
        f"data: {{source: 'jsonl:{QA}', format: triviaqa}}}}]",
        "evaluation.limit=6",
        "evaluation.generation.max_new_tokens=12",
    ])  # fmt: skip
    evaluate(out, base=True)
    entry = task_entry(out, "trained", "wins")
    got = samples(entry)
    assert len(got) == 6
    assert entry["metrics"]["win_rate"] == pytest.approx(sum(s["win"] for s in got) / 6)
    assert entry["metrics"]["win_rate"] == pytest.approx(
        sum(1.0 if s["reward"] > s["reference_reward"] else 0.0 for s in got) / 6
    )
    base = samples(task_entry(out, "base", "wins"))
    head = sum(
        1.0 if t["reward"] > b["reward"] else 0.5 if t["reward"] == b["reward"] else 0.0 for t, b in zip(got, base)
    )
    assert entry["metrics"]["win_rate_vs_base"] == pytest.approx(head / 6)
    assert len({s["reward"] for s in got}) > 1  # scores differ between answers: the head is not constant


def test_a_task_that_cannot_run_is_refused_before_any_model_loads(run_dir, tmp_path):
    from runner.after.evaluate import EvalRefused

    out = write_run(tmp_path / "run", [
        "evaluation.tasks=[{name: qa, kind: exact-match, data: {source: 'jsonl:missing.jsonl', format: triviaqa}}, "
        f"{{name: fine, kind: exact-match, data: {{source: 'jsonl:{QA}', format: triviaqa}}}}]",
    ])  # fmt: skip
    lines = []
    from runner.after.evaluate import evaluate as run

    with pytest.raises(EvalRefused) as refused:
        run(str(out), log=lines.append)
    message = str(refused.value)
    assert "evaluation.tasks.0 (jsonl:" in message and "missing.jsonl): no such file" in message
    assert "tasks that can run: fine" in message and "nothing was evaluated" in message
    with pytest.raises(EvalRefused) as refused:
        run(str(out), tasks=["fine", "hellaswg"], log=lines.append)
    assert "'hellaswg' is not an lm-evaluation-harness task. Did you mean 'hellaswag'?" in str(refused.value)
    with pytest.raises(EvalRefused) as refused:
        run(str(out), tasks=["fine"], backend="vllm", log=lines.append)
    assert "vllm generates on a GPU with vLLM installed" in str(refused.value)
    assert lines == []  # nothing was loaded


def test_the_eval_section_is_validated_with_located_errors(write):
    from schemas import load

    text = (
        f"version: 1\nextends: {ROOT}/recipes/tiny/sft-lora.yaml\nname: x\nevaluation:\n  batch_size: 0\n  tasks:\n"
        "    - kind: preference\n      data: {source: 'jsonl:qa.jsonl', format: triviaqa}\n"
    )
    loaded = load(write("r.yaml", text))
    found = {d.field: d.text() for d in loaded.diagnostics}
    assert "format `triviaqa` gives prompt-completion rows" in found["evaluation.tasks.0"]
    assert "greater than 0" in found["evaluation.batch_size"]
    assert found["evaluation.batch_size"].split(": ")[0].endswith("r.yaml:5:15"), found  # PATH:LINE:COL


def test_results_table_shows_before_after_and_change():
    from runner.common.evalresults import headlines, results_table

    data = {
        "models": {
            "base": {"tasks": {"qa": {"metrics": {"exact_match": 0.25, "f1": 0.5}, "main": "exact_match"}}},
            "trained": {"tasks": {"qa": {"metrics": {"exact_match": 0.75, "f1": 0.8}, "main": "exact_match"}}},
        }
    }
    lines = results_table(data).splitlines()
    assert lines[0].split() == ["TASK", "METRIC", "BASE", "TRAINED", "CHANGE"]
    assert lines[1].split() == ["qa", "exact_match", "0.25", "0.75", "+0.5"]
    assert headlines(data) == ["qa exact_match 0.75 (base 0.25)"]
