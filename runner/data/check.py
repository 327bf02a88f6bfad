"""`recipe data RECIPE --check`: every row of every train and eval source read, mapped through the recipe's format
and columns and checked; each problem located (FILE:LINE for jsonl/json/csv/text files, split and row index for
Hub, parquet and save_to_disk sources) and counted by kind (runner.data.formats.KINDS), with exact duplicates and
the rows each split keeps.

Streams: jsonl, csv and text files are read line by line, a json file element by element, parquet by record
batches, Hub and save_to_disk datasets through `datasets` (memory-mapped); duplicates are counted from 8-byte row
hashes. The same reader and row check serve the training process when `datasets.bad_rows: skip` (sources.py), so
the rows it skips are exactly the rows this check reports.

Here: each source scanned (a large jsonl file in parallel parts), duplicates found, split sizes checked. The rows
are read by readers.py and checked by rowcheck.py, the result is report.py's Report, and cache.py keeps it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from schemas.datasets import DatasetSource, split_source

from .loading import Where
from .readers import SourceUnreadable, jsonl_rows, locate, read_source, row_slice
from .report import Finding, Report, SourceCount
from .rowcheck import RowChecker, row_digest

EXAMPLES = 3  # located examples kept per kind


@dataclass
class Scan:
    """One source (or a part of one) read and checked: what the report needs, bounded in size."""

    rows: int = 0
    columns: set = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)  # bad rows by (kind, column)
    examples: list = field(default_factory=list)  # [(kind, column, number, detail, at)], EXAMPLES per (kind, column)
    digests: Any = None  # array('Q') of the good rows' hashes, in order
    numbers: Any = None  # array('Q') of their line numbers / row indices
    types: dict = field(default_factory=dict)  # first type of each column
    first_types: dict = field(default_factory=dict)  # the types this part set itself (parallel parts)

    def __post_init__(self) -> None:
        from array import array

        self.digests = array("Q") if self.digests is None else self.digests
        self.numbers = array("Q") if self.numbers is None else self.numbers

    def merge(self, other: "Scan") -> None:
        self.rows += other.rows
        self.columns |= other.columns
        self.counts.update(other.counts)
        shown = Counter(example[:2] for example in self.examples)
        for example in other.examples:
            if shown[example[:2]] < EXAMPLES:
                shown[example[:2]] += 1
                self.examples.append(example)
        self.digests.extend(other.digests)
        self.numbers.extend(other.numbers)
        for column, kind in other.types.items():
            self.types.setdefault(column, kind)


def scan(rows: Iterator[tuple[int, Any, Optional[tuple]]], check: RowChecker) -> Scan:
    out = Scan()
    known = set(check.types)
    shown: Counter = Counter()
    digests, numbers, columns = out.digests, out.numbers, out.columns
    for number, row, problem in rows:
        out.rows += 1
        if row is not None:
            columns.update(row)
            if problem is None:
                records, problem = check(row)
        if problem is not None:
            kind, detail = problem[0], problem[1]
            column = problem[2] if len(problem) > 2 else None
            out.counts[(kind, column)] += 1
            if shown[(kind, column)] < EXAMPLES:
                shown[(kind, column)] += 1
                at = problem[3] if len(problem) > 3 else None  # the column number in the line, when known
                out.examples.append((kind, column, number, detail, at))
            continue
        digests.append(row_digest(records))
        numbers.append(number)
    out.types = dict(check.types)
    out.first_types = {c: k for c, k in check.types.items() if c not in known}
    return out


PARALLEL_BYTES = 64 * 2**20  # a jsonl file at least this large is checked in parts, one per core


def _spans(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """(start byte, end byte, first line number) of `parts` pieces of a file, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as f:
        for i in range(1, parts):
            f.seek(size * i // parts)
            f.readline()
            cuts.append(max(cuts[-1], f.tell()))
        cuts.append(size)
        spans, line = [], 1
        for start, end in zip(cuts, cuts[1:]):
            spans.append((start, end, line))
            f.seek(start)
            remaining, newlines = end - start, 0
            while remaining > 0:
                block = f.read(min(remaining, 1 << 24))
                newlines += block.count(b"\n")
                remaining -= len(block)
            line += newlines
    return spans


def _scan_part(args: tuple) -> Scan:
    entry, objective, max_bytes, span, types = args
    path = Path(split_source(entry.source)[1])
    return scan(jsonl_rows(path, max_bytes, span), RowChecker(entry, objective, types))


def scan_source(entry: DatasetSource, objective: str, max_bytes: int) -> Scan:
    """Read and check every row of one source; a large jsonl file (no slice, no `limit`) in parallel parts whose
    result is that of one pass (a part that met a column first with another type than an earlier part is read
    again with the earlier types)."""
    kind, rest, _ = split_source(entry.source)
    path = Path(rest)
    workers = min(os.cpu_count() or 1, 8)
    parallel = (
        kind == "jsonl"
        and workers > 1
        and entry.limit is None
        and row_slice(entry.split) == (0, None)
        and path.is_file()
        and path.stat().st_size >= PARALLEL_BYTES
    )
    if not parallel:
        return scan(read_source(entry, max_bytes), RowChecker(entry, objective))
    import multiprocessing

    spans = _spans(path, workers)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_scan_part, [(entry, objective, max_bytes, span, {}) for span in spans])
    total = parts[0]
    for span, part in zip(spans[1:], parts[1:]):
        if any(total.types.get(c, k) != k for c, k in part.first_types.items()):
            part = _scan_part((entry, objective, max_bytes, span, total.types))
        total.merge(part)
    return total


