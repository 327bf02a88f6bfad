"""TRL's dataset keys (dataset_name, the handbook's dataset_mixture and older dataset_mixer) -> recipe sources. A
dataset's format preset is given (--dataset-format), known by its Hub id, read from a local file's first row, or
assumed from the objective (said loudly)."""

from __future__ import annotations

from typing import Any

from .sources import data_source
from .translation import ImportRefused, Translation

# Hub datasets whose format a recipe knows by name
KNOWN_DATASETS = {
    "HuggingFaceH4/ultrachat_200k": "ultrachat",
    "HuggingFaceH4/ultrafeedback_binarized": "ultrafeedback",
    "Anthropic/hh-rlhf": "hh-rlhf",
    "GAIR/lima": "lima",
    "tatsu-lab/alpaca": "alpaca",
    "mandarjoshi/trivia_qa": "triviaqa",
}


DEFAULT_FORMAT = {
    "pretrain": "text",
    "sft": "messages",
    "dpo": "preference",
    "orpo": "preference",
    "kto": "unpaired-preference",
    "reward": "preference",
    "cpo": "preference",
    "simpo": "preference",
}


# a local file's first row's columns -> TRL's standard format they make
COLUMN_FORMATS = (
    ({"prompt", "chosen", "rejected"}, "preference"),
    ({"chosen", "rejected"}, "preference"),
    ({"prompt", "completion", "label"}, "unpaired-preference"),
    ({"prompt", "completion"}, "prompt-completion"),
    ({"messages"}, "messages"),
    ({"text"}, "text"),
    ({"prompt"}, "prompt-only"),
)


def _dataset_format(t: Translation, dataset: str) -> str:
    if t.options.dataset_format:
        return t.options.dataset_format
    if dataset in KNOWN_DATASETS:
        return KNOWN_DATASETS[dataset]
    columns = _first_row_columns(t, dataset)
    for needed, fmt in COLUMN_FORMATS:
        if columns is not None and needed <= columns:
            t.row(f"({dataset} columns)", "default", "datasets format", fmt, f"its first row has {sorted(needed)}")
            return fmt
    fmt = DEFAULT_FORMAT.get(t.get("objective.kind"), "messages")
    if any(dataset in w for w in t.warnings):
        return fmt
    t.warnings.append(
        f"the format of {dataset} is not known here: assumed `{fmt}` (TRL's standard columns); pass "
        "--dataset-format if it differs"
    )
    return fmt


def _first_row_columns(t: Translation, dataset: str) -> "set[str] | None":
    """The keys of a local JSON Lines (or JSON) file's first row, or None."""
    import json

    path = t.local_path(dataset)
    if path is None or not path.is_file() or path.suffix not in (".jsonl", ".json"):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.readline() if path.suffix == ".jsonl" else f.read()
        row = json.loads(text)
    except (OSError, ValueError):
        return None
    row = row[0] if isinstance(row, list) and row else row
    return set(row) if isinstance(row, dict) else None


def trl_datasets(t: Translation) -> None:
    train: list[dict] = []
    evals: list[dict] = []
    if t.has("dataset_name"):
        name = t.take("dataset_name")
        source = data_source(t, name, config=t.take("dataset_config"))
        fmt = _dataset_format(t, name)
        split = t.take("dataset_train_split", "train")
        train.append({"source": source, "split": split, "format": fmt})
        t.row("dataset_name", "mapped", "datasets.train.0.source", source, f"format {fmt}")
        if t.has("dataset_config"):
            t.row("dataset_config", "mapped", "datasets.train.0.source", source, "the Hub dataset's configuration")
        if t.has("dataset_train_split"):
            t.row("dataset_train_split", "mapped", "datasets.train.0.split", split, "")
        if t.take("eval_strategy", "no") != "no":
            evals.append({"source": source, "split": t.take("dataset_test_split", "test"), "format": fmt})
            t.row("dataset_test_split", "mapped", "datasets.eval.0.split", evals[-1]["split"], "")
        elif t.has("dataset_test_split"):
            t.not_needed("dataset_test_split", "eval_strategy is no: nothing is evaluated")
    mixture = t.take("dataset_mixture")
    if mixture:
        for i, d in enumerate(mixture.get("datasets") or []):
            train.append(
                _mixture_entry(
                    t,
                    f"dataset_mixture.datasets.{i}",
                    d["id"],
                    d.get("config"),
                    d.get("split", "train"),
                    d.get("weight"),
                )
            )
        if any(d.get("columns") for d in mixture.get("datasets") or []):
            t.row("dataset_mixture.datasets.*.columns", "not needed", "", "", "the format preset reads its columns")
        if mixture.get("test_split_size"):
            t.dropped(
                "dataset_mixture.test_split_size",
                "a count of held-out rows; the recipe holds out a fraction "
                "(datasets.eval_fraction) or reads eval sources",
                mixture["test_split_size"],
            )
        if mixture.get("seed") not in (None, 0):
            t.dropped("dataset_mixture.seed", "the mixture is shuffled with training.seed", mixture["seed"])
    mixer = t.take("dataset_mixer")  # the handbook's older shape: {hub id: fraction} and dataset_splits
    if mixer:
        splits = t.take("dataset_splits", ["train", "test"])
        if t.has("dataset_splits"):
            t.row("dataset_splits", "mapped", "datasets.*.split", splits, "`train` splits train, the others evaluate")
        for name, fraction in mixer.items():
            for split in splits:
                entry = _mixture_entry(
                    t, f"dataset_mixer.{name}", name, None, split, fraction if "train" in split else 1.0
                )
                (train if "train" in split else evals).append(entry)
    if not train:
        raise ImportRefused("no dataset: dataset_name, dataset_mixture or dataset_mixer names the training data")
    t.put("datasets.train", train)
    if evals:
        t.put("datasets.eval", evals)
    key, workers = t.first_of("dataset_num_proc", "preprocessing_num_workers")  # the handbook's older name second
    if workers is not None:
        t.mapped(key, "datasets.num_proc", workers)


def _mixture_entry(t: Translation, where: str, name: str, config: Any, split: str, weight: Any) -> dict:
    fmt = _dataset_format(t, name)
    entry = {
        "source": data_source(t, name, config=None if config in (None, "default") else config),
        "split": split,
        "format": fmt,
    }
    if weight is not None and float(weight) < 1:
        entry["split"] = f"{split}[:{float(weight) * 100:g}%]"
        t.row(where, "changed", "datasets split", entry["split"], "the first rows, not a shuffled subset")
    else:
        t.row(where, "mapped", "datasets", f"{entry['source']} {split}", f"format {fmt}")
    return entry
