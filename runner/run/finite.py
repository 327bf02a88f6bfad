"""A run stops at the first optimizer step whose loss or gradients are not finite (NaN or inf), before that step
changes the weights, naming the step; its last checkpoint stays the last good one. `training.bad_steps_allowed`
tolerates that many such steps over the run: each is skipped (the optimizer does not step on it). Under DeepSpeed,
which holds the gradients itself, a bad step always stops the run.

The check reads the gradient norm transformers computes anyway (for clipping and logging) and the loss of each
micro batch, in one device-to-host copy per optimizer step; across processes the verdict is shared, so that every
process stops at the same step.
"""

from __future__ import annotations

import math
from typing import Any


class NonFiniteError(Exception):
    """Training met a loss or gradients that are not finite; the message names the step and what to do."""


def not_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isfinite(value)


def final_losses(rows: list[dict]) -> list[str]:
    """The final losses of a run's metrics.jsonl rows that are not finite, as `name value` (a finished run has none)."""
    bad = []
    for key in ("train_loss", "loss", "eval_loss"):
        value = next((r[key] for r in reversed(rows) if key in r), None)
        if not_finite(value):
            bad.append(f"{key} {value}")
    return bad


class FiniteGuard:
    def __init__(self, allowed: int, last_good=lambda: None) -> None:
        self.allowed = allowed
        self.last_good = last_good  # () -> the newest complete checkpoint's name, or None
        self.bad_steps: list[int] = []
        self.losses: list = []
        self.grad_norm: Any = None

    def attach(self, trainer) -> None:
        """Watch `trainer`'s micro-batch losses and gradient norm, and check them before each optimizer step."""
        training_step, get_grad_norm = trainer.training_step, trainer._get_grad_norm

        def watched_step(*args, **kwargs):
            loss = training_step(*args, **kwargs)
            self.losses.append(loss.detach())
            return loss

        def watched_norm(*args, **kwargs):
            self.grad_norm = get_grad_norm(*args, **kwargs)
            return self.grad_norm

        trainer.training_step, trainer._get_grad_norm = watched_step, watched_norm
        if trainer.is_deepspeed_enabled:
            self.allowed = 0
        trainer.add_callback(self.callback(trainer))

    def finite(self, device) -> bool:
        import torch

        values = [v.float().reshape(-1) for v in self.losses]
        if self.grad_norm is not None:
            values.append(torch.as_tensor(self.grad_norm, dtype=torch.float32, device=device).reshape(-1))
        self.losses, self.grad_norm = [], None
        if not values:
            return True
        ok = torch.isfinite(torch.cat([v.to(device) for v in values])).all().to(torch.int32)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok.item())

    def bad_step(self, step: int, optimizer) -> None:
        """Step `step` was not finite: skip it when tolerated (no gradient, so the optimizer leaves the weights),
        else stop the run."""
        self.bad_steps.append(step)
        if len(self.bad_steps) > self.allowed:
            last = self.last_good()
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
            tolerated = f" ({self.allowed} tolerated by training.bad_steps_allowed)" if self.allowed else ""
            raise NonFiniteError(
                f"step {step}: the loss or the gradients are not finite (NaN or inf){tolerated}; training stopped "
                f"before this step changed the weights, and {kept}. Lower training.learning_rate, check the data "
                "and the model's weights, or raise training.bad_steps_allowed"
            )
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        print(
            f"runner.run.train: warning: step {step} skipped: its loss or gradients are not finite "
            f"({len(self.bad_steps)} of {self.allowed} tolerated by training.bad_steps_allowed)",
            flush=True,
        )

    def callback(self, trainer):
        from transformers import TrainerCallback

        guard = self

        class _Callback(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                if not guard.finite(args.device):
                    guard.bad_step(state.global_step + 1, trainer.optimizer)

        return _Callback()


def check_final(result_loss: Any, metrics: dict) -> None:
    """A run whose final training or evaluation loss is not finite has not finished well: raise."""
    bad = [f"train_loss {result_loss}"] if not_finite(result_loss) else []
    bad += [f"{k} {v}" for k, v in metrics.items() if k.endswith("loss") and not_finite(v)]
    if bad:
        raise NonFiniteError(
            f"the final {', '.join(bad)} is not finite; the result was not saved as finished. Lower "
            "training.learning_rate or check the data and the model's weights"
        )
