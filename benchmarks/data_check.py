"""The data check at scale: a generated preference jsonl file (1,000,000 rows by default) through the structural
check of `recipe data --check` (every row read, mapped through the recipe's format, checked, hashed for
duplicates), and the token statistics on a slice of it; rows/s and peak memory (max RSS of a fresh process).

    python benchmarks/data_check.py [--rows 1000000] [--token-rows 100000]

Each measurement runs in its own process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORDS = "the a model answer question color lemon sky blue green red why how what when because which".split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Preference rows with lengths like a chat set (prompts 5-60 words, answers 5-120), 1 in 10,000 bad."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            row = {
                "prompt": sentence(rng, rng.randint(5, 60)),
                "chosen": sentence(rng, rng.randint(5, 120)),
                "rejected": sentence(rng, rng.randint(5, 120)),
            }
            if i % 10_000 == 5_000:
                row.pop("rejected")
            f.write(json.dumps(row) + "\n")


def recipe(tmp: Path, data: Path, rows: int | None = None) -> Path:
    source = {"source": f"jsonl:{data}", "format": "preference"} | ({"limit": rows} if rows else {})
    doc = {
        "extends": str(ROOT / "recipes/tiny/dpo-qlora.yaml"),
        "datasets": {"train": [source], "bad_rows": "skip"},
    }
    path = tmp / f"recipe-{rows or 'all'}.yaml"
    path.write_text(json.dumps(doc))
    return path


CHILD = """
import json, resource, sys, time
from schemas import load
from runner.cli import load_and_plan
loaded, plan = load_and_plan(sys.argv[2], ())
t0 = time.perf_counter()
if sys.argv[1] == "check":
    from runner.data.check import check_recipe
    report = check_recipe(loaded.recipe)
    rows = sum(s.rows for s in report.sources if s.where.startswith("datasets.train"))
    extra = {"bad": report.bad}
else:
    import datasets
    datasets.disable_progress_bars()
    from runner.data.tokens import token_stats
    stats = token_stats(plan)
    rows = stats["train"]["rows"] + stats.get("eval", {}).get("rows", 0)
    extra = {"p95": stats["train"]["length"]["p95"]}
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak, "children_peak_mib": children, **extra}))
"""


def measure(kind: str, recipe_file: Path, cache: Path) -> dict:
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(recipe_file)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--token-rows", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "preference.jsonl"
        t0 = time.perf_counter()
        generate(data, args.rows)
        size = data.stat().st_size
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"generated {args.rows:,} rows, {size / 2**20:.0f} MiB, in {time.perf_counter() - t0:.1f} s")
        check = measure("check", recipe(tmp, data), tmp / "cache")
        print(
            f"structural check: {check['rows']:,} rows in {check['seconds']:.1f} s = "
            f"{check['rows'] / check['seconds']:,.0f} rows/s; peak RSS {check['peak_mib']:.0f} MiB "
            f"(largest worker {check['children_peak_mib']:.0f} MiB; file {size / 2**20:.0f} MiB); "
            f"{check['bad']} bad rows found"
        )
        tokens = measure("tokens", recipe(tmp, data, args.token_rows), tmp / "cache")
        print(
            f"token statistics: {tokens['rows']:,} rows in {tokens['seconds']:.1f} s = "
            f"{tokens['rows'] / tokens['seconds']:,.0f} rows/s on {os.cpu_count()} processes; peak RSS "
            f"{tokens['peak_mib']:.0f} MiB (largest worker {tokens['children_peak_mib']:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
