"""The library's one exception for what a learner can fix, printed by the CLI wrapper as one
line (what was expected and found, the file, the fix) instead of a deep traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class DepthGError(Exception):
    """A problem the user can fix; the message names the file and the fix."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a CLI `main(argv)`, turning a `DepthGError` into one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except DepthGError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; re-run the same command to resume",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
