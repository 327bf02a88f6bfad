"""Code a recipe names runs only with the user's consent (`--trust-code`): what it is, found without running it.

A reward function from a file or module (objective.reward_functions) is code; so is an lm-evaluation-harness task
file's `!function module.name` (the harness imports `module.py` from the file's folder when it loads the task),
in the file itself or in a file it `include`s. The task files are read here with a YAML loader that records each
`!function` tag and its line instead of resolving it, and `include`s are followed to other YAML files; nothing is
imported. Without consent `recipe run` and `recipe eval` refuse before anything runs, naming each piece.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from schemas.problems import Problem
from schemas.rules.code import CODE_FLAG, reward_code, task_files


@dataclass(frozen=True)
class TaskCode:
    where: str  # FILE:LINE of the `!function` tag
    function: str  # e.g. utils.process_docs
    imports: str  # what the harness would import for it

    def line(self) -> str:
        return f"{self.where}: !function {self.function} (imports {self.imports})"


class _RecordingLoader(yaml.SafeLoader):
    """Safe YAML where a tag (`!function x.y`) becomes a record of it, never a resolved object."""


def _record(loader: _RecordingLoader, suffix: str, node: yaml.Node) -> object:
    value = loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if suffix == "function":  # the harness's only tag; another one it refuses to load
        loader.found.append((str(value), node.start_mark.line + 1))
    return None


_RecordingLoader.add_multi_constructor("!", _record)


def _read(path: Path) -> tuple[object, list]:
    loader = _RecordingLoader(path.read_text(encoding="utf-8", errors="replace"))
    loader.found = []
    try:
        return loader.get_single_data(), loader.found
    finally:
        loader.dispose()


def _imported(function: str, folder: Path) -> str:
    """What the harness imports for `!function a.b.fn`: a/b.py beside the YAML file, else the module `a.b`."""
    module = function.rpartition(".")[0]
    local = folder.expanduser() / f"{module.replace('.', '/')}.py"
    return str(local) if local.exists() or not module else f"{local}, or else the module `{module}`"


def task_code(path: str) -> list[TaskCode]:
    """Every `!function` of a task YAML file and of the YAML files it includes (cycles followed once). A file that
    cannot be read is left to the harness's own check, which refuses it."""
    pieces: list[TaskCode] = []
    seen: set[Path] = set()
    pending = [Path(path)]
    while pending:
        file = pending.pop(0).resolve()
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        try:
            data, found = _read(file)
        except (OSError, yaml.YAMLError):
            continue
        for function, line in found:
            pieces.append(TaskCode(f"{file}:{line}", function, _imported(function, file.parent)))
        includes = data.get("include") if isinstance(data, dict) else None
        for include in [includes] if isinstance(includes, str) else includes if isinstance(includes, list) else []:
            if isinstance(include, str):
                pending.append(Path(include) if Path(include).is_absolute() else file.parent / include)
    return pieces


def task_refusal(label: str, path: str) -> str:
    """Why a harness task file is refused without consent ("" when it names no code, or names a registry task)."""
    pieces = task_code(path) if path.endswith((".yaml", ".yml")) else []
    if not pieces:
        return ""
    listed = "; ".join(p.line() for p in pieces)
    return f"task '{label}': {path} runs Python code when the harness loads it: {listed}; pass {CODE_FLAG} to run it"


def consent_problems(recipe, trust_code: bool, *, evaluation: bool) -> list[Problem]:
    """Each piece of code the recipe would run, refused without `--trust-code` (`evaluation`: its lm-eval tasks
    run too)."""
    if trust_code:
        return []
    problems = [
        Problem(path, f"`{name}` runs Python code ({what}); pass {CODE_FLAG} to run it", "code-needs-consent")
        for path, name, what in reward_code(recipe)
    ]
    if evaluation:
        for path, file in task_files(recipe):
            pieces = task_code(file)
            if pieces:
                listed = "; ".join(p.line() for p in pieces)
                message = f"{file} runs Python code when the harness loads it: {listed}; pass {CODE_FLAG} to run it"
                problems.append(Problem(path, message, "code-needs-consent"))
    return problems
