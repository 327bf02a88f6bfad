"""The `recipe` command.

Exit codes: 0 ok, 1 invalid recipe (or failed run), 2 usage error.
Commands import only what they need, so `recipe validate` never loads torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable

from runner.cli.check import cmd_list, cmd_schema, cmd_validate
from runner.cli.data import cmd_data
from runner.cli.diff import cmd_diff
from runner.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Invalid, Usage
from runner.cli.hardware import cmd_hardware
from runner.cli.new import cmd_new
from runner.cli.plan import cmd_plan
from runner.cli.run import cmd_run
from runner.cli.runs import cmd_runs


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 already; keep its message short and ours
        self.print_usage(sys.stderr)
        print(f"recipe: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="recipe", description="Declarative fine-tuning: validate, plan and run YAML recipes.")
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
    except (Usage, UsageError) as exc:
        print(f"recipe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Invalid:
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
