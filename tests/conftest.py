"""Shared helpers: the contract recipe from the schema issue and a way to load variants of it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from schemas import Loaded, load

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# Nothing is downloaded in the tests: say so before any library reads it (datasets reads it once, at import),
# so a Hub name fails at once instead of after network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FILE = ROOT / "recipes" / "llama3-dpo-qlora.yaml"
# 300 real rows of Anthropic's HH-RLHF (MIT licence, beside it), vendored so that a fresh clone needs nothing else
HH_RLHF = ROOT / "tests" / "fixtures" / "data" / "hh-rlhf-harmless-base-test-300.jsonl"


def example() -> dict:
    """The contract recipe as plain data (a fresh copy each call)."""
    return copy.deepcopy(yaml.safe_load(EXAMPLE_FILE.read_text()))


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in nested data (a missing section is created); the value `DELETE` removes the key."""
    parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


DELETE = object()


@pytest.fixture
def recipe_variant(tmp_path: Path) -> Callable[..., Loaded]:
    """Load the example recipe with `{dotted.path: value}` changes applied."""
    counter = iter(range(10_000))

    def make(changes: dict[str, Any] | None = None, base: dict | None = None) -> Loaded:
        data = copy.deepcopy(base) if base is not None else example()
        for key, value in (changes or {}).items():
            set_path(data, key, value)
        path = tmp_path / f"variant{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load(path)

    return make


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Run `recipe ARGS...` in this process: returns (exit code, stdout, stderr)."""
    from runner.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


class LazyModule:
    """A module imported on first use, so that a test file naming it collects without it installed (the test tier
    that needs no `train` extra): `torch = LazyModule("torch")`, then `torch.float32` imports torch."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


torch = LazyModule("torch")

RECIPE = str(Path(sys.executable).parent / "recipe")


def recipe_process(
    *args: str, env: dict | None = None, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run the installed `recipe` command in a subprocess (from the repository root unless `cwd`), offline."""
    return subprocess.run(
        [RECIPE, *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        input=stdin,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


SECRET = "hf_secret_value_that_must_not_leak_1234"  # in the environment of the shared runs: must reach no file
# The tiny recipes trained once per session, as the README runs them (full length), for every test that reads a
# finished run: name -> (`recipe run` settings, environment, run from a directory that is not the repository).
TRAINED = {
    "sft-lora": (["--set", "output.report_to=[tensorboard]"], {}, True),
    "dpo-qlora": ([], {"HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET}, False),
}


class TrainedRuns:
    """`trained_runs(name)` -> (output dir, the `recipe run` process); trains on first use, once per test session.

    Each run has a folder of its own (ROOT/NAME/run), so `recipe runs ROOT/NAME` lists only it; tests that write
    next to a run (merge, chat) write into their own tmp_path, or into the run folder's `merged`. When the suite
    runs in several worker processes (`pytest -n 2`), the workers share one root: the first to ask for a run trains
    it while holding NAME/.lock, and the others wait for it and read the process it recorded (NAME/process.json)."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def __call__(self, name: str) -> tuple[Path, subprocess.CompletedProcess]:
        if name not in self.done:
            import fcntl
            import json

            folder = self.root / name
            folder.mkdir(parents=True, exist_ok=True)
            record = folder / "process.json"
            with open(folder / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
                if not record.exists():
                    proc = self._train(name, folder)
                    fields = {"args": proc.args, "returncode": proc.returncode}
                    record.write_text(json.dumps({**fields, "stdout": proc.stdout, "stderr": proc.stderr}))
            proc = subprocess.CompletedProcess(**json.loads(record.read_text()))
            assert proc.returncode == 0, proc.stderr[-3000:]
            self.done[name] = (folder / "run", proc)
        return self.done[name]

    def _train(self, name: str, folder: Path) -> subprocess.CompletedProcess:
        sets, env, elsewhere = TRAINED[name]
        cwd = folder / "elsewhere"
        cwd.mkdir()
        recipe = ROOT / "recipes" / "tiny" / f"{name}.yaml"
        out = folder / "run"
        return recipe_process(
            "run", str(recipe), "--set", f"output.dir={out}", *sets, env=env, cwd=cwd if elsewhere else None
        )


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, worker_id) -> TrainedRuns:
    if worker_id == "master":  # one process: a folder of this session's own
        return TrainedRuns(tmp_path_factory.mktemp("trained"))
    # workers of `pytest -n N`: their base folders (popen-gwK) share a parent that is this run's own
    shared = tmp_path_factory.getbasetemp().parent / "trained"
    shared.mkdir(exist_ok=True)
    return TrainedRuns(shared)
