"""Anchor a recipe's local paths: each relative path becomes absolute, relative to the file that wrote it.

Which fields hold paths is read from the models: a field whose type carries the `LocalPath` marker
(`schemas.localpath`), wherever the model nests it (a list of sources, every kind of a section).
"""

from __future__ import annotations

import functools
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Union

from pydantic import BaseModel

from .localpath import LocalPath
from .recipe import Recipe
from .yamlsource import Sources

LOCAL_PREFIXES = ("./", "../", "/", "~")
ANY_ITEM = "*"  # in a path pattern: every item of a list


@functools.cache
def path_fields(model: type[BaseModel] = Recipe) -> dict[tuple, LocalPath]:
    """Every place of `model`'s data that holds a path: its pattern (`ANY_ITEM` for a list's items) -> marker."""
    found: dict[tuple, LocalPath] = {}
    _collect(model, (), (), (), found)
    return found


def _collect(tp: Any, metadata: tuple, path: tuple, seen: tuple, found: dict[tuple, LocalPath]) -> None:
    for marker in metadata:
        if isinstance(marker, LocalPath):
            found.setdefault(path, marker)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *more = typing.get_args(tp)
        _collect(inner, tuple(more), path, seen, found)
    elif origin is list:
        _collect(typing.get_args(tp)[0], (), path + (ANY_ITEM,), seen, found)
    elif origin is Union or origin is types.UnionType:
        for member in typing.get_args(tp):
            _collect(member, (), path, seen, found)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
        for name, field in tp.model_fields.items():
            _collect(field.annotation, tuple(field.metadata), path + (name,), seen + (tp,), found)


@functools.cache
def _tree(model: type[BaseModel]) -> dict:
    """`path_fields(model)` as a tree: part -> (the tree below it, the marker of a path field there or None)."""
    tree: dict = {}
    for pattern, marker in path_fields(model).items():
        node = tree
        for part in pattern[:-1]:
            node = node.setdefault(part, ({}, None))[0]
        below = node.get(pattern[-1], ({}, None))[0]
        node[pattern[-1]] = (below, marker)
    return tree


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
    if always or value.startswith(LOCAL_PREFIXES) or _exists(base / candidate):
        return str((base / candidate).resolve())
    return value  # a Hub id


def _exists(path: Path) -> bool:
    """Whether `path` exists; False for a name the system cannot look up (too long, a NUL in it)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def anchor_paths(data: dict, sources: Sources, recipe: Path, model: type[BaseModel] = Recipe) -> None:
    """Make the recipe's local paths absolute, each relative to the file that wrote it (docs/cookbook.md).

    Model, tokenizer, starting-adapter and reward-model names count as local when they start with ./, ../, / or
    ~, or exist there; otherwise they are Hub ids. Dataset files, `.jinja` templates, `.py` reward modules and
    harness task `.yaml` files are always paths.
    """
    _anchor_below(data, _tree(model), (), sources, recipe)


def _anchor_below(node: Any, tree: dict, path: tuple, sources: Sources, recipe: Path) -> None:
    """Anchor the path fields of `tree` in `node`, the data at `path`."""
    for part, (below, marker) in tree.items():
        if part == ANY_ITEM:
            keys: Iterable = range(len(node)) if isinstance(node, list) else ()
        else:
            keys = (part,) if isinstance(node, dict) and part in node else ()
        for key in keys:
            here = path + (key,)
            value = node[key]
            parts = marker.split(value) if marker is not None and isinstance(value, str) else None
            if parts is not None:
                before, local, after = parts
                node[key] = f"{before}{_anchored(local, _base_dir(sources, here, recipe), marker.always)}{after}"
            if below:
                _anchor_below(value, below, here, sources, recipe)
