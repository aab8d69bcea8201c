"""User-facing errors: one line, exit code 2, no traceback.

Anything the user can fix (config, data, paths, label counts) raises `UserError`; the entry points turn it
into `error: <message>` on stderr and exit code 2, before any output file is written.
"""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


EXIT_USER_ERROR = 2


def exit_on_user_error(fn):
    """Decorator for CLI mains: UserError -> one-line message + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            message = str(err).replace("\n", " ")
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)

    return wrapper
