"""What the data check found, for the terminal and as JSON (what the cache holds and a run records): rows per
source, bad rows counted by kind with located findings, unreadable sources, duplicates and the rows each split
keeps; and what of it stops a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from schemas.problems import Problem

from .formats import KINDS


@dataclass(frozen=True)
class Finding:
    """One bad row, located in its data file: its kind (runner.data.formats.KINDS), where it is and what is wrong."""

    kind: str
    location: str  # FILE:LINE, or SOURCE split S row I
    detail: str
    column: Optional[str] = None  # the field the problem is in
    at: Optional[int] = None  # the column number in the line (1-based), when known

    @property
    def where(self) -> str:
        """FILE:LINE:COL when the column in the line is known, else the location."""
        return f"{self.location}:{self.at}" if self.at else self.location

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclass
class SourceCount:
    where: str
    rows: int = 0
    bad: int = 0
    columns: set = field(default_factory=set)


@dataclass
class Report:
    bad_rows: str  # the recipe's policy: refuse | skip
    duplicates_policy: str  # keep | drop
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # kind -> [Finding]
    sources: list = field(default_factory=list)  # [SourceCount]
    unreadable: list = field(default_factory=list)  # source-level messages (no rows to locate)
    split_rows: dict = field(default_factory=dict)  # split -> rows kept (after skipping and dropping)
    duplicates: dict = field(default_factory=dict)  # split -> rows repeating an earlier row of the split
    duplicate_examples: dict = field(default_factory=dict)  # split -> ["A repeats B"]
    eval_in_train: int = 0

    @property
    def bad(self) -> int:
        return sum(self.counts.values())

    @property
    def refused(self) -> bool:
        return bool(self.unreadable) or (self.bad > 0 and self.bad_rows == "refuse")

    def problems(self) -> list[Problem]:
        """What stops a run: each unreadable source, and the bad rows (counts and located examples) unless skipped."""
        return problems_of(self.to_json())

    def to_json(self) -> dict:
        return {
            "bad_rows": self.bad_rows,
            "duplicates_policy": self.duplicates_policy,
            "refused": self.refused,
            "rows": {s.where: s.rows for s in self.sources},
            "bad": self.bad,
            "counts": dict(self.counts.most_common()),
            "examples": {
                k: [{"location": p.location, "at": p.where, "detail": p.detail} for p in v]
                for k, v in self.examples.items()
            },
            "skipped": dict(self.counts) if self.bad_rows == "skip" else {},
            "unreadable": self.unreadable,
            "split_rows": self.split_rows,
            "duplicates": self.duplicates,
            "duplicate_examples": self.duplicate_examples,
            "eval_in_train": self.eval_in_train,
        }

    def render(self) -> str:
        lines = []
        for s in self.sources:
            bad = f", {s.bad:,} bad" if s.bad else ""
            lines.append(f"{s.where}: {s.rows:,} rows{bad}")
        lines += [f"error: {u}" for u in self.unreadable]
        if self.bad:
            lines.append(f"bad rows: {self.bad:,}")
            width = max(len(k) for k in self.counts)
            for kind, n in self.counts.most_common():
                lines.append(f"  {kind:<{width}}  {n:>7,}  {KINDS[kind]}")
                lines += [f"      {p}" for p in self.examples[kind]]
        for split, n in self.duplicates.items():
            if n:
                what = (
                    "dropped" if self.duplicates_policy == "drop" else "kept (datasets.duplicates: drop removes them)"
                )
                lines.append(f"duplicates in {split}: {n:,} rows repeat an earlier row, {what}")
                lines += [f"      {e}" for e in self.duplicate_examples.get(split, [])]
        if self.eval_in_train:
            lines.append(f"eval rows that are also training rows: {self.eval_in_train:,}")
        for split, n in self.split_rows.items():
            lines.append(f"{split}: {n:,} rows to train on" if split == "train" else f"{split}: {n:,} rows")
        if self.refused:
            lines.append(
                "verdict: a run would be refused"
                + (" (datasets.bad_rows: refuse; `skip` trains without the bad rows)" if self.bad else "")
            )
        elif self.bad:
            lines.append(f"verdict: a run skips these {self.bad:,} rows (datasets.bad_rows: skip)")
        else:
            lines.append("verdict: every row is usable")
        return "\n".join(lines)


def problems_of(report: dict) -> list[Problem]:
    """Report.problems() from its JSON form (what the cache holds)."""
    out = [Problem(("datasets",), u, "data-unreadable") for u in report["unreadable"]]
    if report["bad"] and report["bad_rows"] == "refuse":
        counts = ", ".join(f"{n} {k}" for k, n in report["counts"].items())
        first = "; ".join(f"{v[0].get('at', v[0]['location'])}: {v[0]['detail']}" for v in report["examples"].values())
        message = (
            f"{report['bad']} bad row(s) ({counts}); first: {first}. `recipe data RECIPE --check` lists "
            "them; fix them, or set `datasets.bad_rows: skip` to train without them (counted and recorded)"
        )
        out.append(Problem(("datasets", "bad_rows"), message, "data-bad-rows"))
    return out
