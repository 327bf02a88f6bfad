"""Runs that survive interruption: Ctrl-C, a killed launcher, a half-written checkpoint, NaN, a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RECIPE, ROOT
from conftest import recipe_process as run


def _checkpoint(out: Path, step: int, states: bool = True) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(256))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if states:
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (folder / name).write_bytes(os.urandom(64))
    return folder


def test_resume_takes_the_newest_complete_checkpoint_and_sets_the_others_aside(tmp_path):
    from runner.common.rundir import take
    from runner.run.checkpoints import MARKER, ResumeError, choose, write_marker

    out = tmp_path / "run"
    take(out)
    for step in (10, 20):
        write_marker(_checkpoint(out, step), step)
    _checkpoint(out, 30)  # killed while saving: no marker
    said: list[str] = []
    chosen = choose(out, say=said.append)
    assert chosen == out / "checkpoint-20" and "resuming from" in said[-1] and "checkpoint-20" in said[-1]
    assert not (out / "checkpoint-30").exists() and (out / "set-aside/checkpoint-30/trainer_state.json").is_file()
    assert any("checkpoint-30" in m and MARKER in m and "set aside" in m for m in said), said

    # a damaged file (same size, other bytes) is named, and --resume-from chooses
    weights = out / "checkpoint-20/adapter_model.safetensors"
    weights.write_bytes(bytes(b ^ 0xFF for b in weights.read_bytes()))
    with pytest.raises(ResumeError, match="adapter_model.safetensors differs"):
        choose(out, "checkpoint-20", say=said.append)
    assert choose(out, "checkpoint-10", say=said.append) == out / "checkpoint-10"
    assert (out / "set-aside/checkpoint-20").is_dir()  # newer than the one chosen: set aside, not deleted


def test_a_resume_without_the_random_schedule_or_optimizer_state_says_so(tmp_path):
    from runner.run.checkpoints import choose, write_marker

    out = tmp_path / "run"
    folder = _checkpoint(out, 10)
    write_marker(folder, 10)
    (folder / "rng_state.pth").unlink()
    (folder / "scheduler.pt").unlink()
    said: list[str] = []
    assert choose(out, say=said.append) == folder
    warning = said[-1]
    assert "rng_state.pth" in warning and "scheduler.pt" in warning and "no longer reproducible" in warning
    assert "optimizer" not in warning


def test_a_corrupt_checkpoint_file_is_named_without_torchs_weights_only_advice(tmp_path):
    import torch

    from runner.run.failure import explain

    garbage = tmp_path / "checkpoint-10" / "optimizer.pt"
    garbage.parent.mkdir()
    garbage.write_bytes(b"PK\x03\x04 not a checkpoint at all" * 10)
    try:
        torch.load(garbage, weights_only=True)
    except Exception as exc:  # what transformers' resume raises from inside torch.load
        line, _ = explain(exc, str(tmp_path))
    assert str(garbage) in line and "weights_only" not in line and "--resume-from" in line, line


def test_the_result_moves_in_whole_with_the_lock_file_last(tmp_path, monkeypatch):
    from runner.common.rundir import take
    from runner.run import final

    out = tmp_path / "run"
    take(out)
    (out / "recipe.lock.yaml").write_text("old\n")
    (out / "adapter_model.safetensors").write_text("old\n")
    staged = final.staging_dir(out)
    for name in ("adapter_model.safetensors", "adapter_config.json", "recipe.lock.yaml"):
        (staged / name).write_text("new\n")
    real = os.replace
    moved: list[str] = []

    def killed_after_one(src, dst):
        if moved:
            raise KeyboardInterrupt  # the process dies while moving the result in
        moved.append(Path(dst).name)
        real(src, dst)

    monkeypatch.setattr(final.os, "replace", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        final.commit(out, staged)
    assert not (out / "recipe.lock.yaml").exists()  # half new, half old: no lock file claims it is a result
    monkeypatch.setattr(final.os, "replace", real)
    final.commit(out, staged)
    assert (out / "recipe.lock.yaml").read_text() == "new\n" and not staged.exists()
    assert (out / "adapter_config.json").read_text() == "new\n"


class _Param:
    def __init__(self):
        self.grad = "a gradient"


class _Optimizer:
    def __init__(self):
        self.param_groups = [{"params": [_Param(), _Param()]}]


def test_non_finite_steps_stop_the_run_naming_the_step_after_the_tolerated_ones(capsys):
    import torch

    from runner.run.finite import FiniteGuard, NonFiniteError

    guard = FiniteGuard(allowed=1, last_good=lambda: "checkpoint-10")
    optimizer = _Optimizer()
    guard.losses, guard.grad_norm = [torch.tensor(0.5)], torch.tensor(1.0)
    assert guard.finite("cpu")
    guard.losses, guard.grad_norm = [torch.tensor(0.5)], torch.tensor(float("nan"))
    assert not guard.finite("cpu")
    guard.bad_step(13, optimizer)  # tolerated: skipped, the optimizer sees no gradient
    assert all(p.grad is None for p in optimizer.param_groups[0]["params"])
    assert "step 13 skipped" in capsys.readouterr().out
    guard.losses = [torch.tensor(float("inf"))]
    assert not guard.finite("cpu")
    with pytest.raises(NonFiniteError, match=r"step 14: .*not finite.*last good checkpoint is checkpoint-10"):
        guard.bad_step(14, _Optimizer())


def test_a_final_loss_that_is_nan_is_never_finished(tmp_path):
    from runner.run.attempt import ended
    from runner.run.finite import NonFiniteError, check_final

    with pytest.raises(NonFiniteError, match="eval_loss nan"):
        check_final(0.5, {"eval_loss": float("nan")})
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 1.0, "train_loss": float("nan")}) + "\n")
    state, why = ended(tmp_path, 0)
    assert state == "failed" and "train_loss nan" in why


def test_status_says_why_on_a_full_disk(tmp_path, monkeypatch):
    from runner.run import summary

    out = tmp_path / "run"
    out.mkdir()
    summary.mark_status(out, "running", name="x")

    def full(path, text, mode=0o644):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("runner.common.files.write_atomic", full)
    summary.mark_status(out, "failed", code=1)
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and "No space left on device" in status["reason"], status
    assert f"cannot write {out}" in status["reason"]


def test_a_dry_run_leaves_a_running_runs_launch_files_alone(tmp_path, cli):
    from runner.common.lock import acquire
    from runner.common.rundir import take

    out = tmp_path / "running"
    take(out)  # as `recipe run` marks it before it takes the lock
    held = acquire(out, "recipe run recipes/tiny/sft-lora.yaml")
    try:
        code, _, err = cli(
            "run", ROOT / "recipes/tiny/sft-lora.yaml", "--dry-run",
            "--set", f"output.dir={out}", "--set", "training.learning_rate=0.5",
        )  # fmt: skip
    finally:
        held.release()
    assert code == 1 and "in use by a running run" in err, err
    assert not (out / "launch").exists()


def test_metrics_hold_each_step_once_after_a_resume(tmp_path):
    from types import SimpleNamespace

    from runner.run.outputs import MetricsCallback

    rows = [{"step": s, "loss": 1.0} for s in (5, 10, 15, 20, 25)] + [{"step": 20, "eval_loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    callback = MetricsCallback(tmp_path, resumed_step=20)
    for step, logs in ((20, {"eval_loss": 2.0}), (25, {"loss": 0.9}), (30, {"loss": 0.8})):
        state = SimpleNamespace(is_world_process_zero=True, global_step=step, max_steps=30, epoch=1.0)
        callback.on_log(None, state, None, logs=logs)
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], "eval" if "eval_loss" in r else "train") for r in kept]
    assert len(keys) == len(set(keys)) and (25, "train") in keys and (30, "train") in keys, keys
    assert next(r for r in kept if r["step"] == 25)["loss"] == 0.9  # the step trained again, as it was retrained


def test_a_second_stop_signal_is_not_a_traceback_and_a_killed_launcher_is_noticed():
    from runner.run.signals import GracefulStop, watch_launcher

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        stop = GracefulStop(under_launcher=True)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # a launcher passing it on once more: ignored
        time.sleep(0.1)
        assert stop.requested == "SIGINT"
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone: list[bool] = []
    watch_launcher(launcher.pid, lambda: gone.append(True))
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 5
    while not gone and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone


COMMON = ["--set", "training.max_steps=30", "--set", "training.save_every=5", "--set", "training.eval_every=10"]


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.exists(), proc.communicate(timeout=60)[0][-3000:]


@pytest.mark.e2e
def test_ctrl_c_checkpoints_and_the_hint_resumes_this_run(tmp_path):
    """Ctrl-C reaching `recipe run` (the terminal's SIGINT) in a directory whose name has a space: one line, a
    complete checkpoint, no traceback; the hint repeats the --set overrides, quoted, and resumes this run, whose
    metrics then hold each step once and whose summary names TRL's train_loss and the last logged loss."""
    import shlex

    out = tmp_path / "with space"
    argv = ["run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", *COMMON]
    proc = subprocess.Popen([RECIPE, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(out / "checkpoint-5" / "checkpoint-complete.json", proc)
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, log[-3000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert log.count("SIGINT: saving a checkpoint") == 1, log[-3000:]
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
    hint = log[log.index("continue with: ") + len("continue with: ") :].splitlines()[0]
    assert hint == shlex.join(["recipe", *argv, "--resume"]), hint
    complete = sorted(p for p in out.glob("checkpoint-*") if (p / "checkpoint-complete.json").is_file())
    assert complete and not (out / "recipe.lock.yaml").exists()

    resumed = run(*shlex.split(hint)[1:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and complete[-1].name in resumed.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], "summary" if "train_runtime" in r else "eval" if "eval_loss" in r else "train") for r in rows]
    assert len(keys) == len(set(keys)), keys
    assert "train_loss " in resumed.stderr and "last logged loss " in resumed.stderr
    assert f"recipe chat {shlex.quote(str(out))}" in resumed.stderr


@pytest.mark.e2e
def test_training_stops_when_recipe_run_is_killed(tmp_path):
    out = tmp_path / "orphan"
    proc = subprocess.Popen(
        [RECIPE, "run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", *COMMON],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(out / "checkpoint-5", proc)
    proc.kill()  # recipe run alone (the launcher runs in its own session)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    status = {}
    while time.monotonic() < deadline:
        status = json.loads((out / "status.json").read_text())
        if status["state"] != "running":
            break
        time.sleep(0.2)
    assert status["state"] == "failed" and "ended while training" in status.get("reason", ""), status
    steps = len(list(out.glob("checkpoint-*")))
    time.sleep(3)
    assert len(list(out.glob("checkpoint-*"))) == steps and not (out / "recipe.lock.yaml").exists()


@pytest.mark.e2e
def test_weights_that_make_the_loss_nan_fail_the_run_at_the_first_step(tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(ROOT / "assets/tiny-llama", model)
    weights = load_file(model / "model.safetensors")
    name = next(k for k in weights if "layers.0.mlp.down_proj" in k)
    weights[name][0, 0] = torch.nan  # one damaged value
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out"
    proc = run(
        "run", "recipes/tiny/sft-lora.yaml", "--set", f"output.dir={out}", "--set", f"model.name_or_path={model}",
        "--set", "training.max_steps=10",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "step 1: the loss or the gradients are not finite" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((out / "status.json").read_text())["state"] == "failed"
    assert not (out / "recipe.lock.yaml").exists() and not list(out.glob("checkpoint-*"))
