"""`recipe eval RECIPE|OUTPUT_DIR [--tasks ...] [--base]`: measure what a run learned, before and after.

The tasks are the recipe's `evaluation.tasks` (from the recipe file, or from the lock file of the output directory),
or those named with `--tasks`: a recipe task's name, or an lm-evaluation-harness task (name or YAML file). Every
task is checked, and its data read, before any model loads; then the trained output is loaded once, as the run
trained it (runner.common.trained.open_trained), and each task runs on it. With `--base` the same tasks also run on
the base model: the adapter switched off (the very weights, quantization and dtype training started from), or, for
a full fine-tune, the recipe's model loaded beside. Results go to OUTPUT_DIR/eval/results.json (the run summary
and `recipe runs` show them) and each row's answer and score to OUTPUT_DIR/eval/samples/.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from runner.common import evalresults
from runner.common.trained import OutputError, Trained, inspect
from schemas import Recipe
from schemas.evaluation import EvalTask, Evaluation
from schemas.objectives import facts
from schemas.problems import Problem

Log = Callable[[str], None]


class EvalRefused(OutputError):
    """Tasks that cannot run; refused before any model loads. The message lists each problem and what can run."""


@dataclass
class Target:
    trained: Trained
    recipe: Optional[Recipe]  # the recipe file's (its evaluation settings as they are now), else the lock's
    output_dir: Path
    where: str  # the recipe file or the lock file, for messages


def find_target(path: str, overrides: tuple = ()) -> Target:
    """A recipe file (its output directory is evaluated) or an output/model directory."""
    if Path(path).suffix in (".yaml", ".yml") and Path(path).is_file():
        from schemas import load

        loaded = load(path, list(overrides))
        if not loaded.ok:
            errors = "\n  ".join(d.text() for d in loaded.errors)
            raise OutputError(f"{path}: the recipe is invalid:\n  {errors}")
        recipe = loaded.recipe
        out = Path(recipe.output_dir)
        if not (out / "recipe.lock.yaml").is_file():
            raise OutputError(
                f"{path}: no finished run in {out} (no recipe.lock.yaml); train it first with `recipe run {path}`, "
                "or name a model directory"
            )
        return Target(inspect(str(out)), recipe, out, path)
    trained = inspect(path)
    return Target(trained, trained.recipe, Path(trained.path), str(trained.lock_path or path))


def settings_of(target: Target, **changes: Any) -> Evaluation:
    """The recipe's evaluation settings, with the command line's (those not None) over them."""
    evaluation = target.recipe.evaluation if target.recipe else Evaluation()
    changes = {k: v for k, v in changes.items() if v is not None}
    if "generation" in changes:
        changes["generation"] = evaluation.generation.model_copy(update=changes["generation"])
    return evaluation.model_copy(update=changes)


def select_tasks(target: Target, names: Optional[list[str]]) -> list[EvalTask]:
    """The recipe's tasks, or those `names` picks: a recipe task by name, else a harness task (name or YAML file)."""
    from runner.after.harness import is_file_task

    own = {t.label: t for t in (target.recipe.evaluation.tasks if target.recipe else [])}
    if names is None:
        if not own:
            raise OutputError(
                f"{target.where}: the recipe has no `evaluation.tasks`; add some, or name lm-evaluation-harness "
                "tasks with --tasks (e.g. --tasks hellaswag or --tasks path/to/task.yaml)"
            )
        return list(own.values())
    chosen = []
    for name in names:
        if name in own:
            chosen.append(own[name])
        else:
            task = str(Path(name).resolve()) if is_file_task(name) else name
            chosen.append(EvalTask(kind="lm-eval", task=task))
    return chosen


@dataclass
class Prepared:
    task: EvalTask
    data: Any = None  # evaltasks.TaskData of a built-in task
    harness: Any = None  # harness.HarnessTask
    scorer_source: Optional[str] = None  # win-rate: the reward model


def _reward_model(task: EvalTask, recipe: Optional[Recipe]) -> Optional[str]:
    return task.reward_model or (getattr(recipe.objective, "reward_model", None) if recipe else None)


