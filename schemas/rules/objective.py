"""Objective rules: the data each objective reads, its rewards and generations, and its own settings."""

from __future__ import annotations

from typing import Iterable

from ..datasets import FORMATS
from ..objectives import DPOObjective, GRPOObjective, RLOOObjective, facts
from ..recipe import Recipe
from ..yamlsource import dotted
from .core import Finding, dataset_entries, rule


@rule("objective-dataset-format", "Each objective reads certain dataset formats (e.g. DPO needs preference pairs).")
def objective_dataset_format(r: Recipe) -> Iterable[Finding]:
    families = facts(r.objective.kind).families
    fitting = [name for name, f in FORMATS.items() if f.family in families]
    for path, entry in dataset_entries(r):
        if entry.spec.family not in families:
            yield (
                path + ("format",),
                (
                    f"objective '{r.objective.kind}' cannot train on format '{entry.format}' "
                    f"({entry.spec.family} rows); "
                    f"it reads: {', '.join(fitting)}"
                ),
            )


@rule("online-rl-reward-source", "GRPO and RLOO need a reward model or reward functions.")
def online_rl_reward_source(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if facts(o.kind).generates and not o.reward_model and not o.reward_functions:
        yield (
            ("objective",),
            (
                f"'{o.kind}' scores its own generations: set `reward_model:` (e.g. the output "
                f"directory of a `kind: reward` "
                "recipe) or `reward_functions:`"
            ),
        )


@rule("online-rl-reward-weights", "GRPO/RLOO reward_weights has one weight per reward source.")
def online_rl_reward_weights(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if facts(o.kind).generates and o.reward_weights is not None:
        n = (1 if o.reward_model else 0) + len(o.reward_functions)
        if len(o.reward_weights) != n:
            yield (
                ("objective", "reward_weights"),
                f"{len(o.reward_weights)} weights given for {n} reward sources (reward model first, then functions)",
            )


@rule(
    "online-rl-num-generations",
    "GRPO/RLOO sample at least 2 completions per prompt, and that number divides the generation batch.",
)
def online_rl_num_generations(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if not isinstance(o, (GRPOObjective, RLOOObjective)):
        return
    if o.num_generations < 2:
        yield (
            ("objective", "num_generations"),
            (
                f"num_generations is {o.num_generations}; group-relative advantages need at least 2 "
                f"completions per prompt"
            ),
        )
        return
    batch = o.generation_batch_size or r.training.global_batch_size
    name = "objective.generation_batch_size" if o.generation_batch_size else "training.global_batch_size"
    if batch % o.num_generations:
        yield (
            ("objective", "num_generations"),
            (
                f"num_generations {o.num_generations} does not divide the generation batch ({name} = {batch}); "
                f"choose a divisor of {batch} or a batch that is a multiple of {o.num_generations}"
            ),
        )


@rule(
    "loss-scope-vs-format",
    "assistant_only_loss needs conversations; completion_only_loss needs prompt-completion rows.",
)
def loss_scope_vs_format(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if o.kind != "sft":
        return
    for path, entry in dataset_entries(r):
        family = entry.spec.family
        if o.assistant_only_loss is True and family != "conversation":
            yield (
                ("objective", "assistant_only_loss"),
                (
                    f"loss on assistant turns needs conversations, but {dotted(path)} is format '{entry.format}' "
                    f"({family} rows); remove `assistant_only_loss` (for prompt-completion rows `completion_only_loss` "
                    "does the same)"
                ),
            )
            return
        if o.completion_only_loss is True and family != "prompt-completion":
            yield (
                ("objective", "completion_only_loss"),
                (
                    f"loss on completions needs prompt-completion rows, but {dotted(path)} is format '{entry.format}' "
                    f"({family} rows); remove `completion_only_loss` (for conversations, `assistant_only_loss` does "
                    "the same)"
                ),
            )
            return


@rule("dpo-loss-weights-length", "DPO loss_weights has one weight per loss name.")
def dpo_loss_weights_length(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if isinstance(o, DPOObjective) and o.loss_weights is not None and len(o.loss_weights) != len(o.loss):
        yield (
            ("objective", "loss_weights"),
            f"{len(o.loss_weights)} weights for {len(o.loss)} losses ({', '.join(o.loss)}); give one weight per loss",
        )


@rule("kto-micro-batch", "KTO needs at least 2 sequences per forward pass to estimate its KL term.")
def kto_micro_batch(r: Recipe) -> Iterable[Finding]:
    fewest = facts(r.objective.kind).min_micro_batch
    if r.training.micro_batch_size != "auto" and r.training.micro_batch_size < fewest:
        yield (
            ("training", "micro_batch_size"),
            "KTO estimates its KL term from other rows of the micro batch; with 1 it equals the "
            "implied reward. Use 2 or more",
        )


@rule(
    "neftune-with-packing",
    "NEFTune scales its noise by the row's length: packed or padding-free rows give each document less.",
    severity="warning",
)
def neftune_with_packing(r: Recipe) -> Iterable[Finding]:
    o = r.objective
    if getattr(o, "neftune_noise_alpha", None) and (r.training.packing or r.training.padding_free is True):
        yield (
            ("objective", "neftune_noise_alpha"),
            "noise is alpha / sqrt(row length × hidden size), and a packed row holds several documents, so each gets "
            "less noise than alone (by the square root of the row's length over its own); raise alpha or turn "
            "packing off to match unpacked NEFTune",
        )
