"""Every cross-field rule has a case that trips it and a near-miss that passes."""

from __future__ import annotations

import re

import pytest

from schemas.rules import RULES

from conftest import DELETE

PROMPT_ONLY = {"datasets.train.0.format": "prompt-only", "datasets.eval.0.format": "prompt-only"}
GRPO = {"objective": {"kind": "grpo", "reward_model": "outputs/reward-model", "num_generations": 4}, **PROMPT_ONLY}
SFT_MESSAGES = {
    "objective": {"kind": "sft"},
    "datasets.train.0.format": "messages",
    "datasets.eval.0.format": "messages",
}
UNQUANTIZED = {"quantization.method": "none"}
PURE_BF16 = {"training.master_weights": "bfloat16", "adapter": {"kind": "full"}, **UNQUANTIZED}
SECOND_SOURCE = {"source": "jsonl:data/more.jsonl", "format": "hh-rlhf"}
PAIRS = {"kind": "preference", "data": {"source": "jsonl:data/pairs.jsonl", "format": "preference"}}
WIN_RATE = {"kind": "win-rate", "data": {"source": "jsonl:data/qa.jsonl", "format": "triviaqa"}}

# rule id -> (changes that trip it, the field it must point at, changes that pass)
CASES = {
    "recipe-runs-code": (
        {**GRPO, "objective": {**GRPO["objective"], "reward_functions": ["mentions_color", "rewards.py:score"]}},
        "objective.reward_functions.1",
        {**GRPO, "objective": {**GRPO["objective"], "reward_functions": ["mentions_color"]}},
    ),
    "quantization-needs-adapter": (
        {"adapter": {"kind": "full"}},
        "quantization.method",
        {"adapter": {"kind": "full"}, **UNQUANTIZED},
    ),
    "objective-dataset-format": ({"datasets.train.0.format": "messages"}, "datasets.train.0.format", SFT_MESSAGES),
    "online-rl-reward-source": ({**GRPO, "objective": {"kind": "grpo", "num_generations": 4}}, "objective", GRPO),
    "online-rl-reward-weights": (
        {**GRPO, "objective": {**GRPO["objective"], "reward_weights": [1.0, 0.5]}},
        "objective.reward_weights",
        {**GRPO, "objective": {**GRPO["objective"], "reward_weights": [1.0]}},
    ),
    "online-rl-num-generations": (
        {**GRPO, "objective": {**GRPO["objective"], "num_generations": 3}},
        "objective.num_generations",
        {**GRPO, "objective": {**GRPO["objective"], "num_generations": 8}},
    ),
    "prefix-vs-gradient-checkpointing": (
        {"adapter": {"kind": "prefix"}, **UNQUANTIZED},
        "training.gradient_checkpointing",
        {"adapter": {"kind": "prefix"}, **UNQUANTIZED, "training.gradient_checkpointing": "auto"},
    ),
    "bnb-8bit-vs-zero3": (
        {"quantization.method": "bnb-8bit", "hardware.zero": 3},
        "hardware.zero",
        {"quantization.method": "bnb-8bit", "hardware.zero": 2},
    ),
    "param-offload-needs-zero3": (
        {"hardware.offload": "all", "hardware.zero": 2},
        "hardware.offload",
        {"hardware.offload": "all", "hardware.zero": 3},
    ),
    "offload-needs-zero": (
        {"hardware.offload": "optimizer", "hardware.zero": 0},
        "hardware.offload",
        {"hardware.offload": "optimizer", "hardware.zero": 1},
    ),
    "bf16-needs-ampere": (
        {"hardware.profile": "t4-16gb"},
        "model.dtype",
        {"hardware.profile": "t4-16gb", "model.dtype": "float16", "quantization.compute_dtype": "float16"},
    ),
    "flash-attention-needs-ampere": (
        {
            "hardware.profile": "v100-32gb",
            "model.dtype": "float16",
            "quantization.compute_dtype": "float16",
            "model.attention": "flash_attention_2",
        },
        "model.attention",
        {"hardware.profile": "a100-40gb", "model.attention": "flash_attention_2"},
    ),
    "flash-attention-vs-float32": (
        {"model.attention": "flash_attention_2", "model.dtype": "float32"},
        "model.attention",
        {"model.attention": "flash_attention_2", "model.dtype": "bfloat16"},
    ),
    "batch-divisibility": (
        {"training.global_batch_size": 7},
        "training.global_batch_size",
        {"training.global_batch_size": 12},
    ),
    "warmup-steps-and-ratio": (
        {"training.warmup_steps": 10},
        "training.warmup_steps",
        {"training.warmup_steps": 10, "training.warmup_ratio": DELETE},
    ),
    "dpo-loss-weights-length": (
        {"objective.loss": ["sigmoid", "sft"], "objective.loss_weights": [1.0]},
        "objective.loss_weights",
        {"objective.loss": ["sigmoid", "sft"], "objective.loss_weights": [1.0, 0.5]},
    ),
    "kto-micro-batch": (
        {"objective": {"kind": "kto"}, "training.micro_batch_size": 1},
        "training.micro_batch_size",
        {"objective": {"kind": "kto"}, "training.micro_batch_size": 2},
    ),
    "packing-needs-sft": ({"training.packing": True}, "training.packing", {**SFT_MESSAGES, "training.packing": True}),
    "padding-free-needs-sft": (
        {"training.padding_free": True},
        "training.padding_free",
        {**SFT_MESSAGES, "training.padding_free": True},
    ),
    "packing-keeps-documents-apart": (
        {**SFT_MESSAGES, "training.packing": True, "training.padding_free": False},
        "training.padding_free",
        {**SFT_MESSAGES, "training.packing": True, "training.padding_free": "auto"},
    ),
    "dataset-columns": (
        {"datasets.train.0.columns": {"chosen": "good", "rejectd": "bad"}},
        "datasets.train.0.columns.rejectd",
        {"datasets.train.0.columns": {"chosen": "good", "rejected": "bad"}},
    ),
    "mixture-weight-vs-samples": (
        {"datasets.train.0.weight": 2.0, "datasets.train": None},
        "datasets.train.1.samples",
        {"datasets.train.0.weight": 2.0, "datasets.train": {**SECOND_SOURCE, "weight": 1.0}},
    ),
    "steps-or-per-epoch": (
        {"training.evals_per_epoch": 4},
        "training.evals_per_epoch",
        {"training.evals_per_epoch": 4, "training.eval_every": DELETE},
    ),
    "per-epoch-needs-epochs": (
        {"training.saves_per_epoch": 2, "training.save_every": DELETE, "training.max_steps": 200},
        "training.saves_per_epoch",
        {"training.saves_per_epoch": 2, "training.save_every": DELETE},
    ),
    "tf32-needs-ampere": (
        {
            "training.tf32": True,
            "hardware.profile": "t4-16gb",
            "model.dtype": "float16",
            "quantization.compute_dtype": "float16",
        },
        "training.tf32",
        {"training.tf32": True},
    ),
    "neftune-with-packing": (
        {**SFT_MESSAGES, "objective": {"kind": "sft", "neftune_noise_alpha": 5.0}, "training.packing": True},
        "objective.neftune_noise_alpha",
        {**SFT_MESSAGES, "objective": {"kind": "sft", "neftune_noise_alpha": 5.0}},
    ),
    "eval-without-data": (
        {"datasets.eval": DELETE},
        "training.eval_every",
        {"datasets.eval": DELETE, "datasets.eval_fraction": 0.05},
    ),
    "loss-scope-vs-format": (
        {**SFT_MESSAGES, "objective": {"kind": "sft", "completion_only_loss": True}},
        "objective.completion_only_loss",
        {**SFT_MESSAGES, "objective": {"kind": "sft", "assistant_only_loss": True}},
    ),
    "special-tokens-need-trainable-embeddings": (
        {"adapter": {"kind": "ia3"}, "model.special_tokens": {"eos": "<|im_end|>"}},
        "model.special_tokens",
        {"adapter": {"kind": "ia3"}, "model.special_tokens": {"pad": "<pad>"}},
    ),
    "master-weights-full-only": (
        {"training.master_weights": "float32"},
        "training.master_weights",
        {"training.master_weights": "float32", "adapter": {"kind": "full"}, **UNQUANTIZED},
    ),
    "pure-bf16-needs-bf16": (
        {**PURE_BF16, "model.dtype": "float32"},
        "training.master_weights",
        {**PURE_BF16, "model.dtype": "bfloat16"},
    ),
    "pure-bf16-vs-deepspeed": (
        {**PURE_BF16, "hardware.zero": 2},
        "training.master_weights",
        {**PURE_BF16, "hardware.zero": "none"},
    ),
    "offload-replaces-optimizer": (
        {"hardware.offload": "optimizer", "hardware.zero": 2, "training.optimizer": "paged_adamw_8bit"},
        "training.optimizer",
        {"hardware.offload": "optimizer", "hardware.zero": 2, "training.optimizer": "adamw_torch_fused"},
    ),
    "eval-on-start-without-data": (
        {"training.eval_on_start": True, "datasets.eval": DELETE, "training.eval_every": DELETE},
        "training.eval_on_start",
        {"training.eval_on_start": True},
    ),
    "eval-data-twice": (
        {"datasets.eval_fraction": 0.1},
        "datasets.eval_fraction",
        {"datasets.eval": DELETE, "datasets.eval_fraction": 0.1},
    ),
    "win-rate-needs-reward-model": (
        {"evaluation.tasks": [WIN_RATE]},
        "evaluation.tasks.0",
        {"evaluation.tasks": [{**WIN_RATE, "reward_model": "outputs/reward-model"}]},
    ),
    "eval-task-names-unique": (
        {"evaluation.tasks": [PAIRS, PAIRS]},
        "evaluation.tasks.1",
        {"evaluation.tasks": [PAIRS, {**PAIRS, "name": "pairs-again"}]},
    ),
    "eval-needs-tasks": (
        {"evaluation.compare_base": True, "evaluation.at_end": False, "evaluation.tasks": []},
        "evaluation.compare_base",
        {"evaluation.compare_base": True, "evaluation.tasks": [PAIRS]},
    ),
    "vllm-serves-lora-or-full": (
        {"evaluation.backend": "vllm", "adapter": {"kind": "ia3"}},
        "evaluation.backend",
        {"evaluation.backend": "vllm"},
    ),
    "trust-remote-code": (
        {"model.trust_remote_code": True},
        "model.trust_remote_code",
        {"model.trust_remote_code": False},
    ),
}


