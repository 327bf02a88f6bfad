"""LLaMA-Factory YAML (+ its dataset_info.json) -> recipe. Defaults are LLaMA-Factory's (hparams/*.py) and, for
the training arguments it does not set, transformers' TrainingArguments.

This module reads the model, attention, tokens, adapter, objective and training keys and runs the steps in order;
llamafactory_data.py reads `dataset` and the dataset_info.json entries it names."""

from __future__ import annotations

from typing import Any

from .deepspeed import deepspeed_file
from .hfargs import HARMLESS_ARGUMENTS, output_arguments, precision_arguments, training_arguments
from .llamafactory_data import comma_list, llamafactory_datasets
from .translation import TEMPLATES, ImportRefused, Translation

HARMLESS = {
    **HARMLESS_ARGUMENTS,
    "overwrite_cache": "data is cached by its fingerprint and recomputed when it changes",
    "plot_loss": "`recipe runs OUTPUT_DIR` shows the loss curves",
    "resume_from_checkpoint": "`recipe run --resume` continues from the last checkpoint",
    "dataloader_num_workers": "data loading workers change speed only",
}


STAGES = {"sft": "sft", "pt": "pretrain", "dpo": "dpo", "kto": "kto", "rm": "reward"}


def translate_llamafactory(t: Translation) -> None:
    t.begin("model_name_or_path")
    if t.has("model_revision"):
        t.mapped("model_revision", "model.revision", t.take("model_revision"))
    if t.has("adapter_name_or_path"):
        paths = str(t.take("adapter_name_or_path")).split(",")
        if len(paths) > 1:
            raise ImportRefused("adapter_name_or_path names several adapters: merge them first (`recipe merge`)")
        t.mapped("adapter_name_or_path", "adapter.start_from", t.model_path(paths[0]))
    precision_arguments(t)
    _llamafactory_attention(t)
    _llamafactory_tokens(t)
    world = t.hardware()
    _llamafactory_adapter(t)
    _llamafactory_objective(t)
    llamafactory_datasets(t)
    _llamafactory_training(t, world)
    deepspeed_file(t, "deepspeed")
    output_arguments(t)
    t.finish(HARMLESS)


def _llamafactory_attention(t: Translation) -> None:
    value = t.take("flash_attn", "auto")
    mapping = {"auto": "auto", "fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager"}
    if value in mapping:
        if t.has("flash_attn"):
            t.mapped("flash_attn", "model.attention", mapping[value])
    else:
        t.changed("flash_attn", "model.attention", "auto", f"`{value}` is not planned: auto picks FA2 or sdpa")


def _llamafactory_tokens(t: Translation) -> None:
    tokens: list[str] = []
    for key in ("add_special_tokens", "new_special_tokens", "add_tokens"):
        if t.has(key):
            tokens += comma_list(t.take(key))
            t.row(key, "mapped", "model.special_tokens.additional", t.source[key], "")
    if tokens:
        t.put("model.special_tokens.additional", list(dict.fromkeys(tokens)))
    template = t.take("template")
    if template in TEMPLATES:
        t.mapped("template", "model.chat_template", TEMPLATES[template])
    elif template in (None, "empty", "default"):
        if template:
            t.not_needed("template", "the tokenizer's own template")
    else:
        t.changed(
            "template",
            "",
            None,
            f"no shipped `{template}` template: the tokenizer's own template is used; give "
            "a .jinja file in model.chat_template to render otherwise",
        )


def _llamafactory_adapter(t: Translation) -> None:
    kind = t.take("finetuning_type", "lora")
    if kind == "full":
        t.mapped("finetuning_type", "adapter.kind", "full")
        return
    if kind != "lora":
        raise ImportRefused(
            f"finetuning_type: `{kind}` has no counterpart (a recipe trains full, lora, dora, prefix, "
            "prompt, p-tuning or ia3)"
        )
    dora = t.take("use_dora", False)
    t.given_or_default("finetuning_type", "adapter.kind", "dora" if dora else "lora", "LLaMA-Factory's default is LoRA")
    if dora:
        t.mapped("use_dora", "adapter.kind", "dora")
    rank = t.take("lora_rank", 8)
    t.given_or_default("lora_rank", "adapter.r", rank, "LLaMA-Factory's default 8")
    t.defaulted("lora_alpha", "adapter.alpha", rank * 2, "LLaMA-Factory: twice the rank")
    t.defaulted("lora_dropout", "adapter.dropout", 0.0, "LLaMA-Factory's default 0")
    target = t.take("lora_target", "all")
    if target == "all":
        t.given_or_default(
            "lora_target", "adapter.target_modules", "all-linear", "`all`: every linear layer but the output head"
        )
    else:
        t.mapped("lora_target", "adapter.target_modules", [s.strip() for s in str(target).split(",")])
    if t.take("use_rslora"):
        t.mapped("use_rslora", "adapter.rslora", True)
    if t.has("additional_target"):
        t.mapped(
            "additional_target",
            "adapter.modules_to_save",
            [s.strip() for s in str(t.take("additional_target")).split(",")],
        )
    bits = t.take("quantization_bit")
    if t.has("quantization_method") and t.source["quantization_method"] == "bnb":
        t.not_needed("quantization_method", "bnb: bitsandbytes is how a recipe quantizes")
    if bits:
        method = t.take("quantization_method", "bnb")
        if method != "bnb":
            raise ImportRefused(f"quantization_method: `{method}` is not bitsandbytes; a recipe quantizes with bnb")
        if bits not in (4, 8):
            raise ImportRefused(f"quantization_bit: {bits}; bitsandbytes loads 4 or 8 bits")
        t.mapped("quantization_bit", "quantization.method", f"bnb-{bits}bit")
        if bits == 4:
            t.defaulted("quantization_type", "quantization.quant_type", "nf4", "LLaMA-Factory's default")
            t.defaulted("double_quantization", "quantization.double_quant", True, "LLaMA-Factory's default")