def _duplicates(d: Any) -> tuple[Any, Any]:
    """(positions of rows that repeat an earlier row, position of the row each repeats), in row order; `d`: the
    rows' hashes (numpy uint64)."""
    import numpy as np

    order = np.argsort(d, kind="stable")
    ordered = d[order]
    repeat = np.zeros(len(d), dtype=bool)
    repeat[1:] = ordered[1:] == ordered[:-1]
    group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(d))))
    firsts = order[group_start]
    dup, of = order[repeat], firsts[repeat]
    by_position = np.argsort(dup, kind="stable")
    return dup[by_position], of[by_position]


def _where_is(position: int, bounds: Any, owners: list) -> str:
    """The location of the split's `position`-th good row (sources concatenated)."""
    import numpy as np

    source = int(np.searchsorted(bounds, position, side="right")) - 1
    entry, numbers = owners[source]
    return locate(entry, int(numbers[position - bounds[source]]))


def check_recipe(recipe: Any) -> Report:
    """Read every row of every train and eval source of the recipe."""
    import numpy as np

    d = recipe.datasets
    report = Report(bad_rows=d.bad_rows, duplicates_policy=d.duplicates)
    objective = recipe.objective.kind
    split_digests: dict[str, Any] = {}
    for split in ("train", "eval"):
        entries = getattr(d, split)
        if not entries:
            continue
        digests, owners = [], []  # per source: the good rows' hashes, and (entry, numbers) to locate them
        for i, entry in enumerate(entries):
            where = str(Where(split, i, entry.source))
            count = SourceCount(where)
            report.sources.append(count)
            try:
                result = scan_source(entry, objective, d.max_row_bytes)
            except SourceUnreadable as exc:
                report.unreadable.append(f"{where}: {exc}")
                continue
            count.rows, count.columns = result.rows, result.columns
            absent = [c for c in entry.columns.values() if c not in result.columns]
            if absent and result.rows:  # as load_raw refuses it
                report.unreadable.append(
                    f"{where}: `columns` names {', '.join(repr(c) for c in absent)}, which the data does not have; "
                    f"its columns: {', '.join(sorted(result.columns))}"
                )
            everywhere = [c for (k, c), n in result.counts.items() if k == "missing-field" and c and n == result.rows]
            for column in everywhere:  # a column no row has: one message about the mapping, not a line per row
                mapped = f" (after `columns`: {entry.columns})" if entry.columns else ""
                report.unreadable.append(
                    f"{where}: format '{entry.format}' needs column {column}{mapped}; the data has: "
                    f"{', '.join(sorted(result.columns)) or 'no columns'}. Map yours with `columns: {{{column}: "
                    "your_column}`"
                )
            for (kind, column), n in result.counts.items():
                if column not in everywhere or kind != "missing-field":
                    report.counts[kind] += n
                    count.bad += n
            for kind, column, number, detail, at in result.examples:
                if column not in everywhere or kind != "missing-field":
                    shown = report.examples.setdefault(kind, [])
                    if len(shown) < EXAMPLES:
                        shown.append(Finding(kind, locate(entry, number), detail, column, at))
            digests.append(np.frombuffer(result.digests, dtype=np.uint64))
            owners.append((entry, np.frombuffer(result.numbers, dtype=np.uint64)))
        joined = np.concatenate(digests) if digests else np.zeros(0, dtype=np.uint64)
        dup, of = _duplicates(joined)
        bounds = np.cumsum([0] + [len(x) for x in digests])

        report.duplicates[split] = len(dup)
        if len(dup):
            report.duplicate_examples[split] = [
                f"{_where_is(int(a), bounds, owners)} repeats {_where_is(int(b), bounds, owners)}"
                for a, b in zip(dup[:EXAMPLES], of[:EXAMPLES])
            ]
        report.split_rows[split] = len(joined) - (len(dup) if d.duplicates == "drop" else 0)
        split_digests[split] = joined
    if "eval" in split_digests and "train" in split_digests:
        report.eval_in_train = int(np.isin(split_digests["eval"], split_digests["train"]).sum())
    _check_split_sizes(recipe, report)
    return report


def _check_split_sizes(recipe: Any, report: Report) -> None:
    """A split left without rows (by `limit`, a slice, skipped rows) stops a run before it starts."""
    import math

    d = recipe.datasets
    for split, n in report.split_rows.items():
        if n == 0 and not any(u.startswith(f"datasets.{split}.") for u in report.unreadable):
            report.unreadable.append(
                f"datasets.{split}: no rows left to {'train on' if split == 'train' else 'evaluate on'} "
                "(after the split, `limit`, skipped bad rows and dropped duplicates)"
            )
    n = report.split_rows.get("train", 0)
    if d.eval_fraction and not d.eval and n and n - math.ceil(n * d.eval_fraction) < 1:
        report.unreadable.append(
            f"datasets.eval_fraction: {d.eval_fraction} of {n} training rows leaves none to train on"
        )
