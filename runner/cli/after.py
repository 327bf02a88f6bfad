"""The commands that act on a trained output: `recipe merge`, `recipe chat` and `recipe eval` (they import torch,
lazily)."""

from __future__ import annotations

import argparse
import json
import sys


def _after_training(run):
    """Run a merge/chat command; a refusal (OutputError) is one located line and exit code 1."""

    def command(args: argparse.Namespace) -> int:
        from runner.common.trained import OutputError

        try:
            return run(args)
        except OutputError as exc:
            print(f"recipe {args.command}: error: {exc}", file=sys.stderr)
            return 1

    return command


@_after_training
def cmd_merge(args: argparse.Namespace) -> int:
    from runner.after.merge import merge

    report = merge(
        args.output_dir,
        to=args.to,
        dtype=args.dtype,
        base=args.base,
        overwrite=args.overwrite,
        dequantize=args.dequantize,
        tolerance=args.tolerance,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
    )
    print(
        f"check: adapter vs merged on {report.probes} probes: {report.check.line()} (tolerance {report.tolerance:g})",
        file=sys.stderr,
    )
    if report.against_quantized:
        print(f"against the quantized model as trained: {report.against_quantized.line()}", file=sys.stderr)
    for note in report.notes:
        print(note, file=sys.stderr)
    print(f"wrote {report.target} ({report.adapter} merged into {report.base}, {report.dtype})", file=sys.stderr)
    print(report.target)
    return 0


@_after_training
def cmd_chat(args: argparse.Namespace) -> int:
    from runner.after.chat import main as chat

    return chat(args)


def _task_names(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@_after_training
def cmd_eval(args: argparse.Namespace) -> int:
    if args.list_tasks:
        return _list_tasks(args)
    if not args.target:
        print("recipe eval: error: name a recipe file or an output directory (or --list-tasks)", file=sys.stderr)
        return 2
    from runner.after.evaluate import evaluate

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    generation = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens is not None else None
    chat = {"on": True, "off": False, "auto": "auto"}.get(args.chat_template)
    report = evaluate(
        args.target,
        tasks=_task_names(args.tasks),
        base=args.base,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        trust_code=args.trust_code,
        log=log,
        limit=args.limit,
        batch_size=args.batch_size,
        num_fewshot=args.num_fewshot,
        backend=args.backend,
        chat_template=chat,
        generation=generation,
    )
    if args.json:
        print(json.dumps(report.results, indent=1))
    else:
        print(report.table())
    log(f"wrote {report.path}")
    return 0


def evaluate_at_end(plan, trust_code: bool = False) -> int:
    """`evaluation.at_end`: evaluate the finished run as `recipe eval OUTPUT_DIR` would; 0, or 1 when it fails."""
    from runner.after.evaluate import evaluate
    from runner.common.trained import OutputError

    def log_in_run(line: str) -> None:  # `recipe run`'s output: say whose line it is
        print(f"recipe eval: {line}", file=sys.stderr, flush=True)

    try:
        report = evaluate(plan.output_dir, trust_code=trust_code, log=log_in_run)
    except OutputError as exc:
        print(f"recipe run: the run finished; evaluating it failed: {exc}", file=sys.stderr)
        return 1
    print(report.table(), file=sys.stderr)
    return 0


def _list_tasks(args: argparse.Namespace) -> int:
    """The recipe's tasks, then every lm-evaluation-harness task name (when lm-eval is installed)."""
    from runner.after import harness
    from runner.after.evaluate import find_target

    target = find_target(args.target) if args.target else None
    own = target.recipe.evaluation.tasks if target and target.recipe else []
    for task in own:
        print(f"{task.label}\t{task.kind}\t{task.task or task.data.source}")
    if not harness.installed():
        print(f"lm-evaluation-harness tasks: lm-eval is not installed ({harness.INSTALL})", file=sys.stderr)
        return 0
    for name in harness.Registry().names():
        print(f"{name}\tlm-eval")
    return 0
