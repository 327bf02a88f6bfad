"""Load a recipe's datasets with `datasets`, rename columns, mix, split, and convert rows for the trainer.

Imports `datasets` lazily: only `recipe data`, the preflight and training call this module.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Optional

from schemas.datasets import DatasetSource, split_source
from schemas.objectives import facts

from .cache import code_hash
from .formats import FormatError, convert, for_objective
from .loading import DataError, Where, load_with_datasets
from .readers import reads_lines
from .rowcheck import good_rows, row_digest


def local_path(entry: DatasetSource) -> Optional[Path]:
    kind, rest, _ = split_source(entry.source)
    return None if kind == "hf" else Path(rest)


def _good_rows_dataset(entry: DatasetSource, objective: str, max_bytes: int) -> Any:
    """A local file's rows that pass the data check (rowcheck.good_rows), through the check's own reader: what
    `datasets.bad_rows: skip` trains on. Cached by `datasets` under the file's size and modification time."""
    import datasets

    path = Path(split_source(entry.source)[1])
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns, code_hash(), objective, max_bytes)

    def rows(entry: DatasetSource, objective: str, max_bytes: int, stamp: tuple) -> Any:
        yield from good_rows(entry, objective, max_bytes)

    return datasets.Dataset.from_generator(
        rows, gen_kwargs={"entry": entry, "objective": objective, "max_bytes": max_bytes, "stamp": stamp}
    )


def load_raw(entry: DatasetSource, where: Where, skip_bad: Optional[tuple[str, int]] = None) -> Any:
    """The source's rows as a `datasets.Dataset`, with `columns` renamed to the canonical names and `limit` applied.
    `skip_bad` (objective, max_row_bytes): a local file is read through the data check, without its bad rows."""
    if skip_bad and reads_lines(entry):
        try:
            ds = _good_rows_dataset(entry, *skip_bad)
        except Exception as exc:
            raise DataError(f"{where}: cannot read the dataset: {type(exc).__name__}: {exc}") from None
        return _canonical(ds, entry, where, limit=False)  # the check's reader applied the split and `limit`
    ds = load_with_datasets(entry, where)
    return _canonical(ds, entry, where, limit=True)


def _canonical(ds: Any, entry: DatasetSource, where: Where, limit: bool) -> Any:
    rename = {file_col: canonical for canonical, file_col in entry.columns.items() if file_col != canonical}
    missing = [c for c in rename if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{where}: `columns` names {', '.join(repr(c) for c in missing)}, which the data does not have; "
            f"its columns: {', '.join(ds.column_names)}"
        )
    if rename:
        clashing = [canonical for canonical in rename.values() if canonical in ds.column_names]
        if clashing:
            ds = ds.remove_columns(clashing)
        ds = ds.rename_columns(rename)
    if limit and entry.limit is not None:
        ds = ds.select(range(min(entry.limit, len(ds))))
    return ds


def check_columns(entry: DatasetSource, ds: Any, where: Where, rows: int = 5) -> None:
    """The first rows have the format's columns with the right shapes; raises DataError naming what is missing."""
    spec = entry.spec
    required = [c for c in spec.columns if c not in spec.optional]
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        mapped = f" (after `columns`: {entry.columns})" if entry.columns else ""
        raise DataError(
            f"{where}: format '{entry.format}' needs column(s) {', '.join(missing)}{mapped}; the data has: "
            f"{', '.join(ds.column_names)}. Map yours with `columns: {{{missing[0]}: your_column}}`"
        )
    for i in range(min(rows, len(ds))):
        try:
            convert(entry.format, ds[i])
        except FormatError as exc:
            raise DataError(f"{where}: row {i}: {exc}") from None


# Dataset columns TRL's online trainers use themselves; every other column reaches the reward functions.
TRL_ROLLOUT_COLUMNS = ("prompt", "completion", "completion_ids")


