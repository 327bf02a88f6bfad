"""`recipe import`: write a recipe from an Axolotl, LLaMA-Factory or TRL config, with a report of every key."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from runner.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE


def cmd_import(args: argparse.Namespace) -> int:
    from runner.migrate import ImportRefused, Options, translate
    from schemas import profile_names

    source, out = Path(args.file), Path(args.output)
    usage = _usage_problems(args, source, out, profile_names())
    if usage:
        print(f"recipe import: error: {usage}", file=sys.stderr)
        return EXIT_USAGE
    name = re.sub(r"[^A-Za-z0-9._-]", "-", out.stem).lstrip("._-")[:128] or "imported"  # schemas.Recipe.name
    options = Options(
        hardware=args.hardware,
        gpus=args.gpus,
        nodes=args.nodes,
        dataset_info=Path(args.dataset_info) if args.dataset_info else None,
        objective=args.objective,
        dataset_format=args.dataset_format,
        name=name,
        recipe_dir=out.parent,
    )
    try:
        t, text = translate(source, args.tool, options)
    except ImportRefused as exc:
        print(f"recipe import: error: {source}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in t.warnings:
        print(f"recipe import: warning: {warning}", file=sys.stderr)
    dropped = t.dropped_rows
    if args.strict and dropped:
        _report(args, t, None)
        keys = ", ".join(r.key for r in dropped)
        print(f"recipe import: error: --strict: {len(dropped)} source key(s) dropped: {keys}", file=sys.stderr)
        return EXIT_INVALID
    plan, errors = _validate_and_plan(text, out, t)
    if errors:
        _report(args, t, None)
        for line in errors:
            print(line, file=sys.stderr)
        print(
            f"recipe import: error: the translated recipe does not validate; nothing written to {out}", file=sys.stderr
        )
        return EXIT_INVALID
    from runner.common.files import write_atomic

    write_atomic(out, text)
    _report(args, t, plan)
    if not args.json:
        print(f"\nwrote {out}: {len(t.rows)} source settings ({t.counts()}); it validates and plans")
        print(_plan_summary(plan))
    return EXIT_OK


def _usage_problems(args, source: Path, out: Path, profiles) -> str:
    if not source.is_file():
        return f"{source}: no such file"
    if out.suffix not in (".yaml", ".yml"):
        return f"-o {out}: a recipe file ends with .yaml"
    if out.exists() and not args.force:
        return f"-o {out} exists; pass --force to replace it"
    if not out.parent.is_dir():
        return f"-o {out}: the folder {out.parent} does not exist"
    if args.hardware and args.hardware not in profiles:
        return f"--hardware {args.hardware}: unknown profile; shipped: {', '.join(profiles)}"
    for flag, value in (("--gpus", args.gpus), ("--nodes", args.nodes)):
        if value is not None and value < 1:
            return f"{flag} {value}: at least 1"
    if args.tool != "trl" and (args.objective or args.dataset_format):
        return "--objective and --dataset-format are for --from trl (the other tools' configs say them)"
    if args.dataset_info and args.tool != "llama-factory":
        return "--dataset-info is for --from llama-factory"
    if args.dataset_info and not Path(args.dataset_info).is_file():
        return f"--dataset-info {args.dataset_info}: no such file"
    from schemas.datasets import FORMATS
    from schemas.objectives import OBJECTIVES

    if args.objective and args.objective not in OBJECTIVES:
        return f"--objective {args.objective}: one of {', '.join(OBJECTIVES)}"
    if args.dataset_format and args.dataset_format not in FORMATS:
        return f"--dataset-format {args.dataset_format}: one of {', '.join(FORMATS)}"
    return ""


def _validate_and_plan(text: str, out: Path, t) -> tuple[object, list[str]]:
    """Load the recipe text as if it were at `out` (its relative paths anchored there) and plan it."""
    import os
    import tempfile

    from runner.plan import resolve
    from runner.plan.probe import probe_packages
    from schemas import load

    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".yaml", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        loaded = load(tmp)
    finally:
        os.unlink(tmp)
    if not loaded.ok:
        origins = {}
        for row in t.rows:
            if row.field:
                origins.setdefault(row.field, row.key)
        lines = []
        for d in loaded.errors:
            origin = next((k for f, k in origins.items() if d.field.startswith(f) or f.startswith(d.field)), None)
            lines.append(f"{out}: error: {d.field}: {d.message}" + (f" (from `{origin}`)" if origin else ""))
        return None, lines
    plan = resolve(loaded.recipe, probe_packages())
    for problem in plan.problems:
        where = ".".join(map(str, problem.path))
        print(
            f"recipe import: warning: plan: {where}: {problem.message} (`recipe plan {out}` shows the plan)",
            file=sys.stderr,
        )
    return plan, []


def _report(args, t, plan) -> None:
    if args.json:
        rows = [{"key": r.key, "status": r.status, "field": r.field, "value": r.value, "note": r.note} for r in t.rows]
        print(
            json.dumps(
                {"recipe": None if plan is None else args.output, "rows": rows, "warnings": t.warnings},
                indent=2,
                default=str,
            )
        )
    else:
        from runner.migrate import report_table

        print(report_table(t.rows))


def _plan_summary(plan) -> str:
    args = plan.trainer["args"]
    peft = plan.peft["args"] if plan.peft else {}
    shape = f"LoRA r={peft['r']} alpha={peft['lora_alpha']}" if "r" in peft else plan.recipe.adapter.kind
    return (
        f"plan: {plan.recipe.objective.kind} with {plan.trainer['class']}, learning rate {args['learning_rate']}, "
        f"global batch {plan.recipe.training.global_batch_size} = {plan.micro_batch_size} × "
        f"{plan.gradient_accumulation_steps} × {plan.world_size}, {shape}, "
        f"ZeRO {plan.zero if plan.zero is not None else 'none'}"
    )
