"""The entry point `accelerate launch -m runner.run.train OUTPUT_DIR/launch/plan.json` runs in every process.

It re-validates nothing and decides nothing: the parent process validated the recipe, resolved the plan and
wrote it as `plan.json`; here it is read back into the same `Plan` dataclass, and its exact arguments become the
tokenizer, model, PEFT config, datasets and TRL trainer (runner/run/trainer.py). Then it trains, evaluates and
saves. Nothing imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from runner.common.models import remote_code_allowed
from runner.plan.types import Plan, PlanFormatError


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # PlanFormatError is a ValueError
        message = str(exc) if isinstance(exc, PlanFormatError) else f"cannot be read ({exc})"
        raise SystemExit(f"runner.run.train: {path}: {message}") from None


def _lock_if_launched_without_recipe_run(plan: Plan):
    """Started by launch.sh or Slurm directly (no `recipe run` holding the output lock): the first process of the
    run takes it, so that a second run into the same directory is refused there too."""
    from runner.common.lock import HOLDER_ENV, LockError, acquire

    if os.environ.get(HOLDER_ENV) or int(os.environ.get("RANK", "0")) != 0:
        return None
    try:
        return acquire(Path(plan.output_dir), " ".join(sys.argv))
    except LockError as exc:
        raise SystemExit(f"runner.run.train: {exc}") from None


def _refuse_code_without_consent(plan: Plan, trust_code: bool) -> None:
    """Started by launch.sh or Slurm directly: the reward functions from files or modules run only with
    --trust-code here too (`recipe run --trust-code` writes it into the launch files)."""
    from schemas.rules.code import reward_code

    named = [f"`{name}` ({what})" for _, name, what in reward_code(plan.recipe)]
    if named and not trust_code:
        raise SystemExit(
            f"runner.run.train: objective.reward_functions runs Python code: {', '.join(named)}; pass --trust-code "
            "(recipe run --trust-code writes it into the launch files)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner.run.train", description=__doc__)
    parser.add_argument("plan", help="OUTPUT_DIR/launch/plan.json")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--trust-code", action="store_true", help="run the reward functions the recipe names")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest complete checkpoint in the output directory"
    )
    parser.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint")
    parser.add_argument("--verbose", action="store_true", help="show every library message in the terminal")
    args = parser.parse_args(argv)
    plan = read_plan(Path(args.plan))
    trust = remote_code_allowed(plan.recipe, args.trust_remote_code)
    _refuse_code_without_consent(plan, args.trust_code)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from .failure import Stage, failure_path, record_failure
    from .quiet import configure
    from .signals import die_with_launcher

    die_with_launcher(plan.output_dir, is_main=os.environ.get("RANK", "0") == "0")
    log = configure(plan.output_dir, args.verbose)
    lock = _lock_if_launched_without_recipe_run(plan)
    failure_path(plan.output_dir, os.environ.get("RANK", "0")).unlink(missing_ok=True)
    stage = Stage()
    try:
        return train(plan, trust, resume=_resume_point(plan, args), stage=stage)
    except Exception as exc:  # a summary, the stage and the log file instead of a bare traceback
        return record_failure(plan.output_dir, stage.name, exc, log, args.verbose)
    finally:
        if lock is not None:
            lock.release()


def _resume_point(plan: Plan, args: argparse.Namespace) -> str | None:
    """The checkpoint to continue from: the one `recipe run` chose (--resume-from), or, started directly with
    --resume, the newest complete one (chosen alike in every process: nothing is moved here)."""
    if args.resume_from or not args.resume:
        return args.resume_from
    from .checkpoints import ResumeError, choose

    try:
        return str(choose(Path(plan.output_dir), move=False, say=lambda m: None))
    except ResumeError as exc:
        raise SystemExit(f"runner.run.train: {exc}") from None


def train(plan: Plan, trust: bool, *, resume: str | None, stage) -> int:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from runner.common.lock import HOLDER_ENV
    from runner.common.rundir import record_created

    from .checkpoints import mark_complete_when_saved, step_of
    from .finite import FiniteGuard, check_final
    from .outputdir import refuse_symlinks
    from .outputs import MetricsCallback
    from .progress import LiveProgress
    from .signals import GracefulStop
    from .summary import complete_checkpoint
    from .trainer import build_trainer

    out = Path(plan.output_dir)
    stop = GracefulStop(under_launcher=bool(os.environ.get(HOLDER_ENV)))
    metrics_log = MetricsCallback(out, resumed_step=step_of(Path(resume)) if resume else None)
    trainer = build_trainer(plan, trust_remote_code=trust, callbacks=[metrics_log, stop.callback(), LiveProgress()])
    for duplicate in (PrinterCallback, ProgressCallback):  # LiveProgress prints the logs and the progress
        trainer.remove_callback(duplicate)
    mark_complete_when_saved(trainer)
    FiniteGuard(plan.recipe.training.bad_steps_allowed, lambda: complete_checkpoint(out)).attach(trainer)
    if trainer.accelerator.is_main_process:
        record_created(out, "checkpoint-*", "runs", "README.md")  # checkpoints, TensorBoard logs, TRL's model card
    refuse_symlinks(out)
    stage("train")
    result = trainer.train(resume_from_checkpoint=resume)
    if stop.requested:
        if trainer.accelerator.is_main_process:
            print(
                f"runner.run.train: stopped by {stop.requested} at step {trainer.state.global_step}; "
                f"checkpoint-{trainer.state.global_step} was saved in {plan.output_dir}",
                flush=True,
            )
        return 128 + int(getattr(signal, stop.requested))
    stage("evaluate")
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    check_final(result.training_loss, metrics)
    stage("save")
    _save_result(plan, trainer, metrics)
    return 0


def _save_result(plan: Plan, trainer, metrics: dict) -> None:
    """The model, tokenizer, card and lock file, staged in a temporary folder and moved into place together."""
    from .final import commit, staging_dir
    from .outputdir import refuse_symlinks
    from .outputs import finish_run

    out = Path(plan.output_dir)
    refuse_symlinks(out)  # links that appeared since the preflight are not written through
    main_process = trainer.accelerator.is_main_process
    staged = staging_dir(out) if main_process else out / ".result"
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staged))
    if main_process:
        trainer.processing_class.save_pretrained(str(staged))
        finish_run(plan, metrics, into=staged)
        commit(out, staged)
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(main())
