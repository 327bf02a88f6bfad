"""The `recipe` command.

Exit codes: 0 ok, 1 invalid recipe (or failed run), 2 usage error.
Commands import only what they need, so `recipe validate` never loads torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
RECIPE_SUFFIXES = (".yaml", ".yml")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 already; keep its message short and ours
        self.print_usage(sys.stderr)
        print(f"recipe: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def find_recipes(paths: Sequence[str]) -> list[Path]:
    """Files named on the command line, and every `*.yaml`/`*.yml` under named directories.

    Inside directories, files whose name starts with `_` are fragments meant only for `extends`
    and are skipped (they are checked through the recipes that extend them), as are hidden folders.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.suffix in RECIPE_SUFFIXES
                and f.is_file()
                and not f.name.startswith("_")
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                raise _Usage(f"no recipe files (*.yaml, *.yml) under {raw}")
            found.extend(files)
        elif p.exists():
            found.append(p)
        else:
            raise _Usage(f"no such file or directory: {raw}")
    return found


class _Usage(Exception):
    pass


class _Invalid(Exception):
    """The recipe is invalid; its diagnostics were printed (exit code 1)."""


def _summary(n_files: int, invalid: int, errors: int, warnings: int) -> str:
    noun = "recipe" if n_files == 1 else "recipes"
    extra = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    if invalid:
        return f"{invalid} of {n_files} {noun} invalid ({errors} error{'s' * (errors != 1)}{extra})"
    return f"{n_files} {noun} valid{extra}"


def plan_diagnostics(loaded, plan) -> list:
    """The plan's problems (memory fit, unknown architecture...) as located diagnostics."""
    from schemas import Diagnostic, Location

    out = []
    for p in plan.problems:
        location = loaded.sources.locate(p.path) or Location(loaded.path, 1, 1)
        out.append(Diagnostic(location, ".".join(map(str, p.path)), p.message, p.rule, p.severity))
    return out


def load_and_plan(path, overrides):
    """Load a recipe and, when it validates, resolve its plan; plan problems join the diagnostics."""
    from schemas import load

    loaded = load(path, overrides)
    plan = None
    if loaded.recipe is not None and not loaded.errors:
        from runner.plan import probe_packages, resolve

        plan = resolve(loaded.recipe, probe_packages())
        loaded.diagnostics.extend(plan_diagnostics(loaded, plan))
    return loaded, plan


def cmd_validate(args: argparse.Namespace) -> int:
    from schemas import render

    files = find_recipes(args.paths)
    everything = []
    invalid = 0
    for f in files:
        loaded, _ = load_and_plan(f, args.set or ())
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


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _adapter_label(recipe) -> str:
    kind = recipe.adapter.kind
    if recipe.quantization.method == "bnb-4bit" and kind in ("lora", "dora"):
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
        print(_table(rows, ["FILE", "NAME", "OBJECTIVE", "ADAPTER", "MODEL", "HARDWARE"]))
    return EXIT_INVALID if invalid else EXIT_OK


def _load_single(path: str, overrides, fmt: str = "text"):
    """Load one recipe and its plan, printing diagnostics; raises _Invalid when it cannot run."""
    from schemas import render

    if not Path(path).is_file():
        raise _Usage(f"no such recipe file: {path}")
    loaded, plan = load_and_plan(path, overrides or ())
    if loaded.diagnostics:
        print(render(loaded.diagnostics, fmt), file=sys.stderr)
    if plan is None or loaded.errors:
        raise _Invalid()
    return loaded, plan


def cmd_plan(args: argparse.Namespace) -> int:
    loaded, plan = _load_single(args.recipe, args.set)
    if args.explain:
        from runner.cli.planview import explain_fields, render_explain

        rows = explain_fields(loaded, plan)
        print(json.dumps(rows, indent=2) if args.json else render_explain(rows))
        return EXIT_OK
    measured = None
    if args.measure:
        measured = _measure(plan)
        if measured is None:
            return EXIT_INVALID
    if args.json:
        out = plan.to_json()
        if measured is not None:
            out["memory"]["measured"] = measured.to_json()
        print(json.dumps(out, indent=2))
    else:
        from runner.cli.planview import render_measurement, render_plan

        print(render_plan(plan, args.recipe))
        if measured is not None:
            print("\n" + render_measurement(plan, measured))
    return EXIT_OK


