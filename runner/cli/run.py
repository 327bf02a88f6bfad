"""`recipe run`: check everything before launching (the preflight), hold the output directory (the lock), launch
this node's share, then record the run's state, evaluate it (`evaluation.at_end`) and print its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from runner.cli.exits import EXIT_INVALID, EXIT_OK
from runner.cli.load import load_single
from runner.common.files import cannot_write
from runner.common.lock import LockError
from runner.common.rundir import WRITE_ERRORS, OutputDirError, take
from runner.run.checkpoints import ResumeError


def cmd_run(args: argparse.Namespace) -> int:
    args.resume = args.resume or bool(getattr(args, "resume_from", None))
    loaded, plan = load_single(args.recipe, args.set, root=getattr(args, "extends_root", None))
    from runner.plan.launchfiles import shell_command
    from runner.run.launch import write_launch_files

    if args.dry_run or args.slurm:
        from runner.run.outputdir import check_output_place

        problems = check_output_place(plan.recipe, recipe_file=args.recipe)
        if problems:
            return _refuse(problems, loaded)
        from runner.common.lock import in_use

        try:
            in_use(Path(plan.output_dir))  # a running run's launch files are the ones it runs: not rewritten
            take(Path(plan.output_dir), dry_run=True)
            written = write_launch_files(plan, args.recipe, slurm=args.slurm, extra_args=_train_flags(args))
        except (OutputDirError, LockError) as exc:
            return _cannot_write(args, exc)
        for path in written.values():
            print(f"wrote {path}", file=sys.stderr)
        print(f"sbatch {written['slurm']}" if args.slurm else shell_command(plan.launch + _train_flags(args)))
        return EXIT_OK
    problems = _preflight(plan, args)
    if problems:
        return _refuse(problems, loaded)
    first_node = plan.recipe.hardware.nodes == 1 or os.environ.get("MACHINE_RANK") == "0"
    lock = None
    if first_node:  # the whole run marks and holds the output directory, before anything else is written there
        from runner.common.lock import acquire

        try:
            take(Path(plan.output_dir))
            lock = acquire(Path(plan.output_dir), "recipe " + " ".join(sys.argv[1:]))
        except (LockError, OutputDirError) as exc:
            return _cannot_write(args, exc)
    try:
        if args.resume:
            from runner.run.attempt import resume_point

            args.resume_from = resume_point(Path(plan.output_dir), args, first_node)
        return _launch(plan, args, first_node, lock_held=lock is not None)
    except ResumeError as exc:
        return _cannot_write(args, exc)
    except OSError as exc:  # the disk filled up or became read-only while the run wrote its files
        if exc.errno not in WRITE_ERRORS:
            raise
        return _cannot_write(args, OutputDirError(cannot_write(Path(exc.filename or plan.output_dir), exc)))
    finally:
        if lock is not None:
            lock.release()


def _refuse(problems: list, loaded) -> int:
    from schemas.diagnostics import located

    for diagnostic in located(problems, loaded.sources, loaded.path):
        print(diagnostic.text(), file=sys.stderr)
    print(f"recipe run: {len(problems)} problem(s) found before launching; nothing was started", file=sys.stderr)
    return EXIT_INVALID


def _cannot_write(args: argparse.Namespace, exc: Exception) -> int:
    print(f"{args.recipe}: error: {exc}", file=sys.stderr)
    print("recipe run: nothing was started", file=sys.stderr)
    return EXIT_INVALID


def _preflight(plan, args: argparse.Namespace) -> list:
    """What would stop the run, checked on this node before anything is written or started."""
    from runner.common.consent import consent_problems
    from runner.plan import probe_packages
    from runner.run.preflight import check_node_environment, preflight

    problems = check_node_environment(plan.recipe.hardware.nodes, os.environ)
    problems += consent_problems(plan.recipe, args.trust_code, evaluation=plan.recipe.evaluation.at_end)
    problems += preflight(plan, probe_packages(), overwrite=args.overwrite, resume=args.resume, recipe_file=args.recipe)
    if plan.recipe.evaluation.at_end and not problems:
        from runner.after.evaluate import check_at_end

        problems += check_at_end(plan.recipe, args.trust_code)
    return problems


def _launch(plan, args: argparse.Namespace, first_node: bool, lock_held: bool) -> int:
    """Write the launch files and launch; the first node records the state, evaluates and prints the summary."""
    from runner.run.launch import write_launch_files

    nodes = plan.recipe.hardware.nodes
    if args.overwrite and not args.resume and first_node:
        from runner.common.rundir import clear

        clear(Path(plan.output_dir))  # only what a run wrote (the preflight refused a directory holding more)
    written = write_launch_files(plan, args.recipe, extra_args=_train_flags(args))
    import time

    from runner.run.launch import launch
    from runner.run.summary import summary, write_status

    started = time.monotonic()
    if first_node:
        _record_data_check(plan)
        from runner.run.failure import clear_failures

        clear_failures(plan.output_dir)  # a resumed run's summary speaks of this attempt only
        write_status(plan, args.recipe, "running")
    on_cpu = 0 if plan.hardware.is_gpu else plan.recipe.hardware.gpus_per_node
    try:
        if nodes > 1:  # this node's share, through the launch.sh a cluster runs (placeholders from the environment)
            code = launch(["bash", str(written["launch"])], lock_held=lock_held, processes_on_cpu=on_cpu)
        else:
            code = launch(plan.launch + _train_flags(args), lock_held=lock_held, processes_on_cpu=on_cpu)
    except BaseException as exc:  # status.json never stays `running` after recipe run has ended
        if first_node:
            write_status(plan, args.recipe, "failed", reason=f"recipe run ended: {type(exc).__name__}: {exc}")
        raise
    if first_node:
        from runner.run.attempt import ended, rerun_command

        state, reason = ended(Path(plan.output_dir), code)
        write_status(plan, args.recipe, state, code, reason=reason)
        code = code or (1 if state == "failed" else 0)
        evaluated = 0
        if code == 0 and plan.recipe.evaluation.at_end:
            from runner.cli.after import evaluate_at_end

            evaluated = evaluate_at_end(plan, args.trust_code)
        again = rerun_command(args)
        print("\n" + summary(plan, args.recipe, code, time.monotonic() - started, again), file=sys.stderr)
        return code or evaluated
    return code


def _record_data_check(plan) -> None:
    """OUTPUT_DIR/data-check.json: what the preflight's data check found (and, with `datasets.bad_rows: skip`, the
    rows the run skips, by reason), said in the terminal when rows are skipped or dropped."""
    from runner.common.files import write_atomic
    from runner.common.rundir import record_created
    from runner.data.cache import cached_check

    report, _ = cached_check(plan.recipe)  # the preflight's, from the cache
    path = Path(plan.output_dir) / "data-check.json"
    record_created(path.parent, path.name)
    write_atomic(path, json.dumps(report, indent=1) + "\n")
    if report["skipped"]:
        reasons = ", ".join(f"{n} {kind}" for kind, n in report["skipped"].items())
        print(f"recipe run: skipping {report['bad']} bad row(s) ({reasons}); listed in {path}", file=sys.stderr)
    dropped = sum(report["duplicates"].values()) if report["duplicates_policy"] == "drop" else 0
    if dropped:
        print(f"recipe run: dropping {dropped} duplicate row(s) (datasets.duplicates: drop)", file=sys.stderr)


def _train_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    if getattr(args, "trust_remote_code", False):
        flags.append("--trust-remote-code")
    if getattr(args, "trust_code", False):
        flags.append("--trust-code")
    if getattr(args, "resume_from", None):
        flags += ["--resume-from", args.resume_from]
    elif getattr(args, "resume", False):
        flags.append("--resume")
    if getattr(args, "verbose", False):
        flags.append("--verbose")
    return flags
