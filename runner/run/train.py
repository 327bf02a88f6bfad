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
        "--resume", action="store_true", help="continue from the last checkpoint in the output directory"
    )
    parser.add_argument("--verbose", action="store_true", help="show every library message in the terminal")
    args = parser.parse_args(argv)
    plan = read_plan(Path(args.plan))
    trust = remote_code_allowed(plan.recipe, args.trust_remote_code)
    _refuse_code_without_consent(plan, args.trust_code)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from .failure import Stage, failure_path, record_failure
    from .quiet import configure

    log = configure(plan.output_dir, args.verbose)
    lock = _lock_if_launched_without_recipe_run(plan)
    failure_path(plan.output_dir, os.environ.get("RANK", "0")).unlink(missing_ok=True)
    stage = Stage()
    try:
        return train(plan, trust, resume=args.resume, stage=stage)
    except Exception as exc:  # a summary, the stage and the log file instead of a bare traceback
        return record_failure(plan.output_dir, stage.name, exc, log, args.verbose)
    finally:
        if lock is not None:
            lock.release()


def train(plan: Plan, trust: bool, *, resume: bool, stage) -> int:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from runner.common.rundir import record_created

    from .outputdir import refuse_symlinks
    from .outputs import MetricsCallback, finish_run
    from .progress import LiveProgress
    from .trainer import StopOnSigterm, build_trainer

    stop = StopOnSigterm()
    callbacks = [MetricsCallback(Path(plan.output_dir)), stop.callback(), LiveProgress()]
    trainer = build_trainer(plan, trust_remote_code=trust, callbacks=callbacks)
    for duplicate in (PrinterCallback, ProgressCallback):  # LiveProgress prints the logs and the progress
        trainer.remove_callback(duplicate)
    out = Path(plan.output_dir)
    if trainer.accelerator.is_main_process:
        record_created(out, "checkpoint-*", "runs", "README.md")  # checkpoints, TensorBoard logs, TRL's model card
    refuse_symlinks(out)
    stage("train")
    trainer.train(resume_from_checkpoint=True if resume else None)
    if stop.requested:
        if trainer.accelerator.is_main_process:
            print(
                f"runner.run.train: stopped by SIGTERM at step {trainer.state.global_step}; a checkpoint was saved in "
                f"{plan.output_dir}. Continue with: recipe run RECIPE --resume",
                flush=True,
            )
        return 143
    stage("evaluate")
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    stage("save")
    refuse_symlinks(out)  # links that appeared since the preflight are not written through
    before = set(os.listdir(out))
    try:
        trainer.save_model(plan.output_dir)
        if trainer.accelerator.is_main_process:
            trainer.processing_class.save_pretrained(plan.output_dir)
    finally:  # the model's and tokenizer's files, whatever their names, are the run's (even half-written)
        if trainer.accelerator.is_main_process:
            record_created(out, *sorted(set(os.listdir(out)) - before))
    if trainer.accelerator.is_main_process:
        finish_run(plan, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
