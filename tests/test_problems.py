"""Every check outside the rules table, the plan's and the preflight's, has a case that trips it and a near miss that
passes; every id is declared in schemas.problems.CHECKS, listed in the reference, and raised somewhere in the code."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from runner.plan import resolve
from schemas import load
from schemas.problems import CHECKS, Problem
from schemas.rules import RULES

from conftest import ROOT

RECIPES = ROOT / "recipes"
TINY_SFT = RECIPES / "tiny" / "sft-lora.yaml"


def plan_problems(name: str, *overrides: str, probe: dict | None = None) -> list[Problem]:
    loaded = load(RECIPES / name, list(overrides))
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    return resolve(loaded.recipe, probe or {}).problems


MAMBA = "mamba-1.4b-lima-sft-qlora.yaml"

# plan check id -> (recipe, overrides that trip it, the field it points at, overrides that pass)
PLAN_CASES = {
    "fp16-needs-gpu": (
        "tiny/sft-lora.yaml",
        ["model.dtype=float16"],
        "model.dtype",
        ["model.dtype=float32"],
    ),
    "attention-unsupported": (
        "bloom-1b1-lima-sft-full.yaml",
        ["model.attention=sdpa"],
        "model.attention",
        ["model.attention=eager"],
    ),
    "packing-contaminates": (
        "bloom-1b1-lima-sft-full.yaml",
        ["training.packing=true"],
        "training.packing",
        ["training.packing=false"],
    ),
    "packing-unverified": (
        "llama31-8b-chat-sft-lora.yaml",
        ["training.packing=true", "model.name_or_path=some-org/some-model"],
        "training.packing",
        ["training.packing=true"],
    ),
    "kernels-need-gpu": (
        "tiny/sft-lora.yaml",
        ["training.kernels=liger"],
        "training.kernels",
        ["training.kernels=none"],
    ),
    "kernels-unsupported-model": (
        "gpt2-triviaqa-sft-lora.yaml",
        ["training.kernels=liger"],
        "training.kernels",
        ["training.kernels=auto"],
    ),
    "mamba-lora-targets": (
        MAMBA,
        ["adapter.target_modules=[in_proj, out_proj]"],
        "adapter.target_modules",
        ["adapter.target_modules=[in_proj, x_proj]"],
    ),
    "mamba-quantized-dt-proj": (
        MAMBA,
        ["quantization.skip_modules=[lm_head]"],
        "quantization.skip_modules",
        ["quantization.skip_modules=[dt_proj, lm_head]"],
    ),
    "memory-unknown": (
        "tiny/sft-lora.yaml",
        ["model.name_or_path=some-org/some-model"],
        "model.name_or_path",
        [],
    ),
    "memory-fit": (
        "llama3-dpo-qlora.yaml",
        ["adapter={kind: full}", "quantization={method: none}"],
        "hardware.profile",
        [],
    ),
    "memory-estimate": (
        "llama3-dpo-qlora.yaml",
        ["adapter.target_modules=[q_proj, wqkv]"],
        "adapter.target_modules",
        ["adapter.target_modules=[q_proj, v_proj]"],
    ),
    "quant-storage-vs-zero3": (
        "llama3-70b-sft-qlora-zero3.yaml",
        ["quantization.quant_storage=uint8"],
        "quantization.quant_storage",
        ["quantization.quant_storage=auto"],
    ),
}


@pytest.mark.parametrize("check_id", sorted(PLAN_CASES))
def test_plan_check_trips_and_passes(check_id):
    name, trip, field, passing = PLAN_CASES[check_id]
    tripped = [p for p in plan_problems(name, *trip) if p.rule == check_id]
    assert tripped and {p.field for p in tripped} == {field}, tripped
    assert {p.severity for p in tripped} == {CHECKS[check_id].severity}
    assert check_id not in [p.rule for p in plan_problems(name, *passing)]


# --- the checks before launch ------------------------------------------------------------------------------------


def _recipe(*overrides: str, name: Path = TINY_SFT):
    loaded = load(name, list(overrides))
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    return loaded.recipe


def _plan(*overrides: str):
    return resolve(_recipe(*overrides), {})


def _output_dir(tmp_path, rule):
    import os

    from runner.common import rundir
    from runner.run.preflight import check_output_dir

    out = tmp_path / "out"
    out.mkdir()
    rundir.take(out)
    rundir.record_created(out, "recipe.lock.yaml", "checkpoint-*")  # what a run wrote there
    recipe = _recipe(f"output.dir={out}")
    if rule == "output-dir-not-a-run":
        (out / "notes.txt").write_text("mine")
        return check_output_dir(recipe, True, False), check_output_dir(
            _recipe(f"output.dir={tmp_path}/new"), True, False
        )
    if rule == "output-dir-unsafe":
        inside = _recipe(f"output.dir={ROOT}")  # holds the recipe and its data
        return check_output_dir(inside, False, False), check_output_dir(recipe, False, False)
    if rule == "output-dir-symlink":
        linked = tmp_path / "linked"
        linked.symlink_to(out)
        return check_output_dir(_recipe(f"output.dir={linked}"), False, False), check_output_dir(recipe, False, False)
    if rule == "output-dir-unwritable":
        real = os.access
        os.access = lambda path, mode: Path(path) != out and real(path, mode)  # chmod does not stop root
        try:
            tripped = check_output_dir(recipe, False, False)
        finally:
            os.access = real
        return tripped, check_output_dir(recipe, False, False)
    if rule == "output-dir-finished":
        (out / "recipe.lock.yaml").write_text("recipe: {}\n")
        return check_output_dir(recipe, False, False), check_output_dir(recipe, True, False)
    if rule == "output-dir-unfinished":
        (out / "checkpoint-2").mkdir()
        return check_output_dir(recipe, False, False), check_output_dir(recipe, False, True)
    if rule == "resume-without-checkpoint":
        tripped = check_output_dir(recipe, False, True)
        (out / "checkpoint-2").mkdir()
        return tripped, check_output_dir(recipe, False, True)
    (out / "checkpoint-2").mkdir()  # resume-weights-only
    weights_only = _recipe(f"output.dir={out}", "training.save_only_model=true")
    return check_output_dir(weights_only, False, True), check_output_dir(recipe, False, True)


def _node_environment(tmp_path, rule):
    from runner.run.preflight import check_node_environment

    return check_node_environment(2, {}), check_node_environment(2, {"MACHINE_RANK": "1", "MAIN_PROCESS_IP": "h"})


def _trackers(tmp_path, rule):
    from runner.run.preflight import check_trackers

    if rule == "tracker-missing":
        return check_trackers(["tensorboard"], {}, {}, tmp_path), check_trackers(
            ["tensorboard"], {"tensorboard": "2"}, {}, tmp_path
        )
    installed = {"wandb": "0.31.0"}
    return check_trackers(["wandb"], installed, {}, tmp_path), check_trackers(
        ["wandb"], installed, {"WANDB_MODE": "offline"}, tmp_path
    )


def _packages(tmp_path, rule):
    from runner.plan import probe_packages
    from runner.run.preflight import check_packages

    plan = _plan()
    return check_packages(plan, {}), check_packages(plan, probe_packages())


def _model(tmp_path, rule):
    from runner.run.preflight import check_model

    return check_model(_recipe(f"model.name_or_path={tmp_path}/nowhere")), check_model(_recipe())


def _chat_template(tmp_path, rule):
    from runner.run.preflight import check_chat_template

    return check_chat_template(_recipe("model.chat_template=llama9")), check_chat_template(
        _recipe("model.chat_template=llama3")
    )


def _start_adapter(tmp_path, rule):
    from runner.run.preflight import check_start_adapter

    adapter = tmp_path / "adapter"
    if rule == "start-adapter-missing":
        passing = _plan()  # no start_from
        return check_start_adapter(_plan(f"adapter.start_from={adapter}")), check_start_adapter(passing)
    plan = _plan(f"adapter.start_from={adapter}")
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **plan.peft["args"], "r": 4}))
    tripped = check_start_adapter(plan)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **plan.peft["args"]}))
    return tripped, check_start_adapter(plan)


def _special_tokens(tmp_path, rule):
    from runner.run.preflight import check_special_tokens

    tokens = "model.special_tokens={eos: '<|im_end|>', additional: ['<|brand-new|>']}"
    return check_special_tokens(_plan(tokens)), check_special_tokens(_plan(tokens, "adapter={kind: full}"))


def _turn_end(tmp_path, rule):
    from runner.run.preflight import check_turn_end

    template = tmp_path / "no-stop.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} <<over>>\n{% endfor %}")
    return check_turn_end(_plan(f"model.chat_template={template}")), check_turn_end(_plan())


def _template_render(tmp_path, rule):
    from runner.run.preflight import check_template

    template = tmp_path / "huge.jinja"
    template.write_text('{{ "A" * 1000000000 }}')
    return check_template(_plan(f"model.chat_template={template}")), check_template(_plan())


def _assistant_mask(tmp_path, rule):
    from runner.run.preflight import check_assistant_mask

    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    return check_assistant_mask(_plan(f"model.chat_template={plain}")), check_assistant_mask(_plan())


def _data(tmp_path, rule, monkeypatch=None):
    from runner.run.preflight import check_data

    data = tmp_path / "rows.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    data.write_text(good + "\n" + good.replace("yo", "hey") + "\n")
    passing = check_data(_recipe(f"datasets.train.0.source=jsonl:{data}"))
    if rule == "data-unreadable":
        return check_data(_recipe(f"datasets.train.0.source=jsonl:{tmp_path}/none.jsonl")), passing
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n{not json\n")
    return check_data(_recipe(f"datasets.train.0.source=jsonl:{bad}")), passing


def _evaluation(tmp_path, rule):
    from runner.after.evaluate import check_at_end

    missing = "evaluation.tasks.0.data.source=jsonl:" + str(tmp_path / "none.jsonl")
    return check_at_end(_recipe(missing)), check_at_end(_recipe())


def _code_consent(tmp_path, rule):
    from runner.common.consent import consent_problems

    (tmp_path / "task.yaml").write_text("task: t\nprocess_docs: !function utils.fn\n")
    recipe = _recipe(
        "objective.kind=grpo",
        "objective.num_generations=4",
        f"objective.reward_functions=[mentions_color, '{tmp_path}/rewards.py:score']",
        "datasets.train.0.format=prompt-only",
        "datasets.eval.0.format=prompt-only",
        f"evaluation.tasks=[{{kind: lm-eval, task: {tmp_path}/task.yaml}}]",
    )
    return consent_problems(recipe, False, evaluation=True), consent_problems(recipe, True, evaluation=True)


PREFLIGHT_CASES = {
    "output-dir-not-a-run": _output_dir,
    "output-dir-unsafe": _output_dir,
    "output-dir-symlink": _output_dir,
    "output-dir-unwritable": _output_dir,
    "output-dir-finished": _output_dir,
    "output-dir-unfinished": _output_dir,
    "resume-without-checkpoint": _output_dir,
    "resume-weights-only": _output_dir,
    "node-environment": _node_environment,
    "tracker-missing": _trackers,
    "tracker-credentials": _trackers,
    "package-missing": _packages,
    "model-missing": _model,
    "chat-template-missing": _chat_template,
    "start-adapter-missing": _start_adapter,
    "start-adapter-shape": _start_adapter,
    "special-tokens-untrainable": _special_tokens,
    "turn-end-token": _turn_end,
    "chat-template-render": _template_render,
    "assistant-mask": _assistant_mask,
    "data-unreadable": _data,
    "data-bad-rows": _data,
    "evaluation-at-end": _evaluation,
    "code-needs-consent": _code_consent,
}


@pytest.mark.parametrize("check_id", sorted(PREFLIGHT_CASES))
def test_preflight_check_trips_and_passes(check_id, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the data check's cache stays in the test
    tripped, passing = PREFLIGHT_CASES[check_id](tmp_path, check_id)
    assert check_id in [p.rule for p in tripped], tripped
    assert all(isinstance(p, Problem) and p.path and p.message for p in tripped)
    assert check_id not in [p.rule for p in passing], passing


def test_every_check_has_cases_and_a_row_in_the_reference():
    assert sorted(PLAN_CASES) == sorted(c.id for c in CHECKS.values() if c.stage == "plan")
    assert sorted(PREFLIGHT_CASES) == sorted(c.id for c in CHECKS.values() if c.stage == "preflight")
    assert not set(CHECKS) & {r.id for r in RULES}, "a check id is also a rule id"
    reference = (ROOT / "docs" / "recipe-reference.md").read_text()
    missing = [i for i in [*CHECKS, *(r.id for r in RULES)] if f"| `{i}` |" not in reference]
    assert missing == []


def _problem_ids_in_code() -> set[str]:
    """The rule ids of every `Problem(...)` the code constructs (the third argument, or `rule=`)."""
    ids = set()
    for path in (ROOT / "runner").rglob("*.py"):
        if path == ROOT / "runner/plan/types.py":  # reads problems back from plan.json
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Problem":
                rule = (
                    node.args[2]
                    if len(node.args) > 2
                    else next((k.value for k in node.keywords if k.arg == "rule"), None)
                )
                assert isinstance(rule, ast.Constant), f"{path}:{node.lineno}: a Problem's rule is a literal id"
                ids.add(rule.value)
    return ids


def test_every_problem_the_code_raises_is_declared_and_every_declared_one_is_raised():
    assert _problem_ids_in_code() == set(CHECKS)
