"""What the runner costs: the tiny SFT and QLoRA DPO recipes through `recipe run` against the same training
written by hand against TRL (handwritten_trl.py), both launched with `accelerate launch`, alternated.

    python benchmarks/runner_overhead.py [--rounds 3]

Reports, per objective, the median training steps per second (from the trainer's own train_steps_per_second)
and the median wall-clock time of the whole command, and their ratios runner / hand-written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    )
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def steps_per_second(records: list[dict]) -> float:
    return next(r["train_steps_per_second"] for r in reversed(records) if "train_steps_per_second" in r)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for kind, recipe in (("sft", "recipes/tiny/sft-lora.yaml"), ("dpo", "recipes/tiny/dpo-qlora.yaml")):
                r = results.setdefault(kind, {"runner_wall": [], "runner_sps": [], "hand_wall": [], "hand_sps": []})
                out = Path(tmp) / f"runner-{kind}"
                shutil.rmtree(out, ignore_errors=True)
                r["runner_wall"].append(timed([str(BIN / "recipe"), "run", recipe, "--set", f"output.dir={out}"]))
                r["runner_sps"].append(
                    steps_per_second([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()])
                )
                out = Path(tmp) / f"hand-{kind}"
                shutil.rmtree(out, ignore_errors=True)
                r["hand_wall"].append(
                    timed(
                        [
                            str(BIN / "accelerate"),
                            "launch",
                            "--num_processes",
                            "1",
                            "--cpu",
                            "benchmarks/handwritten_trl.py",
                            kind,
                            str(out),
                        ]
                    )
                )
                r["hand_sps"].append(steps_per_second(json.loads((out / "log_history.json").read_text())))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; rounds: {args.rounds} (medians)"
    )
    print(
        f"{'run':<5} {'runner steps/s':>15} {'hand steps/s':>13} {'ratio':>6}   "
        f"{'runner wall s':>13} {'hand wall s':>11} {'ratio':>6}"
    )
    for kind, r in results.items():
        rs, hs = statistics.median(r["runner_sps"]), statistics.median(r["hand_sps"])
        rw, hw = statistics.median(r["runner_wall"]), statistics.median(r["hand_wall"])
        print(f"{kind:<5} {rs:15.2f} {hs:13.2f} {rs / hs:6.2f}   {rw:13.1f} {hw:11.1f} {rw / hw:6.2f}")


if __name__ == "__main__":
    main()
