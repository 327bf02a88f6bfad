"""What is installed, found without importing it (and without importlib.metadata, which costs ~40 ms to import)."""

from __future__ import annotations

import importlib.machinery
import re
import sys
from pathlib import Path
from typing import Optional

# importable module -> distribution name (as in its .dist-info folder)
PACKAGES = {
    "flash_attn": "flash_attn",
    "bitsandbytes": "bitsandbytes",
    "deepspeed": "deepspeed",
    "torch": "torch",
    "transformers": "transformers",
    "trl": "trl",
    "peft": "peft",
    "accelerate": "accelerate",
    "datasets": "datasets",
}
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


def probe_packages() -> dict[str, Optional[str]]:
    """Installed version of each package the plan may need, or None when it cannot be imported here."""
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
        for name in names:
            m = _DIST_INFO.match(name)
            if m:
                versions.setdefault(m["name"].lower().replace("-", "_"), m["version"])
        for module in PACKAGES:
            if found[module] is None and (module in names or f"{module}.py" in names or any(n.startswith(module + ".") and n.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) for n in names)):
                found[module] = "installed"
    return {m: (versions.get(PACKAGES[m], "installed") if found[m] else None) for m in PACKAGES}
