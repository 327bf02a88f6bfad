"""Reading one source through `datasets` (a Hub dataset, a `save_to_disk` folder, a local file), as the source
has it; and how a recipe's dataset is named in messages. The layer under sources.py (which renames, converts and
mixes) and the data check's reader for what it does not read itself (readers.py).

Imports `datasets` lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.datasets import DatasetSource, split_source

BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet", "text": "text"}


class DataError(Exception):
    """A dataset cannot be read or does not match its format; the message names the dataset and what to fix."""


@dataclass(frozen=True)
class Where:
    """Which entry of the recipe a dataset is, for messages: `datasets.train.0 (jsonl:data/x.jsonl)`."""

    split: str
    index: int
    source: str
    section: str = "datasets"  # `evaluation` for an evaluation task's data (split `tasks`)

    def __str__(self) -> str:
        return f"{self.section}.{self.split}.{self.index} ({self.source})"


def _select_split(ds: Any, split: str, where: Where) -> Any:
    """A `save_to_disk` folder may hold a DatasetDict: take the split (slices like `train[:100]` included)."""
    from datasets import DatasetDict

    if not isinstance(ds, DatasetDict):
        return ds
    name, _, rest = split.partition("[")
    if name not in ds:
        raise DataError(f"{where}: the folder has splits {', '.join(ds)}, not '{name}'")
    part = ds[name]
    if rest:
        start, _, stop = rest.rstrip("]").partition(":")
        part = part.select(range(int(start or 0), min(int(stop) if stop else len(part), len(part))))
    return part


def load_with_datasets(entry: DatasetSource, where: Where) -> Any:
    """The source's rows as `datasets` reads them: `split` applied, `columns` and `limit` not."""
    import datasets

    kind, rest, config = split_source(entry.source)
    try:
        if kind == "hf":
            ds = datasets.load_dataset(rest, config, split=entry.split)
        elif kind == "local":
            if not Path(rest).exists():
                raise DataError(f"{where}: no such folder: {rest}")
            ds = _select_split(datasets.load_from_disk(rest), entry.split, where)
        else:
            if not Path(rest).exists():
                raise DataError(f"{where}: no such file: {rest}")
            split = entry.split if entry.split.startswith("train") else "train"
            if not entry.split.startswith("train"):
                raise DataError(
                    f"{where}: a local file is one split; use `split: train` (or a slice like `train[:100]`)"
                )
            ds = datasets.load_dataset(BUILDERS[kind], data_files=rest, split=split)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs the source and the reason
        raise DataError(f"{where}: cannot read the dataset: {type(exc).__name__}: {exc}") from None
    return ds
