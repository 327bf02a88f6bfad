"""TRL CLI / alignment-handbook YAML -> recipe. The keys are TRL's own (ModelConfig, ScriptArguments, the trainer's
config class); defaults are TRL's and transformers'.

This module reads the objective (given, or inferred from the config class's keys), model, adapter and training keys
and runs the steps in order; trl_data.py reads the dataset keys."""

from __future__ import annotations

from .deepspeed import deepspeed_file
from .hfargs import HARMLESS_ARGUMENTS, output_arguments, precision_arguments, training_arguments
from .translation import (
    ATTENTION_IMPLEMENTATIONS,
    PEFT_DEFAULT_TARGETS,
    PEFT_DEFAULT_TARGETS_WHY,
    ImportRefused,
    Translation,
)
from .trl_data import trl_datasets

HARMLESS = {
    **HARMLESS_ARGUMENTS,
    "do_eval": "with eval data the recipe evaluates",
    "hub_strategy": "publishing is not part of a run",
    "hub_private_repo": "publishing is not part of a run",
    "gradient_checkpointing_kwargs": "the plan picks non-reentrant checkpointing (reentrant under PEFT + ZeRO-3)",
    "remove_unused_columns": "the recipe's data loader keeps what the trainer reads",
}


DPO_KEYS = ("beta", "loss_type", "max_prompt_length", "ref_model_init_kwargs", "rpo_alpha", "label_smoothing")


def translate_trl(t: Translation) -> None:
    t.begin("model_name_or_path")
    if t.take("model_revision") not in (None, "main"):
        t.mapped("model_revision", "model.revision", t.source["model_revision"])
    elif t.has("model_revision"):
        t.not_needed("model_revision", "main: the default branch")
    _trl_objective(t)
    _trl_precision(t)
    if t.take("use_liger_kernel"):
        t.mapped("use_liger_kernel", "training.kernels", "liger")
    if t.has("attn_implementation"):
        impl = t.take("attn_implementation")
        t.mapped("attn_implementation", "model.attention", impl if impl in ATTENTION_IMPLEMENTATIONS else "auto")
    if t.has("chat_template"):
        t.dropped("chat_template", "an inline template: save it to a .jinja file and name it in model.chat_template")
    world = t.hardware()
    _trl_adapter(t)
    trl_datasets(t)
    _trl_training(t, world)
    deepspeed_file(t, "deepspeed")
    output_arguments(t)
    t.finish(HARMLESS)


def _trl_objective(t: Translation) -> None:
    kind = t.options.objective
    if kind:
        t.row("--objective", "mapped", "objective.kind", kind, "the TRL command the config is for")
    else:
        kind, why = _infer_objective(t)
        t.row("(TRL command)", "default", "objective.kind", kind, f"inferred from {why}; pass --objective to say")
        t.warnings.append(f"the TRL command was not given: imported as `{kind}` ({why}); pass --objective if wrong")
    t.put("objective.kind", kind)
    if kind == "dpo":
        t.defaulted("beta", "objective.beta", 0.1, "DPOConfig's default")
        loss = t.take("loss_type", ["sigmoid"])
        t.given_or_default(
            "loss_type", "objective.loss", [loss] if isinstance(loss, str) else list(loss), "DPOConfig's"
        )
        if t.has("loss_weights"):
            t.mapped("loss_weights", "objective.loss_weights", t.take("loss_weights"))
        if t.has("label_smoothing"):
            t.mapped("label_smoothing", "objective.label_smoothing", t.take("label_smoothing"))
        if t.has("max_prompt_length"):
            t.dropped(
                "max_prompt_length",
                "prompts are cut with the whole sequence at training.max_length (TRL 1.16 has no prompt limit)",
            )
    elif kind in ("orpo", "kto"):
        t.defaulted("beta", "objective.beta", 0.1, f"{kind.upper()}Config's default")
        if kind == "kto":
            for key in ("desirable_weight", "undesirable_weight"):
                t.defaulted(key, f"objective.{key}", 1.0, "KTOConfig's default")
    elif kind in ("simpo", "cpo"):
        t.defaulted("beta", "objective.beta", 0.1, "CPOConfig's default")
        t.defaulted("cpo_alpha", "objective.cpo_alpha", 1.0, "CPOConfig's default")
        if kind == "simpo":
            t.defaulted("simpo_gamma", "objective.gamma", 0.5, "CPOConfig's default")
            if t.has("loss_type"):
                t.not_needed("loss_type", "`simpo`: the objective's loss")
        else:
            t.defaulted("loss_type", "objective.loss", "sigmoid", "CPOConfig's default")
            if t.has("label_smoothing"):
                t.mapped("label_smoothing", "objective.label_smoothing", t.take("label_smoothing"))
    elif kind == "sft":
        on = t.take("assistant_only_loss", False)
        t.given_or_default(
            "assistant_only_loss",
            "objective.assistant_only_loss",
            bool(on),
            "SFTConfig's default: conversations train on every token",
        )
        completion = t.take("completion_only_loss")
        if completion is not None:
            t.mapped("completion_only_loss", "objective.completion_only_loss", bool(completion))
        if t.has("neftune_noise_alpha"):
            t.mapped("neftune_noise_alpha", "objective.neftune_noise_alpha", t.take("neftune_noise_alpha"))
    elif kind in ("grpo", "rloo"):
        raise ImportRefused(f"--objective {kind}: online RL needs reward sources; write that recipe by hand")


