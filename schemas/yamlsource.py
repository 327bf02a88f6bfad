"""Safe YAML parsing that remembers where every key and value came from.

PyYAML's `safe_load` loses positions, keeps the last of two duplicate keys and
reads `5e-5` as a string (YAML 1.1). This parser composes the node graph with
PyYAML's safe loader and builds plain Python data itself, so that it can:

* record the file, line and column of every key and value (`Sources`);
* refuse duplicate keys, unknown tags (`!!python/object`, `!custom`, ...),
  multiple documents, recursive aliases and alias bombs;
* read floats as YAML 1.2 does (`5e-5` is a number) and booleans only as
  `true`/`false` (so `no`, `on`, `off` stay strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .diagnostics import Diagnostic, Location

DataPath = tuple  # a path into the data: keys (str) and list indices (int)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MAX_NODES = 200_000
MAX_DEPTH = 100  # nested mappings and lists; a recipe needs fewer than ten


# libyaml's parser when PyYAML was built with it (the wheels are): ~10x faster, same nodes and marks.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader with YAML 1.2 floats and booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "float", _TAG + "bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _TAG + "float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """Plain safe loading with libyaml, for trusted shipped data (profiles, tables) that needs no positions."""
    return yaml.load(text, Loader=_Base)


@dataclass
class Sources:
    """Locations of keys and values by path. Paths are tuples of keys and indices."""

    keys: dict[DataPath, Location] = field(default_factory=dict)
    values: dict[DataPath, Location] = field(default_factory=dict)

    def locate(self, path: DataPath, prefer_key: bool = False) -> Location | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            first, second = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            if path in first:
                return first[path]
            if path in second:
                return second[path]
            if not path:
                return None
            path = path[:-1]
            prefer_key = True  # an ancestor is best shown by its key

    def drop(self, prefix: DataPath) -> None:
        n = len(prefix)
        for table in (self.keys, self.values):
            for p in [p for p in table if p[:n] == prefix and len(p) > n]:
                del table[p]


def _loc(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def dotted(path: DataPath) -> str:
    return ".".join(str(p) for p in path)


class _Builder:
    def __init__(self, loader: _Loader, file: str):
        self.loader = loader
        self.file = file
        self.sources = Sources()
        self.diagnostics: list[Diagnostic] = []
        self.count = 0
        self.stack: set[int] = set()

    def error(self, mark, path: DataPath, message: str, rule: str) -> None:
        self.diagnostics.append(Diagnostic(_loc(self.file, mark), dotted(path), message, rule))

    def build(self, node: yaml.Node, path: DataPath) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooLarge(node, "the document expands to too many values (alias bomb?)")
        if len(path) > MAX_DEPTH:
            raise _TooLarge(node, f"values are nested more than {MAX_DEPTH} levels deep; a recipe needs a few")
        if id(node) in self.stack:
            self.error(
                node.start_mark, path, "a YAML alias refers to itself; recipes must be finite", "yaml-recursive-alias"
            )
            return None
        self.sources.values[path] = _loc(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        return self._scalar(node, path)

    def _tag_ok(self, node: yaml.Node, expected: set[str], path: DataPath) -> bool:
        if node.tag in expected:
            return True
        self.error(
            node.start_mark,
            path,
            f"the YAML tag '{node.tag}' is not allowed in a recipe; write plain values "
            "(strings, numbers, true/false, null, lists and mappings)",
            "yaml-tag",
        )
        return False

    def _mapping(self, node: yaml.MappingNode, path: DataPath) -> Any:
        if not self._tag_ok(node, {_TAG + "map"}, path):
            return None
        own = sum(1 for k, _ in node.value if k.tag != _TAG + "merge")
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) come first, then own keys
        except yaml.MarkedYAMLError as exc:
            self.error(exc.problem_mark, path, f"invalid merge key: {exc.problem}", "yaml-syntax")
            return None
        merged = len(node.value) - own
        self.stack.add(id(node))
        out: dict[str, Any] = {}
        first_seen: dict[str, yaml.Node] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node.start_mark, path, "mapping keys must be plain names", "yaml-key")
                continue
            key = key_node.value
            if index < merged:  # merged-in keys: the mapping's own keys may override them
                self.sources.keys[path + (key,)] = _loc(self.file, key_node.start_mark)
                out[key] = self.build(value_node, path + (key,))
                continue
            if key in first_seen:
                first = first_seen[key].start_mark.line + 1
                self.error(
                    key_node.start_mark,
                    path + (key,),
                    f"duplicate key '{key}' (first given on line {first}); YAML would silently keep only the last one",
                    "duplicate-key",
                )
                continue
            first_seen[key] = key_node
            self.sources.keys[path + (key,)] = _loc(self.file, key_node.start_mark)
            out[key] = self.build(value_node, path + (key,))
        self.stack.discard(id(node))
        return out

    def _sequence(self, node: yaml.SequenceNode, path: DataPath) -> Any:
        if not self._tag_ok(node, {_TAG + "seq"}, path):
            return None
        self.stack.add(id(node))
        out = [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        self.stack.discard(id(node))
        return out

    def _scalar(self, node: yaml.ScalarNode, path: DataPath) -> Any:
        if not self._tag_ok(node, _SCALAR_TAGS, path):
            return None
        if node.tag == _TAG + "timestamp":
            return node.value  # a date is kept as the text the user wrote
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            self.error(node.start_mark, path, f"cannot read this value: {exc}", "yaml-syntax")
            return None


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, message: str):
        self.node, self.message = node, message


def _position(text: str, index: int) -> tuple[int, int]:
    """(line, column), 1-based, of the character at `index` of `text`."""
    index = max(0, min(index, len(text)))
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _refused_character(text: str, file: str) -> Diagnostic | None:
    """The first character YAML does not allow (control characters, lone surrogates), located."""
    m = _REFUSED.search(text)
    if m is None:
        return None
    line, column = _position(text, m.start())
    char = m.group()
    return Diagnostic(
        Location(file, line, column),
        "",
        f"invalid YAML: the character {ascii(char)} (U+{ord(char):04X}) is not allowed in YAML text",
        "yaml-syntax",
    )


@dataclass
class Parsed:
    data: Any
    sources: Sources
    diagnostics: list[Diagnostic]


def parse(text: str, file: str) -> Parsed:
    """Parse one YAML document. Problems are returned as diagnostics, never raised."""
    refused = _refused_character(text, file)
    if refused is not None:
        return Parsed(None, Sources(), [refused])
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or str(exc)
            if "expected a single document" in (exc.context or ""):
                problem = "a recipe file holds one YAML document; remove the extra '---' section"
            return Parsed(
                None, Sources(), [Diagnostic(_loc(file, mark), "", f"invalid YAML: {problem}", "yaml-syntax")]
            )
        except yaml.YAMLError as exc:
            return Parsed(
                None,
                Sources(),
                [Diagnostic(Location(file, 1, 1), "", f"invalid YAML: {str(exc).splitlines()[0]}", "yaml-syntax")],
            )
        if node is None:
            return Parsed(None, Sources(), [])
        builder = _Builder(loader, file)
        try:
            data = builder.build(node, ())
        except _TooLarge as exc:
            return Parsed(
                None,
                Sources(),
                [
                    Diagnostic(
                        _loc(file, exc.node.start_mark),
                        "",
                        exc.message,
                        "yaml-too-large",
                    )
                ],
            )
        return Parsed(data, builder.sources, builder.diagnostics)
    finally:
        loader.dispose()


def parse_value(text: str) -> Any:
    """Parse the value part of `--set key=value` as YAML (with this module's rules)."""
    parsed = parse(text, "--set")
    if parsed.diagnostics:
        raise ValueError(parsed.diagnostics[0].message)
    return parsed.data
