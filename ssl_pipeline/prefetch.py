"""A task's model-free batch work (view generation) one batch ahead, in a background thread, overlapping the
model step; and the per-batch seed that makes that work independent of timing, overlap and resumption.

Why by hand: torch's DataLoader workers are the library way to overlap input work, but vision views are made
on whole batches on the training device (kornia) after Accelerate has placed the batch; a worker process can
neither use the trainer's CUDA device nor hand back a CPU batch of views without a shared-memory copy, and
the loader itself must stay on the main thread (Accelerate synchronises RNG states and tracks the end of the
epoch for gradient accumulation while it is iterated). So the loader is iterated where it always was and only
`task.prepare` moves to one thread, which on CPU uses one intra-op thread (measured in
benchmarks/vision_throughput.py) and on CUDA its own stream.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import torch


def batch_seed(seed: int, process: int, epoch: int, index: int) -> int:
    """The RNG seed of one batch's views: a function of where the batch is, not of what ran before it."""
    return int(np.random.SeedSequence([seed, process, epoch, index]).generate_state(1)[0])


def seeded(prepare: Callable[[dict], dict], batch: dict, seed: int, device: torch.device) -> dict:
    """`prepare(batch)` with the global RNG seeded to `seed` and restored afterwards."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return prepare(batch)


class Ahead:
    """Runs `prepare` on batch k+1 in a background thread while the caller trains on batch k."""

    def __init__(self, prepare: Callable[[dict], dict], device: torch.device, threads: int = 1):
        self.prepare, self.device = prepare, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prepare", initializer=torch.set_num_threads,
                                       initargs=(threads,))  # per-thread on OpenMP builds: the trainer keeps its own

    def _work(self, batch: dict, seed: int):
        if self.stream is None:
            return seeded(self.prepare, batch, seed, self.device), None
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the batch's copy to the device is done
        with torch.cuda.stream(self.stream):
            out = seeded(self.prepare, batch, seed, self.device)
            done = torch.cuda.Event()
            done.record(self.stream)
        return out, done

    def _ready(self, future) -> dict:
        out, done = future.result()
        if done is not None:  # the trainer's stream waits for the views, and owns their memory from here on
            torch.cuda.current_stream(self.device).wait_event(done)
            for v in out.values():
                if torch.is_tensor(v) and v.is_cuda:
                    v.record_stream(torch.cuda.current_stream(self.device))
        return out

    def run(self, batches: Iterable[dict], seed_of: Callable[[int], int]) -> Iterator[dict]:
        """Yields prepare(batch) for each batch, in order; `seed_of(i)` seeds the i-th batch's work."""
        pending = None
        for i, batch in enumerate(batches):
            future = self.pool.submit(self._work, batch, seed_of(i))
            if pending is not None:
                yield self._ready(pending)
            pending = future
        if pending is not None:
            yield self._ready(pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
