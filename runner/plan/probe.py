"""What is installed, read from package metadata without importing anything heavy."""

from __future__ import annotations

from importlib import metadata
from typing import Optional

PACKAGES = {
    "flash_attn": "flash-attn",
    "bitsandbytes": "bitsandbytes",
    "deepspeed": "deepspeed",
    "torch": "torch",
    "transformers": "transformers",
    "trl": "trl",
    "peft": "peft",
    "accelerate": "accelerate",
    "datasets": "datasets",
}


def probe_packages() -> dict[str, Optional[str]]:
    """Installed version of each package the plan may need, or None."""
    out: dict[str, Optional[str]] = {}
    for key, dist in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out
