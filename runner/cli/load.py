"""Finding recipe files on the command line and loading them with their plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from runner.cli.exits import Invalid, Usage

RECIPE_SUFFIXES = (".yaml", ".yml")


def find_recipes(paths: Sequence[str]) -> list[Path]:
    """Files named on the command line, and every `*.yaml`/`*.yml` under named directories.

    Inside directories, files whose name starts with `_` are fragments meant only for `extends`
    and are skipped (they are checked through the recipes that extend them), as are hidden folders.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.suffix in RECIPE_SUFFIXES
                and f.is_file()
                and not f.name.startswith("_")
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                raise Usage(f"no recipe files (*.yaml, *.yml) under {raw}")
            found.extend(files)
        elif p.exists():
            found.append(p)
        else:
            raise Usage(f"no such file or directory: {raw}")
    return found


SHIPPED_RECIPES = Path(__file__).resolve().parents[2] / "recipes"  # what `recipe new --from` extends


def extends_root(path, given=None, named=None) -> tuple[Path, Path]:
    """The folders a recipe's `extends` may read from: `--extends-root`, else the recipe's git repository, else the
    folder named on the command line (`named`), else the recipe's own folder; and the shipped recipes."""
    from schemas.extends import repository_root

    root = Path(given) if given else repository_root(Path(path)) or Path(named or Path(path).parent)
    return root, SHIPPED_RECIPES


def load_and_plan(path, overrides, root=None):
    """Load a recipe and, when it validates, resolve its plan; plan problems join the diagnostics. `root`: the
    folder its bases must be in (default: extends_root())."""
    from schemas import load

    loaded = load(path, overrides, extends_root=root or extends_root(path))
    plan = None
    if loaded.recipe is not None and not loaded.errors:
        from runner.plan import probe_packages, resolve

        plan = resolve(loaded.recipe, probe_packages())
        from schemas.diagnostics import located

        loaded.diagnostics.extend(located(plan.problems, loaded.sources, loaded.path))
    return loaded, plan


def load_single(path: str, overrides, fmt: str = "text", root=None):
    """Load one recipe and its plan, printing diagnostics; raises Invalid when it cannot run. `root`:
    `--extends-root`."""
    from schemas import render

    if not Path(path).is_file():
        raise Usage(f"no such recipe file: {path}")
    loaded, plan = load_and_plan(path, overrides or (), extends_root(path, root))
    if loaded.diagnostics:
        print(render(loaded.diagnostics, fmt), file=sys.stderr)
    if plan is None or loaded.errors:
        raise Invalid()
    return loaded, plan
