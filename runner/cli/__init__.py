"""The `recipe` command: argument parsing and printing; each command imports the phase it drives, lazily."""

from .load import find_recipes, load_and_plan
from .main import main
from .parser import build_parser

__all__ = ["build_parser", "find_recipes", "load_and_plan", "main"]
