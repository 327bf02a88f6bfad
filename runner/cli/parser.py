"""The `recipe` command's arguments: one small function a command, each naming the function that runs it."""

from __future__ import annotations

import argparse
import sys

from runner.cli.exits import EXIT_USAGE


def _command(module: str, name: str):
    """`runner.cli.MODULE.NAME`, imported when the command runs (`recipe validate` loads only its own module)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"runner.cli.{module}"), name)(args)

    run.__name__ = name
    return run


TRUST_CODE = "run the code the recipe names: reward functions from files or modules, lm-eval task files' !function code"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 already; keep its message short and ours
        self.print_usage(sys.stderr)
        print(f"recipe: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="recipe", description="Declarative fine-tuning: validate, plan and run YAML recipes.")
    from runner.cli.version import VersionAction

    parser.add_argument("--version", action=VersionAction, help="print the version and the installed libraries")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add_arguments in (
        _validate_arguments,
        _plan_arguments,
        _run_arguments,
        _data_arguments,
        _runs_arguments,
        _hardware_arguments,
        _schema_arguments,
        _merge_arguments,
        _chat_arguments,
        _eval_arguments,
        _import_arguments,
        _diff_arguments,
        _new_arguments,
        _list_arguments,
    ):
        add_arguments(sub)
    return parser


def _extends_root_argument(p) -> None:
    p.add_argument(
        "--extends-root",
        metavar="DIR",
        help="the folder `extends` may read bases from (default: the recipe's git repository, else the folder "
        "named on the command line or the recipe's own)",
    )


def _validate_arguments(sub) -> None:
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
    p.add_argument(
        "--no-code",
        action="store_true",
        help="refuse recipes that name code to run (reward functions from files or modules, lm-eval task files): "
        "the recipe-runs-code warnings become errors",
    )
    _extends_root_argument(p)
    p.set_defaults(func=_command("check", "cmd_validate"))


def _plan_arguments(sub) -> None:
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
    _extends_root_argument(p)
    p.set_defaults(func=_command("plan", "cmd_plan"))


def _run_arguments(sub) -> None:
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
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in output.dir (removes only what a run wrote there)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in output.dir")
    p.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint (e.g. checkpoint-20)")
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
    p.add_argument("--trust-code", action="store_true", help=TRUST_CODE)
    _extends_root_argument(p)
    p.set_defaults(func=_command("run", "cmd_run"))


def _data_arguments(sub) -> None:
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
    _extends_root_argument(p)
    p.set_defaults(func=_command("data", "cmd_data"))


def _runs_arguments(sub) -> None:
    p = sub.add_parser("runs", help="the runs under an outputs directory (state, step, loss), or one run's curves")
    p.add_argument(
        "dir", nargs="?", default="outputs", metavar="DIR", help="outputs directory, or one run's output.dir"
    )
    p.set_defaults(func=_command("runs", "cmd_runs"))


def _hardware_arguments(sub) -> None:
    p = sub.add_parser("hardware", help="list hardware profiles, or --detect this machine")
    p.add_argument("--detect", action="store_true", help="print this machine as a profile")
    p.set_defaults(func=_command("hardware", "cmd_hardware"))


def _schema_arguments(sub) -> None:
    p = sub.add_parser("schema", help="print the recipe JSON Schema (or, with --reference, the Markdown reference)")
    p.add_argument("--reference", action="store_true", help="print docs/recipe-reference.md instead")
    p.set_defaults(func=_command("check", "cmd_schema"))


def _merge_arguments(sub) -> None:
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
    p.set_defaults(func=_command("after", "cmd_merge"))


def _chat_arguments(sub) -> None:
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
    p.set_defaults(func=_command("after", "cmd_chat"))


def _eval_arguments(sub) -> None:
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
    p.add_argument("--trust-code", action="store_true", help=TRUST_CODE)
    p.set_defaults(func=_command("after", "cmd_eval"))


def _import_arguments(sub) -> None:
    from runner.migrate import TOOLS

    p = sub.add_parser(
        "import",
        help="write a recipe from an Axolotl, LLaMA-Factory or TRL config, reporting every key",
        description="Translate another tool's training config into a recipe that validates and plans. Every key of "
        "the source is reported: mapped, changed (why), a peer default applied, not needed, or dropped (why).",
    )
    p.add_argument("file", metavar="FILE", help="the source config (YAML)")
    p.add_argument("--from", dest="tool", required=True, choices=TOOLS, help="the tool the config is written for")
    p.add_argument("-o", "--output", required=True, metavar="RECIPE.yaml", help="the recipe file to write")
    p.add_argument("--hardware", metavar="PROFILE", help="hardware profile the run is for (see `recipe hardware`)")
    p.add_argument("--gpus", type=int, metavar="N", help="GPUs per node (the peers take it from the launcher)")
    p.add_argument("--nodes", type=int, metavar="M", help="number of nodes (default 1)")
    p.add_argument("--dataset-info", metavar="PATH", help="LLaMA-Factory: its dataset_info.json")
    p.add_argument("--objective", metavar="KIND", help="TRL: the trainer the config is for (sft, dpo, orpo, kto, ...)")
    p.add_argument("--dataset-format", metavar="FORMAT", help="TRL: the format preset of its Hub datasets")
    p.add_argument("--strict", action="store_true", help="refuse (write nothing) when any source key is dropped")
    p.add_argument("--force", action="store_true", help="replace an existing recipe file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_command("migrate", "cmd_import"))


def _diff_arguments(sub) -> None:
    p = sub.add_parser("diff", help="what differs between two recipes (after extends and defaults) and their plans")
    p.add_argument("a", metavar="A", help="a recipe file or a run's output.dir")
    p.add_argument("b", metavar="B", help="a recipe file or a run's output.dir")
    p.add_argument("--json", action="store_true", help="print {a, b, recipe: [...], plan: [...], problems}")
    p.set_defaults(func=_command("diff", "cmd_diff"))


def _new_arguments(sub) -> None:
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
    p.set_defaults(func=_command("new", "cmd_new"))


def _list_arguments(sub) -> None:
    p = sub.add_parser("list", help="list the recipes in a directory")
    p.add_argument("dir", nargs="?", default="recipes", metavar="DIR", help="directory to search (default: recipes)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_command("check", "cmd_list"))
