"""LLaMA-Factory's `dataset` names -> recipe sources, each read from its dataset_info.json entry (file or Hub
repository, formatting alpaca/sharegpt/openai, columns, tags, ranking)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from .sources import data_source
from .translation import ImportRefused, Translation


def comma_list(value: Any) -> list[str]:
    """LLaMA-Factory's lists of names, written `a,b,c` (blank names left out)."""
    return [s.strip() for s in str(value).split(",") if s.strip()]


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


def llamafactory_datasets(t: Translation) -> None:
    names = comma_list(t.take("dataset") or "")
    if not names:
        raise ImportRefused("dataset is missing: nothing to train on")
    info, folder = _dataset_info(t)
    t.row(
        "dataset", "mapped", "datasets.train", names, "one source per name, described by dataset_info.json (rows below)"
    )
    if t.has("dataset_dir"):
        t.not_needed("dataset_dir", "where dataset_info.json was read; data paths are written relative to the recipe")
    limit = t.take("max_samples")
    train = [_llamafactory_dataset(t, info, folder, name, limit) for name in names]
    t.put("datasets.train", train)
    if limit:
        t.row("max_samples", "mapped", "datasets.*.limit", limit, "the first rows of each dataset")
    evals = comma_list(t.take("eval_dataset") or "")
    if evals:
        t.put("datasets.eval", [_llamafactory_dataset(t, info, folder, name, limit) for name in evals])
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


def _llamafactory_dataset(t: Translation, info: dict, folder: Path, name: str, limit: Optional[int]) -> dict:
    """One dataset_info.json entry -> a recipe dataset: its source, split, format preset, columns and sizes."""
    where = f"dataset_info[{name}]"
    if name not in info:
        raise ImportRefused(f"dataset `{name}` is not in dataset_info.json ({', '.join(sorted(info)[:8])}, ...)")
    attr = dict(info[name])
    source = _dataset_source(t, where, attr, folder)
    entry: dict[str, Any] = {"source": source}
    if attr.get("split", "train") != "train":
        entry["split"] = attr["split"]
    if attr.get("folder"):
        t.dropped(
            f"{where}.folder", "a Hub repository's sub-folder is not read; name the files instead", attr["folder"]
        )
    columns = attr.get("columns")
    _unread_columns(t, where, columns)
    fmt, cols = _formatting(t, where, attr, columns)
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


def _dataset_source(t: Translation, where: str, attr: dict, folder: Path) -> str:
    """The entry's Hub repository (with its subset) or its file beside dataset_info.json."""
    if attr.get("hf_hub_url"):
        return f"hf:{attr['hf_hub_url']}" + (f":{attr['subset']}" if attr.get("subset") else "")
    if attr.get("file_name"):
        path = folder / attr["file_name"]
        if not path.exists():
            raise ImportRefused(f"{where}: {path} does not exist")
        return data_source(t, str(path))
    raise ImportRefused(f"{where}: neither hf_hub_url nor file_name (ModelScope/OpenMind and scripts are not read)")


def _column(columns: Optional[dict], key: str, default: Optional[str]) -> Optional[str]:
    """The entry's name for a column. LLaMA-Factory: once `columns` is given, the columns it leaves out are unset,
    not their defaults."""
    return (columns or {}).get(key) if columns is not None else default


def _unread_columns(t: Translation, where: str, columns: Optional[dict]) -> None:
    """Columns the recipe's presets do not read are dropped; KTO's tagged conversations are refused."""
    for unread in ("system", "history", "tools", "images", "videos", "audios"):
        if _column(columns, unread, None):
            t.dropped(
                f"{where}.columns.{unread}",
                f"the `{unread}` column is not read by the recipe's presets",
                _column(columns, unread, None),
            )
    if _column(columns, "kto_tag", None):
        raise ImportRefused(
            f"{where}: KTO rows (kto_tag) are a conversation and a label; convert them to "
            "`prompt`, `completion`, `label` columns (format unpaired-preference)"
        )


def _formatting(t: Translation, where: str, attr: dict, columns: Optional[dict]) -> tuple[str, dict]:
    """(format preset, column mapping) for the entry's `formatting` and `ranking`."""
    formatting = attr.get("formatting", "alpaca")
    ranking = bool(attr.get("ranking"))
    if formatting == "alpaca" and t.get("objective.kind") == "pretrain":  # pretraining reads the prompt column as text
        text = _column(columns, "prompt", "instruction")
        return "text", ({"text": text} if text != "text" else {})
    if formatting == "alpaca":
        return _alpaca_columns(t, where, columns, ranking)
    if formatting in ("sharegpt", "openai"):
        return _conversation_columns(where, formatting, attr.get("tags"), columns, ranking)
    raise ImportRefused(f"{where}: formatting `{formatting}` is not read")


def _alpaca_columns(t: Translation, where: str, columns: Optional[dict], ranking: bool) -> tuple[str, dict]:
    """Alpaca rows (instruction, input, output; or chosen/rejected when ranked)."""
    mapping = {"instruction": _column(columns, "prompt", "instruction"), "input": _column(columns, "query", "input")}
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
        mapping.update(chosen=_column(columns, "chosen", None), rejected=_column(columns, "rejected", None))
    else:
        fmt = "alpaca"
        mapping["output"] = _column(columns, "response", "output")
    cols = {k: v for k, v in mapping.items() if v and v != k}
    if not mapping.get("input"):
        cols.pop("input", None)
    return fmt, cols


def _conversation_columns(
    where: str, formatting: str, tags: Optional[dict], columns: Optional[dict], ranking: bool
) -> tuple[str, dict]:
    """ShareGPT or OpenAI turns: the recipe reads from/value with human/gpt, or role/content with user/assistant."""
    tag = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    if tags is not None:
        tag = {k: tags.get(k) for k in tag}
    if formatting == "openai":
        tag = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    messages = _column(columns, "messages", "conversations")
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
        cols.update(chosen=_column(columns, "chosen", None), rejected=_column(columns, "rejected", None))
    return fmt, {k: v for k, v in cols.items() if v and v != k}
