"""Evaluation rules: eval data for evaluations during training, and the `evaluation` section's tasks."""

from __future__ import annotations

from typing import Iterable

from ..recipe import Recipe
from .core import Finding, rule


@rule("eval-without-data", "Evaluation every N steps (or N times per epoch) needs eval data or eval_fraction.")
def eval_without_data(r: Recipe) -> Iterable[Finding]:
    if r.datasets.eval or r.datasets.eval_fraction is not None:
        return
    for field in ("eval_every", "evals_per_epoch"):
        if getattr(r.training, field):
            yield (
                ("training", field),
                "there is nothing to evaluate on: add `datasets.eval` or `datasets.eval_fraction`",
            )


@rule("eval-on-start-without-data", "An evaluation before the first step needs eval data.")
def eval_on_start_without_data(r: Recipe) -> Iterable[Finding]:
    if r.training.eval_on_start is True and not r.datasets.eval and r.datasets.eval_fraction is None:
        yield (
            ("training", "eval_on_start"),
            "there is nothing to evaluate on: add `datasets.eval` or `datasets.eval_fraction`",
        )


@rule(
    "win-rate-needs-reward-model",
    "A `win-rate` evaluation task needs a reward model: its own `reward_model` or `objective.reward_model`.",
)
def win_rate_needs_reward_model(r: Recipe) -> Iterable[Finding]:
    for i, task in enumerate(r.evaluation.tasks):
        if task.kind == "win-rate" and not task.reward_model and not getattr(r.objective, "reward_model", None):
            yield (
                ("evaluation", "tasks", i),
                "nothing scores the answers: set `reward_model` (a reward run's output directory or a Hub id)",
            )


@rule("eval-task-names-unique", "Each evaluation task has its own name (results are kept by name).")
def eval_task_names_unique(r: Recipe) -> Iterable[Finding]:
    seen: dict[str, int] = {}
    for i, task in enumerate(r.evaluation.tasks):
        if task.label in seen:
            yield (
                ("evaluation", "tasks", i),
                f"task {i} is named '{task.label}' like task {seen[task.label]}; give one a different `name`",
            )
        seen.setdefault(task.label, i)


@rule("eval-needs-tasks", "`evaluation.at_end` and `compare_base` need at least one task.")
def eval_needs_tasks(r: Recipe) -> Iterable[Finding]:
    e = r.evaluation
    for flag in ("at_end", "compare_base"):
        if getattr(e, flag) and not e.tasks:
            yield ("evaluation", flag), "there is nothing to evaluate: add `evaluation.tasks`"


@rule(
    "vllm-serves-lora-or-full",
    "vLLM generates with LoRA adapters and whole models only.",
)
def vllm_serves_lora_or_full(r: Recipe) -> Iterable[Finding]:
    if r.evaluation.backend == "vllm" and r.adapter.kind not in ("lora", "full"):
        yield (
            ("evaluation", "backend"),
            f"vLLM cannot apply a {r.adapter.kind} adapter; use `backend: transformers`, or evaluate the merged "
            "model (`recipe merge`, then `recipe eval MERGED_DIR`)",
        )
