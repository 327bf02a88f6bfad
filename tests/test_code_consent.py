"""Code a recipe names (reward functions from files or modules, lm-eval task files' `!function`) runs only with
`--trust-code`: `recipe validate` names each piece, `recipe run` and `recipe eval` refuse without consent before
anything is imported, and the training process refuses reward code without it too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "IMPORTED"


def _evil(folder: Path) -> Path:
    """evil.py (writes a sentinel file when imported), a task file whose `include` carries `!function evil.fn`,
    and its data file missing, so that even a run with consent stops before training."""
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(folder / SENTINEL)!r}).write_text('x')\n"
        "def fn(docs):\n    return docs\n"
        "def reward(completions, **kwargs):\n    return [0.0] * len(completions)\n"
    )
    (folder / "base.yaml").write_text(
        "dataset_path: json\ndataset_kwargs:\n  data_files: {test: none.jsonl}\n"
        "output_type: generate_until\ntest_split: test\ndoc_to_target: '{{a}}'\n"
        "process_docs: !function evil.fn\n"
    )
    (folder / "task.yaml").write_text("task: colors\ninclude: base.yaml\ndoc_to_text: '{{q}}'\n")
    return folder


def _recipe(folder: Path, *, reward: str = "evil.py:reward", task: str = "task.yaml") -> Path:
    _evil(folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"version: 1\nextends: {ROOT}/recipes/tiny/rloo-lora.yaml\nname: carries-code\n"
        f"output:\n  dir: {folder / 'out'}\n"
        f"objective:\n  reward_functions: [mentions_color, '{reward}']\n"
        f"evaluation:\n  at_end: true\n  tasks:\n    - kind: lm-eval\n      task: {task}\n"
    )
    return recipe


def test_validate_names_each_piece_of_code_at_its_field(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["validate", str(recipe), "--format", "json"]) == 0
    found = [d for d in json.loads(capsys.readouterr().out) if d["rule"] == "recipe-runs-code"]
    assert [(d["field"], d["line"], d["severity"]) for d in found] == [
        ("objective.reward_functions.1", 7, "warning"),
        ("evaluation.tasks.0.task", 12, "warning"),
    ], found
    assert "evil.py" in found[0]["message"] and "--trust-code" in found[0]["message"]
    assert "task.yaml" in found[1]["message"]
    assert not (tmp_path / SENTINEL).exists()


def test_validate_no_code_refuses_recipes_that_carry_code(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["validate", "--no-code", str(recipe)]) == 1
    err = capsys.readouterr().out
    assert "error: objective.reward_functions.1:" in err and "error: evaluation.tasks.0.task:" in err
    assert main(["validate", "--no-code", f"{ROOT}/recipes/tiny/sft-lora.yaml"]) == 0


def test_shipped_reward_names_and_registry_tasks_need_no_consent(tmp_path):
    from runner.common.consent import consent_problems
    from schemas import load

    recipe = _recipe(tmp_path, reward="exact_match", task="hellaswag")
    loaded = load(recipe)
    assert loaded.ok and not [d for d in loaded.diagnostics if d.rule == "recipe-runs-code"]
    assert consent_problems(loaded.recipe, False, evaluation=True) == []


def test_run_without_consent_refuses_before_anything_is_imported(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert not (tmp_path / SENTINEL).exists(), "the task's !function code ran without --trust-code"
    assert not (tmp_path / "out").exists()
    lines = [line for line in err.splitlines() if ": error: " in line]
    reward = next(line for line in lines if "objective.reward_functions.1" in line)
    assert reward.startswith(f"{recipe}:7:") and "evil.py:reward" in reward and "pass --trust-code" in reward
    task = next(line for line in lines if "evaluation.tasks.0.task" in line)
    assert task.startswith(f"{recipe}:12:") and "pass --trust-code" in task
    assert f"{tmp_path / 'base.yaml'}:7: !function evil.fn (imports {tmp_path / 'evil.py'})" in task


def test_task_code_is_read_without_importing_and_includes_are_followed(tmp_path):
    from runner.common.consent import task_code

    _evil(tmp_path)
    (tmp_path / "loop.yaml").write_text("task: loop\ninclude: [loop.yaml, task.yaml]\nx: !function pkg.mod.fn\n")
    found = [p.line() for p in task_code(str(tmp_path / "loop.yaml"))]
    assert found == [
        f"{tmp_path / 'loop.yaml'}:3: !function pkg.mod.fn (imports {tmp_path / 'pkg/mod.py'}, or else the module "
        "`pkg.mod`)",
        f"{tmp_path / 'base.yaml'}:7: !function evil.fn (imports {tmp_path / 'evil.py'})",
    ]
    assert not (tmp_path / SENTINEL).exists()


def test_run_with_consent_lets_the_harness_load_the_task_code(tmp_path, capsys):
    pytest.importorskip("lm_eval")
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe), "--trust-code"]) == 1  # the task's data file is missing: refused after
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "evaluation.at_end" in errors[0] and "--trust-code" not in errors[0], errors
    assert (tmp_path / SENTINEL).exists(), "with --trust-code the harness loads the task (and its code)"


def test_eval_without_consent_refuses_a_task_file_with_code(tmp_path, capsys):
    from schemas import load

    _evil(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    loaded = load(ROOT / "recipes/tiny/sft-lora.yaml", [f"output.dir={out}"])
    (out / "config.json").write_text("{}")  # a model directory as far as finding it goes; no model is loaded
    (out / "recipe.lock.yaml").write_text(yaml.safe_dump({"recipe": loaded.recipe.model_dump(mode="json")}))
    assert main(["eval", str(out), "--tasks", str(tmp_path / "task.yaml"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "!function evil.fn" in err and "pass --trust-code" in err and "Traceback" not in err
    assert not (tmp_path / SENTINEL).exists()


def test_training_process_refuses_reward_code_without_consent(tmp_path, capsys):
    """Started from launch.sh or Slurm without `recipe run`: the training process refuses too, before training."""
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe), "--dry-run", "--set", "training.max_steps=1"]) == 0  # launch files only
    launch = tmp_path / "out" / "launch"
    assert "--trust-code" not in (launch / "launch.sh").read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "runner.run.train", str(launch / "plan.json")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1 and "evil.py:reward" in proc.stderr and "pass --trust-code" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / SENTINEL).exists()
    assert main(["run", str(recipe), "--dry-run", "--trust-code"]) == 0
    assert "--trust-code" in (launch / "launch.sh").read_text()
