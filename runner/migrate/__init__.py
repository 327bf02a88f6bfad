"""`recipe import`: another tool's training config -> a recipe, with a report of every source key.

Pure translation (PyYAML and JSON only, no torch): `translate` reads the file and returns the recipe's text and the
report; the command validates and plans the recipe before it is written.
"""

from __future__ import annotations

from pathlib import Path

from .translation import ImportRefused, Options, Row, Translation, write_recipe

TOOLS = ("axolotl", "llama-factory", "trl")

__all__ = ["TOOLS", "ImportRefused", "Options", "Row", "Translation", "table", "translate"]


def translate(path: Path, tool: str, options: Options) -> tuple[Translation, str]:
    """(the translation with its report, the recipe's YAML text). Raises ImportRefused."""
    from schemas.yamlsource import safe_load

    from . import axolotl, llamafactory, trl

    try:
        source = safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImportRefused(f"{path}: cannot be read: {exc.strerror}") from None
    except Exception as exc:  # a YAML syntax error, with its position
        raise ImportRefused(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(source, dict):
        raise ImportRefused(f"{path}: a {tool} config is a mapping of keys; this file holds a {type(source).__name__}")
    t = Translation(source=source, origin=path.resolve(), options=options, tool=tool)
    {"axolotl": axolotl, "llama-factory": llamafactory, "trl": trl}[tool].translate(t)
    return t, write_recipe(t, path)


def table(rows: list[Row], width: int = 60) -> str:
    """The report: one line per source key, the dropped ones first, then changed, defaults, mapped, not needed."""
    order = {s: i for i, s in enumerate(("dropped", "changed", "default", "mapped", "not needed"))}
    rows = sorted(rows, key=lambda r: order[r.status])
    key_w = min(max((len(r.key) for r in rows), default=10), 44)
    field_w = min(max((len(r.field) for r in rows), default=10), 36)
    lines = [f"{'source key':<{key_w}}  {'status':<10}  {'recipe field':<{field_w}}  note"]
    for r in rows:
        note = r.note or (f"= {_short(r.value)}" if r.value not in (None, "") else "")
        if r.status in ("mapped", "default") and r.value not in (None, "") and r.note:
            note = f"= {_short(r.value)}; {r.note}"
        lines.append(f"{r.key:<{key_w}}  {r.status:<10}  {r.field:<{field_w}}  {note}")
    return "\n".join(lines)


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
