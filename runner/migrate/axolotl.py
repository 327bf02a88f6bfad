"""Axolotl YAML -> recipe. Defaults are Axolotl's (src/axolotl/utils/schemas/, core/builders/), not the recipe's."""

from __future__ import annotations

from typing import Any

from .deepspeed import deepspeed_file
from .sources import data_source
from .translation import TEMPLATES, ImportRefused, Translation

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


def translate(t: Translation) -> None:
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
    _precision(t)
    _attention(t)
    _tokens(t)
    world = t.hardware()
    _adapter(t)
    _objective(t)
    _datasets(t)
    _training(t, world)
    deepspeed_file(t, "deepspeed")
    fsdp, fsdp_config = t.take("fsdp"), t.take("fsdp_config")
    if fsdp or fsdp_config:
        key = "fsdp" if fsdp else "fsdp_config"
        t.changed(key, "hardware.zero", 3, "FSDP full sharding is ZeRO-3's sharding; the recipe runs DeepSpeed")
        if key == "fsdp" and fsdp_config:
            t.dropped("fsdp_config", "FSDP's own settings; the plan writes the DeepSpeed file")
    _output(t)
    t.finish(HARMLESS)


def _precision(t: Translation) -> None:
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


def _attention(t: Translation) -> None:
    impl = t.take("attn_implementation")
    if impl in ("flash_attention_2", "sdpa", "eager"):
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


def _tokens(t: Translation) -> None:
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


def _adapter(t: Translation) -> None:
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
            ["q_proj", "v_proj"],
            "neither set: PEFT's default for Llama-family models (query and value projections)",
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


def _objective(t: Translation) -> None:
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


# Axolotl DPO `type:` strategies -> (format, columns)
DPO_TYPES: dict[str, tuple[str, dict]] = {
    "chatml.intel": ("preference", {"prompt": "question"}),
    "llama3.intel": ("preference", {"prompt": "question"}),
    "chatml.prompt_pairs": ("preference", {}),
    "llama3.prompt_pairs": ("preference", {}),
    "chatml.ultra": ("ultrafeedback", {}),
    "llama3.ultra": ("ultrafeedback", {}),
    "chatml.argilla": (
        "preference",
        {"prompt": "instruction", "chosen": "chosen_response", "rejected": "rejected_response"},
    ),
    "chatml.icr": ("preference", {"prompt": "input"}),
}


def _datasets(t: Translation) -> None:
    entries = t.take("datasets") or []
    if not entries:
        raise ImportRefused("datasets is empty: nothing to train on")
    train = [_dataset(t, f"datasets.{i}", d) for i, d in enumerate(entries)]
    t.put("datasets.train", train)
    evals = [_dataset(t, f"test_datasets.{i}", d) for i, d in enumerate(t.take("test_datasets") or [])]
    if evals:
        t.put("datasets.eval", evals)
    val = t.take("val_set_size", 0)
    if val and not evals:
        if val >= 1:
            t.dropped(
                "val_set_size", f"a count of rows ({val}); the recipe holds out a fraction: set datasets.eval_fraction"
            )
        else:
            t.mapped("val_set_size", "datasets.eval_fraction", val)
    elif val:
        t.not_needed("val_set_size", "test_datasets are the eval data")
    elif t.has("val_set_size"):
        t.not_needed("val_set_size", "0: no held-out rows")
    key, workers = t.first_of("dataset_num_proc", "dataset_processes")
    if workers is not None:
        t.mapped(key, "datasets.num_proc", workers)