def _measure(plan):
    """One training step of the plan measured with fake tensors, or None (after saying why) when it cannot be."""
    try:
        from runner.measure.step import measure
    except ImportError as exc:
        print(
            f"recipe plan --measure: needs the training libraries ({exc.name} is not installed): "
            "pip install 'recipe[train]'",
            file=sys.stderr,
        )
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the libraries' deprecation warnings say nothing about the recipe
            return measure(plan)
    except ValueError as exc:
        print(f"recipe plan --measure: cannot measure this plan: {exc}", file=sys.stderr)
        return None
    except Exception as exc:  # a model whose code the fake stand-ins do not cover: say so, the plan stands
        print(
            f"recipe plan --measure: the measurement failed inside the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); the estimate above is not measured for this architecture",
            file=sys.stderr,
        )
        return None


def cmd_run(args: argparse.Namespace) -> int:
    loaded, plan = _load_single(args.recipe, args.set)
    from runner.plan.launchfiles import shell_command
    from runner.run.launch import write_launch_files

    if args.dry_run or args.slurm:
        written = write_launch_files(plan, args.recipe, slurm=args.slurm, extra_args=_train_flags(args))
        for path in written.values():
            print(f"wrote {path}", file=sys.stderr)
        print(f"sbatch {written['slurm']}" if args.slurm else shell_command(plan.launch + _train_flags(args)))
        return EXIT_OK

    from runner.plan import probe_packages
    from runner.run.preflight import check_node_environment, preflight

    nodes = plan.recipe.hardware.nodes
    problems = check_node_environment(nodes, os.environ)
    problems += preflight(plan, probe_packages(), overwrite=args.overwrite, resume=args.resume)
    if plan.recipe.evaluation.at_end and not problems:
        from runner.after.evaluate import check_at_end

        problems += check_at_end(plan.recipe)
    if problems:
        for p in problems:
            print(f"{args.recipe}: error: {p}", file=sys.stderr)
        print(f"recipe run: {len(problems)} problem(s) found before launching; nothing was started", file=sys.stderr)
        return EXIT_INVALID
    first_node = nodes == 1 or os.environ.get("MACHINE_RANK") == "0"
    lock = None
    if first_node:  # the whole run holds the output directory, before anything is written there
        from runner.common.lock import LockError, acquire

        try:
            lock = acquire(Path(plan.output_dir), "recipe " + " ".join(sys.argv[1:]))
        except LockError as exc:
            print(f"{args.recipe}: error: {exc}", file=sys.stderr)
            print("recipe run: nothing was started", file=sys.stderr)
            return EXIT_INVALID
    try:
        if args.overwrite and not args.resume and first_node:
            from runner.common.lock import clear_except_lock

            clear_except_lock(Path(plan.output_dir))
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
        if nodes > 1:  # this node's share, through the launch.sh a cluster runs (placeholders from the environment)
            code = launch(["bash", str(written["launch"])], lock_held=lock is not None, processes_on_cpu=on_cpu)
        else:
            code = launch(plan.launch + _train_flags(args), lock_held=lock is not None, processes_on_cpu=on_cpu)
        if first_node:
            state = "finished" if code == 0 else ("stopped" if code in (130, 143) else "failed")
            write_status(plan, args.recipe, state, code)
            evaluated = 0
            if code == 0 and plan.recipe.evaluation.at_end:
                from runner.cli.after import evaluate_at_end

                evaluated = evaluate_at_end(plan)
            print("\n" + summary(plan, args.recipe, code, time.monotonic() - started), file=sys.stderr)
            return code or evaluated
        return code
    finally:
        if lock is not None:
            lock.release()


def _record_data_check(plan) -> None:
    """OUTPUT_DIR/data-check.json: what the preflight's data check found (and, with `datasets.bad_rows: skip`, the
    rows the run skips, by reason), said in the terminal when rows are skipped or dropped."""
    from runner.common.files import write_atomic
    from runner.data.check import cached_check

    report, _ = cached_check(plan.recipe)  # the preflight's, from the cache
    path = Path(plan.output_dir) / "data-check.json"
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
    if getattr(args, "resume", False):
        flags.append("--resume")
    if getattr(args, "verbose", False):
        flags.append("--verbose")
    return flags


