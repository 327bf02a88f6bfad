"""Where the weights the optimizer updates live, what 4-bit storage ZeRO-3 needs, which attention a model supports,
and that the plan never silently replaces what a recipe says (plan side; the training side is test_distributed.py)."""

from __future__ import annotations

import pytest

from runner.plan import resolve
from runner.plan.modeltypes import ATTENTION, ATTENTION_DEFAULT
from schemas import load

from conftest import ROOT

RECIPES = ROOT / "recipes"


def plan_of(name: str, *overrides: str):
    loaded = load(RECIPES / name, list(overrides))
    assert loaded.recipe is not None and not loaded.errors, [d.text() for d in loaded.diagnostics]
    return resolve(loaded.recipe, {})


def decision(plan, what: str):
    (d,) = [d for d in plan.decisions if d.what == what]
    return d


def test_bf16_full_finetune_without_deepspeed_keeps_float32_master_weights():
    plan = plan_of("llama31-8b-chat-sft-full.yaml", "hardware.zero=none", "hardware.profile=h200-141gb")
    assert plan.precision == "bf16" and plan.zero is None and plan.dtype == "float32"
    assert plan.trainer["args"]["bf16"] is True  # autocast over float32 weights
    assert "float32 master weights" in decision(plan, "model dtype").why
    # what the estimate counts at its peak, the optimizer step: float32 weights, gradients and Adam moments, and the
    # foreach AdamW's one more float32 copy; autocast's 16-bit copies are freed by then
    params = plan.memory["total_params"]
    breakdown = plan.memory["breakdown"]
    assert plan.memory["peak_phase"] == "optimizer step"
    assert breakdown["gradients"] == pytest.approx(4 * params / 2**30, rel=1e-3)
    assert breakdown["optimizer_states"] == pytest.approx(8 * params / 2**30, rel=1e-3)
    assert breakdown["temporaries"] == pytest.approx(4 * params / 2**30, rel=1e-3)
    assert breakdown["autocast_copies"] == 0
    assert plan.resolved["model"]["dtype"] == "bfloat16" and plan.resolved["training"]["master_weights"] == "float32"


def test_bf16_full_finetune_with_deepspeed_loads_16_bit_and_deepspeed_keeps_the_master_copies():
    plan = plan_of("llama31-8b-chat-sft-full.yaml")
    assert plan.zero is not None and plan.dtype == "bfloat16" and plan.deepspeed["bf16"]["enabled"] is True
    assert "float32 master copies" in decision(plan, "model dtype").why
    assert plan.memory["breakdown"]["autocast_copies"] == 0


def test_pure_bf16_only_when_asked_by_name():
    plan = plan_of(
        "llama31-8b-chat-sft-full.yaml",
        "training.master_weights=bfloat16",
        "hardware.zero=none",
        "hardware.profile=h200-141gb",
    )
    assert plan.dtype == "bfloat16" and plan.zero is None
    assert "as training.master_weights asks" in decision(plan, "model dtype").why
    auto_zero = plan_of("llama31-8b-chat-sft-full.yaml", "training.master_weights=bfloat16", "hardware.zero=auto")
    assert auto_zero.zero is None  # DeepSpeed always keeps float32 master copies: not a candidate


def test_adapters_load_the_base_in_the_training_precision_and_say_what_the_adapter_trains_in():
    qlora = plan_of("llama3-dpo-qlora.yaml")
    assert qlora.dtype == "bfloat16"
    assert "adapter's weights train in bfloat16: TRL's dpo trainer casts" in decision(qlora, "model dtype").why
    lora = plan_of("llama31-8b-chat-dpo-lora.yaml")
    assert lora.zero != 3 and "adapter's weights train in float32" in decision(lora, "model dtype").why
    # the estimate counts what the trainer makes: bf16 adapter weights, gradients and Adam moments under QLoRA
    lora_params = qlora.memory["trainable_params"]
    assert qlora.memory["breakdown"]["optimizer_states"] == pytest.approx(2 * 2 * lora_params / 2**30, abs=1e-3)
    orpo = plan_of("gpt2-hh-rlhf-orpo-lora.yaml", "quantization.method=bnb-4bit")
    assert "train in float32" in decision(orpo, "model dtype").why  # TRL's experimental ORPO keeps PEFT's float32


def test_fp16_full_finetune_replans_to_the_same_plan_from_its_resolved_recipe():
    """The resolved recipe keeps the precision's dtype; the float32 load dtype is the plan's, not the recipe's."""
    from schemas import Recipe

    plan = plan_of("llama31-8b-chat-sft-full.yaml", "hardware.profile=v100-32gb", "model.dtype=float16")
    again = resolve(Recipe.model_validate(plan.resolved), {})
    assert (
        (again.precision, again.dtype, again.zero) == (plan.precision, plan.dtype, plan.zero) == ("fp16", "float16", 3)
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_quant_storage_follows_the_load_dtype_under_zero3(dtype):
    plan = plan_of("llama3-70b-sft-qlora-zero3.yaml", f"model.dtype={dtype}", "quantization.compute_dtype=bfloat16")
    args = plan.quantization["args"]
    assert plan.zero == 3 and plan.dtype == dtype
    assert args["bnb_4bit_quant_storage"] == dtype and args["bnb_4bit_compute_dtype"] == "bfloat16"
    assert plan.ok


def test_quant_storage_that_zero3_cannot_shard_is_refused():
    plan = plan_of("llama3-70b-sft-qlora-zero3.yaml", "model.dtype=float16", "quantization.quant_storage=bfloat16")
    (problem,) = [p for p in plan.problems if p.rule == "quant-storage-vs-zero3"]
    assert problem.path == ("quantization", "quant_storage") and "must be float16" in problem.message
    assert not plan.ok


def test_attention_the_architecture_does_not_support_is_refused_and_auto_avoids_it():
    bloom = plan_of("bloom-1b1-lima-sft-full.yaml")
    assert bloom.attention == "eager" and "only eager" in decision(bloom, "attention").why
    refused = plan_of("bloom-1b1-lima-sft-full.yaml", "model.attention=sdpa")
    (problem,) = [p for p in refused.problems if p.rule == "attention-unsupported"]
    assert problem.path == ("model", "attention") and "bloom models do not support `sdpa`" in problem.message
    assert plan_of("llama3-dpo-qlora.yaml", "model.attention=sdpa").ok


def test_the_attention_table_matches_transformers():
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from runner.plan.architecture import _table

    for model_type in sorted({a.model_type for a in _table().values()} | set(ATTENTION)):
        cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
        offered = tuple(
            name
            for name, flag in (("sdpa", "_supports_sdpa"), ("flash_attention_2", "_supports_flash_attn"))
            if getattr(cls, flag, False)
        )
        assert offered == ATTENTION.get(model_type, ATTENTION_DEFAULT), model_type


def test_offloaded_optimizer_is_a_decision_and_eval_on_start_is_explained():
    plan = plan_of("llama3-70b-sft-qlora-zero3.yaml", "hardware.offload=optimizer")
    assert "optimizer" in plan.deepspeed and "CPU Adam" in decision(plan, "optimizer").why
    assert decision(plan, "eval_on_start").value is plan.trainer["args"]["eval_on_start"]
    off = plan_of("llama3-dpo-qlora.yaml", "training.eval_on_start=false")
    assert off.trainer["args"]["eval_on_start"] is False and not [d for d in off.decisions if d.what == "eval_on_start"]
