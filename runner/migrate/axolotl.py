"""Axolotl YAML -> recipe. Defaults are Axolotl's (src/axolotl/utils/schemas/, core/builders/), not the recipe's.

This module reads the model, precision, attention, tokens, adapter and objective keys and runs the steps in order;
axolotl_data.py reads `datasets` and `test_datasets`, axolotl_training.py the training and output keys."""

from __future__ import annotations

from .axolotl_data import axolotl_datasets
from .axolotl_training import axolotl_output, axolotl_training
from .deepspeed import deepspeed_file
from .translation import (
    ATTENTION_IMPLEMENTATIONS,
    PEFT_DEFAULT_TARGETS,
    PEFT_DEFAULT_TARGETS_WHY,
    TEMPLATES,
    ImportRefused,
    Translation,
)

# Keys that change nothing a recipe trains, with the reason (shown in the report).
HARMLESS = {
    "model_type": "the model class comes from the model's config.json (AutoModelForCausalLM)",
    "tokenizer_type": "the tokenizer class comes from the model's tokenizer files (AutoTokenizer)",
    "is_llama_derived_model": "the architecture is read from the model's config.json",
    "is_mistral_derived_model": "the architecture is read from the model's config.json",
    "is_qwen_derived_model": "the architecture is read from the model's config.json",
    "strict": "a recipe is always validated strictly",
    "dataset_prepared_path": "prepared data is cached by its fingerprint in the datasets cache",
    "pad_to_sequence_len": "padding to max length changes no loss; the plan picks padding or padding-free batches",
    "eval_sample_packing": "evaluation batches follow the training packing",
    "resume_from_checkpoint": "`recipe run --resume` continues from the last checkpoint",
    "auto_resume_from_checkpoints": "`recipe run --resume` continues from the last checkpoint",
    "debug": "no effect on training",
    "local_rank": "set by the launcher",
    "flash_attn_cross_entropy": "the plan picks the fused loss",
    "flash_attn_rms_norm": "the plan picks fused kernels (training.kernels)",
    "hub_model_id": "publishing is not part of a run; push the output folder with huggingface-cli",
    "hub_strategy": "publishing is not part of a run",
    "push_dataset_to_hub": "publishing is not part of a run",
    "wandb_watch": "logging detail, not training",
    "wandb_log_model": "logging detail, not training",
    "wandb_entity": "set WANDB_ENTITY in the environment (secrets and accounts stay out of recipes)",
    "save_safetensors": "outputs are always safetensors",
}


RL_KINDS = {"dpo": "dpo", "ipo": "dpo", "orpo": "orpo", "kto": "kto", "simpo": "simpo"}


def translate_axolotl(t: Translation) -> None:
    t.begin("base_model")
    model = t.source["base_model"]
    for key in ("tokenizer_config", "base_model_config"):
        value = t.take(key)
        if value == model:
            t.not_needed(key, "the same as base_model")
        elif value is not None and key == "tokenizer_config":
            t.mapped(key, "model.tokenizer", t.model_path(value))
        elif value is not None:
            t.dropped(key, "a recipe loads the model's config from beside its weights")
    if t.take("revision_of_model"):
        t.mapped("revision_of_model", "model.revision", t.source["revision_of_model"])
    _axolotl_precision(t)
    _axolotl_attention(t)
    _axolotl_tokens(t)
    world = t.hardware()
    _axolotl_adapter(t)
    _axolotl_objective(t)
    axolotl_datasets(t)
    axolotl_training(t, world)
    deepspeed_file(t, "deepspeed")
    fsdp, fsdp_config = t.take("fsdp"), t.take("fsdp_config")
    if fsdp or fsdp_config:
        key = "fsdp" if fsdp else "fsdp_config"
        t.changed(key, "hardware.zero", 3, "FSDP full sharding is ZeRO-3's sharding; the recipe runs DeepSpeed")
        if key == "fsdp" and fsdp_config:
            t.dropped("fsdp_config", "FSDP's own settings; the plan writes the DeepSpeed file")
    axolotl_output(t)
    t.finish(HARMLESS)


