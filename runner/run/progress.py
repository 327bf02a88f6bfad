"""The live view of a run in the terminal (rank 0 only): step, loss, learning rate, the objective's own metrics
(e.g. DPO reward accuracy and margin), throughput and ETA, drawn with rich. Every logged record is also printed
as one line, so a log file (or a terminal that is not interactive) keeps the history."""

from __future__ import annotations

from transformers import TrainerCallback

# Objective metrics worth a place in the live line, in TRL's names (train and eval).
HIGHLIGHTS = ("rewards/accuracies", "rewards/margins", "accuracy", "margin", "mean_token_accuracy", "reward", "kl")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class LiveProgress(TrainerCallback):
    def __init__(self) -> None:
        self.progress = None
        self.task = None
        self.console = None
        self.last: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        if not self.console.is_terminal:  # a log file: wide enough that the progress row is not cut
            self.console = Console(stderr=True, width=200)
        self.progress = Progress(
            TextColumn("[bold]step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, speed="", metrics=""
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            task = self.progress.tasks[0]
            speed = f"{task.speed:.2f} steps/s" if task.speed else ""
            self.progress.update(self.task, completed=state.global_step, speed=speed)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        self.last.update(logs)
        shown = []
        for key in ("loss", "learning_rate", "eval_loss"):
            if key in self.last:
                shown.append(f"{key.replace('learning_rate', 'lr')} {_fmt(self.last[key])}")
        for key, value in self.last.items():
            if any(key.endswith(h) for h in HIGHLIGHTS) and not key.startswith("train_"):
                shown.append(f"{key} {_fmt(value)}")
        self.progress.update(self.task, metrics="  ".join(shown[:6]))
        self.progress.console.print(
            f"step {state.global_step}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in logs.items()), highlight=False
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None
