"""User-facing errors: one line, exit code 2, no traceback.

Anything the user can fix (config, data, paths, label counts) raises `UserError`; the entry points turn it
into `error: <message>` on stderr and exit code 2, before any output file is written.
"""
from __future__ import annotations

import errno
import functools
import os
import signal
import sys


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class UnlabeledData(UserError):
    """Labels were asked of data that has none: an error for fine-tuning, a normal case for pretraining."""


EXIT_USER_ERROR = 2
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: a one-line error (atomic.space_checked too)


def exit_on_user_error(fn):
    """Decorator for CLI mains: UserError -> one-line message + exit 2; Ctrl-C / SIGTERM -> one line (from the
    first process only) and the shell's exit code, never a traceback."""
    from .interrupt import Interrupted
    from .progress import first_process

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = first_process()
        signals = _CliInterrupts()
        try:
            with signals:
                return fn(*args, **kwargs)
        except UserError as err:
            message = str(err).replace("\n", " ")
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except OSError as err:
            if err.errno not in NO_SPACE:
                raise
            # a disk that filled outside the atomic writes (atomic.space_checked): the log, a dataset's cache
            where = f" writing {err.filename}" if err.filename else ""
            print(f"error: no space left on the disk{where} ({os.strerror(err.errno)}): free some space and run the "
                  "same command again (finished work is kept)", file=sys.stderr, flush=True)
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
            _exit_after_interrupt(128 + (signals.signum or signal.SIGINT))

    return wrapper


class _CliInterrupts:
    """Ctrl-C and SIGTERM outside the training loop (data being read or decoded, between grid cells) end the run
    with its one line, whatever happens around them. The training loop installs its own handlers
    (interrupt.StopFlag: checkpoint first) and restores these after.

    - SIGTERM raises KeyboardInterrupt as Ctrl-C does: its default action killed the process silently.
    - A SIGTERM after a Ctrl-C is ignored: `accelerate launch` answers a Ctrl-C by sending its worker SIGTERM at
      once, which broke into the Ctrl-C's unwinding (waiting for decoding threads) and turned exit 130 into 143.
    - A KeyboardInterrupt that Python drops (raised while a finalizer runs: 'Exception ignored in ...') is raised
      again at once: the run otherwise went on reading data until the launcher's SIGKILL, saying nothing.
    - After an interrupt the defaults are never put back (SIGINT and SIGTERM are ignored until the process exits):
      restoring them first left a moment in which the launcher's SIGTERM killed the process before it said why.

    Installed over the defaults only, so a job started with SIGINT ignored (nohup, `&`) stays as its user started
    it."""

    def __init__(self):
        self.signum = 0  # the first signal received: the exit code says which
        self._old: dict = {}
        self._old_hook = None

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGTERM:
            return  # the launcher's echo of a Ctrl-C that is already ending the run
        self.signum = self.signum or signum
        if _running(frame, _CliInterrupts._unraisable.__code__):
            # the signal sent again landed while the hook still runs: raised here, Python's own unraisable hook
            # would drop it for good (seen under load, when the sending thread got the GIL before the hook returned)
            self._send_again()
            return
        raise KeyboardInterrupt

    def _unraisable(self, info) -> None:
        if self.signum and issubclass(info.exc_type, KeyboardInterrupt):
            self._send_again()
        else:
            self._old_hook(info)

    def _send_again(self) -> None:
        """The signal again, from another thread started without waiting for it: a real signal, which also wakes a
        main thread blocked in a wait, handled where the main thread runs next (outside the finalizer, or again)."""
        import _thread
        import threading

        _thread.start_new_thread(_signal_soon, (threading.main_thread().ident, self.signum))

    def __enter__(self) -> "_CliInterrupts":
        import threading

        if threading.current_thread() is threading.main_thread():
            defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
            for s, default in defaults.items():
                if signal.getsignal(s) == default:
                    self._old[s] = signal.signal(s, self._handle)
            if self._old:
                self._old_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._old:
            return
        sys.unraisablehook = self._old_hook
        if exc_type and issubclass(exc_type, KeyboardInterrupt):
            _ignore_further_signals()  # the run is ending: no moment with the defaults back (SIGTERM's kills silently)
        else:
            for s, old in self._old.items():
                signal.signal(s, old)
        self._old = {}


def _running(frame, code) -> bool:
    """Whether `code` is on the stack that ends in `frame`."""
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _signal_soon(thread_id: int, signum: int) -> None:
    import time

    time.sleep(0.005)  # lets the main thread leave the hook first (if it does not, the handler sends again)
    signal.pthread_kill(thread_id, signum)


def _ignore_further_signals() -> None:
    """While an interrupted run says so and exits, a second Ctrl-C (or the launcher's SIGTERM after the first) must
    not break into the exit handlers with a traceback of its own."""
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
