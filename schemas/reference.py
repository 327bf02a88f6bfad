"""docs/recipe-reference.md, generated from the Pydantic models (`recipe schema --reference`)."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .datasets import FORMATS, SOURCE_KINDS
from .hardware import load_profile, profile_names
from .recipe import Recipe

HEADER = """# Recipe reference

Generated from the Pydantic models in `schemas/` by `recipe schema --reference`; a test keeps this file
in sync. Every field below is also in the JSON Schema (`schemas/recipe.schema.json`) that editors use.
Unknown keys are errors.
"""


PRECISION = """## Weights, master weights and loading

What `recipe plan` decides for each kind of run, and what the training processes do (proven by
`tests/test_distributed.py` inside each process on CPU). `precision` is the arithmetic of forward and backward,
from `model.dtype` (`auto`: bf16 on Ampere or newer, fp16 on older GPUs, fp32 on CPU); the plan's `dtype` is what
the weights load in.

| adapter | ZeRO | weights load in | the optimizer updates | how the model is loaded |
|---|---|---|---|---|
| `full`, bf16/fp16 | none | float32 | the float32 weights (master weights); forward and backward run under autocast, which keeps a 16-bit copy of each weight | `from_pretrained` in every process, then DDP |
| `full`, bf16/fp16 | 0, 1, 2 | bfloat16/float16 | DeepSpeed's float32 master copies, partitioned by ZeRO-1/2 (with the Adam moments) | `from_pretrained` in every process; DeepSpeed keeps the 16-bit weights |
| `full`, bf16/fp16 | 3 | bfloat16/float16 | DeepSpeed's float32 master partitions | inside `deepspeed.zero.Init`: each process materialises only its shard |
| `full`, `master_weights: bfloat16` | none only | bfloat16 | the bfloat16 weights themselves (pure bf16: updates below bf16's resolution are lost) | `from_pretrained` in every process |
| `full`, fp32 | any | float32 | float32 | as above for the ZeRO stage |
| LoRA, DoRA, IA3, prompt learning | none, 0-2 | the precision's dtype (base frozen) | the adapter in float32 (PEFT) | `from_pretrained` in every process |
| LoRA, DoRA | 3 | the precision's dtype | DeepSpeed's float32 master partitions of the adapter, which TRL keeps in the base's dtype | inside `deepspeed.zero.Init`: each process holds its shard of the base |
| QLoRA (`bnb-4bit`), 8-bit | none, 0-2 | packed 4-/8-bit, the rest in the precision's dtype | the adapter, which TRL's SFT/DPO/KTO/reward/GRPO/RLOO trainers cast to bfloat16 (ORPO/CPO/SimPO keep float32) | `from_pretrained` with `device_map` set to this process's GPU |
| QLoRA (`bnb-4bit`) | 3 | packed 4-bit stored as the load dtype (`bnb_4bit_quant_storage`), the rest in it too | DeepSpeed's float32 master partitions of the bfloat16 adapter | transformers builds a quantized model whole (not under `zero.Init`) on this process's GPU; DeepSpeed then shards every parameter, 4-bit ones included, when the engine is built |

In every case the training arguments (which register the DeepSpeed config) are built and the process group is
joined before the model loads, so ZeRO-3 shards over all processes and each process's default GPU is its own.
"""


def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" if not isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{json.dumps(value)}`"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    if not [n for n in model.model_fields if n not in skip]:
        return ["No other fields."]
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {desc} |")
    return rows


def _members(field) -> list[type[BaseModel]]:
    tp = field.annotation
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for m in typing.get_args(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def recipe_reference() -> str:
    out = [HEADER, "## Top level", "", *_table(Recipe), ""]
    for name, field in Recipe.model_fields.items():
        members = _members(field)
        if not members:
            continue
        out += [f"## `{name}`", "", (field.description or ""), ""]
        if len(members) > 1:
            for m in members:
                kind = typing.get_args(m.model_fields["kind"].annotation)[0]
                out += [
                    f"### `{name}.kind: {kind}`",
                    "",
                    m.__doc__.strip() if m.__doc__ else "",
                    "",
                    *_table(m, skip=("kind",)),
                    "",
                ]
            continue
        model = members[0]
        out += [model.__doc__.strip() if model.__doc__ else "", "", *_table(model), ""]
        for sub_name, sub in model.model_fields.items():
            for sub_model in _members(sub):
                if sub_model is not model:
                    out += [
                        f"### `{name}.{sub_name}[]`" if "list" in _type(sub.annotation) else f"### `{name}.{sub_name}`",
                        "",
                        sub_model.__doc__.strip() if sub_model.__doc__ else "",
                        "",
                        *_table(sub_model),
                        "",
                    ]
    out += [
        PRECISION,
        "## Dataset sources",
        "",
        "`" + "`, `".join(k + ":" for k in SOURCE_KINDS) + "`",
        "",
        "## Dataset formats",
        "",
        "| format | canonical columns | rows become | what it reads |",
        "|---|---|---|---|",
    ]
    for fname, spec in FORMATS.items():
        cols = ", ".join(f"`{c}`" + (" (optional)" if c in spec.optional else "") for c in spec.columns)
        out.append(f"| `{fname}` | {cols} | {spec.family} | {spec.summary.replace('|', '/')} |")
    out += [
        "",
        "## Hardware profiles",
        "",
        "| profile | GPU memory (GiB) | compute capability | bf16 | CPU RAM per node (GiB) | description |",
        "|---|---|---|---|---|---|",
    ]
    for pname in profile_names():
        p = load_profile(pname)
        out.append(
            f"| `{pname}` | {p.gpu_memory_gb:g} | "
            f"{p.compute_capability if p.compute_capability is not None else '-'} | "
            f"{'yes' if p.bf16 else 'no'} | {p.cpu_ram_gb:g} | {p.description} |"
        )
    out += _rules_and_checks()
    return "\n".join(out) + "\n"


def _rules_and_checks() -> list[str]:
    """The tables of rule ids and of the plan's and preflight's check ids."""
    from .problems import CHECKS
    from .rules import RULES

    out = [
        "",
        "## Rules",
        "",
        "Cross-field rules (`schemas/rules/`, one module per family); `recipe validate --format json` reports the id.",
        "",
        "| id | severity | what it checks |",
        "|---|---|---|",
    ]
    for r in RULES:
        out.append(f"| `{r.id}` | {r.severity} | {r.summary} |")
    out += [
        "",
        "## Checks of the plan and before launch",
        "",
        "`recipe validate` and `recipe plan` report the plan's problems (`plan`), `recipe run` also the checks it "
        "makes before it starts anything (`preflight`: files, packages, the output directory, every data row); "
        "each is located at its recipe field and carries its id (`schemas/problems.py`).",
        "",
        "| id | stage | severity | what it checks |",
        "|---|---|---|---|",
    ]
    for c in CHECKS.values():
        out.append(f"| `{c.id}` | {c.stage} | {c.severity} | {c.summary} |")
    return out