def _convert_dataset(
    ds: Any,
    entry: DatasetSource,
    objective: str,
    where: Where,
    keep: tuple = (),
    skip_bad: bool = False,
    seen: Optional[set] = None,
    num_proc: Optional[int] = None,
) -> Any:
    """Rows of `entry` in the trainer's shape; `keep` names source columns carried along unchanged (online RL:
    the reward functions receive them as keyword arguments, e.g. TriviaQA's `answer`). `skip_bad`: a row the
    format refuses is left out (else it stops the run, located); `seen`: digests of the split's rows so far, for
    dropping exact duplicates (the first copy stays), as the data check counts them; `num_proc`: processes that
    format the rows (one when dropping duplicates, which needs every row seen in order)."""

    def batch_fn(batch: dict, indices: list[int]) -> dict:
        out: dict[str, list] = {}
        for i, index in enumerate(indices):
            row = {k: v[i] for k, v in batch.items()}
            try:
                records = list(for_objective(convert(entry.format, row), objective))
            except FormatError as exc:
                if skip_bad:
                    continue
                raise DataError(f"{where}: row {index} does not fit format '{entry.format}': {exc}") from None
            if seen is not None:
                key = row_digest(records)
                if key in seen:
                    continue
                seen.add(key)
            extras = {k: row[k] for k in keep}
            for rec in records:
                for k, v in {**extras, **rec}.items():
                    out.setdefault(k, []).append(v)
        return out

    key = "|".join(map(str, (getattr(ds, "_fingerprint", ""), entry.format, objective, keep, skip_bad, seen is None)))
    key += code_hash()
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    return ds.map(
        batch_fn,
        batched=True,
        with_indices=True,
        remove_columns=ds.column_names,
        desc=f"formatting {entry.source}",
        new_fingerprint=fingerprint,
        load_from_cache_file=seen is None,  # dropping duplicates across sources needs every row seen in order
        num_proc=num_proc if seen is None and num_proc and num_proc > 1 else None,
    )


def _mix(parts: list[Any], entries: list[DatasetSource], seed: int) -> Any:
    """Concatenate sources; `samples` takes exact counts, `weight` sets shares of the total (with repetition)."""
    from datasets import concatenate_datasets

    if len(parts) == 1 and entries[0].samples is None:
        return parts[0]
    rng = random.Random(seed)
    total = sum(len(p) for p in parts)
    weights = [e.weight for e in entries]
    chosen = []
    for part, entry in zip(parts, entries):
        if entry.samples is not None:
            count = entry.samples
        elif any(w is not None for w in weights):
            share = (entry.weight or 0) / sum(w or 0 for w in weights)
            count = round(share * total)
        else:
            count = len(part)
        if len(part) == 0 or count == 0:
            continue
        indices = [i % len(part) for i in range(count)] if count > len(part) else rng.sample(range(len(part)), count)
        chosen.append(part.select(sorted(indices)))
    return concatenate_datasets(chosen).shuffle(seed=seed)


def _build(recipe: Any, split: str) -> Any:
    """The mixed, trainer-ready rows of the `train` or `eval` sources."""
    d = recipe.datasets
    entries = getattr(d, split)
    skip_bad = d.bad_rows == "skip"
    raws = []
    for i, entry in enumerate(entries):
        where = Where(split, i, entry.source)
        raw = load_raw(entry, where, skip_bad=(recipe.objective.kind, d.max_row_bytes) if skip_bad else None)
        check_columns(entry, raw, where, rows=0 if skip_bad else 5)  # skipping: bad rows are dropped below
        raws.append((raw, entry, where))
    keep: tuple = ()
    if facts(recipe.objective.kind).generates and raws:  # columns every source has, for the reward functions
        common = set.intersection(*(set(raw.column_names) for raw, _, _ in raws))
        keep = tuple(sorted(common - set(TRL_ROLLOUT_COLUMNS)))
    seen: Optional[set] = set() if d.duplicates == "drop" else None
    parts = [
        _convert_dataset(raw, entry, recipe.objective.kind, where, keep, skip_bad, seen, d.num_proc)
        for raw, entry, where in raws
    ]
    return _mix(parts, entries, recipe.training.seed)


def load_splits(recipe: Any) -> tuple[Any, Optional[Any]]:
    """(train, eval) as the trainer reads them; eval from `eval_fraction` when there are no eval sources, else None."""
    train = _build(recipe, "train")
    if recipe.datasets.eval:
        return train, _build(recipe, "eval")
    if recipe.datasets.eval_fraction:
        halves = train.train_test_split(test_size=recipe.datasets.eval_fraction, seed=recipe.training.seed)
        return halves["train"], halves["test"]
    return train, None


def load_split(recipe: Any, split: str) -> Optional[Any]:
    """One of `load_splits`, reading only the sources it needs."""
    if split == "eval" and recipe.datasets.eval:
        return _build(recipe, "eval")
    if split == "train" and not recipe.datasets.eval_fraction:
        return _build(recipe, "train")
    return load_splits(recipe)[0 if split == "train" else 1]
