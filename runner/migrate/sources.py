"""A dataset path of the source as a recipe's dataset source: a local file (`jsonl:`, `json:`, ...) or a Hub id."""

from __future__ import annotations

import re
from typing import Optional

from schemas.datasets import SUFFIX_TO_KIND

from .translation import ImportRefused, Translation


def data_source(t: Translation, path: str, *, ds_type: Optional[str] = None, config: Optional[str] = None) -> str:
    """A dataset path of the source: a local file (`jsonl:`, `json:`, ...) or a Hub id (`hf:ID[:CONFIG]`)."""
    local = t.local_path(path)
    if local is not None:
        if local.is_dir():
            raise ImportRefused(
                f"dataset {path} is a folder; a recipe reads one file per source (`jsonl:`, `json:`, `csv:`, "
                "`parquet:`, `text:`) or a `save_to_disk` folder (`local:`): list its files as sources"
            )
        kind = ds_type or SUFFIX_TO_KIND.get(local.suffix)
        if kind is None:
            raise ImportRefused(f"dataset {path}: cannot tell the file type from its suffix; rename it or convert it")
        if kind == "json":
            with open(local, encoding="utf-8", errors="replace") as f:
                if f.read(4096).lstrip()[:1] == "{":
                    kind = "jsonl"  # one object per line, named .json
        return f"{kind}:{t.recipe_path(local)}"
    if re.match(r"^[\w.-]+(/[\w.-]+)?$", path):
        return f"hf:{path}:{config}" if config else f"hf:{path}"
    raise ImportRefused(
        f"dataset {path}: neither a file here (beside {t.origin.name} or in the current directory) nor a Hub id"
    )
