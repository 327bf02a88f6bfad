"""`recipe plan`: the plan as text or JSON, every field's origin (--explain), one step measured (--measure)."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.exits import EXIT_INVALID, EXIT_OK
from runner.cli.load import load_single


def cmd_plan(args: argparse.Namespace) -> int:
    loaded, plan = load_single(args.recipe, args.set, root=getattr(args, "extends_root", None))
    if args.explain:
        from runner.cli.planview import explain_fields, render_explain

        rows = explain_fields(loaded, plan)
        print(json.dumps(rows, indent=2) if args.json else render_explain(rows))
        return EXIT_OK
    measured = None
    if args.measure:
        measured = _measure(plan)
        if measured is None:
            return EXIT_INVALID
    if args.json:
        out = plan.to_json()
        if measured is not None:
            out["memory"]["measured"] = measured.to_json()
        print(json.dumps(out, indent=2))
    else:
        from runner.cli.planview import render_measurement, render_plan

        print(render_plan(plan, args.recipe))
        if measured is not None:
            print("\n" + render_measurement(plan, measured))
    return EXIT_OK


def _measure(plan):
    """One training step of the plan measured with fake tensors, or None (after saying why) when it cannot be."""
    try:
        from runner.measure.step import measure
    except ImportError as exc:
        print(
            f"recipe plan --measure: needs the training libraries ({exc.name} is not installed): "
            "pip install 'recipe[train]'",
            file=sys.stderr,
        )
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the libraries' deprecation warnings say nothing about the recipe
            return measure(plan)
    except ValueError as exc:
        print(f"recipe plan --measure: cannot measure this plan: {exc}", file=sys.stderr)
        return None
    except Exception as exc:  # a model whose code the fake stand-ins do not cover: say so, the plan stands
        print(
            f"recipe plan --measure: the measurement failed inside the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); the estimate above is not measured for this architecture",
            file=sys.stderr,
        )
        return None
