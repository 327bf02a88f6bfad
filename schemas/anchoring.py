"""Anchor a recipe's local paths: each relative path becomes absolute, relative to the file that wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .yamlsource import Sources

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


def anchor_paths(data: dict, sources: Sources, recipe: Path) -> None:
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
