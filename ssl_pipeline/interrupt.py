"""Ctrl-C and SIGTERM (cluster preemption) end a run cleanly: checkpoint at the current step, one line, exit.

The signal only sets a flag; the engine checks it between optimizer steps. With several processes they must
agree on the step at which all of them save (saving is collective), so the flag is max-reduced every step over
a gloo group: on CPU that is a few microseconds, and on GPUs it stays off the CUDA stream (no device sync).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading

import torch

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Raised by the engine after the interrupt checkpoint is written; the CLI turns it into one line."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted at step {step} — run the same command to resume")
        self.step, self.signum = step, signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


class StopFlag:
    """Context manager: while active, SIGINT/SIGTERM are recorded instead of killing the process."""

    def __init__(self, num_processes: int):
        self.signum = 0
        self.group = None
        self.multi = num_processes > 1
        if self.multi:
            import torch.distributed as dist

            # every rank must create the group, in the same order
            self.group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        self._old = {}

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum  # the first: a one-process launcher follows Ctrl-C with SIGTERM

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def requested(self) -> int:
        """The signal number every process agrees to stop on (0: go on). Collective when multi-process."""
        if not self.multi:
            return self.signum
        import torch.distributed as dist

        flag = torch.tensor([self.signum], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return int(flag.item())


class RememberedCtrlC:
    """Ctrl-C that cannot be lost between grid cells. Python drops a KeyboardInterrupt raised while a finalizer or
    an import-lock callback runs ('Exception ignored in ...'), and the grid then went on to the end; this handler
    raises as usual (through the handler it replaces) and also records the press, which the loop checks after every
    cell. Installed only over a Python handler, so a job started with SIGINT ignored (nohup, `&`) stays as its user
    started it."""

    def __init__(self):
        self.pressed = False
        self._old = None
        self._deferring = False

    def _handle(self, signum, frame) -> None:
        self.pressed = True
        if not self._deferring:
            self._old(signum, frame)  # the CLI's handler (errors.py) or Python's: raises KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        """A press inside is acted on when the block ends. For writing the report: a KeyboardInterrupt raised while
        a C extension initialises (matplotlib's, on the first plot) surfaces as an ImportError with a traceback."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        self.check()

    def __enter__(self) -> "RememberedCtrlC":
        if threading.current_thread() is threading.main_thread() and callable(signal.getsignal(signal.SIGINT)):
            self._old = signal.signal(signal.SIGINT, self._handle)
            self._old_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        return self

    def _unraisable(self, info) -> None:
        """The dropped press is recorded and acted on: no 'Exception ignored' traceback for it."""
        if info.exc_type is not KeyboardInterrupt:
            self._old_hook(info)

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            sys.unraisablehook = self._old_hook
            self._old = None

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt
