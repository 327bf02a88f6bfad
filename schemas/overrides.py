"""`--set KEY=VALUE` overrides: parse them, and set each in the merged data, located at `--set`."""

from __future__ import annotations

from typing import Any, Optional

from .diagnostics import Diagnostic, Location
from .yamlsource import Sources, dotted, parse_value


class UsageError(Exception):
    """A malformed command-line argument (exit code 2), e.g. `--set` without `=`."""


def parse_override(text: str) -> tuple[tuple, Any]:
    """`training.learning_rate=1e-4` -> (("training", "learning_rate"), 1e-4). Raises UsageError."""
    if "=" not in text:
        raise UsageError(f"--set expects KEY=VALUE with a dotted key, e.g. training.learning_rate=1e-4; got '{text}'")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise UsageError(f"--set key '{key}' is not a dotted field path like training.learning_rate")
    try:
        value = parse_value(raw)
    except ValueError as exc:
        raise UsageError(f"--set {key}: cannot read the value as YAML: {exc}") from None
    return tuple(int(p) if p.isdigit() else p for p in parts), value


def apply_override(data: dict, sources: Sources, path: tuple, value: Any, shown: str, raw: str) -> Optional[Diagnostic]:
    """Set `path` to `value` in `data`, located at `--set`; the diagnostic when the path cannot be set."""
    node: Any = data
    where = Location(shown, None, None, via_set=True)
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                return Diagnostic(
                    where,
                    dotted(path),
                    f"--set {raw}: index {part} is out of range ('{dotted(path[:i])}' has {len(node)} items)",
                    "set-path",
                )
            node = node[part]
        else:
            return Diagnostic(
                where,
                dotted(path),
                f"--set {raw}: '{dotted(path[: i + 1])}' is not a mapping or list index here",
                "set-path",
            )
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            return Diagnostic(
                where,
                dotted(path),
                f"--set {raw}: index {last} is out of range (the list has {len(node)} items)",
                "set-path",
            )
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        return Diagnostic(where, dotted(path), f"--set {raw}: cannot set a field inside a plain value", "set-path")
    _locate_at_set(sources, path, value, where)
    return None


def _locate_at_set(sources: Sources, path: tuple, value: Any, where: Location) -> None:
    """`path` and everything inside `value` now come from `--set`."""
    sources.drop(path)
    sources.keys[path] = where
    sources.values[path] = where

    def mark(v: Any, p: tuple) -> None:
        sources.values[p] = where
        if isinstance(v, dict):
            for k, x in v.items():
                sources.keys[p + (k,)] = where
                mark(x, p + (k,))
        elif isinstance(v, list):
            for j, x in enumerate(v):
                mark(x, p + (j,))

    mark(value, path)
