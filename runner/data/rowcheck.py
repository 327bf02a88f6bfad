"""Checking one row as the trainer will see it: `columns` renamed to the preset's names, the format's preset and
validation, each column's type against the first row's; the rows that pass (what `datasets.bad_rows: skip` trains
on), and a row's identity for counting exact duplicates.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Optional

from schemas.datasets import DatasetSource

from .formats import FormatError, convert, for_objective
from .readers import read_source


def rename(entry: DatasetSource, row: dict) -> dict:
    """The row with `columns` renamed to the preset's canonical names (a canonical column the mapping replaces is
    dropped, as `load_raw` does)."""
    if not entry.columns:
        return row
    out = {k: v for k, v in row.items() if k not in entry.columns}
    for canonical, file_col in entry.columns.items():
        if file_col in row:
            out[canonical] = row[file_col]
        elif canonical in out:
            del out[canonical]
    return out


_TYPE_NAMES = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}


class RowChecker:
    """Checks rows of one source: the format's preset and validation, and each column's type against the first
    row's (`datasets` stores a column with one type). `types`: the first types seen so far (a parallel part starts
    from those of the parts before it)."""

    def __init__(self, entry: DatasetSource, objective: str, types: Optional[dict] = None):
        self.entry, self.objective = entry, objective
        self.types: dict[str, str] = dict(types or {})
        self.columns = entry.spec.columns

    def __call__(self, row: dict) -> tuple[Optional[list[dict]], Optional[tuple]]:
        """(the trainer's records, None) or (None, (kind, detail, column))."""
        row = rename(self.entry, row)
        try:
            records = list(for_objective(convert(self.entry.format, row), self.objective))
        except FormatError as exc:
            return None, (exc.kind, str(exc), exc.column)
        types = self.types
        for column in self.columns:
            value = row.get(column)
            if value is None:
                continue
            kind = _TYPE_NAMES.get(type(value), type(value).__name__)
            first = types.setdefault(column, kind)
            if kind != first:
                return None, ("inconsistent-type", f"`{column}` is a {kind} here but a {first} in earlier rows", column)
        return records, None


def good_rows(entry: DatasetSource, objective: str, max_bytes: int) -> Iterator[dict]:
    """The source's rows (file columns) that pass every check: what training reads with `datasets.bad_rows: skip`."""
    check = RowChecker(entry, objective)
    for _, row, problem in read_source(entry, max_bytes):
        if problem is None and check(row)[1] is None:
            yield row


def row_digest(records: list[dict]) -> int:
    """A stable 8-byte hash of a row's trainer records (the same in every process)."""
    parts: list[str] = []
    for record in records:
        for key in sorted(record):
            value = record[key]
            parts.append(key)
            if isinstance(value, list):
                parts.extend(f"{m['role']}\x1e{m['content']}" for m in value)
            else:
                parts.append(repr(value))
    return int.from_bytes(
        hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )
