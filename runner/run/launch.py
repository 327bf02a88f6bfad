"""The launching edge: a plan's launch files written atomically, and `accelerate launch` started and watched.

Files: recipe.resolved.yaml (for people and `recipe plan`), plan.json (what every training process reads),
ds_config.json, accelerate.yaml, launch.sh. `resolve()` stays pure; only this edge writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from runner.common.files import write_atomic
from runner.common.rundir import record_created
from runner.plan import Plan, launchfiles


def write_launch_files(
    plan: Plan, source: str, slurm: bool = False, extra_args: list[str] | None = None
) -> dict[str, Path]:
    """Write the launch directory of `plan`; returns the files written by role."""
    launch = Path(plan.launch_dir)
    record_created(Path(plan.output_dir), launch.name)
    header = (
        f"# Resolved from {source} by `recipe run`: defaults filled in and every `auto` decided.\n"
        "# `recipe plan` on this file shows the same plan.\n"
    )
    written = {
        "recipe": launch / "recipe.resolved.yaml",
        "plan": launch / "plan.json",
        "accelerate": launch / "accelerate.yaml",
        "launch": launch / "launch.sh",
    }
    write_atomic(written["recipe"], header + yaml.safe_dump(plan.resolved, sort_keys=False, allow_unicode=True))
    write_atomic(written["plan"], json.dumps(plan.to_json(), indent=2) + "\n")
    write_atomic(written["accelerate"], yaml.safe_dump(plan.accelerate, sort_keys=False))
    argv = plan.launch + list(extra_args or [])
    write_atomic(written["launch"], launchfiles.launch_script(argv, plan.recipe.hardware.nodes), mode=0o755)
    if plan.deepspeed is not None:
        written["deepspeed"] = launch / "ds_config.json"
        write_atomic(written["deepspeed"], json.dumps(plan.deepspeed, indent=2) + "\n")
    if slurm:
        written["slurm"] = launch / "slurm.sbatch"
        script = launchfiles.slurm_script(
            name=plan.recipe.name,
            argv=argv,
            nodes=plan.recipe.hardware.nodes,
            gpus_per_node=plan.recipe.hardware.gpus_per_node,
            launch_dir=plan.launch_dir,
        )
        write_atomic(written["slurm"], script, mode=0o755)
    return written


def launch(argv: list[str], lock_held: bool = False, processes_on_cpu: int = 0) -> int:
    """Run `accelerate launch ...`, streaming its output; returns the run's exit code.

    The launcher runs in its own process group. SIGTERM, SIGHUP or Ctrl-C (SIGINT) reaching `recipe run` is
    passed to the whole group as SIGTERM (accelerate's single-process launcher does not forward signals to the
    training process, and turns SIGINT into a KeyboardInterrupt traceback), and `recipe run` waits until the
    training processes have saved their checkpoint and exited; the same signal again stops them at once
    (runner/run/signals.py). The training processes stop by themselves when `recipe run` is killed.
    """
    import shutil
    import signal
    import subprocess
    import sys
    import time

    exe = shutil.which(argv[0]) or str(Path(sys.executable).parent / argv[0])
    env = dict(os.environ)
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if processes_on_cpu:  # said here, DeepSpeed and torchrun do not announce their CPU defaults
        env.setdefault("DS_ACCELERATOR", "cpu")
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes_on_cpu)))
    if "--verbose" not in argv:
        env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if lock_held:  # the training processes do not take the output lock: this launcher holds it for them
        from runner.common.lock import HOLDER_ENV

        env[HOLDER_ENV] = str(os.getpid())
    proc = subprocess.Popen([exe, *argv[1:]], env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, frame):
        again = "Ctrl-C" if signum == signal.SIGINT else "the same signal"
        if not received:
            print(
                f"\nrecipe run: {signal.Signals(signum).name}: saving a checkpoint at the end of this step, then "
                f"stopping ({again} again stops at once, without one)",
                file=sys.stderr,
                flush=True,
            )
        elif len(received) == 1:
            print(f"\nrecipe run: {signal.Signals(signum).name} again: stopping now", file=sys.stderr, flush=True)
        received.append(signum)
        try:  # the first as SIGTERM to every process of the run; a second ends them at once
            os.killpg(proc.pid, signal.SIGTERM if len(received) == 1 else signal.SIGKILL)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = proc.wait()
        deadline = time.monotonic() + 900
        while received and time.monotonic() < deadline:  # the launcher may exit before its children finish saving
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        return 128 + received[0] if received else code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