def _llamafactory_objective(t: Translation) -> None:
    stage = t.take("stage", "sft")
    if stage not in STAGES:
        raise ImportRefused(f"stage: `{stage}` is not imported (PPO needs a reward model: use `kind: rloo` or `grpo`)")
    kind = STAGES[stage]
    loss = t.take("pref_loss", "sigmoid")
    beta = t.take("pref_beta", 0.1)
    ftx = t.take("pref_ftx", 0.0)
    if stage == "dpo" and loss in ("orpo", "simpo"):
        kind = loss
    t.given_or_default("stage", "objective.kind", kind, "")
    if kind in ("orpo", "simpo"):
        t.mapped("pref_loss", "objective.kind", kind, "LLaMA-Factory runs ORPO and SimPO as losses of its DPO stage")
    if kind == "dpo":
        if loss not in ("sigmoid", "hinge", "ipo"):
            raise ImportRefused(f"pref_loss: `{loss}` is not a DPO loss of TRL")
        t.given_or_default("pref_beta", "objective.beta", beta, "LLaMA-Factory's 0.1")
        losses, weights = [loss], None
        if ftx:
            losses, weights = [loss, "sft"], [1.0, float(ftx)]
            t.changed("pref_ftx", "objective.loss_weights", weights, "an SFT term on chosen answers: TRL's `sft` loss")
        t.given_or_default("pref_loss", "objective.loss", losses, "")
        if weights:
            t.put("objective.loss_weights", weights)
        if t.has("dpo_label_smoothing"):
            t.mapped("dpo_label_smoothing", "objective.label_smoothing", t.take("dpo_label_smoothing"))
    elif kind == "orpo":
        t.given_or_default("pref_beta", "objective.beta", beta, "LLaMA-Factory's default 0.1, ORPO's weight λ")
    elif kind == "simpo":
        t.given_or_default("pref_beta", "objective.beta", beta, "LLaMA-Factory's default 0.1")
        t.defaulted("simpo_gamma", "objective.gamma", 0.5, "LLaMA-Factory's default 0.5")
        t.given_or_default("pref_ftx", "objective.cpo_alpha", float(ftx), "LLaMA-Factory's SFT term weight (0)")
    elif kind == "kto":
        t.given_or_default("pref_beta", "objective.beta", beta, "LLaMA-Factory's 0.1")
        for key, field in (("kto_chosen_weight", "desirable_weight"), ("kto_rejected_weight", "undesirable_weight")):
            if t.has(key):
                t.mapped(key, f"objective.{field}", t.take(key))
    if kind == "sft":
        on_prompt = t.take("train_on_prompt", False)
        value: Any = False if on_prompt else "auto"
        t.given_or_default(
            "train_on_prompt",
            "objective.completion_only_loss",
            value,
            "the prompt trains too" if on_prompt else "only answers train (the recipe's `auto`)",
        )
        if on_prompt:
            t.put("objective.assistant_only_loss", False)
        if t.take("mask_history"):
            t.dropped("mask_history", "the recipe trains every assistant turn, not only the last")
        if t.has("neftune_noise_alpha"):
            t.mapped("neftune_noise_alpha", "objective.neftune_noise_alpha", t.take("neftune_noise_alpha"))


def _llamafactory_training(t: Translation, world: int) -> None:
    training_arguments(t, world)
    t.defaulted("cutoff_len", "training.max_length", 2048, "LLaMA-Factory's default 2048")
    packing = t.take("packing", t.get("objective.kind") == "pretrain")
    t.given_or_default("packing", "training.packing", bool(packing), "LLaMA-Factory packs pretraining only, by default")
    if t.take("neat_packing"):
        t.mapped("neat_packing", "training.packing", True, "documents never attend across: what packing does here")
    if t.take("enable_liger_kernel"):
        t.mapped("enable_liger_kernel", "training.kernels", "liger")
    if t.has("disable_gradient_checkpointing"):
        t.mapped(
            "disable_gradient_checkpointing",
            "training.gradient_checkpointing",
            not t.take("disable_gradient_checkpointing"),
        )
