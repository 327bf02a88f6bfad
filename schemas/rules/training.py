"""Batch and schedule rules: batch arithmetic, packing, warm-up, and when to evaluate and save."""

from __future__ import annotations

from typing import Iterable

from ..objectives import facts
from ..recipe import Recipe
from .core import Finding, rule


@rule("batch-divisibility", "global_batch_size must equal micro_batch_size × gradient accumulation × world size.")
def batch_divisibility(r: Recipe) -> Iterable[Finding]:
    t, world = r.training, r.hardware.world_size
    if t.micro_batch_size == "auto":
        if t.global_batch_size % world:
            yield (
                ("training", "global_batch_size"),
                (
                    f"global_batch_size {t.global_batch_size} is not divisible by the world size {world} "
                    f"({r.hardware.gpus_per_node} per node × {r.hardware.nodes} nodes)"
                ),
            )
        return
    per_step = t.micro_batch_size * world
    if t.global_batch_size % per_step:
        lower = t.global_batch_size // per_step * per_step
        options = [str(x) for x in (lower, lower + per_step) if x > 0]
        yield (
            ("training", "global_batch_size"),
            (
                f"global_batch_size {t.global_batch_size} is not a multiple of micro_batch_size × world size = "
                f"{t.micro_batch_size} × {world} = {per_step}, so gradient accumulation would not be a whole number; "
                f"use {' or '.join(options)}"
            ),
        )


@rule("warmup-steps-and-ratio", "Give warmup_steps or warmup_ratio, not both.")
def warmup_steps_and_ratio(r: Recipe) -> Iterable[Finding]:
    if r.training.warmup_steps is not None and r.training.warmup_ratio is not None:
        yield ("training", "warmup_steps"), "both `warmup_steps` and `warmup_ratio` are set; keep one"


@rule("packing-needs-sft", "Packing applies to SFT and pretraining only.")
def packing_needs_sft(r: Recipe) -> Iterable[Finding]:
    if r.training.packing and not facts(r.objective.kind).packing:
        yield (
            ("training", "packing"),
            f"'{r.objective.kind}' compares whole sequences, which packing would mix; set `packing: false`",
        )


@rule("padding-free-needs-sft", "Padding-free batches apply to SFT and pretraining only.")
def padding_free_needs_sft(r: Recipe) -> Iterable[Finding]:
    if r.training.padding_free is True and not facts(r.objective.kind).packing:
        yield (
            ("training", "padding_free"),
            f"TRL 1.16's '{r.objective.kind}' trainer has no padding-free batches (its DPO trainer turns the "
            "setting off with a warning since a refactor); remove `padding_free`",
        )


@rule("packing-keeps-documents-apart", "Packing needs padding-free rows, whose position ids keep documents apart.")
def packing_keeps_documents_apart(r: Recipe) -> Iterable[Finding]:
    if r.training.packing and r.training.padding_free is False:
        yield (
            ("training", "padding_free"),
            "TRL packs without padding-free rows only with its 'wrapped' strategy, whose documents attend across "
            "their boundaries; remove `padding_free: false`, or set `packing: false`",
        )


@rule("steps-or-per-epoch", "Evaluate (or save) every N steps or N times per epoch, not both.")
def steps_or_per_epoch(r: Recipe) -> Iterable[Finding]:
    t = r.training
    for steps, per_epoch in (("eval_every", "evals_per_epoch"), ("save_every", "saves_per_epoch")):
        if getattr(t, steps) and getattr(t, per_epoch):
            yield ("training", per_epoch), f"`{steps}` is also set and would win; keep one of them"


@rule("per-epoch-needs-epochs", "Evaluations or saves per epoch count epochs: they need `epochs`, not `max_steps`.")
def per_epoch_needs_epochs(r: Recipe) -> Iterable[Finding]:
    t = r.training
    if t.max_steps is None:
        return
    for field, steps in (("evals_per_epoch", "eval_every"), ("saves_per_epoch", "save_every")):
        if getattr(t, field):
            yield (
                ("training", field),
                f"`max_steps` ends the run by steps, so an epoch's length is unknown here; use `{steps}` (steps) or "
                "drop `max_steps` and set `epochs`",
            )
