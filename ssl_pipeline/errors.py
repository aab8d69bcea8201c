"""User-facing errors: one line, exit code 2, no traceback.

Anything the user can fix (config, data, paths, label counts) raises `UserError`; the entry points turn it
into `error: <message>` on stderr and exit code 2, before any output file is written.
"""
from __future__ import annotations

import functools
import os
import sys


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class UnlabeledData(UserError):
    """Labels were asked of data that has none: an error for fine-tuning, a normal case for pretraining."""


EXIT_USER_ERROR = 2


def exit_on_user_error(fn):
    """Decorator for CLI mains: UserError -> one-line message + exit 2; Ctrl-C / SIGTERM -> one line (from the
    first process only) and the shell's exit code, never a traceback."""
    from .interrupt import Interrupted
    from .progress import first_process

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = first_process()
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            message = str(err).replace("\n", " ")
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except Interrupted as stop:
            if first:
                print(str(stop), file=sys.stderr, flush=True)
            _exit_after_interrupt(stop.exit_code)
        except KeyboardInterrupt:
            if first:
                print("interrupted — finished work is kept; run the same command to resume", file=sys.stderr, flush=True)
            _exit_after_interrupt(130)

    return wrapper


def _exit_after_interrupt(code: int) -> None:
    """Exit once an interrupted run's work is saved: Python-level exit handlers run (trackers flush, process
    groups close), the interpreter's C-level teardown does not. After a Ctrl-C that lands mid-operation, that
    teardown once aborted with SIGABRT in CI ('PyThreadState_Get: ... the GIL is released', raised by a native
    extension while Python was finalizing), turning a clean exit 130 into a crash; nothing is left to do there."""
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
