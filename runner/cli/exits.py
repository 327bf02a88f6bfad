"""Exit codes (0 ok, 1 invalid recipe or failed run, 2 usage error) and the exceptions a command raises for them."""

from __future__ import annotations

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class Usage(Exception):
    """A usage error: `recipe COMMAND: error: MESSAGE` (exit code 2)."""


class Invalid(Exception):
    """The recipe is invalid; its diagnostics were printed (exit code 1)."""
