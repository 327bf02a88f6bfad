"""`extends`: read a recipe file and every base it extends, and merge them (the child wins), with locations.

The merged data keeps, for each value, the location of the file that defined it, so a diagnostic points at the
base recipe when the value came from there.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

from .diagnostics import Diagnostic, Location
from .yamlsource import Sources, dotted, parse

MAX_EXTENDS_DEPTH = 16


def load_tree(
    path: Path, shown: str, stack: tuple[Path, ...], where: Location | None, diagnostics: list, files: list
) -> tuple[Any, Sources]:
    """Parse `path` and everything it extends, merged. Appends to `diagnostics` and, for each file read, `files`."""
    text, problem = _read_file(path, shown, where)
    if problem:
        diagnostics.append(problem)
        return None, Sources()
    files.append(shown)
    parsed = parse(text, shown)
    diagnostics.extend(parsed.diagnostics)
    data, sources = parsed.data, parsed.sources
    if data is None:
        if not parsed.diagnostics:
            diagnostics.append(
                Diagnostic(Location(shown, 1, 1), "", "the file is empty; a recipe is a YAML mapping", "not-a-mapping")
            )
        return None, sources
    if not isinstance(data, dict):
        diagnostics.append(
            Diagnostic(
                sources.locate(()) or Location(shown, 1, 1),
                "",
                "a recipe is a YAML mapping of sections (model:, adapter:, ...)",
                "not-a-mapping",
            )
        )
        return None, sources

    bases = data.get("extends")
    if bases is None:
        return data, sources
    base_list = [bases] if isinstance(bases, str) else bases
    if not isinstance(base_list, list) or not all(isinstance(b, str) and b for b in base_list):
        diagnostics.append(
            Diagnostic(
                sources.locate(("extends",)),
                "extends",
                "`extends` takes a file path or a list of file paths",
                "extends",
            )
        )
        return data, sources
    named = [(("extends",), bases)] if isinstance(bases, str) else [(("extends", i), b) for i, b in enumerate(bases)]
    merged, merged_sources = _load_bases(path, shown, stack, named, sources, diagnostics, files)
    result = _merge(merged, data)
    return result, _merged_sources(result, sources, merged_sources)


def _load_bases(
    path: Path, shown: str, stack: tuple[Path, ...], named: list, sources: Sources, diagnostics: list, files: list
) -> tuple[Any, Sources]:
    """The bases `path` extends, each `(where extends names it, its path)`, loaded and merged in order (a later
    base wins over an earlier one)."""
    merged: Any = {}
    merged_sources = Sources()
    for key_path, base in named:
        loc = sources.locate(key_path)
        base_path = (path.parent / base).resolve()
        base_shown = _display(path.parent / base)
        if base_path in stack or base_path == path.resolve():
            chain = " -> ".join([_display(p) for p in stack] + [shown, base_shown])
            diagnostics.append(Diagnostic(loc, dotted(key_path), f"`extends` forms a cycle: {chain}", "extends-cycle"))
            continue
        if len(stack) >= MAX_EXTENDS_DEPTH:
            diagnostics.append(
                Diagnostic(
                    loc, dotted(key_path), f"`extends` chain is deeper than {MAX_EXTENDS_DEPTH} files", "extends-cycle"
                )
            )
            continue
        base_data, base_sources = load_tree(base_path, base_shown, stack + (path.resolve(),), loc, diagnostics, files)
        if isinstance(base_data, dict):
            base_data = {k: v for k, v in base_data.items() if k != "extends"}
            new = _merge(merged, base_data)
            merged_sources = _merged_sources(new, base_sources, merged_sources)
            merged = new
    return merged, merged_sources


def _read_file(path: Path, shown: str, where: Location | None) -> tuple[Optional[str], Optional[Diagnostic]]:
    loc = where or Location(shown, None, None)
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, Diagnostic(loc, "extends" if where else "", f"file not found: {shown}", "file-not-found")
    except IsADirectoryError:
        return None, Diagnostic(
            loc, "extends" if where else "", f"{shown} is a directory, not a recipe file", "file-not-found"
        )
    except UnicodeDecodeError as exc:
        return None, Diagnostic(
            Location(shown, None, None),
            "",
            f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "file-encoding",
        )
    except OSError as exc:
        return None, Diagnostic(loc, "", f"cannot read {shown}: {exc.strerror}", "file-not-found")


def _merge(base: Any, child: Any) -> Any:
    """Deep-merge `child` (a recipe) over `base` (what it extends). The rules, in docs/cookbook.md:

    - mappings merge key by key; an empty mapping `{}` replaces the base's with an empty one;
    - lists and plain values replace (`[]` is an empty list);
    - `null` removes the base's value, so the field takes its default;
    - a mapping whose `kind` differs from the base's (an adapter or objective of another kind) replaces it whole,
      so the base's kind-specific fields do not leak into it.
    """
    if isinstance(base, dict) and isinstance(child, dict):
        if not child:
            return {}
        if "kind" in base and "kind" in child and base["kind"] != child["kind"]:
            return copy.deepcopy(child)
        out = dict(base)
        for key, value in child.items():
            if key in base and value is None:
                del out[key]  # back to the field's default
            else:
                out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(child)


def _merged_sources(data: Any, child: Sources, base: Sources, path: tuple = ()) -> Sources:
    """Locations for merged data: the child's where it defined a path, else the base's."""
    out = Sources()

    def walk(node: Any, p: tuple) -> None:
        for table, c, b in ((out.keys, child.keys, base.keys), (out.values, child.values, base.values)):
            loc = c.get(p) or b.get(p)
            if loc is not None:
                table[p] = loc
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, p + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, p + (i,))

    walk(data, path)
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
