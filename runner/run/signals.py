"""How a training process stops when asked, and that it never outlives its launcher.

SIGTERM (a preempted node), SIGINT (Ctrl-C) and SIGHUP (a closed terminal) all mean the same: finish the current
step, save a checkpoint and stop. Under `recipe run`, which passes the first signal on as SIGTERM and ends the run
at once on a second, repeated signals are ignored here (launchers such as torchrun pass SIGTERM on once more);
started directly, a second Ctrl-C stops at once, without a checkpoint and without a traceback.

Started by `recipe run`, which holds the output lock for the run (RECIPE_RUN_LOCK names its pid), the training
process watches that process: when it is gone (killed with SIGKILL, say), nothing holds the lock any more and a
second run could start in the same directory, so training stops at once and status.json says why.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WATCH_EVERY_S = 0.5


class GracefulStop:
    """On the first stop signal, checkpoint at the next step boundary and stop; on a second, exit at once."""

    def __init__(self, under_launcher: bool = False) -> None:
        self.requested: str | None = None  # the signal's name
        self.announce = not under_launcher  # `recipe run` says it in the terminal itself
        for s in STOP_SIGNALS:
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            if self.announce and signum == signal.SIGINT:
                print(f"\nrunner.run.train: {name} again: stopping now, without a checkpoint", file=sys.stderr)
                sys.stderr.flush()
                os._exit(128 + signum)
            return
        self.requested = name
        if self.announce:
            print(
                f"\nrunner.run.train: {name}: saving a checkpoint at the end of this step, then stopping "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if outer.requested:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return _Callback()


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (state first); none where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (so that a new process given the same pid is not taken for it)."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return started is None or _start_time(pid) in (started, None)


def watch_launcher(pid: int, on_gone) -> threading.Thread:
    """A daemon thread that calls `on_gone()` once `pid` has ended."""
    started = _start_time(pid)

    def watch() -> None:
        while _alive(pid, started):
            time.sleep(WATCH_EVERY_S)
        on_gone()

    thread = threading.Thread(target=watch, name="recipe-run-watch", daemon=True)
    thread.start()
    return thread


def die_with_launcher(output_dir: str, is_main: bool) -> None:
    """Stop this process at once when `recipe run` (the lock's holder) ends; the main process first records in
    status.json why the run ended."""
    from runner.common.lock import HOLDER_ENV

    holder = os.environ.get(HOLDER_ENV)
    if not holder:
        return

    def gone() -> None:
        why = f"recipe run (pid {holder}) ended while training, and with it the lock on {output_dir}: training stopped"
        print(f"\nrunner.run.train: {why}", file=sys.stderr, flush=True)
        if is_main:
            try:
                from .summary import mark_status

                mark_status(Path(output_dir), "failed", reason=why)
            except Exception:  # nothing more can be done for the record; the process still ends
                pass
        os._exit(1)

    watch_launcher(int(holder), gone)
