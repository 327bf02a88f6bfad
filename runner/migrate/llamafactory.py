"""LLaMA-Factory YAML (+ its dataset_info.json) -> recipe. Defaults are LLaMA-Factory's (hparams/*.py) and, for
the training arguments it does not set, transformers' TrainingArguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .deepspeed import deepspeed_file
from .hfargs import output_arguments, precision_arguments, training_arguments
from .sources import data_source
from .translation import TEMPLATES, ImportRefused, Translation

HARMLESS = {
    "do_train": "a recipe trains",
    "overwrite_cache": "data is cached by its fingerprint and recomputed when it changes",
    "overwrite_output_dir": "`recipe run --overwrite` replaces a finished run; the training is the same",
    "plot_loss": "`recipe runs OUTPUT_DIR` shows the loss curves",
    "resume_from_checkpoint": "`recipe run --resume` continues from the last checkpoint",
    "dataloader_num_workers": "data loading workers change speed only",
    "per_device_eval_batch_size": "evaluation uses the training micro batch",
    "logging_strategy": "the recipe logs every training.logging_every steps",
    "log_level": "logging detail, not training",
    "push_to_hub": "publishing is not part of a run",
    "hub_model_id": "publishing is not part of a run",
}
STAGES = {"sft": "sft", "pt": "pretrain", "dpo": "dpo", "kto": "kto", "rm": "reward"}


def translate(t: Translation) -> None:
    t.begin("model_name_or_path")
    if t.has("model_revision"):
        t.mapped("model_revision", "model.revision", t.take("model_revision"))
    if t.has("adapter_name_or_path"):
        paths = str(t.take("adapter_name_or_path")).split(",")
        if len(paths) > 1:
            raise ImportRefused("adapter_name_or_path names several adapters: merge them first (`recipe merge`)")
        t.mapped("adapter_name_or_path", "adapter.start_from", t.model_path(paths[0]))
    precision_arguments(t)
    _attention(t)
    _tokens(t)
    world = t.hardware()
    _adapter(t)
    _objective(t)
    _datasets(t)
    _training(t, world)
    deepspeed_file(t, "deepspeed")
    output_arguments(t)
    t.finish(HARMLESS)


def _attention(t: Translation) -> None:
    value = t.take("flash_attn", "auto")
    mapping = {"auto": "auto", "fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager"}
    if value in mapping:
        if t.has("flash_attn"):
            t.mapped("flash_attn", "model.attention", mapping[value])
    else:
        t.changed("flash_attn", "model.attention", "auto", f"`{value}` is not planned: auto picks FA2 or sdpa")


def _tokens(t: Translation) -> None:
    tokens: list[str] = []
    for key in ("add_special_tokens", "new_special_tokens", "add_tokens"):
        if t.has(key):
            tokens += [s.strip() for s in str(t.take(key)).split(",") if s.strip()]
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


def _adapter(t: Translation) -> None:
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


def _objective(t: Translation) -> None:
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


def _dataset_info(t: Translation) -> tuple[dict, Path]:
    given = t.options.dataset_info
    folder = t.take("dataset_dir", "data")
    candidates = (
        [given]
        if given
        else [t.origin.parent / folder / "dataset_info.json", Path.cwd() / folder / "dataset_info.json"]
    )
    for path in candidates:
        if path and Path(path).is_file():
            try:
                return json.loads(Path(path).read_text(encoding="utf-8")), Path(path).resolve().parent
            except ValueError as exc:
                raise ImportRefused(f"{path}: not valid JSON: {exc}") from None
    raise ImportRefused(
        f"the config names datasets ({t.source.get('dataset')}) described in LLaMA-Factory's dataset_info.json, "
        f"which is not at {candidates[0]}: pass --dataset-info PATH"
    )


def _datasets(t: Translation) -> None:
    names = [s.strip() for s in str(t.take("dataset") or "").split(",") if s.strip()]
    if not names:
        raise ImportRefused("dataset is missing: nothing to train on")
    info, folder = _dataset_info(t)
    t.row(
        "dataset", "mapped", "datasets.train", names, "one source per name, described by dataset_info.json (rows below)"
    )
    if t.has("dataset_dir"):
        t.not_needed("dataset_dir", "where dataset_info.json was read; data paths are written relative to the recipe")
    limit = t.take("max_samples")
    train = [_dataset(t, info, folder, name, limit) for name in names]
    t.put("datasets.train", train)
    if limit:
        t.row("max_samples", "mapped", "datasets.*.limit", limit, "the first rows of each dataset")
    evals = [s.strip() for s in str(t.take("eval_dataset") or "").split(",") if s.strip()]
    if evals:
        t.put("datasets.eval", [_dataset(t, info, folder, name, limit) for name in evals])
        t.row("eval_dataset", "mapped", "datasets.eval", evals, "")
    val = t.take("val_size", 0)
    if val and evals:
        t.not_needed("val_size", "eval_dataset is the eval data")
    elif val:
        if val >= 1:
            t.dropped(
                "val_size", f"a count of rows ({val}); the recipe holds out a fraction: set datasets.eval_fraction"
            )
        else:
            t.mapped("val_size", "datasets.eval_fraction", val)
    mix = t.take("mix_strategy", "concat")
    if mix != "concat":
        t.dropped("mix_strategy", "the recipe concatenates sources, or mixes them by weight or samples")
    elif t.has("mix_strategy"):
        t.not_needed("mix_strategy", "concat: what the recipe does with several sources")
    if t.has("preprocessing_num_workers"):
        t.mapped("preprocessing_num_workers", "datasets.num_proc", t.take("preprocessing_num_workers"))


def _dataset(t: Translation, info: dict, folder: Path, name: str, limit: Optional[int]) -> dict:
    where = f"dataset_info[{name}]"
    if name not in info:
        raise ImportRefused(f"dataset `{name}` is not in dataset_info.json ({', '.join(sorted(info)[:8])}, ...)")
    attr = dict(info[name])
    if attr.get("hf_hub_url"):
        source = f"hf:{attr['hf_hub_url']}" + (f":{attr['subset']}" if attr.get("subset") else "")
    elif attr.get("file_name"):
        path = folder / attr["file_name"]
        if not path.exists():
            raise ImportRefused(f"{where}: {path} does not exist")
        source = data_source(t, str(path))
    else:
        raise ImportRefused(f"{where}: neither hf_hub_url nor file_name (ModelScope/OpenMind and scripts are not read)")
    entry: dict[str, Any] = {"source": source}
    if attr.get("split", "train") != "train":
        entry["split"] = attr["split"]
    if attr.get("folder"):
        t.dropped(
            f"{where}.folder", "a Hub repository's sub-folder is not read; name the files instead", attr["folder"]
        )
    formatting = attr.get("formatting", "alpaca")
    ranking = bool(attr.get("ranking"))
    columns = attr.get("columns")
    tags = attr.get("tags")

    def column(key: str, default: str) -> Optional[str]:
        # LLaMA-Factory: once `columns` is given, the columns it leaves out are unset, not their defaults
        return (columns or {}).get(key) if columns is not None else default

    for unread in ("system", "history", "tools", "images", "videos", "audios"):
        if column(unread, None):
            t.dropped(
                f"{where}.columns.{unread}",
                f"the `{unread}` column is not read by the recipe's presets",
                column(unread, None),
            )
    if column("kto_tag", None):
        raise ImportRefused(
            f"{where}: KTO rows (kto_tag) are a conversation and a label; convert them to "
            "`prompt`, `completion`, `label` columns (format unpaired-preference)"
        )
    if formatting == "alpaca" and t.get("objective.kind") == "pretrain":  # pretraining reads the prompt column as text
        text = column("prompt", "instruction")
        fmt, cols = "text", ({"text": text} if text != "text" else {})
    elif formatting == "alpaca":
        mapping = {"instruction": column("prompt", "instruction"), "input": column("query", "input")}
        if columns is not None and not columns.get("query"):
            t.row(
                f"{where}.columns",
                "changed",
                "datasets.*.columns",
                columns,
                "`query` is not listed, so LLaMA-Factory reads no input; the recipe's alpaca preset reads an `input` "
                "column when the file has one",
            )
        if ranking:
            fmt = "alpaca-preference"
            mapping.update(chosen=column("chosen", None), rejected=column("rejected", None))
        else:
            fmt = "alpaca"
            mapping["output"] = column("response", "output")
        cols = {k: v for k, v in mapping.items() if v and v != k}
        if not mapping.get("input"):
            cols.pop("input", None)
    elif formatting in ("sharegpt", "openai"):
        tag = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
        if tags is not None:
            tag = {k: tags.get(k) for k in tag}
        if formatting == "openai":
            tag = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
        messages = column("messages", "conversations")
        style = (tag["role_tag"], tag["content_tag"], tag["user_tag"], tag["assistant_tag"])
        if style == ("from", "value", "human", "gpt"):
            fmt = "sharegpt-preference" if ranking else "sharegpt"
            cols = {"conversations": messages}
        elif style == ("role", "content", "user", "assistant"):
            fmt = "preference" if ranking else "messages"
            cols = {"prompt" if ranking else "messages": messages}
        else:
            raise ImportRefused(
                f"{where}: turns tagged {tag}: the recipe reads from/value with human/gpt (sharegpt) "
                "or role/content with user/assistant (messages); convert the data"
            )
        if ranking:
            cols.update(chosen=column("chosen", None), rejected=column("rejected", None))
        cols = {k: v for k, v in cols.items() if v and v != k}
    else:
        raise ImportRefused(f"{where}: formatting `{formatting}` is not read")
    entry["format"] = fmt
    if cols:
        entry["columns"] = cols
    if limit:
        entry["limit"] = limit
    if attr.get("num_samples"):
        entry["samples"] = attr["num_samples"]
        t.row(
            f"{where}.num_samples",
            "changed",
            "datasets.*.samples",
            attr["num_samples"],
            "a random choice of rows (repeated past the source's size), drawn with training.seed",
        )
    note = "alpaca prompt = instruction, blank line, input" if fmt.startswith("alpaca") else ""
    t.row(where, "mapped", f"source {source}, format {fmt}", cols or "", note)
    return entry


def _training(t: Translation, world: int) -> None:
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
