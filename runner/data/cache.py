"""The data check's cache: a second run of an unchanged recipe and data does not read the data again. Keyed by
the objective, the recipe's data fields, the checking code and each local data file's size, mtime and inode.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from schemas.datasets import split_source

from .check import check_recipe

# The modules whose code decides what the check reports and which rows a preset converts how.
CHECKING_CODE = ("cache.py", "check.py", "formats.py", "readers.py", "report.py", "rowcheck.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """A hash of the checking and preset code: no cache (this module's, `datasets`') may serve rows an older
    version checked or converted."""
    here = Path(__file__).resolve().parent
    return hashlib.sha256(b"".join((here / n).read_bytes() for n in CHECKING_CODE)).hexdigest()[:16]


def _fingerprint(recipe: Any) -> tuple[str, bool]:
    """(a hash of the objective, the recipe's data fields, the checking code and each local data file's size,
    mtime and inode; whether every source is local: a Hub source's files are not ours to fingerprint)."""
    d = recipe.datasets
    parts: list[Any] = [recipe.objective.kind, d.model_dump(mode="json"), code_hash()]
    local = True
    for entry in (*d.train, *d.eval):
        kind, rest, _ = split_source(entry.source)
        if kind == "hf":
            local = False
            continue
        root = Path(rest)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                local = False
                continue
            parts.append([str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ino])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32], local


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recipe" / "data-check"


_THIS_PROCESS: dict[str, dict] = {}  # reports made in this process: the preflight's, read again by `recipe run`


def cached_check(recipe: Any) -> tuple[dict, bool]:
    """The report as JSON, from the cache when the data and the recipe's data fields are unchanged; (report, hit).
    A recipe with a Hub source is not cached across commands, but is read once per command."""
    from runner.common.files import write_atomic

    key, local = _fingerprint(recipe)
    if key in _THIS_PROCESS:
        return _THIS_PROCESS[key], True
    path = cache_dir() / f"{key}.json" if local else None
    if path is not None and path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            _THIS_PROCESS[key] = report
            return report, True
        except (OSError, ValueError):
            pass
    report = check_recipe(recipe).to_json()
    _THIS_PROCESS[key] = report
    if path is not None:
        try:
            write_atomic(path, json.dumps(report) + "\n")
        except OSError:
            pass  # a read-only cache only costs the next run the same check
    return report, False
