"""Axolotl's `datasets` and `test_datasets` entries -> recipe sources with a format preset and column mapping.
Dataset `type:`s are Axolotl's prompt strategies (src/axolotl/prompt_strategies/)."""

from __future__ import annotations

from typing import Any

from .sources import data_source
from .translation import EMPTY, ImportRefused, Translation

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


def axolotl_datasets(t: Translation) -> None:
    entries = t.take("datasets") or []
    if not entries:
        raise ImportRefused("datasets is empty: nothing to train on")
    train = [_axolotl_dataset(t, f"datasets.{i}", d) for i, d in enumerate(entries)]
    t.put("datasets.train", train)
    evals = [_axolotl_dataset(t, f"test_datasets.{i}", d) for i, d in enumerate(t.take("test_datasets") or [])]
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


def _axolotl_dataset(t: Translation, where: str, d: dict) -> dict:
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
        if value not in EMPTY:
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
