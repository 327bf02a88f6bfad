"""Load a recipe file: parse, follow `extends`, apply `--set`, anchor paths, validate, check rules.

`load(path, overrides)` never raises for a user mistake: it returns a `Loaded`
whose `diagnostics` hold every problem found, each located in the file (and line
and column) the offending value came from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from .anchoring import anchor_paths
from .diagnostics import Diagnostic
from .errors import data_path, translate_validation_error
from .extends import load_tree
from .overrides import UsageError, apply_override, parse_override
from .recipe import Recipe
from .rules import check
from .yamlsource import Sources

__all__ = ["Loaded", "UsageError", "load", "parse_override"]


@dataclass
class Loaded:
    """The outcome of loading one recipe file."""

    path: str
    data: Any = None  # the merged raw data (after extends and --set)
    sources: Sources = field(default_factory=Sources)
    recipe: Optional[Recipe] = None  # set when the schema validated
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the recipe and every base it extends

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def ok(self) -> bool:
        return self.recipe is not None and not self.errors


def load(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    check_rules: bool = True,
    extends_root: str | Path | tuple | None = None,
) -> Loaded:
    """Load and validate one recipe. Raises UsageError only for malformed `--set` arguments.
    `extends_root`: no base outside this folder (or these folders) is read (None: any `.yaml`/`.yml` file)."""
    parsed_overrides = [(parse_override(o), o) for o in overrides]
    p = Path(path)
    shown = str(path)
    loaded = Loaded(shown)
    data, sources = load_tree(p, shown, (), None, loaded.diagnostics, loaded.files, extends_root)
    if not isinstance(data, dict):
        return loaded
    for (opath, value), raw in parsed_overrides:
        problem = apply_override(data, sources, opath, value, shown, raw)
        if problem:
            loaded.diagnostics.append(problem)
    anchor_paths(data, sources, p)
    loaded.data, loaded.sources = data, sources
    if any(d.is_error for d in loaded.diagnostics):
        # Parsing problems (duplicate keys, tags) leave holes in the data; report them alone.
        return loaded

    try:
        loaded.recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        loaded.diagnostics.extend(translate_validation_error(exc, data, sources, shown))
        if check_rules:
            # When the only schema errors are unknown keys, the rest of the recipe is exactly what the user
            # wrote: check the rules on it too, so every error of the file is reported at once.
            without_unknown = _drop_unknown_keys(exc, data)
            if without_unknown is not None:
                try:
                    recipe = Recipe.model_validate(without_unknown)
                except ValidationError:
                    return loaded
                loaded.diagnostics.extend(check(recipe, sources, shown))
        return loaded
    if check_rules:
        loaded.diagnostics.extend(check(loaded.recipe, sources, shown))
    return loaded


def _drop_unknown_keys(exc: Any, data: dict) -> Optional[dict]:
    """A copy of `data` without the unknown keys, or None when there are other errors too."""
    errors = exc.errors(include_url=False)
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    clean = copy.deepcopy(data)
    for e in errors:
        path = data_path(tuple(e["loc"]), data)
        node: Any = clean
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    return clean
