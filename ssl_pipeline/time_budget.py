"""`pretrain.max_minutes`: a wall-clock budget turned into a number of steps, so the schedules end with the time.

Stopping a run when a timer rings (Lightning's `max_time`, or a job's time limit) ends it mid-schedule, at a high
learning rate and with an EMA teacher far from its last momentum: the encoder is worse than a shorter, finished
schedule makes it. No library sizes a schedule by a time, so it is done here, by measuring:

1. before the first step, a few forward/backward passes on real batches (weights, optimizer and buffers left as
   they were) measure a step and set the step count, the warm-up and the cosine's end;
2. once the warm-up is over (20 steps at least; halfway through a shorter plan), the pace of the steps actually taken
   (optimizer and prefetched views included) sets the cosine's end again — right after the warm-up the learning
   rate barely depends on it;
3. then every 5 % of the run, the pace over the last `every` steps or more (a window holding each periodic check,
   evaluation and checkpoint) sets it once more: their cost is paid from the budget too, a machine that slows down
   mid-run is followed, and the learning rate moves by little each time.

Every process takes the slowest process's figures, so all agree on the plan. The plan is kept in every checkpoint:
a resumed run trains the steps it planned and ends where the uninterrupted one would (with the same pace); a
finished run given more minutes goes on for the extra time at its measured pace. The budget covers the training
loop (measurement, steps, checks, checkpoints); loading data and building the model come before it, exporting
after it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .progress import duration

CALIBRATION_UNTIMED = 2  # passes before the timed ones: allocator, oneDNN/cuDNN choices, torch.compile
CALIBRATION_STEPS = 8  # timed steps' worth of forward/backward passes
REPLAN_AFTER = 20  # real steps at least between two measurements
REPLAN_FIRST_MIN = 5  # a short plan is measured again halfway, but not on fewer real steps than this


@dataclass
class Span:
    """The learning-rate schedule's shape: a linear warm-up over `warmup` steps, then cosine decay to `total`."""
    total: int
    warmup: int