def _check_backend(settings: Evaluation, tasks: list[EvalTask]) -> list[str]:
    if settings.backend != "vllm" or not any(t.kind in ("exact-match", "win-rate") for t in tasks):
        return []
    import importlib.util

    import torch

    missing = []
    if importlib.util.find_spec("vllm") is None:
        missing.append("vLLM is not installed (pip install vllm)")
    if not torch.cuda.is_available():
        missing.append("this machine has no CUDA GPU")
    if not missing:
        return []
    return [f"evaluation.backend: vllm generates on a GPU with vLLM installed; {' and '.join(missing)}. "
            "Use `backend: transformers` (or --backend transformers)"]  # fmt: skip


def check_tasks(
    tasks: list[EvalTask], recipe: Optional[Recipe], settings: Evaluation, registry: Any, trust_code: bool = False
) -> tuple[list[Prepared], list[str]]:
    """(the tasks that can run, with their data read; a line for each that cannot), loading no model. A task file
    that names Python code (`!function`) is refused unless `trust_code`, before the harness reads it."""
    from runner.after import evaltasks, harness
    from runner.common.consent import task_refusal
    from runner.data.sources import DataError

    problems = _check_backend(settings, tasks)
    ready: list[Prepared] = []
    own = recipe.evaluation.tasks if recipe else []
    for task in tasks:
        try:
            if task.kind == "lm-eval":
                refusal = "" if trust_code else task_refusal(task.label, task.task)
                if refusal:
                    problems.append(refusal)
                    continue
                num_fewshot = task.num_fewshot if task.num_fewshot is not None else settings.num_fewshot
                ready.append(Prepared(task, harness=harness.prepare_task(task.label, task.task, num_fewshot, registry)))
                continue
            # a built-in task comes from the recipe (--tasks adds harness tasks only); its reward model is set
            # (rule win-rate-needs-reward-model)
            data = evaltasks.read_rows(task, next(i for i, t in enumerate(own) if t is task), settings.limit)
            scorer = _reward_model(task, recipe) if task.kind == "win-rate" else None
            if scorer and scorer.startswith(("/", ".")) and not Path(scorer).is_dir():
                raise OutputError(f"task '{task.label}': reward model {scorer} does not exist")
            ready.append(Prepared(task, data=data, scorer_source=scorer))
        except (harness.HarnessError, DataError, OutputError) as exc:
            problems.append(str(exc))
    return ready, problems


def prepare(
    tasks: list[EvalTask], recipe: Optional[Recipe], settings: Evaluation, registry: Any, trust_code: bool = False
) -> list[Prepared]:
    """Every task checked and its data read; raises EvalRefused listing every problem, before any model loads."""
    ready, problems = check_tasks(tasks, recipe, settings, registry, trust_code)
    if problems:
        listed = ", ".join(p.task.label for p in ready) or "none"
        recipe_tasks = ", ".join(t.label for t in (recipe.evaluation.tasks if recipe else [])) or "none"
        raise EvalRefused(
            "\n".join(problems) + f"\nnothing was evaluated; tasks that can run: {listed} (the recipe's tasks: "
            f"{recipe_tasks}; lm-evaluation-harness tasks by name or YAML file with --tasks)"
        )
    return ready


def check_at_end(recipe: Recipe, trust_code: bool = False) -> list[Problem]:
    """What would stop a run's evaluation at its end, found before training starts (a problem per line)."""
    from runner.after.harness import Registry

    _, problems = check_tasks(recipe.evaluation.tasks, recipe, recipe.evaluation, Registry(), trust_code)
    return [
        Problem(("evaluation", "at_end"), line, "evaluation-at-end")
        for problem in problems
        for line in problem.splitlines()
    ]