def _dataset(t: Translation, where: str, d: dict) -> dict:
    d = dict(d or {})
    path = d.pop("path", None)
    if not path:
        raise ImportRefused(f"{where}: no `path`")
    files = d.pop("data_files", None)
    ds_type = d.pop("ds_type", None)
    if files:
        path = files[0] if isinstance(files, list) else files
        if isinstance(files, list) and len(files) > 1:
            t.dropped(f"{where}.data_files", "only the first file is read; list the others as more sources", files)
    entry: dict[str, Any] = {"source": data_source(t, path, ds_type=ds_type, config=d.pop("name", None))}
    if d.get("split"):
        entry["split"] = d.pop("split")
    kind = d.pop("type", None)
    rl = t.source.get("rl")
    shown = f"{where} (type: {kind})"
    if rl:
        fmt, columns = _dpo_format(t, where, kind, d)
    elif kind in ("alpaca", "alpaca:chat", "alpaca:chatml"):
        fmt, columns = "alpaca", {}
        t.row(
            shown,
            "changed",
            "datasets.train format alpaca",
            path,
            "rows render through the chat template, not Axolotl's Alpaca instruction text",
        )
    elif kind == "completion":
        field = d.pop("field", "text")
        fmt, columns = "text", ({"text": field} if field != "text" else {})
        t.row(shown, "mapped", "format text", path, "every token trains, as Axolotl's completion")
    elif kind in ("chat_template", "sharegpt") or (isinstance(kind, str) and kind.startswith("sharegpt")):
        fmt, columns = _chat_format(t, where, kind, d)
    else:
        raise ImportRefused(
            f"{where}: type `{kind}` has no recipe format (imported: alpaca, completion, "
            "chat_template, and the DPO strategies " + ", ".join(sorted(DPO_TYPES)) + ")"
        )
    entry["format"] = fmt
    if columns:
        entry["columns"] = columns
    for key in list(d):
        value = d.pop(key)
        if value not in (None, "", [], {}):
            t.dropped(f"{where}.{key}", "not read for this dataset type", value)
    return entry


def _chat_format(t: Translation, where: str, kind: str, d: dict) -> tuple[str, dict]:
    field = d.pop("field_messages", None) or ("conversations" if kind.startswith("sharegpt") else "messages")
    mapping = d.pop("message_property_mappings", None) or {}
    role = (
        mapping.get("role") or d.pop("message_field_role", None) or ("from" if kind.startswith("sharegpt") else "role")
    )
    content = (
        mapping.get("content")
        or d.pop("message_field_content", None)
        or ("value" if kind.startswith("sharegpt") else "content")
    )
    d.pop("message_field_role", None)
    d.pop("message_field_content", None)
    roles = d.pop("roles", None)
    if roles and any(set(v) - {k, "human", "gpt"} for k, v in roles.items()):
        t.dropped(
            f"{where}.roles",
            "custom role names: the recipe reads user/assistant/system (and human/gpt in ShareGPT turns)",
            roles,
        )
    trained = d.pop("roles_to_train", None)
    if trained is not None and sorted(trained) != ["assistant"]:
        t.changed(
            f"{where}.roles_to_train",
            "objective.assistant_only_loss",
            False,
            f"{trained}: the recipe trains the assistant's turns or every token; every token",
        )
    eos = d.pop("train_on_eos", None)
    if eos not in (None, "turn"):
        t.dropped(f"{where}.train_on_eos", "the recipe trains each assistant turn's end token (Axolotl's `turn`)", eos)
    if (role, content) == ("role", "content"):
        fmt, columns = "messages", ({"messages": field} if field != "messages" else {})
    elif (role, content) == ("from", "value"):
        fmt, columns = "sharegpt", ({"conversations": field} if field != "conversations" else {})
    else:
        raise ImportRefused(
            f"{where}: turns with `{role}`/`{content}` keys: the recipe reads role/content "
            "(messages) or from/value (sharegpt) turns; rename the keys in the data"
        )
    note = "Axolotl's `sharegpt` type is its deprecated name for chat_template" if kind.startswith("sharegpt") else ""
    t.row(f"{where} (type: {kind})", "mapped", f"format {fmt}", field, note)
    return fmt, columns


