"""The output directory lock: one run at a time, a dead run's lock reported and never broken silently."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from runner.common.lock import LOCK_NAME, LockError, acquire

from conftest import RECIPE, ROOT
from conftest import recipe_process as run


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    first = acquire(tmp_path / "out", "recipe run first.yaml")
    with pytest.raises(LockError) as refused:
        acquire(tmp_path / "out", "recipe run second.yaml")
    message = str(refused.value)
    assert "is in use by another run" in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "recipe run first.yaml" in message
    first.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    acquire(tmp_path / "out", "recipe run second.yaml").release()


def test_a_killed_holders_lock_is_reported_stale_with_how_to_clear_it(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from runner.common.lock import acquire; acquire({str(out)!r}, 'recipe run a.yaml'); "
         "import time; time.sleep(60)"],
        cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).read_text().strip():
        assert time.monotonic() < deadline, "the holder did not take the lock"
        time.sleep(0.1)
    with pytest.raises(LockError, match="in use by another run"):
        acquire(out, "recipe run b.yaml")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pytest.raises(LockError) as stale:
        acquire(out, "recipe run b.yaml")
    message = str(stale.value)
    assert "stale lock" in message and "is no longer running" in message and f"pid {holder.pid}" in message
    assert f"delete {out / LOCK_NAME}" in message
    assert (out / LOCK_NAME).exists()  # never broken silently


@pytest.mark.e2e
def test_two_runs_into_one_output_directory(tmp_path):
    out = tmp_path / "out"
    args = ["run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", "--set", "training.max_steps=30"]
    first = subprocess.Popen(
        [RECIPE, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 60
    while not (out / LOCK_NAME).exists():
        assert time.monotonic() < deadline and first.poll() is None, "the first run did not take the lock"
        time.sleep(0.1)
    second = run(*args)
    assert second.returncode == 1 and "is in use by another run" in second.stderr, second.stderr[-2000:]
    assert f"pid {first.pid}" in second.stderr and "nothing was started" in second.stderr
    assert first.wait(timeout=600) == 0
    assert (out / "recipe.lock.yaml").exists() and not (out / LOCK_NAME).exists()
