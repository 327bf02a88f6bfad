"""Cross-field rules: one table, each rule an id, a summary and a check over a validated recipe.

A check yields `(path, message)` pairs, which `problems()` makes the project's one `Problem` type (with the
rule's id and severity); the path locates the diagnostic in the recipe's YAML. `recipe validate --format json`
reports the rule id, and `docs/recipe-reference.md` lists the table. Every rule has a failing and a passing test in
`tests/test_rules.py`.

The rules are written by family (one module each); `RULES` below is the table, in the order diagnostics and
the reference list them.
"""

from __future__ import annotations

from ..diagnostics import Diagnostic, located
from ..problems import Problem
from ..recipe import Recipe
from ..yamlsource import Sources
from . import code, data, evaluation, model, objective, precision, training
from .core import Rule, rule

__all__ = ["RULES", "Rule", "check", "problems", "rule"]

RULES: list[Rule] = [
    model.quantization_needs_adapter,
    objective.objective_dataset_format,
    objective.online_rl_reward_source,
    objective.online_rl_reward_weights,
    objective.online_rl_num_generations,
    model.prefix_vs_gradient_checkpointing,
    precision.master_weights_full_only,
    precision.pure_bf16_needs_bf16,
    precision.pure_bf16_vs_deepspeed,
    precision.offload_replaces_optimizer,
    objective.loss_scope_vs_format,
    model.special_tokens_need_trainable_embeddings,
    precision.bnb_8bit_vs_zero3,
    precision.param_offload_needs_zero3,
    precision.offload_needs_zero,
    precision.bf16_needs_ampere,
    precision.flash_attention_needs_ampere,
    precision.flash_attention_vs_float32,
    training.batch_divisibility,
    training.warmup_steps_and_ratio,
    objective.dpo_loss_weights_length,
    objective.kto_micro_batch,
    training.packing_needs_sft,
    training.padding_free_needs_sft,
    training.packing_keeps_documents_apart,
    data.dataset_columns,
    data.mixture_weight_vs_samples,
    evaluation.eval_without_data,
    training.steps_or_per_epoch,
    training.per_epoch_needs_epochs,
    precision.tf32_needs_ampere,
    objective.neftune_with_packing,
    evaluation.eval_on_start_without_data,
    data.eval_data_twice,
    model.trust_remote_code,
    code.recipe_runs_code,
    evaluation.win_rate_needs_reward_model,
    evaluation.eval_task_names_unique,
    evaluation.eval_needs_tasks,
    evaluation.vllm_serves_lora_or_full,
]


def problems(recipe: Recipe) -> list[Problem]:
    """Every rule's findings, in the table's order."""
    return [Problem(tuple(path), message, r.id, r.severity) for r in RULES for path, message in r.check(recipe)]


def check(recipe: Recipe, sources: Sources, file: str) -> list[Diagnostic]:
    """Run every rule; one located diagnostic per finding."""
    return located(problems(recipe), sources, file)
