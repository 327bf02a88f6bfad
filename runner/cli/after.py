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


def evaluate_at_end(plan) -> int:
    """`evaluation.at_end`: evaluate the finished run as `recipe eval OUTPUT_DIR` would; 0, or 1 when it fails."""
    from runner.after.evaluate import evaluate
    from runner.common.trained import OutputError

    def log(line: str) -> None:
        print(f"recipe eval: {line}", file=sys.stderr, flush=True)

    try:
        report = evaluate(plan.output_dir, log=log)
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


def add_commands(sub) -> None:
    """Add `merge`, `chat` and `eval` to the `recipe` command's subparsers."""
    p = sub.add_parser(
        "merge", help="merge a run's LoRA/DoRA/IA3 adapter into its base model, checked against the adapter"
    )
    p.add_argument(
        "output_dir", metavar="OUTPUT_DIR", help="a finished run's output.dir (or one of its checkpoint-N folders)"
    )
    p.add_argument("--to", metavar="DIR", help="where the merged model goes (default: OUTPUT_DIR/merged)")
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        help="weights of the merged model (default: the recipe's model.dtype)",
    )
    p.add_argument("--base", metavar="MODEL", help="the base model, instead of the one the run's lock file names")
    p.add_argument(
        "--dequantize",
        action="store_true",
        help="for a QLoRA/8-bit run: merge into the quantized base's weights, "
        "dequantized, reproducing the model as trained (default: the original weights)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="X",
        help="largest relative logit error accepted (default by dtype: float32 1e-4, float16 1e-2, bfloat16 3e-2)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing merged model in --to")
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="honour model.trust_remote_code")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("chat", help="chat with a trained output or a model in the terminal (or answer one --prompt)")
    p.add_argument(
        "model", metavar="OUTPUT_DIR|MODEL", help="a run's output.dir (adapter or model), a model directory or a Hub id"
    )
    p.add_argument("--system", metavar="TEXT", help="a system message for the conversation")
    p.add_argument(
        "--prompt", metavar="TEXT", help="answer this one message and exit (text on standard input does the same)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=256, metavar="N", help="longest answer in tokens (default 256)"
    )
    p.add_argument(
        "--temperature", type=float, default=0.7, metavar="T", help="sampling temperature; 0 is greedy (default 0.7)"
    )
    p.add_argument("--seed", type=int, metavar="N", help="seed for sampling")
    p.add_argument(
        "--show-prompt",
        action="store_true",
        help="print the prompt as the model sees it (chat template applied) to stderr",
    )
    p.add_argument(
        "--base", metavar="MODEL", help="the base model of an adapter, instead of the one its lock file names"
    )
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="honour model.trust_remote_code")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "eval",
        help="evaluate a run's output (and its base) on the recipe's evaluation tasks or lm-evaluation-harness tasks",
    )
    p.add_argument(
        "target",
        metavar="RECIPE|OUTPUT_DIR",
        nargs="?",
        help="a recipe file (its output.dir is evaluated), a run's output.dir or a model directory",
    )
    p.add_argument(
        "--tasks",
        action="append",
        metavar="NAMES",
        help="comma-separated: the recipe's tasks by name, or lm-evaluation-harness tasks (a name or a task YAML "
        "file); default every task in the recipe's `evaluation`",
    )
    p.add_argument(
        "--base",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate the base model too and show before/after (default: evaluation.compare_base)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows per task")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows scored or generated at once")
    p.add_argument("--num-fewshot", type=int, metavar="N", help="few-shot examples for harness tasks")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="longest generated answer")
    p.add_argument("--chat-template", choices=("auto", "on", "off"), help="render prompts through the chat template")
    p.add_argument("--backend", choices=("transformers", "vllm"), help="what generates answers")
    p.add_argument("--json", action="store_true", help="print the results file's JSON instead of the table")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks that can run, and exit")
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="honour model.trust_remote_code")
    p.set_defaults(func=cmd_eval)
