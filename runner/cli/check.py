"""`recipe validate`, `recipe schema` and `recipe list`: recipes checked, the schema printed, recipes listed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.cli.exits import EXIT_INVALID, EXIT_OK
from runner.cli.load import extends_root, find_recipes, load_and_plan
from runner.cli.table import render_table


def _summary(n_files: int, invalid: int, errors: int, warnings: int) -> str:
    noun = "recipe" if n_files == 1 else "recipes"
    extra = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    if invalid:
        return f"{invalid} of {n_files} {noun} invalid ({errors} error{'s' * (errors != 1)}{extra})"
    return f"{n_files} {noun} valid{extra}"


def _code_refused(diagnostic):
    if diagnostic.rule != "recipe-runs-code":
        return diagnostic
    import dataclasses

    message = diagnostic.message + " (refused by --no-code)"
    return dataclasses.replace(diagnostic, severity="error", message=message)


def cmd_validate(args: argparse.Namespace) -> int:
    from schemas import render

    files = find_recipes(args.paths)
    everything = []
    invalid = 0
    folders = [p for p in args.paths if Path(p).is_dir()]
    for f in files:
        named = next((d for d in folders if Path(f).resolve().is_relative_to(Path(d).resolve())), None)
        loaded, _ = load_and_plan(f, args.set or (), extends_root(f, args.extends_root, named))
        if args.no_code:  # CI: a recipe that names code to run is refused
            loaded.diagnostics[:] = [_code_refused(d) for d in loaded.diagnostics]
        everything.extend(loaded.diagnostics)
        invalid += bool(loaded.errors) or loaded.recipe is None
        if args.format != "json" and loaded.diagnostics:
            print(render(loaded.diagnostics, args.format))
    if args.format == "json":
        print(render(everything, "json"))
    else:
        errors = sum(d.is_error for d in everything)
        print(_summary(len(files), invalid, errors, len(everything) - errors), file=sys.stderr)
    return EXIT_INVALID if invalid else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.reference:
        from schemas.reference import recipe_reference

        sys.stdout.write(recipe_reference())
        return EXIT_OK
    from schemas.jsonschema import recipe_json_schema_text

    sys.stdout.write(recipe_json_schema_text())
    return EXIT_OK


def _adapter_label(recipe) -> str:
    from schemas.adapters import adapter_facts

    kind = recipe.adapter.kind
    if recipe.quantization.method == "bnb-4bit" and adapter_facts(kind).low_rank:
        return f"q{kind} (4-bit)"
    if recipe.is_quantized:
        return f"{kind} ({recipe.quantization.method})"
    return kind


def cmd_list(args: argparse.Namespace) -> int:
    from schemas import load

    files = find_recipes([args.dir])
    rows, invalid = [], 0
    for f in files:
        loaded = load(f)
        r = loaded.recipe
        if r is None or loaded.errors:
            invalid += 1
            rows.append([str(f), "(invalid: run `recipe validate`)", "", "", "", ""])
            continue
        hw = r.hardware
        where = f"{hw.profile or 'inline'} x{hw.gpus_per_node}" + (f" x{hw.nodes} nodes" if hw.nodes > 1 else "")
        rows.append([str(f), r.name, r.objective.kind, _adapter_label(r), r.model.name_or_path, where])
    if args.json:
        keys = ["file", "name", "objective", "adapter", "model", "hardware"]
        print(json.dumps([dict(zip(keys, row)) for row in rows], indent=2))
    else:
        print(render_table(rows, ["FILE", "NAME", "OBJECTIVE", "ADAPTER", "MODEL", "HARDWARE"]))
    return EXIT_INVALID if invalid else EXIT_OK
