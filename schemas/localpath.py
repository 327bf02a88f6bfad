"""The marker of a field whose value can name a local file: the loader anchors it to the recipe that wrote it.

A field is a path field by its type: `name_or_path: HubOrPath`, `chat_template: Optional[JinjaPath]`. The
marker is Annotated metadata that Pydantic ignores, so validation, the JSON Schema and the reference are those of
a plain `str`; `schemas.anchoring` finds the marked fields by walking the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Optional

Split = Callable[[str], Optional[tuple[str, str, str]]]  # value -> (before, the path, after), or None: no path


def whole(value: str) -> tuple[str, str, str]:
    """The whole value is the path."""
    return "", value, ""


def suffixed(*suffixes: str) -> Split:
    """The whole value is the path when it ends with one of `suffixes` (otherwise a name, e.g. a shipped template)."""

    def split(value: str) -> Optional[tuple[str, str, str]]:
        return ("", value, "") if value.endswith(suffixes) else None

    return split


def after_source_kind(value: str) -> Optional[tuple[str, str, str]]:
    """`jsonl:PATH` -> the PATH; an `hf:` dataset names no file."""
    if ":" not in value or value.startswith("hf:"):
        return None
    kind, _, rest = value.partition(":")
    return f"{kind}:", rest, ""


def python_module(value: str) -> Optional[tuple[str, str, str]]:
    """`rewards.py:function` -> the module file; a name shipped by the runner names no file."""
    module, sep, attr = value.partition(":")
    return ("", module, f"{sep}{attr}") if sep and module.endswith(".py") else None


@dataclass(frozen=True)
class LocalPath:
    """Field metadata: the part of the value `split` picks out is a path relative to the file that wrote it.

    `always`: that part is always a path. Otherwise (a model or tokenizer name) it is local only when it starts
    with ./, ../, / or ~ or exists there, and else a Hub id.
    """

    always: bool = True
    split: Split = whole


HubOrPath = Annotated[str, LocalPath(always=False)]
JinjaPath = Annotated[str, LocalPath(split=suffixed(".jinja"))]
TaskYamlPath = Annotated[str, LocalPath(split=suffixed(".yaml", ".yml"))]
SourcePath = Annotated[str, LocalPath(split=after_source_kind)]
PythonModulePath = Annotated[str, LocalPath(split=python_module)]
