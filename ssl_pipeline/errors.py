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
        term = _SigtermAsInterrupt()
        try:
            with term:
                return fn(*args, **kwargs)
        except UserError as err:
            message = str(err).replace("\n", " ")
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except Interrupted as stop:
            _ignore_further_signals()
            if first:
                print(str(stop), file=sys.stderr, flush=True)
            _exit_after_interrupt(stop.exit_code)
        except KeyboardInterrupt:
            _ignore_further_signals()
            if first:
                print("interrupted — finished work is kept; run the same command to resume", file=sys.stderr, flush=True)
            _exit_after_interrupt(143 if term.received else 130)

    return wrapper


class _SigtermAsInterrupt:
    """SIGTERM outside the training loop (reading and decoding data, between grid cells) ends the run as Ctrl-C
    does, with its line. Its default action killed the process silently — and `accelerate launch` answers a Ctrl-C
    by sending its worker SIGTERM at once, so a Ctrl-C while data was loading printed nothing. The training loop
    installs its own handler (interrupt.StopFlag: checkpoint first) and restores this one after."""

    def __init__(self):
        self.received = False
        self._old = None

    def _handle(self, signum, frame) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def _ignore_further_signals() -> None:
    """While an interrupted run says so and exits, a second Ctrl-C (or the launcher's SIGTERM after the first) must
    not break into the exit handlers with a traceback of its own."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


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
