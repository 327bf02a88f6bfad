"""The recipe contract: Pydantic models, located YAML loading and cross-field rules.

Imports nothing heavier than pydantic and PyYAML, so `recipe validate` starts
fast and runs in any CI.
"""

from .diagnostics import Diagnostic, Location, RecipeError, render
from .hardware import HardwareProfile, load_profile, profile_names
from .loader import Loaded, UsageError, load
from .recipe import Recipe

__all__ = [
    "Diagnostic",
    "HardwareProfile",
    "Loaded",
    "Location",
    "Recipe",
    "RecipeError",
    "UsageError",
    "load",
    "load_profile",
    "profile_names",
    "render",
]