def _dpo_format(t: Translation, where: str, kind: Any, d: dict) -> tuple[str, dict]:
    if kind == "chat_template.default" or kind == "chat_template":
        columns = {
            "prompt": d.pop("field_messages", None) or "messages",
            "chosen": d.pop("field_chosen", None) or "chosen",
            "rejected": d.pop("field_rejected", None) or "rejected",
        }
        mapping = d.pop("message_property_mappings", None) or {}
        if mapping and (mapping.get("role"), mapping.get("content")) != ("role", "content"):
            raise ImportRefused(f"{where}: turns with {mapping} keys: the recipe reads role/content turns")
        d.pop("roles", None)
        t.row(
            f"{where} (type: {kind})",
            "mapped",
            "format preference",
            columns,
            "prompt turns, and chosen/rejected answers (a turn, a list of turns or a string)",
        )
        return "preference", {k: v for k, v in columns.items() if v != k}
    if kind in DPO_TYPES:
        fmt, columns = DPO_TYPES[kind]
        t.row(
            f"{where} (type: {kind})",
            "changed",
            f"format {fmt}",
            columns,
            "the recipe's chat template renders the turns (not the type's fixed ChatML/Llama-3 text); a `system` "
            "column is not read",
        )
        return fmt, columns
    raise ImportRefused(
        f"{where}: DPO type `{kind}` has no recipe format (imported: chat_template.default, "
        + ", ".join(sorted(DPO_TYPES))
        + ")"
    )