def _axolotl_precision(t: Translation) -> None:
    bf16, fp16 = t.take("bf16", "auto"), t.take("fp16")
    if fp16 is True:
        t.mapped("fp16", "model.dtype", "float16")
        if t.has("bf16"):
            t.not_needed("bf16", "fp16 is set")
    elif bf16 is True:
        t.mapped("bf16", "model.dtype", "bfloat16")
    elif bf16 == "auto":
        t.given_or_default(
            "bf16", "model.dtype", "auto", "bfloat16 where the GPU has it, else float16 (Axolotl's `auto`)"
        )
    else:
        t.mapped("bf16", "model.dtype", "float32", "neither bf16 nor fp16: float32")
    tf32 = t.take("tf32", "auto")
    t.given_or_default("tf32", "training.tf32", tf32, "TF32 where the GPU has it")


def _axolotl_attention(t: Translation) -> None:
    impl = t.take("attn_implementation")
    if impl in ATTENTION_IMPLEMENTATIONS:
        t.mapped("attn_implementation", "model.attention", impl)
    elif impl:
        t.changed("attn_implementation", "model.attention", "auto", f"`{impl}` is not planned; auto picks FA2 or sdpa")
    for key, value in (
        ("flash_attention", "flash_attention_2"),
        ("sdp_attention", "sdpa"),
        ("eager_attention", "eager"),
    ):
        if t.take(key):
            t.mapped(key, "model.attention", value, "Axolotl's older attention flag")
    if t.take("xformers_attention"):
        t.changed(
            "xformers_attention", "model.attention", "sdpa", "xformers is not planned; PyTorch sdpa is the same maths"
        )


def _axolotl_tokens(t: Translation) -> None:
    special = t.take("special_tokens") or {}
    for name, field in (("pad_token", "pad"), ("eos_token", "eos")):
        if special.get(name):
            t.mapped(f"special_tokens.{name}", f"model.special_tokens.{field}", special[name])
    for name in ("bos_token", "unk_token"):
        if special.get(name):
            t.dropped(f"special_tokens.{name}", "a recipe sets pad, eos and added tokens only", special[name])
    extra = list(special.get("additional_special_tokens") or []) + list(t.take("tokens") or [])
    if extra:
        t.mapped("special_tokens.additional_special_tokens / tokens", "model.special_tokens.additional", extra)
    template = t.take("chat_template")
    if template in TEMPLATES:
        t.mapped("chat_template", "model.chat_template", TEMPLATES[template])
    elif template == "tokenizer_default":
        t.not_needed("chat_template", "the tokenizer's own template is what a recipe uses by default")
    elif template:
        t.dropped("chat_template", f"no shipped `{template}` template: give a .jinja file in model.chat_template")
    if t.take("chat_template_jinja"):
        t.dropped("chat_template_jinja", "save the template to a .jinja file and name it in model.chat_template")


def _axolotl_adapter(t: Translation) -> None:
    kind = t.take("adapter")
    in4, in8 = t.take("load_in_4bit", False), t.take("load_in_8bit", False)
    if kind in (None, ""):
        t.put("adapter.kind", "full")
        t.row("adapter (unset)", "default", "adapter.kind", "full", "no adapter: every weight trains")
        return
    if kind not in ("lora", "qlora"):
        raise ImportRefused(
            f"adapter: `{kind}` has no counterpart (a recipe trains lora, dora, prefix, prompt, p-tuning, ia3 or full)"
        )
    dora = t.take("peft_use_dora", False)
    t.mapped(
        "adapter",
        "adapter.kind",
        "dora" if dora else "lora",
        "QLoRA is LoRA on a 4-bit base" if kind == "qlora" else "",
    )
    if dora:
        t.mapped("peft_use_dora", "adapter.kind", "dora")
    if kind == "qlora" or in4:
        t.mapped("load_in_4bit", "quantization.method", "bnb-4bit")
        t.default("bnb_4bit_quant_type", "quantization.quant_type", "nf4", "Axolotl's fixed QLoRA settings")
        t.default("bnb_4bit_use_double_quant", "quantization.double_quant", True, "Axolotl's fixed QLoRA settings")
    elif in8:
        t.mapped("load_in_8bit", "quantization.method", "bnb-8bit")
    for key, field in (("lora_r", "adapter.r"), ("lora_alpha", "adapter.alpha")):
        if t.has(key):
            t.mapped(key, field, t.take(key))
        else:
            t.take(key)
            t.row(
                f"{key} (unset)",
                "default",
                field,
                "",
                "Axolotl has no default (its PEFT call fails): the recipe's default applies",
            )
    dropout = t.take("lora_dropout", 0.0)
    t.given_or_default("lora_dropout", "adapter.dropout", dropout, "Axolotl: 0.0")
    modules = list(t.take("lora_target_modules") or [])
    if t.take("lora_target_linear"):
        t.mapped(
            "lora_target_linear",
            "adapter.target_modules",
            "all-linear",
            "every linear layer but the output head, as Axolotl's",
        )
        if modules:
            t.not_needed("lora_target_modules", "within all-linear")
    elif modules:
        t.mapped("lora_target_modules", "adapter.target_modules", modules)
    else:
        t.default(
            "lora_target_modules",
            "adapter.target_modules",
            list(PEFT_DEFAULT_TARGETS),
            f"neither set: {PEFT_DEFAULT_TARGETS_WHY}",
        )
    if t.take("lora_modules_to_save"):
        t.mapped("lora_modules_to_save", "adapter.modules_to_save", list(t.source["lora_modules_to_save"]))
    if t.take("peft_use_rslora"):
        t.mapped("peft_use_rslora", "adapter.rslora", True)
    if t.take("lora_model_dir"):
        t.mapped(
            "lora_model_dir",
            "adapter.start_from",
            t.model_path(t.source["lora_model_dir"]),
            "its shape is checked against the adapter section before launch",
        )


