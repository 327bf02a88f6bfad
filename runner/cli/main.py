"""The `recipe` command: parse the arguments, run the command, turn its exceptions into exit codes.

Exit codes: 0 ok, 1 invalid recipe (or failed run), 2 usage error.
Commands import only what they need, so `recipe validate` never loads torch.
"""

from __future__ import annotations

import sys
from typing import Iterable

from runner.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_USAGE, Invalid, Usage
from runner.cli.parser import build_parser


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
