"""`recipe import`: another tool's training config -> a recipe, with a report of every source key.

Pure translation (PyYAML and JSON only, no torch): `translate` reads the file and returns the recipe's text and the
report; the command validates and plans the recipe before it is written.

Layout: translation.py holds one translation's state (source keys read, recipe fields written, report rows) and the
rules every importer shares; report.py the rows and their table; deepspeed.py, sources.py and hfargs.py the source
settings several tools share (a DeepSpeed file, a dataset path, transformers' TrainingArguments); recipe_yaml.py
the recipe's text. Each tool has `<tool>.py` (its model, adapter, objective and training keys, and the order of the
steps) and `<tool>_data.py` (its datasets); Axolotl's training keys are axolotl_training.py.
"""

from __future__ import annotations

from pathlib import Path

from .recipe_yaml import write_recipe
from .report import Row, report_table
from .translation import ImportRefused, Options, Translation

TOOLS = ("axolotl", "llama-factory", "trl")

__all__ = ["TOOLS", "ImportRefused", "Options", "Row", "Translation", "report_table", "translate"]


def translate(path: Path, tool: str, options: Options) -> tuple[Translation, str]:
    """(the translation with its report, the recipe's YAML text). Raises ImportRefused."""
    from schemas.yamlsource import safe_load

    from .axolotl import translate_axolotl
    from .llamafactory import translate_llamafactory
    from .trl import translate_trl

    importers = {"axolotl": translate_axolotl, "llama-factory": translate_llamafactory, "trl": translate_trl}

    try:
        source = safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ImportRefused(f"{path}: cannot be read: {exc.strerror}") from None
    except Exception as exc:  # a YAML syntax error, with its position
        raise ImportRefused(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(source, dict):
        raise ImportRefused(f"{path}: a {tool} config is a mapping of keys; this file holds a {type(source).__name__}")
    t = Translation(source=source, origin=path.resolve(), options=options, tool=tool)
    importers[tool](t)
    return t, write_recipe(t, path)
