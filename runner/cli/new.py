"""`recipe new NAME --from RECIPE`: write a new recipe that extends another, ready to edit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.exits import EXIT_INVALID, EXIT_OK, Usage


def cmd_new(args: argparse.Namespace) -> int:
    from runner.after.new import NewRecipeError, new_recipe
    from schemas import render

    try:
        path, base, diagnostics = new_recipe(args.name, args.base, force=args.force)
    except NewRecipeError as exc:
        raise Usage(str(exc)) from None
    if diagnostics and Path(base).name.startswith("_"):
        print(
            f"recipe new: {base} is a fragment (its name starts with _), not a complete recipe; start from a recipe "
            "that extends it, or write `extends:` by hand (nothing was written)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if diagnostics:
        print(render(diagnostics, "text"), file=sys.stderr)
        print(f"recipe new: {base} is invalid; fix it before extending it (nothing was written)", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {path}", file=sys.stderr)
    print(f"edit it, then: recipe diff {base} {path} && recipe plan {path}", file=sys.stderr)
    return EXIT_OK