def cmd_data(args: argparse.Namespace) -> int:
    loaded, plan = _load_single(args.recipe, args.set)
    from runner.data.sources import DataError

    if args.check:
        return _data_check(args, plan)
    from runner.data.preview import preview

    try:
        print(preview(loaded.recipe, args.split, args.head, args.json, args.template))
    except DataError as exc:
        print(f"{args.recipe}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _data_check(args: argparse.Namespace, plan) -> int:
    """Every row checked, then (when nothing stops a run) the token statistics of the rows the trainer receives."""
    from runner.data.check import check_recipe
    from runner.data.sources import DataError

    report = check_recipe(plan.recipe)
    as_json = args.json or args.format == "json"
    result: dict = {"check": report.to_json()}
    if not as_json:
        print(report.render())
    if not report.refused and not args.no_tokens:
        import datasets

        from runner.data.tokens import render, token_stats

        datasets.disable_progress_bars()

        try:
            result["tokens"] = token_stats(plan)
        except (DataError, OSError, ValueError) as exc:
            print(f"{args.recipe}: error: cannot count tokens: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if not as_json:
            print(render(result["tokens"]))
    if as_json:
        print(json.dumps(result, indent=2))
    return EXIT_INVALID if report.refused else EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from runner.after.runs import curves, is_run, plot, table

    path = Path(args.dir)
    if not path.exists():
        raise _Usage(f"no such directory: {args.dir}")
    if not is_run(path):
        print(table(path))
        return EXIT_OK
    print(curves(path))
    try:
        png = plot(path)
    except ImportError:
        print("  (no PNG: matplotlib is not installed; it comes with: pip install 'recipe[train]')", file=sys.stderr)
    else:
        if png is not None:
            print(f"  curves drawn in {png}")
    return EXIT_OK


def cmd_hardware(args: argparse.Namespace) -> int:
    import yaml

    from schemas import load_profile, profile_names

    if args.detect:
        from runner.cli.hardware import detect

        profile, gpus = detect()
        print("# This machine as a hardware profile. Save it as schemas/profiles/NAME.yaml to share it, or paste the")
        print("# fields after `description` into a recipe's `hardware:` section (without `profile:`).")
        print(yaml.safe_dump(profile, sort_keys=False).rstrip())
        print(f"# GPUs found: {gpus} (hardware.gpus_per_node)")
        return EXIT_OK
    rows = []
    for name in profile_names():
        p = load_profile(name)
        cc = "-" if p.compute_capability is None else f"{p.compute_capability:.1f}"
        rows.append([name, f"{p.gpu_memory_gb:g}", cc, "yes" if p.bf16 else "no", f"{p.cpu_ram_gb:g}", p.description])
    print(_table(rows, ["PROFILE", "GPU GIB", "CC", "BF16", "CPU RAM GIB", "DESCRIPTION"]))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from runner.after.diff import diff, recipe_path
    from schemas import render

    try:
        paths = [recipe_path(args.a), recipe_path(args.b)]
    except FileNotFoundError as exc:
        raise _Usage(str(exc)) from None
    sides = [load_and_plan(p, ()) for p in paths]
    if any(plan is None for _, plan in sides):  # schema or rule errors; plan problems (memory) are part of the diff
        print(
            render([d for loaded, plan in sides if plan is None for d in loaded.diagnostics], "text"), file=sys.stderr
        )
        return EXIT_INVALID
    (la, pa), (lb, pb) = sides
    result = diff(la.recipe, lb.recipe, pa, pb, args.a, args.b)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    from runner.after.new import NewRecipeError, new_recipe
    from schemas import render

    try:
        path, base, diagnostics = new_recipe(args.name, args.base, force=args.force)
    except NewRecipeError as exc:
        raise _Usage(str(exc)) from None
    if diagnostics and Path(base).name.startswith("_"):
        print(
            f"recipe new: {base} is a fragment (its name starts with _), not a complete recipe; start from a recipe "
            "that extends it, or write `extends:` by hand (nothing was written)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    if diagnostics:
        print(render(diagnostics, "text"), file=sys.stderr)
        print(f"recipe new: {base} is invalid; fix it before extending it (nothing was written)", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {path}", file=sys.stderr)
    print(f"edit it, then: recipe diff {base} {path} && recipe plan {path}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="recipe", description="Declarative fine-tuning: validate, plan and run YAML recipes.")
    from .version import VersionAction

    parser.add_argument("--version", action=VersionAction, help="print the version and the installed libraries")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check recipes: schema, cross-field rules, located errors")
    p.add_argument("paths", nargs="+", metavar="PATH", help="recipe files or directories (searched for *.yaml, *.yml)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field, e.g. training.learning_rate=1e-4 (repeatable)",
    )
    p.add_argument(
        "--format",
        choices=("text", "github", "json"),
        default="text",
        help="output format (github: Actions annotations)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="resolve a recipe: decisions, memory estimate, launch command")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument(
        "--explain",
        action="store_true",
        help="every field, its value and where it came from (file:line of the recipe or a base it extends, --set, "
        "default, or decided by the plan)",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="also run one training step of the plan at full size with fake tensors (no GPU, no memory used) and "
        "show its measured peak memory beside the estimate (needs the `train` extra; about 10-40 s)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="validate, plan, write the launch files and launch")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    p.add_argument(
        "--dry-run", action="store_true", help="write OUTPUT_DIR/launch/ and print the command; launch nothing"
    )
    p.add_argument(
        "--slurm",
        action="store_true",
        help="also write OUTPUT_DIR/launch/slurm.sbatch (one launcher per node via srun)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in output.dir")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output.dir")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show every library message (they are always in OUTPUT_DIR/logs/train-rankN.log)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="honour model.trust_remote_code (run the model repository's code)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("data", help="show the first rows as the trainer receives them")
    p.add_argument("recipe", metavar="RECIPE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")
    p.add_argument("--split", choices=("train", "eval"), default="train")
    p.add_argument("--head", type=int, default=3, metavar="N", help="how many rows (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--template", action="store_true", help="apply the chat template and mark the trained-on part with « »"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="read every row of every source: bad rows located and counted by kind, duplicates, then token "
        "statistics (exit code 1 when a run would be refused)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="--check output (json for CI)")
    p.add_argument("--no-tokens", action="store_true", help="--check without the token statistics")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("runs", help="the runs under an outputs directory (state, step, loss), or one run's curves")
    p.add_argument(
        "dir", nargs="?", default="outputs", metavar="DIR", help="outputs directory, or one run's output.dir"
    )
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("hardware", help="list hardware profiles, or --detect this machine")
    p.add_argument("--detect", action="store_true", help="print this machine as a profile")
    p.set_defaults(func=cmd_hardware)

    p = sub.add_parser("schema", help="print the recipe JSON Schema (or, with --reference, the Markdown reference)")
    p.add_argument("--reference", action="store_true", help="print docs/recipe-reference.md instead")
    p.set_defaults(func=cmd_schema)

    from runner.cli.after import add_commands

    add_commands(sub)
    from runner.cli.migrate import add_command as add_import

    add_import(sub)

    p = sub.add_parser("diff", help="what differs between two recipes (after extends and defaults) and their plans")
    p.add_argument("a", metavar="A", help="a recipe file or a run's output.dir")
    p.add_argument("b", metavar="B", help="a recipe file or a run's output.dir")
    p.add_argument("--json", action="store_true", help="print {a, b, recipe: [...], plan: [...], problems}")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("new", aliases=["init"], help="write a new recipe that extends another, ready to edit")
    p.add_argument("name", metavar="NAME", help="the new recipe's name, or a path such as team/my-dpo (.yaml is added)")
    p.add_argument(
        "--from",
        dest="base",
        required=True,
        metavar="RECIPE",
        help="the recipe to extend: a file, or a shipped recipe's name",
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("list", help="list the recipes in a directory")
    p.add_argument("dir", nargs="?", default="recipes", metavar="DIR", help="directory to search (default: recipes)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    from schemas import UsageError

    try:
        return args.func(args)
    except (_Usage, UsageError) as exc:
        print(f"recipe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Invalid:
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
