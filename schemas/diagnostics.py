"""Located diagnostics: what went wrong, where, and how it is printed.

Every refusal the project makes about a recipe is a `Diagnostic`. It names the
file, the line and column of the offending YAML node (or `--set` when the value
came from the command line), the dotted field, a message for a person, and a
rule id that CI users can search for.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

SET_SOURCE = "--set"


@dataclass(frozen=True)
class Location:
    """Where a value of a recipe came from."""

    file: str
    line: int | None = None  # 1-based; None for values given with --set
    column: int | None = None  # 1-based
    via_set: bool = False

    def render(self) -> str:
        if self.via_set:
            return f"{self.file}:{SET_SOURCE}"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem with a recipe."""

    location: Location
    field: str  # dotted path, e.g. "adapter.r" or "datasets.train.0.source"; "" for the file itself
    message: str
    rule: str
    severity: str = "error"  # "error" | "warning"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def text(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"{self.location.render()}: {self.severity}: {field}{self.message}"

    def github(self) -> str:
        loc = self.location
        parts = [f"file={_gh_escape_property(loc.file)}"]
        if loc.line is not None:
            parts.append(f"line={loc.line}")
            parts.append(f"col={loc.column or 1}")
        parts.append(f"title={_gh_escape_property(self.rule)}")
        field = f"{self.field}: " if self.field else ""
        via = "(--set) " if loc.via_set else ""
        return f"::{self.severity} {','.join(parts)}::{_gh_escape_data(via + field + self.message)}"

    def as_json(self) -> dict:
        loc = asdict(self.location)
        return {
            "file": loc["file"],
            "line": loc["line"],
            "column": loc["column"],
            "via_set": loc["via_set"],
            "field": self.field,
            "message": self.message,
            "rule": self.rule,
            "severity": self.severity,
        }


def _gh_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_escape_property(text: str) -> str:
    return _gh_escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(diagnostics: Iterable[Diagnostic], fmt: str) -> str:
    """Render diagnostics as `text`, `github` (Actions annotations) or `json`."""
    diagnostics = list(diagnostics)
    if fmt == "json":
        return json.dumps([d.as_json() for d in diagnostics], indent=2)
    if fmt == "github":
        return "\n".join(d.github() for d in diagnostics)
    return "\n".join(d.text() for d in diagnostics)


def located(problems: Iterable, sources: Any, file: str) -> list[Diagnostic]:
    """Problems (schemas/problems.py: the rules', the plan's, the preflight's) as diagnostics at their field's line
    in `file` (`sources`: the loaded YAML's positions; a field the file does not set points at its nearest parent)."""
    out = []
    for p in problems:
        location = sources.locate(p.path) or Location(file, 1, 1)
        out.append(Diagnostic(location, p.field, p.message, p.rule, p.severity))
    return out


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """A ` Did you mean 'x'?` suffix, or an empty string when nothing is close."""
    if not isinstance(word, str):
        return ""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    return f" Did you mean '{matches[0]}'?" if matches else ""


class RecipeError(Exception):
    """Raised when a recipe cannot be loaded; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__(render(diagnostics, "text"))
