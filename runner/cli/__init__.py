"""The `recipe` command: argument parsing and printing; each command imports the phase it drives, lazily.

main.py is the dispatch (exit codes from exits.py), parser.py every command's arguments; a command's code lives in
the module named for it: check.py (validate, schema, list), plan.py (with planview.py, its text), run.py, data.py,
runs.py, hardware.py, diff.py, new.py, migrate.py (import) and after.py (merge, chat, eval). load.py finds recipe
files and loads them with their plan; table.py is the plain-text table two commands print.
"""

from .load import find_recipes, load_and_plan
from .main import main
from .parser import build_parser

__all__ = ["build_parser", "find_recipes", "load_and_plan", "main"]
