"""How long `recipe validate recipes/` takes, against the bare interpreter start-up measured in the same session.

    python benchmarks/validate_speed.py [--runs 20]

Prints the median wall time of:
  baseline  `python -c pass`
  imports   `python -c "import yaml, pydantic"` (the floor for any pydantic-based validator)
  validate  `recipe validate recipes/`
and, in-process, the cost of validating and planning one recipe once everything is imported.
Not a test: numbers depend on the machine. Record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    py = sys.executable
    sys.path.insert(0, str(ROOT))
    from runner.cli import find_recipes

    files = find_recipes([str(ROOT / "recipes")])
    check = subprocess.run([py, "-m", "runner", "validate", "recipes/"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # Alternate the three commands so drift on the machine affects each alike.
    cmds = {
        "baseline": [py, "-c", "pass"],
        "imports": [py, "-c", "import yaml, pydantic"],
        "validate": [py, "-m", "runner", "validate", "recipes/"],
    }
    samples: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            samples[name].append(wall(cmd, 1))
    med = {k: statistics.median(v) for k, v in samples.items()}

    from runner.cli import load_and_plan

    for f in files:
        load_and_plan(f, ())  # warm caches (profiles, architecture table)
    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        for f in files:
            load_and_plan(f, ())
    per_recipe_ms = (time.perf_counter() - t0) / (n * len(files)) * 1000

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"recipes validated: {len(files)}; runs per command: {args.runs} (median)")
    print(f"baseline  python -c pass               {med['baseline'] * 1000:7.1f} ms")
    print(f"imports   import yaml, pydantic        {med['imports'] * 1000:7.1f} ms")
    print(
        f"validate  recipe validate recipes/     {med['validate'] * 1000:7.1f} ms"
        f"   ({med['validate'] / med['baseline']:.1f}x baseline, {med['validate'] / med['imports']:.2f}x imports)"
    )
    print(f"in-process: {per_recipe_ms:.2f} ms per recipe (load, rules and plan) after imports")


if __name__ == "__main__":
    main()