def uses_chat_template(settings: Evaluation, task: EvalTask, recipe: Optional[Recipe]) -> bool:
    """Whether prompts go through the chat template: as set, or (auto) as training rendered them."""
    if settings.chat_template != "auto":
        return bool(settings.chat_template)
    if task.kind != "lm-eval" or recipe is None:
        return task.kind != "lm-eval"  # a model without a recipe: the harness's plain prompts
    return any(entry.spec.family != "text" for entry in recipe.datasets.train)


@dataclass
class Report:
    results: dict
    tasks: list[str]
    path: Path

    def table(self) -> str:
        return evalresults.results_table(self.results, self.tasks)


def _write_samples(out: Path, model: str, name: str, samples: list[dict]) -> Path:
    from runner.common.files import write_atomic

    path = out / "eval" / "samples" / f"{model}-{name}.jsonl"
    write_atomic(path, "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in samples))
    return path


class _Runner:
    """Runs prepared tasks on one loaded model."""

    def __init__(self, target: Target, settings: Evaluation, registry: Any, device: str, trust: bool, log: Log):
        self.target, self.settings, self.registry = target, settings, registry
        self.device, self.trust, self.log = device, trust, log
        self._scorers: dict[str, Any] = {}
        self._vllm: Any = None

    def scorer(self, source: str, dtype: str):
        from runner.after.evaltasks import Scorer
        from runner.common.models import load_model, load_tokenizer
        from runner.common.trained import load_reward_model

        if source not in self._scorers:
            self.log(f"loading reward model {source} ...")
            model, tokenizer = load_reward_model(source, dtype, self.trust, self.device)
            if tokenizer is None:  # a Hub id
                tokenizer = load_tokenizer(source, keep_template=True)
                model = load_model(source, dtype=dtype, sequence_classifier=True).to(self.device)
            model.config.pad_token_id = tokenizer.pad_token_id
            self._scorers[source] = Scorer(model.eval(), tokenizer, self.settings.batch_size)
        return self._scorers[source]

    def answerer(self, which: str, model: Any, tokenizer: Any):
        """What generates answers: batched `generate` on the loaded model, or vLLM (`backend: vllm`)."""
        from runner.after import evaltasks
        from runner.common.models import stop_token_ids

        settings, stops = self.settings, stop_token_ids(tokenizer)
        if settings.backend == "vllm":
            if self._vllm is None:
                self.log("starting vLLM ...")
                trained = self.target.trained
                self._vllm = evaltasks.vllm_answerer(trained, trained.path, settings.generation, stops)
            return self._vllm[0 if which == "trained" else 1]
        return lambda prompts: evaltasks.generate(
            model, tokenizer, prompts, settings.generation, settings.batch_size, stops
        )

    def run(self, prepared: Prepared, which: str, model: Any, tokenizer: Any, dtype: str) -> dict:
        from runner.after import evaltasks, harness

        task, settings = prepared.task, self.settings
        chat = uses_chat_template(settings, task, self.target.recipe)
        started = time.monotonic()
        if task.kind == "lm-eval":
            metrics, main, samples = harness.run(prepared.harness, model, tokenizer, settings, chat, self.registry)
            rows = len(samples)
        else:
            renderer = evaltasks.Renderer(tokenizer, chat)
            if task.kind == "exact-match":
                outcome = evaltasks.exact_match_task(prepared.data, renderer, self.answerer(which, model, tokenizer))
            elif task.kind == "preference":
                context = getattr(model.config, "max_position_embeddings", None)
                outcome = evaltasks.preference(prepared.data, model, renderer, settings, context)
            else:
                scorer = self.scorer(prepared.scorer_source, dtype)
                answer = self.answerer(which, model, tokenizer)
                outcome = evaltasks.win_rate(prepared.data, renderer, answer, scorer)
            metrics, main, samples, rows = outcome.metrics, outcome.main, outcome.samples, len(prepared.data.rows)
        seconds = time.monotonic() - started
        return {
            "kind": task.kind,
            "metrics": metrics,
            "main": main,
            "rows": rows,
            "rows_per_second": rows / seconds if seconds > 0 else None,
            "seconds": round(seconds, 3),
            "chat_template": chat,
            "evaluated": time.time(),
            "_samples": samples,
        }


@contextlib.contextmanager
def _base_of(target: Target, model: Any, tokenizer: Any, dtype: str, trust: bool, device: str, log: Log):
    """(model, tokenizer) of the base: the adapter switched off (the weights, quantization and dtype training started
    from), or for a full fine-tune the recipe's model, loaded beside, with the run's tokenizer and template."""
    if target.trained.is_adapter:
        with model.disable_adapter():
            yield model, tokenizer
        return
    if target.recipe is None:
        raise OutputError(f"{target.trained.path}: --base needs the run's lock file, which names the base model")
    from runner.common.models import fit_vocabulary
    from runner.common.trained import load_trained_model

    name = target.recipe.model.name_or_path
    log(f"loading the base model {name} ({dtype}, {device}) ...")
    base = load_trained_model(Trained(name, None, None, name), dtype, trust_remote_code=trust, device=device)
    fit_vocabulary(base, tokenizer)
    yield base, tokenizer
    del base


def evaluate(
    path: str,
    *,
    tasks: Optional[list[str]] = None,
    base: Optional[bool] = None,
    device: Optional[str] = None,
    trust_remote_code: bool = False,
    trust_code: bool = False,
    log: Log,
    **changes: Any,
) -> Report:
    """Check the tasks, load the trained output (and the base), run each task, record the results."""
    from datasets.utils.logging import disable_progress_bar

    from runner.after.harness import Registry
    from runner.common.trained import open_trained, prepare_runtime

    disable_progress_bar()
    target = find_target(path)
    settings = settings_of(target, **changes)
    chosen = select_tasks(target, tasks)
    registry = Registry()
    prepared = prepare(chosen, target.recipe, settings, registry, trust_code)
    with_base = settings.compare_base if base is None else base
    trust = target.trained.remote_code(trust_remote_code)
    device = prepare_runtime(device)
    model, tokenizer = open_trained(target.trained, trust_remote_code=trust, device=device, log=log)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    dtype = dtype if dtype in ("bfloat16", "float16", "float32") else "float32"
    runner = _Runner(target, settings, registry, device, trust, log)
    found: dict[str, dict[str, dict]] = {}
    for which in (["base"] if with_base else []) + ["trained"]:
        context = (
            _base_of(target, model, tokenizer, dtype, trust, device, log)
            if which == "base"
            else contextlib.nullcontext((model, tokenizer))
        )
        with context as (m, t):
            for p in prepared:
                log(f"evaluating the {which} model on {p.task.label} ({p.task.kind}) ...")
                found.setdefault(which, {})[p.task.label] = runner.run(p, which, m, t, dtype)
    if with_base:
        from runner.after.evaltasks import head_to_head, implicit_reward

        objective = target.recipe.objective if target.recipe else None
        # the objective's own beta where it compares with a reference model (DPO, KTO): the run's rewards/margins
        beta = objective.beta if objective is not None and facts(objective.kind).reference_model else None
        for name, entry in found["trained"].items():
            before = found["base"][name]["_samples"]
            if entry["kind"] == "win-rate":
                entry["metrics"]["win_rate_vs_base"] = head_to_head(entry["_samples"], before)
            if entry["kind"] == "preference":
                entry["metrics"].update(implicit_reward(entry["_samples"], before, beta or 1.0))
                entry["main"], entry["beta"] = "reward_accuracy", beta or 1.0
    out = target.output_dir
    trained = target.trained
    descriptions = {
        "trained": f"{trained.adapter_label} {trained.path}" + (f" on {trained.base}" if trained.is_adapter else ""),
        "base": trained.base if trained.is_adapter else target.recipe.model.name_or_path if target.recipe else "",
    }
    for which, entries in found.items():
        for name, entry in entries.items():
            entry["samples"] = str(_write_samples(out, which, name, entry.pop("_samples")))
    results = evalresults.record(out, {which: (descriptions[which], entries) for which, entries in found.items()})
    return Report(results, [p.task.label for p in prepared], evalresults.results_path(out))
