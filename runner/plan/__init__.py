"""Resolution: a validated recipe becomes an explicit, explained plan (no torch imported here)."""

from .probe import probe_packages
from .resolve import resolve
from .types import Decision, Plan, Problem

__all__ = ["Decision", "Plan", "Problem", "probe_packages", "resolve"]
