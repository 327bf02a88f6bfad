"""What a cross-field rule is: an id, a summary and a check over a validated recipe, made by `@rule(...)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..recipe import Recipe

Finding = tuple[tuple, str]
Check = Callable[[Recipe], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    summary: str
    check: Check
    severity: str = "error"


def rule(id: str, summary: str, severity: str = "error") -> Callable[[Check], Rule]:
    """Make the decorated check a `Rule`; `schemas.rules.RULES` lists it where its diagnostics are reported."""

    def make(fn: Check) -> Rule:
        return Rule(id, summary, fn, severity)

    return make


def dataset_entries(r: Recipe) -> Iterator[tuple[tuple, object]]:
    """Each training and eval source with its path in the recipe."""
    for split in ("train", "eval"):
        for i, entry in enumerate(getattr(r.datasets, split)):
            yield ("datasets", split, i), entry
