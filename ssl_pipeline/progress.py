"""Progress a person can follow: a tqdm bar on a terminal, plain periodic lines in logs and cluster jobs.

tqdm writes carriage-return updates even when its output is a file, which turns a job log into one huge line;
it has no line mode, hence this small wrapper with the same calls (update, set_postfix, write, close).
"""
from __future__ import annotations

import sys
import time


def progress(total: int, initial: int = 0, desc: str = "", disable: bool = False, stream=None, unit: str = "",
             delay: float = 0.0, leave: bool = True):
    """`unit` names what is counted when it is not steps (`examples`: a grid whose cells differ in cost); `delay`:
    nothing is shown unless the work is still going after that many seconds (tqdm's own `delay`), for work that
    takes seconds on most data and many minutes on some; `leave=False`: a bar under another (a grid cell's under the
    grid's), cleared from a terminal when done, and in logs a line a minute with none at the end (the outer bar's
    next line says it ended; per 5 %, a 2-minute cell wrote 13 lines)."""
    stream = stream or sys.stderr
    if disable:
        from tqdm.auto import tqdm

        return tqdm(disable=True)
    if stream.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=stream, delay=delay, leave=leave,
                    **({"unit": f" {unit}", "unit_scale": True} if unit else {}))
    return LineProgress(total, initial, desc, stream, unit=unit, delay=delay, minute_lines_only=not leave)


class LineProgress:
    """One line per 5 % of the work since the last line, or per minute if that comes first, and one at the end
    (counted from the last line, so a minute's line is never followed at once by a 5 % one). With a `delay`, no
    line at all before that many seconds, the end's included; `minute_lines_only`: the minute's lines alone."""

    def __init__(self, total: int, initial: int, desc: str, stream, every_seconds: float = 60.0,
                 clock=time.perf_counter, unit: str = "", delay: float = 0.0, minute_lines_only: bool = False):
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.every_seconds, self.postfix, self.clock = every_seconds, "", clock
        self.t0 = self.last_time = clock()
        self.start_n = initial
        self.last_n = initial
        self.unit, self.delay, self.minute_lines_only = unit, delay, minute_lines_only

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        due = now - self.last_time >= self.every_seconds
        if not self.minute_lines_only:
            due = due or self.n - self.last_n >= max(self.total // 20, 1) or self.n >= self.total
        if due and now - self.t0 >= self.delay:
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.t0
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.n / max(self.total, 1)
        eta_text = f", eta {_clock(eta)}" if eta == eta and self.n < self.total else ""
        if self.unit:
            speed, counted = f"{rate:,.0f} {self.unit}/s", f"{self.n:,}/{self.total:,} {self.unit}"
        else:  # a grid of minute-long cells too
            speed, counted = (f"{1 / rate:.1f} s/it" if 0 < rate < 1 else f"{rate:.2f} it/s"), f"{self.n}/{self.total}"
        self.stream.write(f"{self.desc}: {counted} ({pct:.0f} %) {self.postfix} "
                          f"[{_clock(elapsed)} elapsed, {speed}{eta_text}]\n".replace("  ", " "))
        self.stream.flush()
        self.last_time, self.last_n = now, self.n

    def close(self) -> None:
        now = self.clock()
        if self.n != self.last_n and now - self.t0 >= self.delay and not self.minute_lines_only:
            self._line(now)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def duration(seconds: float, exact: bool = False) -> str:
    """A duration in words: rounded to one unit for tables ("< 1 s", "45 s", "12 min", "1.6 h"), or `exact`
    ("2 min 59.9 s") where it is measured against a limit. Bars use `_clock` ("02:59")."""
    if exact:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.1f} s"
    if seconds < 1:
        return "< 1 s"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def first_process() -> bool:
    """Whether this is the first process of the launch (or the only one)."""
    import os

    return os.environ.get("RANK", "0") == "0"


_SAID: set = set()  # keys of the notes this process has printed


def say_once(line: str, key=None) -> None:
    """say(), at most once per process for `key` (default: the line itself): a run loads its data and encodes its
    labels several times (pretraining, the monitor, export; each fine-tune cell), and a note repeated is noise."""
    key = line if key is None else key
    if key not in _SAID:
        _SAID.add(key)
        say(line)


def say(line: str) -> None:
    """A note about the run (what the data holds, what was skipped), printed by the first process only: every
    process of a multi-process run loads the data and would repeat it."""
    if first_process():
        print(line, flush=True)


def set_total(bar, total: int) -> None:
    """A new end for a bar (a time budget measured again): tqdm's, or a LineProgress (its 5 % follows `total`)."""
    bar.total = total
    if not isinstance(bar, LineProgress) and not getattr(bar, "disable", False):
        bar.refresh()
