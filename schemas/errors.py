"""Turn Pydantic's validation errors into located, readable diagnostics.

Pydantic reports errors by a `loc` tuple that also names union members (`lora`,
`int`, `literal['auto']`). Here each error is mapped back onto the recipe's own
path, located through the YAML sources, worded for a person (with "did you
mean" suggestions), and errors on the same value are merged into one line.
"""

from __future__ import annotations

import re
import types
import typing
from functools import lru_cache
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from .diagnostics import Diagnostic, Location, did_you_mean
from .yamlsource import Sources, dotted

_EXPECT = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}


# Names other tools (transformers' TrainingArguments, TRL, PEFT, Axolotl) use, and where a recipe says the same.
FOREIGN_NAMES = {
    "lr": "training.learning_rate",
    "num_train_epochs": "training.epochs",
    "num_epochs": "training.epochs",
    "per_device_train_batch_size": "training.micro_batch_size",
    "micro_batch_size_per_gpu": "training.micro_batch_size",
    "batch_size": "training.global_batch_size (per optimizer step) or training.micro_batch_size (per process)",
    "gradient_accumulation_steps": "training.global_batch_size (accumulation is derived from it)",
    "lr_scheduler_type": "training.lr_scheduler",
    "max_seq_length": "training.max_length",
    "max_seq_len": "training.max_length",
    "sequence_len": "training.max_length",
    "optim": "training.optimizer",
    "save_steps": "training.save_every",
    "eval_steps": "training.eval_every",
    "logging_steps": "training.logging_every",
    "output_dir": "output.dir",
    "model_name_or_path": "model.name_or_path",
    "base_model": "model.name_or_path",
    "torch_dtype": "model.dtype",
    "bf16": "model.dtype: bfloat16",
    "fp16": "model.dtype: float16",
    "attn_implementation": "model.attention",
    "flash_attention": "model.attention: flash_attention_2",
    "load_in_4bit": "quantization.method: bnb-4bit",
    "load_in_8bit": "quantization.method: bnb-8bit",
    "bnb_4bit_quant_type": "quantization.quant_type",
    "bnb_4bit_use_double_quant": "quantization.double_quant",
    "bnb_4bit_compute_dtype": "quantization.compute_dtype",
    "lora_r": "adapter.r",
    "lora_rank": "adapter.r",
    "rank": "adapter.r",
    "lora_alpha": "adapter.alpha",
    "lora_dropout": "adapter.dropout",
    "lora_target_modules": "adapter.target_modules",
    "use_dora": "adapter.kind: dora",
    "peft_type": "adapter.kind",
    "loss_type": "objective.loss",
    "dpo_beta": "objective.beta",
    "deepspeed": "hardware.zero (the DeepSpeed config is generated)",
    "zero_stage": "hardware.zero",
    "num_gpus": "hardware.gpus_per_node",
    "nproc_per_node": "hardware.gpus_per_node",
    "train_file": "datasets.train[].source",
    "dataset_name": "datasets.train[].source",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return f"{kind} {text}"


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> Optional[tuple]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(_unwrap(a) for a in typing.get_args(tp))
    return None


def _kind_of(model: type) -> Optional[str]:
    field = getattr(model, "model_fields", {}).get("kind")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if args else None


def _step(tp: Any, part: Any) -> Any:
    """The type reached from `tp` by one element of a Pydantic `loc`; `tp` itself when `part` names a union member."""
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members is not None:
        for m in members:
            if isinstance(m, type) and issubclass(m, BaseModel) and _kind_of(m) == part:
                return m
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        others = [m for m in members if m is not type(None)]
        if len(others) == 1:
            return _step(others[0], part)
        if len(models) == 1:
            return _step(models[0], part)
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part)
        return field.annotation if field is not None else None
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    return None


def model_at(root: type, loc: tuple) -> Optional[type]:
    """The Pydantic model class at `loc` under `root`, following Pydantic's own loc (with union tags)."""
    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members:
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        tp = models[0] if len(models) == 1 else tp
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


@lru_cache(maxsize=None)
def _field_homes(root: type) -> dict[str, list[str]]:
    """Field name -> the top-level sections that have a field of that name."""
    homes: dict[str, list[str]] = {}
    for section, field in root.model_fields.items():
        tp = _unwrap(field.annotation)
        members = _union_members(tp) or (tp,)
        for m in members:
            if isinstance(m, type) and issubclass(m, BaseModel):
                for name in m.model_fields:
                    if section not in homes.setdefault(name, []):
                        homes[name].append(section)
    return homes


