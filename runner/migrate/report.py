"""The import report: one row per source key, saying what became of it, and the table `recipe import` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAPPED, CHANGED, DEFAULT, NOT_NEEDED, DROPPED = "mapped", "changed", "default", "not needed", "dropped"
STATUSES = (MAPPED, CHANGED, DEFAULT, NOT_NEEDED, DROPPED)


@dataclass(frozen=True)
class Row:
    key: str  # the source key (dotted for nested ones; `(unset)` marks a peer default)
    status: str
    field: str  # the recipe field it became ("" when none)
    value: Any
    note: str


def report_table(rows: list[Row], width: int = 60) -> str:
    """The report: one line per source key, the dropped ones first, then changed, defaults, mapped, not needed."""
    order = {s: i for i, s in enumerate(("dropped", "changed", "default", "mapped", "not needed"))}
    rows = sorted(rows, key=lambda r: order[r.status])
    key_w = min(max((len(r.key) for r in rows), default=10), 44)
    field_w = min(max((len(r.field) for r in rows), default=10), 36)
    lines = [f"{'source key':<{key_w}}  {'status':<10}  {'recipe field':<{field_w}}  note"]
    for r in rows:
        note = r.note or (f"= {_short(r.value)}" if r.value not in (None, "") else "")
        if r.status in ("mapped", "default") and r.value not in (None, "") and r.note:
            note = f"= {_short(r.value)}; {r.note}"
        lines.append(f"{r.key:<{key_w}}  {r.status:<10}  {r.field:<{field_w}}  {note}")
    return "\n".join(lines)


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
