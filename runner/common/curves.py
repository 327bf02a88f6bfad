"""A run's curves as a PNG (OUTPUT_DIR/curves.png): drawn by `recipe runs OUTPUT_DIR` and when a run finishes.
matplotlib is imported only when drawing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

from runner.common.files import write_atomic

# Panels of the PNG: the curves drawn together on one axis.
PANELS = (
    ("loss", ("loss", "eval_loss")),
    ("preference accuracy", ("rewards/accuracies", "eval_rewards/accuracies")),
    ("reward", ("reward", "rewards/margins", "eval_rewards/margins")),
    ("learning rate", ("learning_rate",)),
)
PNG_NAME = "curves.png"


def _points(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]


def draw(out: Path, rows: list[dict], title: str) -> Optional[Path]:
    """OUTPUT_DIR/curves.png: the loss, eval, reward and learning-rate curves of metrics.jsonl's rows against the
    step. None when there is nothing to draw; ImportError when matplotlib is not installed (the `train` extra has
    it)."""
    panels = [(name, [(k, _points(rows, k)) for k in keys]) for name, keys in PANELS]
    panels = [(name, [(k, p) for k, p in lines if p]) for name, lines in panels]
    panels = [(name, lines) for name, lines in panels if lines]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.4 * len(panels)), layout="constrained")
    for ax, (name, lines) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        for key, points in lines:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    target = out / PNG_NAME
    write_atomic(target, buffer.getvalue())
    return target
