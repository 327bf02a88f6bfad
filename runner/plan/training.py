"""How the training loop runs: evaluation and checkpoint schedules, which checkpoints are kept, the baseline
evaluation, the tokens the loss is computed on, TF32 — each decided once, as a typed value with its decision, before
the TRL arguments are rendered from them (runner/plan/arguments.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from schemas import Recipe
from schemas.hardware import HardwareProfile
from schemas.objectives import facts

from .precision import decide_tf32
from .types import Decision

KEEP_LAST = 2  # checkpoints `save_total_limit: auto` keeps (plus the best by eval loss)


@dataclass(frozen=True)
class Schedule:
    """When something happens: every `steps` steps (a fraction below 1: of the run's steps), each epoch, or never."""

    strategy: str  # steps | epoch | no
    steps: Optional[float] = None

    def args(self, what: str) -> dict[str, Any]:
        """`{what}_strategy` (and `{what}_steps`) for TrainingArguments."""
        if self.strategy == "steps":
            return {f"{what}_strategy": "steps", f"{what}_steps": self.steps}
        return {f"{what}_strategy": self.strategy}


@dataclass(frozen=True)
class LossScope:
    """Which tokens the loss is computed on."""

    assistant_only: bool  # SFTConfig.assistant_only_loss
    completion_only: bool  # SFTConfig.completion_only_loss
    trains_on: str  # in words, for the plan


@dataclass(frozen=True)
class Loop:
    """The training loop's decided settings."""

    evaluates: bool  # the recipe has eval data
    eval: Schedule
    save: Schedule
    eval_on_start: bool  # one evaluation before the first step: the baseline for every later one
    save_total_limit: Optional[int]  # checkpoints kept; None keeps every one
    best_by_eval_loss: bool  # also keep the checkpoint with the lowest eval loss (and load it at the end)
    loss: LossScope
    tf32: Optional[bool]  # None: not set (PyTorch's default)


def schedule(every: Optional[int], per_epoch: Optional[int], epochs: float) -> Schedule:
    """Every N steps, N times per epoch, or per epoch.

    N times per epoch is a fraction of the run's steps, which transformers takes as an `*_steps` below 1 (the run's
    total steps times it, rounded up); once per epoch, or a run too short for the fraction, is the epoch strategy.
    """
    if every:
        return Schedule("steps", every)
    if per_epoch and per_epoch > 1 and per_epoch * epochs > 1:
        return Schedule("steps", 1 / (per_epoch * epochs))
    return Schedule("epoch")


def sft_data_family(r: Recipe) -> str:
    """conversation, prompt-completion or text: what an SFT recipe's sources hold (the first that is not text)."""
    families = [e.spec.family for e in (*r.datasets.train, *r.datasets.eval)]
    return next((f for f in families if f != "text"), "text")


def loss_scope(r: Recipe) -> LossScope:
    """The tokens the loss is computed on: SFT's depend on its data and settings, every other objective's on its
    kind."""
    if r.objective.kind != "sft":
        return LossScope(False, False, facts(r.objective.kind).trains_on)
    o, family = r.objective, sft_data_family(r)
    if family == "conversation":
        if o.assistant_only_loss if o.assistant_only_loss != "auto" else True:
            return LossScope(
                True, False, "the assistant's turns, each with its end-of-turn token (not the user's or the template's)"
            )
        return LossScope(
            False, False, "every token of each conversation: the user's turns and the template's tokens too"
        )
    if family == "prompt-completion":
        if o.completion_only_loss if o.completion_only_loss != "auto" else True:
            return LossScope(False, True, "the completion of each prompt-completion row (not the prompt)")
        return LossScope(False, False, "every token of each row: prompt and completion")
    return LossScope(False, False, "every token of the text")


def decide_loop(r: Recipe, hw: HardwareProfile, out: list[Decision]) -> Loop:
    """The loop's settings, with a decision for each that the recipe left to the plan."""
    t = r.training
    evaluates = bool(r.datasets.eval or r.datasets.eval_fraction)
    keep_all, limit_auto = t.save_total_limit == "all", t.save_total_limit == "auto"
    loop = Loop(
        evaluates=evaluates,
        eval=schedule(t.eval_every, t.evals_per_epoch, t.epochs) if evaluates else Schedule("no"),
        save=schedule(t.save_every, t.saves_per_epoch, t.epochs),
        eval_on_start=evaluates if t.eval_on_start == "auto" else t.eval_on_start,
        save_total_limit=None if keep_all else (KEEP_LAST if limit_auto else t.save_total_limit),
        best_by_eval_loss=limit_auto and evaluates,
        loss=loss_scope(r),
        tf32=decide_tf32(r, hw, out),
    )
    out.append(Decision("trained tokens", r.objective.kind, loop.loss.trains_on))
    if limit_auto:
        best = " and the one with the lowest eval loss" if loop.best_by_eval_loss else ""
        out.append(Decision("checkpoints kept", KEEP_LAST, f"the last {KEEP_LAST}{best}"))
    _explain_inputs(r, out)
    for what, sched, per_epoch in (("eval", loop.eval, t.evals_per_epoch), ("save", loop.save, t.saves_per_epoch)):
        if per_epoch and isinstance(sched.steps, float):
            out.append(
                Decision(
                    f"{what}_steps",
                    round(sched.steps, 6),
                    f"{per_epoch} per epoch over {t.epochs:g} epoch(s): every {sched.steps:.4g} of the run's "
                    "steps (transformers rounds the product up to whole steps)",
                )
            )
    start_from = getattr(r.adapter, "start_from", None)
    if start_from:
        reference = " and, frozen, as the reference model" if facts(r.objective.kind).reference_model else ""
        out.append(Decision("adapter start", start_from, f"training continues from this adapter{reference}"))
    if t.eval_on_start == "auto":
        why = "a baseline before the first step, for every later evaluation" if evaluates else "no eval data"
        out.append(Decision("eval_on_start", loop.eval_on_start, why))
    return loop


def _explain_inputs(r: Recipe, out: list[Decision]) -> None:
    """Decisions about what goes into the model: added special tokens, and the length an online-RL run assumes."""
    if r.model.special_tokens.all:
        if r.adapter.kind == "full":
            why = "set on the tokenizer; any the vocabulary lacks are added and their new embedding rows train"
        else:
            why = "set on the tokenizer; an adapter cannot train new embedding rows, so only a pad token may be new"
        out.append(Decision("special tokens", r.model.special_tokens.all, why))
    if facts(r.objective.kind).generates:
        out.append(
            Decision(
                "max_length",
                r.training.max_length,
                f"TRL's {r.objective.kind} trainer takes no prompt limit: prompts go in whole and "
                f"objective.max_completion_length ({r.objective.max_completion_length}) caps each completion; "
                "training.max_length is the prompt-plus-completion length the memory estimate assumes",
            )
        )
