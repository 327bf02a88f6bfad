"""Writes a plan's launch files, atomically: recipe.resolved.yaml, plan.json, ds_config.json, accelerate.yaml, launch.sh.

Only this edge of the program writes files; `resolve()` stays pure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from .plan import Plan
from .plan import launchfiles


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so that a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir_atomic(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a temporary sibling directory, then move it to `target` (replacing it): a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)
        fill(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_launch_files(plan: Plan, source: str, slurm: bool = False, extra_args: list[str] | None = None) -> dict[str, Path]:
    """Write the launch directory of `plan`; returns the files written by role."""
    launch = Path(plan.launch_dir)
    header = (
        f"# Resolved from {source} by `recipe run`: defaults filled in and every `auto` decided.\n"
        "# `recipe plan` on this file shows the same plan.\n"
    )
    written = {"recipe": launch / "recipe.resolved.yaml", "plan": launch / "plan.json", "accelerate": launch / "accelerate.yaml", "launch": launch / "launch.sh"}
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
            name=plan.recipe.name, argv=argv, nodes=plan.recipe.hardware.nodes,
            gpus_per_node=plan.recipe.hardware.gpus_per_node, launch_dir=plan.launch_dir,
        )
        write_atomic(written["slurm"], script, mode=0o755)
    return written


def launch(argv: list[str]) -> int:
    """Run `accelerate launch ...`, streaming its output; returns the run's exit code.

    The launcher runs in its own process group. SIGTERM or Ctrl-C reaching `recipe run` is passed to the
    whole group (accelerate's single-process launcher does not forward signals to the training process),
    and `recipe run` waits until the training processes have saved their checkpoint and exited.
    """
    import shutil
    import signal
    import subprocess
    import sys
    import time

    exe = shutil.which(argv[0]) or str(Path(sys.executable).parent / argv[0])
    env = dict(os.environ)
    env.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    proc = subprocess.Popen([exe, *argv[1:]], env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
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
