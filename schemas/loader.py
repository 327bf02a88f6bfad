"""Load a recipe file: parse, follow `extends`, apply `--set`, validate, check rules.

`load(path, overrides)` never raises for a user mistake: it returns a `Loaded`
whose `diagnostics` hold every problem found, each located in the file (and line
and column) the offending value came from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .diagnostics import Diagnostic, Location
from .errors import translate_validation_error
from .recipe import Recipe
from .yamlsource import Sources, dotted, parse, parse_value

MAX_EXTENDS_DEPTH = 16


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


def _load_tree(
    path: Path, shown: str, stack: tuple[Path, ...], where: Location | None, loaded: Loaded
) -> tuple[Any, Sources]:
    """Parse `path` and everything it extends, merged. Appends diagnostics to `loaded`."""
    text, problem = _read_file(path, shown, where)
    if problem:
        loaded.diagnostics.append(problem)
        return None, Sources()
    loaded.files.append(shown)
    parsed = parse(text, shown)
    loaded.diagnostics.extend(parsed.diagnostics)
    data, sources = parsed.data, parsed.sources
    if data is None:
        if not parsed.diagnostics:
            loaded.diagnostics.append(
                Diagnostic(Location(shown, 1, 1), "", "the file is empty; a recipe is a YAML mapping", "not-a-mapping")
            )
        return None, sources
    if not isinstance(data, dict):
        loaded.diagnostics.append(
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
        loaded.diagnostics.append(
            Diagnostic(
                sources.locate(("extends",)),
                "extends",
                "`extends` takes a file path or a list of file paths",
                "extends",
            )
        )
        return data, sources

    merged: Any = {}
    merged_sources = Sources()
    for i, base in enumerate(base_list):
        key_path = ("extends",) if isinstance(bases, str) else ("extends", i)
        loc = sources.locate(key_path)
        base_path = (path.parent / base).resolve()
        base_shown = _display(path.parent / base)
        if base_path in stack or base_path == path.resolve():
            chain = " -> ".join([_display(p) for p in stack] + [shown, base_shown])
            loaded.diagnostics.append(
                Diagnostic(loc, dotted(key_path), f"`extends` forms a cycle: {chain}", "extends-cycle")
            )
            continue
        if len(stack) >= MAX_EXTENDS_DEPTH:
            loaded.diagnostics.append(
                Diagnostic(
                    loc, dotted(key_path), f"`extends` chain is deeper than {MAX_EXTENDS_DEPTH} files", "extends-cycle"
                )
            )
            continue
        base_data, base_sources = _load_tree(base_path, base_shown, stack + (path.resolve(),), loc, loaded)
        if isinstance(base_data, dict):
            base_data = {k: v for k, v in base_data.items() if k != "extends"}
            new = _merge(merged, base_data)
            merged_sources = _merged_sources(new, base_sources, merged_sources)
            merged = new
    result = _merge(merged, data)
    return result, _merged_sources(result, sources, merged_sources)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _apply_override(
    data: dict, sources: Sources, path: tuple, value: Any, shown: str, raw: str, loaded: Loaded
) -> None:
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
                loaded.diagnostics.append(
                    Diagnostic(
                        where,
                        dotted(path),
                        f"--set {raw}: index {part} is out of range ('{dotted(path[:i])}' has {len(node)} items)",
                        "set-path",
                    )
                )
                return
            node = node[part]
        else:
            loaded.diagnostics.append(
                Diagnostic(
                    where,
                    dotted(path),
                    f"--set {raw}: '{dotted(path[: i + 1])}' is not a mapping or list index here",
                    "set-path",
                )
            )
            return
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            loaded.diagnostics.append(
                Diagnostic(
                    where,
                    dotted(path),
                    f"--set {raw}: index {last} is out of range (the list has {len(node)} items)",
                    "set-path",
                )
            )
            return
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        loaded.diagnostics.append(
            Diagnostic(where, dotted(path), f"--set {raw}: cannot set a field inside a plain value", "set-path")
        )
        return
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


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, check_rules: bool = True) -> Loaded:
    """Load and validate one recipe. Raises UsageError only for malformed `--set` arguments."""
    parsed_overrides = [(parse_override(o), o) for o in overrides]
    p = Path(path)
    shown = str(path)
    loaded = Loaded(shown)
    data, sources = _load_tree(p, shown, (), None, loaded)
    if not isinstance(data, dict):
        return loaded
    for (opath, value), raw in parsed_overrides:
        _apply_override(data, sources, opath, value, shown, raw, loaded)
    _anchor_paths(data, sources, p)
    loaded.data, loaded.sources = data, sources
    if any(d.is_error for d in loaded.diagnostics):
        # Parsing problems (duplicate keys, tags) leave holes in the data; report them alone.
        return loaded

    from pydantic import ValidationError

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
                from .rules import check

                loaded.diagnostics.extend(check(recipe, sources, shown))
        return loaded
    if check_rules:
        from .rules import check

        loaded.diagnostics.extend(check(loaded.recipe, sources, shown))
    return loaded


LOCAL_PREFIXES = ("./", "../", "/", "~")


def _base_dir(sources: Sources, path: tuple, recipe: Path) -> Path:
    """The directory a relative path in `path` is relative to: the file that wrote the value (the recipe or a
    recipe it extends), or the current directory for a `--set` value."""
    location = sources.values.get(path) or sources.keys.get(path)
    if location is None:
        return recipe.parent
    return Path.cwd() if location.via_set else Path(location.file).parent


def _anchored(value: str, base: Path, always: bool) -> str:
    """`value` as an absolute path when it is a local path (always, or when it looks like one or exists)."""
    if not isinstance(value, str) or not value:
        return value
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return str(candidate)
    if always or value.startswith(LOCAL_PREFIXES) or (base / candidate).exists():
        return str((base / candidate).resolve())
    return value  # a Hub id


def _anchor_paths(data: dict, sources: Sources, recipe: Path) -> None:
    """Make the recipe's local paths absolute, each relative to the file that wrote it (docs/cookbook.md).

    Model, tokenizer and starting-adapter names count as local when they start with ./, ../, / or ~, or exist
    there; otherwise they are Hub ids. Dataset files, `.jinja` templates, `.py` reward modules and harness task
    `.yaml` files are always paths.
    """

    def at(*path):
        node: Any = data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    def put(path: tuple, value: Any) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    for path in (
        ("model", "name_or_path"),
        ("model", "tokenizer"),
        ("adapter", "start_from"),
        ("objective", "reward_model"),
    ):
        value = at(*path)
        if isinstance(value, str):
            put(path, _anchored(value, _base_dir(sources, path, recipe), always=False))
    template = at("model", "chat_template")
    if isinstance(template, str) and template.endswith(".jinja"):
        path = ("model", "chat_template")
        put(path, _anchored(template, _base_dir(sources, path, recipe), always=True))

    def anchor_source(entry: Any, path: tuple) -> None:
        source = entry.get("source") if isinstance(entry, dict) else None
        if not isinstance(source, str) or ":" not in source or source.startswith("hf:"):
            return
        kind, _, rest = source.partition(":")
        entry["source"] = f"{kind}:{_anchored(rest, _base_dir(sources, path, recipe), always=True)}"

    for split in ("train", "eval"):
        entries = at("datasets", split)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            anchor_source(entry, ("datasets", split, i, "source"))
    tasks = at("evaluation", "tasks")
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        if not isinstance(task, dict):
            continue
        anchor_source(task.get("data"), ("evaluation", "tasks", i, "data", "source"))
        name = task.get("task")
        if isinstance(name, str) and name.endswith((".yaml", ".yml")):
            path = ("evaluation", "tasks", i, "task")
            put(path, _anchored(name, _base_dir(sources, path, recipe), always=True))
        if isinstance(task.get("reward_model"), str):
            path = ("evaluation", "tasks", i, "reward_model")
            put(path, _anchored(task["reward_model"], _base_dir(sources, path, recipe), always=False))
    functions = at("objective", "reward_functions")
    for i, name in enumerate(functions if isinstance(functions, list) else []):
        module, sep, attr = name.partition(":") if isinstance(name, str) else ("", "", "")
        if sep and module.endswith(".py"):
            path = ("objective", "reward_functions", i)
            functions[i] = f"{_anchored(module, _base_dir(sources, path, recipe), always=True)}:{attr}"


def _drop_unknown_keys(exc: Any, data: dict) -> Optional[dict]:
    """A copy of `data` without the unknown keys, or None when there are other errors too."""
    errors = exc.errors(include_url=False)
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    from .errors import data_path

    clean = copy.deepcopy(data)
    for e in errors:
        path = data_path(tuple(e["loc"]), data)
        node: Any = clean
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    return clean