def _training(t: Translation, world: int) -> None:
    micro, accumulation = t.take("micro_batch_size", 1), t.take("gradient_accumulation_steps")
    batch_size = t.take("batch_size")
    if accumulation is None and batch_size:
        accumulation = max(batch_size // micro, 1)
        t.not_needed("batch_size", f"gradient accumulation {accumulation} = batch_size / micro_batch_size")
    t.batch("micro_batch_size", micro, "gradient_accumulation_steps", accumulation or 1, world)
    lr = t.take("learning_rate")
    if lr is None:
        raise ImportRefused("learning_rate is missing (Axolotl requires it)")
    t.mapped("learning_rate", "training.learning_rate", float(lr))
    t.defaulted("num_epochs", "training.epochs", 1, "Axolotl's default 1")
    if (t.take("max_steps") or -1) > 0:
        t.mapped("max_steps", "training.max_steps", t.source["max_steps"])
    elif t.has("max_steps"):
        t.not_needed("max_steps", f"{t.source['max_steps']}: the run length is the epochs")
    t.defaulted("lr_scheduler", "training.lr_scheduler", "cosine", "Axolotl's default (transformers' is linear)")
    if t.has("lr_scheduler_kwargs"):
        t.mapped("lr_scheduler_kwargs", "training.lr_scheduler_kwargs", t.take("lr_scheduler_kwargs"))
    if t.has("warmup_steps"):
        t.mapped("warmup_steps", "training.warmup_steps", t.take("warmup_steps"))
    elif t.has("warmup_ratio"):
        t.mapped("warmup_ratio", "training.warmup_ratio", t.take("warmup_ratio"))
    else:
        t.default(
            "warmup_steps",
            "training.warmup_ratio",
            0.03,
            "Axolotl warms up for 3% of the steps, at most 100: the cap is not carried (runs over 3,333 steps "
            "warm up longer here)",
        )
    t.defaulted("optimizer", "training.optimizer", "adamw_torch_fused", "Axolotl's default")
    t.defaulted("weight_decay", "training.weight_decay", 0.0, "Axolotl's default")
    t.defaulted("max_grad_norm", "training.max_grad_norm", 1.0, "transformers' default")
    t.defaulted("sequence_len", "training.max_length", 512, "Axolotl's default 512 (the recipe's is 1024)")
    packing = t.take("sample_packing", False)
    t.given_or_default("sample_packing", "training.packing", bool(packing), "")
    if t.has("gradient_checkpointing"):
        t.mapped("gradient_checkpointing", "training.gradient_checkpointing", bool(t.take("gradient_checkpointing")))
    train_on_inputs = t.take("train_on_inputs", False)
    if t.get("objective.kind") == "sft":
        if train_on_inputs:
            t.mapped("train_on_inputs", "objective.completion_only_loss", False, "the prompt trains too")
            t.put("objective.assistant_only_loss", False)
        else:
            t.given_or_default(
                "train_on_inputs",
                "objective.completion_only_loss",
                "auto",
                "false: only completions (and assistant turns) train, the recipe's `auto`",
            )
    elif t.has("train_on_inputs"):
        why = "raw text trains on every token" if t.get("objective.kind") == "pretrain" else "prompts never train here"
        t.not_needed("train_on_inputs", why)
    key, alpha = t.first_of("neftune_noise_alpha", "noisy_embedding_alpha")
    if alpha is not None and t.get("objective.kind") == "sft":
        t.mapped(key, "objective.neftune_noise_alpha", alpha)
    elif alpha is not None:
        t.dropped(key, "NEFTune applies to SFT in a recipe", alpha)
    _schedules(t)
    t.defaulted("seed", "training.seed", 42, "Axolotl's default")
    if t.has("logging_steps"):
        t.mapped("logging_steps", "training.logging_every", t.take("logging_steps"))
    else:
        t.row(
            "logging_steps (unset)",
            "default",
            "training.logging_every",
            10,
            "Axolotl logs every 0.5% of the steps, at most 10: the recipe's 10",
        )
    t.timeout("ddp_timeout")
    plugins = t.take("plugins") or []
    if any("liger" in str(p).lower() for p in plugins):
        t.mapped("plugins", "training.kernels", "liger", "Liger's kernels, applied through TRL's use_liger_kernel")
        for key in [k for k in t.source if k.startswith("liger_")]:
            t.take(key)
            t.not_needed(key, "the plan applies Liger's kernels for the model type as a whole")
    others = [p for p in plugins if "liger" not in str(p).lower()]
    if others:
        t.dropped("plugins", "Axolotl plugins run Axolotl's own code; a recipe has none", others)
    if t.has("save_only_model"):
        t.mapped("save_only_model", "training.save_only_model", bool(t.take("save_only_model")))


def _schedules(t: Translation) -> None:
    for steps_key, per_epoch_key, strategy_key, what in (
        ("eval_steps", "evals_per_epoch", "eval_strategy", "eval"),
        ("save_steps", "saves_per_epoch", "save_strategy", "save"),
    ):
        steps, per_epoch, strategy = t.take(steps_key), t.take(per_epoch_key), t.take(strategy_key)
        if what == "eval" and (steps or per_epoch) and not t.evaluates():
            t.not_needed(
                steps_key if steps else per_epoch_key,
                "no eval data (val_set_size 0, no test_datasets): Axolotl does not evaluate",
            )
        elif steps is not None and steps >= 1:
            t.mapped(steps_key, f"training.{what}_every", int(steps))
        elif steps is not None:
            t.dropped(steps_key, "a fraction of the run: give evals/saves per epoch or steps", steps)
        elif per_epoch:
            t.mapped(per_epoch_key, f"training.{what}s_per_epoch", per_epoch)
        if strategy == "no" and what == "save":
            t.dropped(strategy_key, "a run always saves its result; checkpoints follow save_every or each epoch")
        elif strategy == "no" and not t.evaluates():
            t.not_needed(strategy_key, "no: there is no eval data either")
        elif strategy == "no":
            t.dropped(
                strategy_key,
                "with eval data the recipe evaluates (each epoch by default); drop the eval data to not evaluate",
            )
        elif strategy:
            t.not_needed(strategy_key, f"`{strategy}`: what the recipe does with the fields above")
    limit = t.take("save_total_limit")
    if limit:
        t.mapped("save_total_limit", "training.save_total_limit", limit)
    else:  # Axolotl: `save_total_limit or 4`, so 0 is 4 too
        t.default("save_total_limit", "training.save_total_limit", 4, "Axolotl keeps the last 4 checkpoints")


def _output(t: Translation) -> None:
    if t.has("output_dir"):
        t.changed("output_dir", "output.dir", t.take("output_dir"), "relative to where `recipe run` is started")
    reporters = []
    if t.has("wandb_project"):
        reporters.append("wandb")
        t.changed(
            "wandb_project",
            "output.report_to",
            ["wandb"],
            f"set WANDB_PROJECT={t.take('wandb_project')} in the environment (a recipe names no accounts)",
        )
    if t.has("use_tensorboard") and t.take("use_tensorboard"):
        reporters.append("tensorboard")
        t.mapped("use_tensorboard", "output.report_to", reporters)
    if reporters:
        t.put("output.report_to", reporters)
    if t.has("wandb_name"):
        t.mapped("wandb_name", "output.run_name", t.take("wandb_name"))
