"""`recipe diff A B`: what differs between two recipes (after extends and defaults) and between their plans."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.exits import EXIT_INVALID, EXIT_OK, Usage
from runner.cli.load import load_and_plan


def cmd_diff(args: argparse.Namespace) -> int:
    from runner.after.diff import diff, recipe_path
    from schemas import render

    try:
        paths = [recipe_path(args.a), recipe_path(args.b)]
    except FileNotFoundError as exc:
        raise Usage(str(exc)) from None
    sides = [load_and_plan(p, ()) for p in paths]
    if any(plan is None for _, plan in sides):  # schema or rule errors; plan problems (memory) are part of the diff
        print(
            render([d for loaded, plan in sides if plan is None for d in loaded.diagnostics], "text"), file=sys.stderr
        )
        return EXIT_INVALID
    (la, pa), (lb, pb) = sides
    result = diff(la.recipe, lb.recipe, pa, pb, args.a, args.b)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return EXIT_OK
