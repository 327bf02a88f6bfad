"""`recipe data`: the first rows as the trainer receives them, or every row checked (--check)."""

from __future__ import annotations

import argparse
import json
import sys

from runner.cli.exits import EXIT_INVALID, EXIT_OK
from runner.cli.load import load_single


def cmd_data(args: argparse.Namespace) -> int:
    loaded, plan = load_single(args.recipe, args.set, root=getattr(args, "extends_root", None))
    from runner.common.sandbox import TemplateRefused
    from runner.data.sources import DataError

    try:
        if args.check:
            return _data_check(args, plan)
        from runner.data.preview import preview

        print(preview(loaded.recipe, args.split, args.head, args.json, args.template))
    except DataError as exc:
        print(f"{args.recipe}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except TemplateRefused as exc:
        print(_at_template(loaded, str(exc)), file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _at_template(loaded, message: str) -> str:
    """A template problem as an error line at the recipe's model.chat_template (or model:, or the file)."""
    from schemas.diagnostics import Diagnostic, Location

    where = loaded.sources.locate(("model", "chat_template")) or Location(loaded.path, 1, 1)
    return Diagnostic(where, "model.chat_template", message, "chat-template-render").text()


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

        from runner.data.tokens import render_stats, token_stats

        datasets.disable_progress_bars()

        from runner.common.sandbox import TemplateRefused

        try:
            result["tokens"] = token_stats(plan)
        except TemplateRefused:
            raise
        except (DataError, OSError, ValueError) as exc:
            print(f"{args.recipe}: error: cannot count tokens: {exc}", file=sys.stderr)
            return EXIT_INVALID
        if not as_json:
            print(render_stats(result["tokens"]))
    if as_json:
        print(json.dumps(result, indent=2))
    return EXIT_INVALID if report.refused else EXIT_OK