def _expand(changes: dict) -> dict:
    """`datasets.train: X` appends X as a second source (None: a second source with `samples`)."""
    out = dict(changes)
    if "datasets.train" in out:
        extra = out.pop("datasets.train") or {**SECOND_SOURCE, "samples": 100}
        out["datasets.train.1"] = extra
    return out


def _load(recipe_variant, changes):
    changes = _expand(changes)
    appended = {k: v for k, v in changes.items() if k == "datasets.train.1"}
    rest = {k: v for k, v in changes.items() if k not in appended}
    if appended:
        from conftest import example, set_path

        base = example()
        base["datasets"]["train"].append(appended["datasets.train.1"])
        for k, v in rest.items():
            set_path(base, k, v)
        return recipe_variant({}, base=base)
    return recipe_variant(rest)


def test_every_rule_has_cases():
    assert {r.id for r in RULES} == set(CASES)
    assert len({r.id for r in RULES}) == len(RULES), "rule ids must be unique"


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_trips(recipe_variant, rule_id):
    bad, field, _ = CASES[rule_id]
    loaded = _load(recipe_variant, bad)
    assert loaded.recipe is not None, [d.text() for d in loaded.diagnostics]
    hits = [d for d in loaded.diagnostics if d.rule == rule_id]
    assert hits, f"{rule_id} did not fire: {[d.text() for d in loaded.diagnostics]}"
    assert hits[0].field == field
    assert hits[0].location.line is not None and hits[0].location.line >= 1
    assert re.match(rf"^.+\.yaml:\d+:\d+: (error|warning): {re.escape(field)}: \S", hits[0].text()), hits[0].text()


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_passes(recipe_variant, rule_id):
    _, _, good = CASES[rule_id]
    loaded = _load(recipe_variant, good)
    assert loaded.diagnostics == [], [d.text() for d in loaded.diagnostics]
    assert loaded.ok


