"""`recipe --version`: this package's version and the training libraries installed beside it.

Versions are read from the installed distributions' metadata folders (runner.plan.probe), so nothing heavy is
imported. In a source checkout the tested set of versions (constraints.txt at the repository root) is read too,
and a library installed at another version is marked, since that combination is not the one the tests passed on.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Optional

# the libraries a run's recipe.lock.yaml records, and the trackers and kernels the plan may use
LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "deepspeed",
    "flash_attn",
    "liger_kernel",
)
CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recipe")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def tested_versions(path: Path = CONSTRAINTS) -> dict[str, str]:
    """`name==version` lines of the lock file, names normalised as their import names ({} when there is none)."""
    if not path.is_file():
        return {}
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, pinned = line.partition("==")
        if sep:
            pins[name.strip().lower().replace("-", "_")] = pinned.strip()
    return pins


def version_text(installed: Optional[dict] = None, tested: Optional[dict] = None) -> str:
    from runner.plan.probe import probe_packages

    installed = probe_packages() if installed is None else installed
    tested = tested_versions() if tested is None else tested
    lines = [f"recipe {own_version()} (Python {platform.python_version()}, {sys.platform})"]
    width = max(len(name) for name in LIBRARIES)
    for name in LIBRARIES:
        have = installed.get(name)
        note = ""
        if tested and name in tested and (have or "").split("+")[0] != tested[name]:
            note = f"  (tested: {tested[name]})"
        lines.append(f"  {name:<{width}}  {have or 'not installed'}{note}")
    if tested:
        lines.append(f"tested set: {CONSTRAINTS}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """`--version`: print version_text() and exit 0, before a command is required."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit(0)
