"""`recipe runs`: the runs under an outputs directory (state, step, loss), or one run's curves."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.cli.exits import EXIT_OK, Usage


def cmd_runs(args: argparse.Namespace) -> int:
    from runner.after.runs import curves, is_run, plot, runs_table

    path = Path(args.dir)
    if not path.exists():
        raise Usage(f"no such directory: {args.dir}")
    if not is_run(path):
        print(runs_table(path))
        return EXIT_OK
    print(curves(path))
    try:
        png = plot(path)
    except ImportError:
        print("  (no PNG: matplotlib is not installed; it comes with: pip install 'recipe[train]')", file=sys.stderr)
    else:
        if png is not None:
            print(f"  curves drawn in {png}")
    return EXIT_OK