def _infer_objective(t: Translation) -> tuple[str, str]:
    """The trainer a TRL config is for, from keys only its config class has (said loudly: it is a guess)."""
    for kind, keys in (
        ("kto", ("desirable_weight", "undesirable_weight")),
        ("simpo", ("simpo_gamma",)),
        ("cpo", ("cpo_alpha",)),
        ("dpo", DPO_KEYS),
    ):
        found = [k for k in keys if t.has(k)]
        if kind == "simpo" and t.source.get("loss_type") == "simpo":
            found.append("loss_type: simpo")
        if found:
            return kind, f"keys of its config class ({', '.join(found)})"
    return "sft", "no preference keys"


def _trl_precision(t: Translation) -> None:
    dtype_key, dtype = t.first_of("dtype", "torch_dtype")  # torch_dtype: TRL's (and the handbook's) older name
    precision_arguments(t)
    if dtype:
        t.not_needed(dtype_key, f"`{dtype}`: the load dtype follows the training precision (the plan shows it)")


def _trl_adapter(t: Translation) -> None:
    if not t.take("use_peft"):
        if t.has("use_peft"):
            t.mapped("use_peft", "adapter.kind", "full")
        else:
            t.default("use_peft", "adapter.kind", "full", "ModelConfig's default: no adapter")
        for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"):
            if t.has(key):
                t.not_needed(key, "use_peft is false: TRL ignores LoRA settings")
                t.take(key)
        return
    dora = t.take("use_dora", False)
    t.mapped("use_peft", "adapter.kind", "dora" if dora else "lora")
    t.defaulted("lora_r", "adapter.r", 16, "ModelConfig's default")
    t.defaulted("lora_alpha", "adapter.alpha", 32, "ModelConfig's default")
    t.defaulted("lora_dropout", "adapter.dropout", 0.05, "ModelConfig's default")
    target = t.take("lora_target_modules")
    if target == "all-linear":
        t.mapped("lora_target_modules", "adapter.target_modules", "all-linear")
    elif target:
        t.mapped("lora_target_modules", "adapter.target_modules", [target] if isinstance(target, str) else list(target))
    else:
        t.default(
            "lora_target_modules",
            "adapter.target_modules",
            list(PEFT_DEFAULT_TARGETS),
            PEFT_DEFAULT_TARGETS_WHY,
        )
    if t.has("lora_modules_to_save"):
        t.mapped("lora_modules_to_save", "adapter.modules_to_save", list(t.take("lora_modules_to_save")))
    if t.take("use_rslora"):
        t.mapped("use_rslora", "adapter.rslora", True)
    if t.take("load_in_4bit"):
        t.mapped("load_in_4bit", "quantization.method", "bnb-4bit")
        t.defaulted("bnb_4bit_quant_type", "quantization.quant_type", "nf4", "ModelConfig's default")
        nested = t.take("use_bnb_nested_quant", False)
        t.given_or_default(
            "use_bnb_nested_quant", "quantization.double_quant", bool(nested), "ModelConfig's default: off"
        )
    elif t.take("load_in_8bit"):
        t.mapped("load_in_8bit", "quantization.method", "bnb-8bit")


def _trl_training(t: Translation, world: int) -> None:
    training_arguments(t, world)
    key, length = t.first_of("max_length", "max_seq_length")  # max_seq_length: SFTConfig's older name
    t.given_or_default(key, "training.max_length", 1024 if length is None else length, "TRL's default")
    if t.has("packing"):
        t.mapped("packing", "training.packing", bool(t.take("packing")))