def _axolotl_objective(t: Translation) -> None:
    rl = t.take("rl")
    if rl is None:
        completion_only = all((d or {}).get("type") == "completion" for d in (t.source.get("datasets") or [{}]))
        kind = "pretrain" if completion_only else "sft"
        t.put("objective.kind", kind)
        t.row(
            "rl (unset)",
            "default",
            "objective.kind",
            kind,
            "supervised fine-tuning" + (" on raw text (`type: completion`)" if kind == "pretrain" else ""),
        )
        return
    if rl not in RL_KINDS:
        raise ImportRefused(f"rl: `{rl}` is not imported (online RL needs reward sources; write the objective by hand)")
    kind = RL_KINDS[rl]
    t.mapped("rl", "objective.kind", kind, "IPO is DPO's `ipo` loss" if rl == "ipo" else "")
    beta_key, beta = t.first_of("rl_beta", "dpo_beta")  # dpo_beta: Axolotl's older name
    if kind == "orpo":  # Axolotl passes orpo_alpha as ORPO's beta, else rl_beta, else TRL's 0.1
        if t.has("orpo_alpha"):
            t.mapped("orpo_alpha", "objective.beta", t.take("orpo_alpha"))
            if beta is not None:
                t.not_needed(beta_key, "orpo_alpha is ORPO's weight")
        elif beta is not None:
            t.mapped(beta_key, "objective.beta", beta, "ORPO's weight λ")
        else:
            t.default("orpo_alpha", "objective.beta", 0.1, "TRL's default 0.1")
        return
    if beta is not None:
        t.mapped(beta_key, "objective.beta", beta)
    else:
        t.default(
            "rl_beta",
            "objective.beta",
            0.1,
            "TRL's default" + (" (the recipe's SimPO default is 2.0)" if kind == "simpo" else ""),
        )
    if kind == "dpo":
        losses = list(t.take("dpo_loss_type") or (["ipo"] if rl == "ipo" else ["sigmoid"]))
        t.given_or_default("dpo_loss_type", "objective.loss", losses, "TRL's")
        if t.has("dpo_loss_weights"):
            t.mapped("dpo_loss_weights", "objective.loss_weights", t.take("dpo_loss_weights"))
        if t.has("dpo_label_smoothing"):
            t.mapped("dpo_label_smoothing", "objective.label_smoothing", t.take("dpo_label_smoothing"))
    elif kind == "simpo":
        gamma = t.take("simpo_gamma", 0.5)
        t.given_or_default("simpo_gamma", "objective.gamma", gamma, "TRL's CPOConfig default 0.5 (the recipe's is 1.0)")
        cpo = t.take("cpo_alpha", 1.0)
        t.given_or_default(
            "cpo_alpha", "objective.cpo_alpha", cpo, "TRL's CPOConfig default 1.0 (the recipe's SimPO is 0.0)"
        )
    elif kind == "kto":
        for key, field in (
            ("kto_desirable_weight", "desirable_weight"),
            ("kto_undesirable_weight", "undesirable_weight"),
        ):
            if t.has(key):
                t.mapped(key, f"objective.{field}", t.take(key))
