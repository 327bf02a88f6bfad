"""The commands that act on a trained output: `recipe merge` and `recipe chat` (they import torch, lazily)."""

from __future__ import annotations

import argparse
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


def add_commands(sub) -> None:
    """Add `merge` and `chat` to the `recipe` command's subparsers."""
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
