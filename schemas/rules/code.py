"""The code a recipe would run: reward functions from files or modules, and lm-eval task files (which may carry
Python through `!function` and `include`). Validating names them by their fields and runs none of it; `recipe run`
and `recipe eval` run it only with `--trust-code` (runner/common/consent.py reads the task files for `!function`)."""

from __future__ import annotations

from typing import Iterable, Iterator

from ..recipe import Recipe
from .core import Finding, rule

CODE_FLAG = "--trust-code"


def task_files(r: Recipe) -> Iterator[tuple[tuple, str]]:
    """(field, path) of each `lm-eval` task given as a YAML file (a name is the harness's own task)."""
    for i, task in enumerate(r.evaluation.tasks):
        if task.kind == "lm-eval" and task.task and task.task.endswith((".yaml", ".yml")):
            yield ("evaluation", "tasks", i, "task"), task.task


def reward_code(r: Recipe) -> Iterator[tuple[tuple, str, str]]:
    """(field, entry, what runs) of each reward function that is not one the runner ships."""
    for i, name in enumerate(getattr(r.objective, "reward_functions", None) or ()):
        module, sep, function = name.partition(":")
        if sep:
            what = f"the file {module}" if module.endswith(".py") else f"the Python module `{module}`"
            yield ("objective", "reward_functions", i), name, f"function `{function}` of {what}"


@rule(
    "recipe-runs-code",
    "A reward function from a file or module, or an lm-eval task file (which may hold `!function` code), is code "
    "the recipe runs: `recipe run` and `recipe eval` run it only with `--trust-code` (a warning; `recipe validate "
    "--no-code` makes it an error).",
    severity="warning",
)
def recipe_runs_code(r: Recipe) -> Iterable[Finding]:
    for path, _, what in reward_code(r):
        yield path, f"runs Python code: {what}; `recipe run` runs it only with {CODE_FLAG}"
    for path, file in task_files(r):
        yield (
            path,
            f"{file} is an lm-evaluation-harness task file, which can run Python (`!function`, `include`); "
            f"`recipe run` and `recipe eval` list the code it names and load it only with {CODE_FLAG}",
        )
