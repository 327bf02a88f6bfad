"""lm-evaluation-harness tasks, run in-process on the model `recipe` loaded (`pip install 'recipe[eval]'`).

The harness gets the model object (adapter applied, quantized and in the dtype the run trained with) and the run's
tokenizer with its chat template, through its `HFLM` wrapper; it loads nothing itself. A task is a name from the
harness's registry or a task YAML file; a YAML file's local `data_files` are read relative to the file (the
harness would read them relative to the current directory). Each task is built, and its data loaded, before any
model loads, so that an unknown name or data that cannot be fetched is refused first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from schemas.diagnostics import did_you_mean

INSTALL = "pip install 'recipe[eval]'  (lm-eval)"


class HarnessError(Exception):
    """A harness task that cannot run; the message says why."""


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def is_file_task(task: str) -> bool:
    return task.endswith((".yaml", ".yml"))


def _quiet() -> None:
    for name in ("lm_eval", "lm-eval", "lm_eval.models.huggingface", "lm_eval.api.task", "lm_eval.evaluator"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _anchor_data_files(value: Any, base: Path) -> Any:
    """Relative local `data_files` of a task YAML, made relative to the YAML file's folder."""
    if isinstance(value, str):
        candidate = base / value
        return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value
    if isinstance(value, list):
        return [_anchor_data_files(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _anchor_data_files(v, base) for k, v in value.items()}
    return value


def file_config(path: str) -> dict:
    """A task YAML file as the harness's config dict (its `include`s merged), data files anchored to the file."""
    from lm_eval.tasks._yaml_loader import load_yaml

    if not Path(path).is_file():
        raise HarnessError(f"{path}: no such task file")
    try:
        config = load_yaml(path)
    except Exception as exc:  # YAML errors, a missing include or !function module
        raise HarnessError(f"{path}: cannot be read as a harness task ({type(exc).__name__}: {exc})") from None
    if "task" not in config:
        raise HarnessError(f"{path}: a harness task file names its task with `task:`")
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and "data_files" in kwargs:
        config["dataset_kwargs"] = {**kwargs, "data_files": _anchor_data_files(kwargs["data_files"], Path(path).parent)}
    return config


@dataclass
class HarnessTask:
    label: str
    spec: Union[str, dict]  # a registry name or a file's config
    name: str  # the harness's name for it (results are keyed by it)
    num_fewshot: Optional[int]


class Registry:
    """The harness's task index, built once and only when a task is named rather than given as a file (indexing
    the harness's ~15,000 task files takes seconds)."""

    def __init__(self) -> None:
        self._manager: Any = None
        self._full = False

    def manager(self, full: bool) -> Any:
        from lm_eval.tasks import TaskManager

        if self._manager is None or (full and not self._full):
            _quiet()
            self._manager, self._full = TaskManager(include_defaults=full), full
        return self._manager

    def names(self) -> list[str]:
        m = self.manager(True)
        return sorted(set(m.all_tasks) | set(m.all_groups) | set(m.all_tags))


def prepare_task(label: str, task: str, num_fewshot: Optional[int], registry: Registry) -> HarnessTask:
    """Check that the task exists and that its data loads (downloading it if it must); raises HarnessError."""
    if not installed():
        raise HarnessError(f"task '{label}' is an lm-evaluation-harness task, and lm-eval is not installed: {INSTALL}")
    if is_file_task(task):
        spec: Union[str, dict] = file_config(task)
        name = spec["task"]
        manager = registry.manager(full=False)
    else:
        manager = registry.manager(full=True)
        known = set(manager.all_tasks) | set(manager.all_groups) | set(manager.all_tags)
        if task not in known:
            close = did_you_mean(task, sorted(known))
            raise HarnessError(
                f"'{task}' is not an lm-evaluation-harness task.{close} The harness has {len(known)} tasks, groups "
                "and tags (`recipe eval --list-tasks` lists them); a task of your own is a YAML file "
                "(`task: path/to/task.yaml`)"
            )
        spec = name = task
    _quiet()
    try:
        manager.load([spec])  # builds the task: downloads or reads its data
    except Exception as exc:
        offline = "no network? " if "connect" in str(exc).lower() or "offline" in str(exc).lower() else ""
        raise HarnessError(
            f"task '{label}' cannot load its data ({offline}{type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        ) from None
    return HarnessTask(label, spec, name, num_fewshot)


def _metric_name(key: str) -> Optional[str]:
    metric, _, filter_name = key.partition(",")
    if not filter_name or metric in ("alias", "name", "sample_len"):
        return None
    return metric if filter_name == "none" else f"{metric}/{filter_name}"


def run(task: HarnessTask, model: Any, tokenizer: Any, settings: Any, chat_template: bool, registry: Registry):
    """(metrics, headline metric, samples) of one harness task on `model`."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    _quiet()
    g = settings.generation
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
    gen_kwargs: dict[str, Any] = {"max_gen_toks": g.max_new_tokens, "do_sample": g.temperature > 0}
    if g.temperature > 0:
        gen_kwargs.update(temperature=g.temperature, top_p=g.top_p)
    else:
        gen_kwargs.update(temperature=0.0)
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task.spec],
        num_fewshot=task.num_fewshot,
        limit=settings.limit,
        apply_chat_template=chat_template,
        gen_kwargs=gen_kwargs,
        task_manager=registry.manager(full=not isinstance(task.spec, dict)),
        log_samples=True,
        random_seed=g.seed,
        torch_random_seed=g.seed,
    )
    scores = results["results"].get(task.name) or next(iter(results["results"].values()))
    metrics = {name: value for key, value in scores.items() if (name := _metric_name(key)) is not None}
    metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    main = next((k for k in metrics if not k.endswith("_stderr") and "_stderr/" not in k), next(iter(metrics), ""))
    samples = [
        {
            "doc_id": s.get("doc_id"),
            "context": str(s["arguments"][0][0]) if s.get("arguments") else None,
            "target": str(s.get("target")),
            "response": [str(r) for r in s.get("filtered_resps", [])],
            **{k: s[k] for k in s if k in {m.split("/")[0] for m in metrics}},
        }
        for rows in results.get("samples", {}).values()
        for s in rows
    ]
    return metrics, main, samples