def clock(device: torch.device) -> float:
    """Now, once the device's queued work is done (a CUDA step returns before it has run)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class TimeBudget:
    """Plans `span` for `max_seconds` of training, then re-plans it from the measured pace; `state()` goes into each
    checkpoint."""

    def __init__(self, max_seconds: float, warmup_fraction: float, every: int, accelerator, min_steps: int = 0):
        self.max_seconds, self.warmup_fraction, self.every = max_seconds, warmup_fraction, every
        self.min_steps = min_steps  # the step floor of an epoch budget: fewer steps are worth a word
        self.accelerator = accelerator
        self.now = lambda: clock(accelerator.device)  # the module's `clock`, looked up each time (tests replace it)
        self.seconds_before = 0.0  # spent by earlier runs of this output_dir (from the checkpoint)
        self.seconds_per_step = 0.0
        self.replan_at = 0  # the step after which the plan is measured again
        self.started = 0.0
        self.marks: list[tuple[int, float]] = []
        self.told = False  # the first re-plan is always said; later ones when they move the end by > 2 %

    def elapsed(self) -> float:
        return self.seconds_before + self.now() - self.started

    def plan(self, span: Span, step: int, saved: Optional[dict], measure: Callable[[int, int], None],
             steps_per_epoch: Optional[int]) -> Span:
        """The span to train: `saved` (a checkpoint's `state()`) when resuming, else measured with `measure(untimed,
        timed)`, which runs that many steps' worth of passes without changing the model."""
        self.started = self.now()
        if saved is not None:
            span = self._restore(saved, step)
            self.replan_at, self.told = saved["replan_at"], True
        else:
            measure(CALIBRATION_UNTIMED, 0)
            t0 = self.now()
            measure(0, CALIBRATION_STEPS)
            self.seconds_per_step, elapsed = self._slowest((self.now() - t0) / CALIBRATION_STEPS, self.elapsed())
            steps = self._steps_left(elapsed)
            if step == 0:
                span = Span(max(1, steps), int(max(1, steps) * self.warmup_fraction))
                self.accelerator.print(
                    f"pretrain.max_minutes={self.max_seconds / 60:.3g}: {self.seconds_per_step:.3g} s a step (measured "
                    f"over {CALIBRATION_STEPS} steps) → {span.total:,} steps{_passes(span.total, steps_per_epoch)}; the "
                    f"pace is measured again after the warm-up and as it trains")
                if span.total < self.min_steps:
                    need = math.ceil((elapsed + self.min_steps * self.seconds_per_step) / 60)
                    self.accelerator.print(
                        f"note: that is fewer than pretrain.min_steps={self.min_steps:,}, the floor below which small "
                        f"data was measured to learn little (README 'Small data'); about {need:,} minute{'s' * (need != 1)} "
                        f"would train {self.min_steps:,} steps")
            else:  # a run begun under another budget (epochs, max_steps): the minutes count from this resume
                span = Span(step + max(1, steps), span.warmup)
                self.accelerator.print(f"pretrain.max_minutes={self.max_seconds / 60:.3g} from this resume at step "
                                       f"{step:,}: {self.seconds_per_step:.3g} s a step → {steps:,} more steps")
            # a plan shorter than 2 × REPLAN_AFTER is measured again halfway: a measurement taken while the machine
            # was busy (or before its caches were warm) would otherwise leave the rest of the budget unused
            self.replan_at = max(span.warmup, step + min(REPLAN_AFTER, max(REPLAN_FIRST_MIN, steps // 2)))
        self.marks = [(step, self.now())]  # (step, time) at each measurement since this process started
        return span

    def _restore(self, saved: dict, step: int) -> Span:
        self.seconds_before, self.seconds_per_step = saved["seconds"], saved["seconds_per_step"]
        span = Span(saved["total"], saved["warmup"])
        if saved["max_seconds"] != self.max_seconds:  # a finished run given more (or fewer) minutes
            more = math.floor((self.max_seconds - saved["max_seconds"]) / self.seconds_per_step)
            span.total = max(step, span.total + more)
            self.accelerator.print(f"pretrain.max_minutes changed from {saved['max_seconds'] / 60:.3g} to "
                                   f"{self.max_seconds / 60:.3g}: training to step {span.total:,} "
                                   f"(at the measured {self.seconds_per_step:.3g} s a step)")
        return span

    def after_step(self, step: int, span: Span) -> bool:
        """Once step `replan_at` is done (its checks and checkpoint too), sets the cosine's end from the recent pace;
        True when the end moved."""
        if step < self.replan_at or step >= span.total:
            return False
        now = self.now()
        # the pace over the last `every` steps or more (each periodic check, evaluation and checkpoint inside it):
        # from the latest mark at least that far back, else from the first
        base = max((i for i, (s, _) in enumerate(self.marks) if s <= step - self.every), default=0)
        self.marks = self.marks[base:] + [(step, now)]
        (s0, t0) = self.marks[0]
        self.seconds_per_step, elapsed = self._slowest((now - t0) / max(1, step - s0), self.elapsed())
        # measured often (every 5 % of the run, within one window): the end follows a machine that slows down
        self.replan_at = step + max(REPLAN_AFTER, min(self.every, span.total // 20))
        before = span.total
        span.total = step + max(1, self._steps_left(elapsed))  # the last step logs and saves the end
        if not self.told or abs(span.total - before) > 0.02 * before:
            self.told = True
            self.accelerator.print(f"time budget measured again at step {step:,}: {self.seconds_per_step:.3g} s a "
                                   f"step → {span.total:,} steps (planned {before:,})")
        return span.total != before

    def _steps_left(self, elapsed: float) -> int:
        return max(0, math.floor((self.max_seconds - elapsed) / self.seconds_per_step))

    def _slowest(self, *values: float) -> tuple[float, ...]:
        """The largest of every process's figures: all processes must plan the same number of steps."""
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            t = self.accelerator.gather(t[None]).amax(dim=0)
        return tuple(max(float(v), 1e-9) for v in t)

    def state(self, span: Span) -> dict:
        return {"max_seconds": self.max_seconds, "seconds": self.elapsed(), "seconds_per_step": self.seconds_per_step,
                "total": span.total, "warmup": span.warmup, "replan_at": self.replan_at}

    def summary(self, step: int) -> str:
        return f"trained {step:,} steps in {duration(self.elapsed(), exact=True)} of pretrain.max_minutes={self.max_seconds / 60:.3g}"


def _passes(steps: int, steps_per_epoch: Optional[int]) -> str:
    return "" if not steps_per_epoch else f" ({steps / steps_per_epoch:.1f} passes over the data)"