def test_warning_does_not_make_recipe_invalid(recipe_variant):
    loaded = recipe_variant({"model.trust_remote_code": True})
    assert loaded.ok
    assert [d.severity for d in loaded.diagnostics] == ["warning"]


def test_rule_points_at_the_line_of_the_field(write):
    from schemas import load

    text = EXAMPLE_TEXT().replace("global_batch_size: 8", "global_batch_size: 7")
    loaded = load(write("r.yaml", text))
    (diag,) = [d for d in loaded.diagnostics if d.rule == "batch-divisibility"]
    line, col = next(
        (i, line.index("7") + 1) for i, line in enumerate(text.splitlines(), 1) if "global_batch_size: 7" in line
    )
    assert (diag.location.line, diag.location.column) == (line, col)
    assert "use 6 or 8" in diag.message


def test_batch_divisibility_counts_world_size(recipe_variant):
    loaded = recipe_variant({"hardware.gpus_per_node": 3, "training.micro_batch_size": "auto"})
    (diag,) = [d for d in loaded.diagnostics if d.rule == "batch-divisibility"]
    assert "world size 3" in diag.message


def test_flash_attention_on_cpu_is_refused(recipe_variant):
    loaded = recipe_variant(
        {
            "hardware.profile": "cpu",
            "model.attention": "flash_attention_2",
            "quantization.compute_dtype": "float32",
            "model.dtype": "float16",
        }
    )
    assert any(d.rule == "flash-attention-needs-ampere" and "CPU" in d.message for d in loaded.diagnostics)


def EXAMPLE_TEXT() -> str:
    from conftest import EXAMPLE_FILE

    return EXAMPLE_FILE.read_text()
