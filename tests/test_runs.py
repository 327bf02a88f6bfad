"""`recipe runs`: the state of each run under an outputs directory, and one run's curves, from its files."""

from __future__ import annotations

import json
import time

from runner.common.lock import LOCK_NAME, acquire


def make_run(root, name, *, status=None, metrics=(), finished=False, lock=False, stale=False):
    run = root / name
    (run / "launch").mkdir(parents=True)
    if status:
        (run / "status.json").write_text(json.dumps({"name": name, "started": time.time() - 120, **status}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if finished:
        (run / "recipe.lock.yaml").write_text("recipe: {}\n")
    if stale:
        (run / LOCK_NAME).write_text(json.dumps({"host": "h", "pid": 1, "started": 0, "command": "recipe run"}))
    return acquire(run, "recipe run live.yaml") if lock else run


def test_the_table_shows_each_runs_state_step_and_numbers(cli, tmp_path):
    steps = [{"step": s, "max_steps": 20, "loss": 2.0 - s / 10, "time": time.time()} for s in (5, 10)]
    make_run(
        tmp_path, "done", status={"state": "finished"}, finished=True, metrics=[*steps, {"step": 10, "eval_loss": 1.5}]
    )
    make_run(tmp_path, "broke", status={"state": "failed", "exit_code": 1}, metrics=steps[:1])
    make_run(tmp_path, "halted", status={"state": "stopped", "exit_code": 143}, metrics=steps)
    live = make_run(tmp_path, "live", status={"state": "running"}, metrics=steps[:1], lock=True)
    make_run(tmp_path, "dead", status={"state": "running"}, metrics=steps[:1], stale=True)
    (tmp_path / "not-a-run").mkdir()
    code, out, _ = cli("runs", str(tmp_path))
    live.release()
    rows = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert code == 0 and set(rows) == {"done", "broke", "halted", "live", "dead"}
    assert rows["done"][:4] == ["finished", "done", "10/20", "1"] and "1.5" in " ".join(rows["done"])
    assert rows["broke"][0] == "failed" and rows["halted"][0] == "stopped"
    assert rows["live"][0] == "running" and rows["dead"][0] == "stale"


def test_one_runs_curves(cli, tmp_path):
    metrics = [{"step": s, "max_steps": 30, "loss": 3.0 - s / 10, "time": time.time()} for s in range(0, 30, 5)]
    metrics += [{"step": 15, "eval_loss": 2.2}, {"step": 30, "eval_loss": 1.4}]
    run = make_run(tmp_path, "r", status={"state": "finished"}, finished=True, metrics=metrics)
    code, out, _ = cli("runs", str(run))
    assert code == 0 and out.startswith("r: finished, step 30/30")
    loss = next(line for line in out.splitlines() if line.strip().startswith("loss "))
    assert "█" in loss and "▁" in loss and "3 -> 0.5" in loss
    assert any(line.strip().startswith("eval_loss") and "2.2 -> 1.4" in line for line in out.splitlines())


def test_one_runs_curves_are_drawn_as_a_png(cli, tmp_path):
    import zlib

    metrics = [{"step": s, "loss": 3.0 - s / 10, "learning_rate": 1e-4} for s in range(0, 30, 5)]
    metrics += [{"step": 15, "eval_loss": 2.2}, {"step": 30, "eval_loss": 1.4}]
    run = make_run(tmp_path, "r", status={"state": "finished"}, finished=True, metrics=metrics)
    code, out, _ = cli("runs", str(run))
    png = run / "curves.png"
    assert code == 0 and f"curves drawn in {png}" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 700 and height == 480  # two panels (loss, learning rate) of 2.4 in at 100 dpi
    # the pixels are not blank: the decompressed image has many distinct byte values (lines, text, grid)
    chunks, i = [], 8
    while i < len(data):  # PNG chunks: length, type, data, crc
        n = int.from_bytes(data[i : i + 4], "big")
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    idat = b"".join(body for kind, body in chunks if kind == b"IDAT")
    assert len(set(zlib.decompress(idat))) > 50


def test_a_run_with_no_metrics_draws_nothing(cli, tmp_path):
    run = make_run(tmp_path, "r", status={"state": "running"})
    code, out, _ = cli("runs", str(run))
    assert code == 0 and "no metrics logged yet" in out and not (run / "curves.png").exists()
