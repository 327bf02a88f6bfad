"""`recipe new NAME --from RECIPE`: start a recipe that `extends` another, ready to edit.

The new file holds only the schema line, `version`, `extends`, `name` and `description` (plus `output.dir`
when the base pins one, so two recipes never train into the same directory), followed by the base's values
that people change most, commented out. It validates as written and plans exactly like its base.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Optional

import yaml

from schemas.yamlsource import safe_load

SCHEMA_LINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The fields shown (commented out) in a new recipe: what a team changes when it adapts a recipe.
HINTS = {
    "model": ("name_or_path",),
    "datasets": ("train", "eval", "eval_fraction"),
    "training": ("epochs", "max_steps", "learning_rate", "global_batch_size", "micro_batch_size", "max_length"),
    "hardware": ("profile", "gpus_per_node", "nodes"),
}


class NewRecipeError(Exception):
    pass


def shipped_recipe_dirs() -> list[Path]:
    """Where `--from NAME` looks: ./recipes, then the recipes shipped beside this package (a source checkout)."""
    dirs = [Path("recipes"), Path(__file__).resolve().parents[2] / "recipes"]
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def find_base(ref: str) -> Path:
    """A recipe file path, or a shipped recipe's file stem or `name:`."""
    p = Path(ref)
    if p.is_file():
        return p
    candidates: dict[str, Path] = {}
    for d in shipped_recipe_dirs():
        for f in sorted(d.rglob("*.y*ml")):
            candidates.setdefault(f.stem, f)
            try:
                name = safe_load(f.read_text(encoding="utf-8")).get("name")
            except (yaml.YAMLError, AttributeError, OSError):
                continue
            if isinstance(name, str):
                candidates.setdefault(name, f)
    if ref in candidates:
        return candidates[ref]
    close = difflib.get_close_matches(ref, list(candidates), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `recipe list` shows the shipped recipes"
    raise NewRecipeError(f"--from {ref}: no such recipe file, and no shipped recipe has that file name or name{hint}")


def target_path(name_arg: str) -> tuple[Path, str]:
    """`team/my-dpo` -> (team/my-dpo.yaml, "my-dpo")."""
    path = Path(name_arg)
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_name(path.name + ".yaml")
    name = path.stem
    if not NAME.match(name) or len(name) > 128:
        raise NewRecipeError(
            f"{name_arg}: a recipe name uses letters, digits, '.', '_' and '-' and starts with a letter or digit"
        )
    return path, name


def _relative(target_dir: Path, path: Path) -> str:
    """`path` as seen from `target_dir`: relative when they share a folder below the root, else absolute."""
    a, b = path.resolve(), target_dir.resolve()
    if os.path.commonpath([a, b]) == os.path.sep:
        return a.as_posix()
    return Path(os.path.relpath(a, b)).as_posix()


def schema_ref(base: Path, target_dir: Path) -> str:
    """The base's schema line, re-pointed from the new file's directory; else the installed schema file."""
    first = base.read_text(encoding="utf-8").splitlines()[:3]
    for line in first:
        m = SCHEMA_LINE.match(line)
        if m and "://" not in m.group(1):
            return _relative(target_dir, base.parent / m.group(1))
        if m:
            return m.group(1)
    import schemas

    return _relative(target_dir, Path(schemas.__file__).parent / "recipe.schema.json")


def _without_empty(value):
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def _commented(data: dict) -> list[str]:
    text = yaml.safe_dump(
        _without_empty(data), sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    return [f"# {line}" for line in text.rstrip().splitlines()]


def render_recipe(base: Path, target: Path, name: str, recipe) -> str:
    """The new recipe's text. `recipe`: the base, validated (its values fill the commented hints)."""
    rel_base = _relative(target.parent, base)
    dumped = recipe.model_dump(mode="json", exclude_none=True)
    lines = [
        f"# yaml-language-server: $schema={schema_ref(base, target.parent)}",
        f"# Starts from {recipe.name} ({rel_base}) and holds only what differs:",
        "# mappings merge with the base's (this file wins), lists and scalars replace.",
        f"# `recipe diff {rel_base} {target.name}` shows the differences.",
        "version: 1",
        f"extends: {rel_base}",
        f"name: {name}",
        f"description: Based on {recipe.name}",  # a recipe name needs no YAML quoting
    ]
    if recipe.output.dir is not None:
        lines += ["output:", f"  dir: outputs/{name}"]
    hints = {s: {k: dumped[s][k] for k in keys if k in dumped[s]} for s, keys in HINTS.items()}
    lines += ["", f"# Inherited from {recipe.name}; uncomment and edit what you change:"] + _commented(hints)
    return "\n".join(lines) + "\n"


def new_recipe(name_arg: str, from_ref: str, force: bool = False) -> tuple[Path, Path, Optional[list]]:
    """Write the recipe; returns (path, base, None), or (path, base, diagnostics) when the base is invalid."""
    from runner.common.files import write_atomic
    from schemas import load

    base = find_base(from_ref)
    target, name = target_path(name_arg)
    if target.exists() and not force:
        raise NewRecipeError(f"{target}: already exists; choose another name or pass --force to replace it")
    loaded = load(base)
    if not loaded.ok:
        return target, base, loaded.diagnostics
    write_atomic(target, render_recipe(base, target, name, loaded.recipe))
    return target, base, None
