"""`extends`: read a recipe file and every base it extends, and merge them (the child wins), with locations.

The merged data keeps, for each value, the location of the file that defined it, so a diagnostic points at the
base recipe when the value came from there.
"""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any, Optional

from .diagnostics import Diagnostic, Location
from .yamlsource import Sources, dotted, parse

MAX_EXTENDS_DEPTH = 16
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few kilobytes
RECIPE_SUFFIXES = (".yaml", ".yml")


def repository_root(path: Path) -> Optional[Path]:
    """The nearest directory at or above `path`'s that holds `.git` (the recipe's repository), or None."""
    for folder in Path(path).resolve().parents:
        if (folder / ".git").exists():
            return folder
    return None


def load_tree(
    path: Path,
    shown: str,
    stack: tuple[Path, ...],
    where: Location | None,
    diagnostics: list,
    files: list,
    root: Any = None,
) -> tuple[Any, Sources]:
    """Parse `path` and everything it extends, merged. Appends to `diagnostics` and, for each file read, `files`.
    `where`: the `extends` that names `path` (None for the recipe itself); `root`: no base outside it is read."""
    text, problem = _read_file(path, shown, where, root)
    if problem:
        diagnostics.append(problem)
        return None, Sources()
    files.append(shown)
    parsed = parse(text, shown)
    data, sources = parsed.data, parsed.sources
    if where is not None and parsed.diagnostics and not _looks_like_recipe(data):
        # a base that is not a recipe: say where, never what it holds (YAML's own messages quote none of it)
        first = parsed.diagnostics[0]
        why = first.message if first.rule == "yaml-syntax" and data is None else "it is not a recipe"
        diagnostics.append(_not_a_recipe(where, shown, f"at {first.location.render()}: {why}"))
        return None, Sources()
    diagnostics.extend(parsed.diagnostics)
    if where is not None and data is not None and not _looks_like_recipe(data):
        diagnostics.append(_not_a_recipe(where, shown, "its top-level keys are not recipe sections"))
        return None, Sources()
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
    merged, merged_sources = _load_bases(path, shown, stack, named, sources, diagnostics, files, root)
    result = _merge(merged, data)
    return result, _merged_sources(result, sources, merged_sources)


def _load_bases(
    path: Path,
    shown: str,
    stack: tuple[Path, ...],
    named: list,
    sources: Sources,
    diagnostics: list,
    files: list,
    root: Any,
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
        base_data, base_sources = load_tree(
            base_path, base_shown, stack + (path.resolve(),), loc, diagnostics, files, root
        )
        if isinstance(base_data, dict):
            base_data = {k: v for k, v in base_data.items() if k != "extends"}
            new = _merge(merged, base_data)
            merged_sources = _merged_sources(new, base_sources, merged_sources)
            merged = new
    return merged, merged_sources


def _looks_like_recipe(data: Any) -> bool:
    """A mapping whose top-level keys are all recipe sections (a base may hold any of them, or none)."""
    from .recipe import Recipe

    return isinstance(data, dict) and all(isinstance(k, str) and k in Recipe.model_fields for k in data)


def _not_a_recipe(where: Location, shown: str, why: str) -> Diagnostic:
    return Diagnostic(where, "extends", f"{shown} is not a recipe file: {why}", "extends-not-a-recipe")


def _read_file(
    path: Path, shown: str, where: Location | None, root: Any = None
) -> tuple[Optional[str], Optional[Diagnostic]]:
    """The text of a recipe file. A base (`where` names the `extends`) must be a `.yaml`/`.yml` file below `root`
    (a folder, or a sequence of folders: the first is the one named in messages);
    every file must be a regular file under MAX_RECIPE_BYTES: no device, FIFO, directory or /proc file is opened
    for reading, and nothing is read past the limit."""
    loc = where or Location(shown, None, None)
    field = "extends" if where else ""

    def refuse(message: str, rule: str = "extends-refused") -> tuple[None, Diagnostic]:
        return None, Diagnostic(loc, field, message, rule)

    if where is not None:
        if path.suffix not in RECIPE_SUFFIXES:
            return refuse(f"{shown} is not a recipe file: `extends` names only .yaml or .yml files")
        roots = () if root is None else (root,) if isinstance(root, (str, Path)) else tuple(root)
        if roots and not any(path.resolve().is_relative_to(Path(r).resolve()) for r in roots):
            return refuse(
                f"{shown} is outside {roots[0]}, the folder recipes may extend from; move the base inside it, or "
                "allow another folder with --extends-root DIR"
            )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return refuse(f"file not found: {shown}", "file-not-found")
    except OSError as exc:
        return refuse(f"cannot read {shown}: {exc.strerror}", "file-not-found")
    if stat.S_ISDIR(info.st_mode):
        return refuse(f"{shown} is a directory, not a recipe file", "file-not-found")
    if not stat.S_ISREG(info.st_mode):
        return refuse(f"{shown} is {_kind(info.st_mode)}, not a regular recipe file")
    if _is_special_filesystem(path):
        return refuse(f"{shown} is a file the kernel generates (under /{path.resolve().parts[1]}), not a recipe file")
    if info.st_size > MAX_RECIPE_BYTES:
        return refuse(f"{shown} is {info.st_size:,} bytes; a recipe file is at most {MAX_RECIPE_BYTES:,}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the check above
                return refuse(f"{shown} is not a regular recipe file")
            raw = os.read(fd, MAX_RECIPE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return refuse(f"cannot read {shown}: {exc.strerror}", "file-not-found")
    if len(raw) > MAX_RECIPE_BYTES:
        return refuse(f"{shown} is larger than {MAX_RECIPE_BYTES:,} bytes, the limit for a recipe file")
    return _decode(raw, shown)


def _decode(raw: bytes, shown: str) -> tuple[Optional[str], Optional[Diagnostic]]:
    """UTF-8 text (a BOM dropped), or where the first byte that is not UTF-8 is, as LINE:COL."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[start : exc.start].decode("utf-8", errors="replace")) + 1
        message = f"the file is not UTF-8 text ({exc.reason}: byte 0x{raw[exc.start]:02x})"
        return None, Diagnostic(Location(shown, line, column), "", message, "file-encoding")


def _is_special_filesystem(path: Path) -> bool:
    """/proc, /sys and /dev hold files that look regular but are generated when read."""
    parts = path.resolve().parts
    return len(parts) > 1 and parts[1] in ("proc", "sys", "dev")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


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
