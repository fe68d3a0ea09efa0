"""Errors the user can fix (data, arguments, a missing or incompatible model folder), and how commands report them.

A command runs its ``main`` through :func:`run_command`: such an error prints one line, ``prog: error: message``,
on stderr and exits with status 2, as argparse does for a bad flag; any other exception is a bug and keeps its
traceback."""

from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A problem in what the user gave, said in one sentence that names it (file and line for data)."""


# a file the user named that is not there is theirs to fix too
USER_ERRORS = (UserError, FileNotFoundError)


def run_command(main: Callable[[], object], prog: str) -> None:
    """``main()``; a :data:`USER_ERRORS` exception becomes one line on stderr and exit status 2."""
    try:
        status = main()
    except USER_ERRORS as error:
        message = (
            str(error)
            if not isinstance(error, FileNotFoundError) or not error.filename
            else (f"{error.strerror or 'no such file'}: {error.filename}")
        )
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)
