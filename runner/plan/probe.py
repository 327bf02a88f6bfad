"""What is installed, found without importing it (and without importlib.metadata, which costs ~40 ms to import)."""

from __future__ import annotations

import importlib.machinery
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional

# importable module -> distribution name (as in its .dist-info folder)
PACKAGES = {
    "flash_attn": "flash_attn",
    "liger_kernel": "liger_kernel",
    "bitsandbytes": "bitsandbytes",
    "deepspeed": "deepspeed",
    "torch": "torch",
    "transformers": "transformers",
    "trl": "trl",
    "peft": "peft",
    "accelerate": "accelerate",
    "datasets": "datasets",
    # experiment trackers (`output.report_to`)
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "clearml": "clearml",
    "trackio": "trackio",
}
_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


@lru_cache(maxsize=1)
def _probe() -> tuple[tuple[str, Optional[str]], ...]:
    found: dict[str, Optional[str]] = {m: None for m in PACKAGES}
    versions: dict[str, str] = {}
    for entry in sys.path:
        folder = Path(entry or ".")
        if not folder.is_dir():
            continue
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            continue
        importable = set()
        for name in names:
            m = _DIST_INFO.match(name)
            if m:
                versions.setdefault(m["name"].lower().replace("-", "_"), m["version"])
            elif name.endswith(".py"):
                importable.add(name[:-3])
            elif name.endswith(_EXTENSIONS):
                importable.add(name.split(".", 1)[0])
            else:
                importable.add(name)  # a package folder
        for module in PACKAGES:
            if found[module] is None and module in importable:
                found[module] = "installed"
    return tuple((m, versions.get(PACKAGES[m], "installed") if found[m] else None) for m in PACKAGES)


def probe_packages() -> dict[str, Optional[str]]:
    """Installed version of each package the plan may need, or None when it cannot be imported here (cached)."""
    return dict(_probe())