def data_path(loc: tuple, data: Any) -> tuple:
    """Map a Pydantic loc onto the recipe's own path, dropping union member labels."""
    node, out = data, []
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
            elif node.get("kind") == part:
                continue  # the member of a discriminated union
            else:
                out.append(part)  # a missing or unknown field
                node = None
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
        elif isinstance(part, str):
            continue  # a member label of a plain union (int, literal[...], list[str])
        else:
            out.append(part)
            node = None
    return tuple(out)


def _expected_literals(error: dict) -> list[str]:
    expected = (error.get("ctx") or {}).get("expected", "")
    return [a or b for a, b in re.findall(r"'([^']*)'|(\b\d+\b)", str(expected))]


def _message(error: dict, root: type, refused: dict[str, str]) -> str:
    etype = error["type"]
    loc = tuple(error["loc"])
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if etype == "extra_forbidden":
        name = str(loc[-1])
        model = model_at(root, loc[:-1])
        allowed = list(model.model_fields) if model else []
        msg = f"unknown field '{name}'."
        if name in FOREIGN_NAMES:
            return msg + f" In a recipe this is `{FOREIGN_NAMES[name]}`."
        hint = did_you_mean(name, allowed)
        if hint:
            return msg + hint
        homes = [h for h in _field_homes(root).get(name, []) if h != (loc[0] if loc else None)]
        if homes and len(loc) > 1:
            return msg + f" '{name}' belongs in the `{homes[0]}` section."
        if allowed:
            return msg + f" Allowed here: {', '.join(allowed)}"
        return msg
    if etype == "missing":
        name = str(loc[-1])
        model = model_at(root, loc[:-1])
        field = model.model_fields.get(name) if model else None
        desc = f" ({field.description})" if field is not None and field.description else ""
        return f"missing required field '{name}'{desc}"
    if etype == "union_tag_invalid":
        tag = ctx.get("tag")
        if tag in refused:
            return f"'{tag}' is not supported: {refused[tag]}"
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",")]
        field = ctx.get("discriminator", "kind").strip(chr(39))
        return f"unknown {field} '{tag}'.{did_you_mean(str(tag), tags)} Expected one of: {', '.join(tags)}"
    if etype == "union_tag_not_found":
        return (
            f"missing `{str(ctx.get('discriminator', 'kind')).strip(chr(39))}`, which selects the type of this section"
        )
    if etype == "literal_error":
        options = _expected_literals(error)
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"{_describe(value)} is not allowed.{hint} Expected one of: {', '.join(options)}"
    if etype in _EXPECT:
        return f"expected {_EXPECT[etype]}, got {_describe(value)}"
    msg = error["msg"]
    if etype == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif etype == "string_pattern_mismatch" and loc == ("name",):
        return (
            f"{_describe(value)} is not a valid name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    else:
        msg = msg[:1].lower() + msg[1:]
        if not isinstance(value, (dict, list)):
            msg += f" (got {_describe(value)})"
    return msg


def translate_validation_error(
    exc: ValidationError, data: Any, sources: Sources, file: str, root: Optional[type] = None
) -> list[Diagnostic]:
    from .objectives import REFUSED_KINDS
    from .recipe import Recipe

    root = root or Recipe
    grouped: dict[tuple, list[dict]] = {}
    for error in exc.errors(include_url=False):
        path = data_path(tuple(error["loc"]), data)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = path + ("kind",) if error["type"] == "union_tag_invalid" else path
        grouped.setdefault(path, []).append(error)

    out = []
    for path, errors in grouped.items():
        prefer_key = any(e["type"] in ("extra_forbidden", "missing") for e in errors)
        location = sources.locate(path, prefer_key=prefer_key) or Location(file, 1, 1)
        expectations = [_EXPECT.get(e["type"]) for e in errors]
        literals = [o for e in errors if e["type"] == "literal_error" for o in _expected_literals(e)]
        if len(errors) > 1 and all(x or e["type"] == "literal_error" for x, e in zip(expectations, errors)):
            quoted = ", ".join(f"'{o}'" for o in literals)
            wanted = [x for x in expectations if x] + (
                [quoted if len(literals) == 1 else f"one of {quoted}"] if literals else []
            )
            message = f"expected {' or '.join(dict.fromkeys(wanted))}, got {_describe(errors[0].get('input'))}"
        else:
            message = "; ".join(dict.fromkeys(_message(e, root, REFUSED_KINDS) for e in errors))
        rule = {
            "extra_forbidden": "unknown-field",
            "missing": "missing-field",
            "union_tag_invalid": "unknown-kind",
            "union_tag_not_found": "missing-field",
        }.get(errors[0]["type"], "invalid-value")
        if errors[0]["type"] == "union_tag_invalid" and (errors[0].get("ctx") or {}).get("tag") in REFUSED_KINDS:
            rule = "unsupported-objective"
        out.append(Diagnostic(location, dotted(path), message, rule))
    return out
