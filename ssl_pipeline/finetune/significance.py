"""Is a gain real? 95 % bootstrap confidence intervals over seeds and test examples.

Each resample draws the test examples with replacement (one draw shared by every method: the comparison stays
paired on the same examples) and the seeds with replacement (one draw of seed positions shared by every method:
seed s is the same labeled subset for every method, so differences stay paired on the subset too). A cell's
accuracy in a resample is the mean over the drawn seeds of its accuracy on the drawn examples. Intervals are the
2.5th and 97.5th percentiles. Hand-written because scipy.stats.bootstrap resamples one axis of one statistic;
this needs two nested axes shared across every cell of the grid, and it is a few matrix products.

Rows written before per-example results were kept (no `correct` field) are resampled over seeds only; the
report says so.
"""
from __future__ import annotations

import base64
import math

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def pack_correct(correct: np.ndarray) -> str:
    """Per-example right/wrong of one cell, 1 bit per test example, as text for the JSON report."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(text: str, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    return bits[:n].astype(bool)


def pack_labels(labels: np.ndarray) -> str:
    """The scored split's labels in order (what per-class metrics weigh the per-example results by), as text."""
    return base64.b64encode(np.asarray(labels, dtype="<u2").tobytes()).decode("ascii")


def unpack_labels(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u2").astype(np.int64)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-example weights (summing to 1) under which a weighted mean of right/wrong is the balanced accuracy:
    the mean over the classes present of each class's recall (scikit-learn's balanced_accuracy_score)."""
    counts = np.bincount(labels)
    present = np.count_nonzero(counts)
    return 1.0 / (present * counts[labels])


class Bootstrap:
    """Resampled mean accuracies of every (method, label fraction) cell of the grid, drawn once and shared."""

    def __init__(self, rows: list[dict], n_test: int, resamples: int = RESAMPLES, seed: int = 0,
                 example_weights: np.ndarray | None = None):
        """`example_weights` (summing to 1): the metric is the weighted mean of right/wrong (balanced_weights for
        balanced accuracy); None: plain accuracy."""
        self.resamples = resamples
        self.n_test = n_test
        self.example_weights = example_weights
        self.per_example = bool(rows) and n_test > 0 and all("correct" in r for r in rows)
        self.seeds = sorted({r["seed"] for r in rows})
        rng = np.random.default_rng(seed)
        # one draw of seed positions for every cell: position k of a resample is the k-th drawn seed
        self.seed_draw = rng.integers(0, max(1, len(self.seeds)), size=(resamples, max(1, len(self.seeds))))
        self.cells: dict[tuple, dict[int, dict]] = {}
        for r in rows:
            self.cells.setdefault((r["method"], r["label_fraction"]), {})[r["seed"]] = r
        self._per_seed = self._resampled_accuracies(rows, rng) if self.per_example else {}
        self._samples: dict[tuple, np.ndarray] = {}

    def _resampled_accuracies(self, rows: list[dict], rng, chunk_bytes: int = 64 << 20) -> dict:
        """(method, fraction, seed) -> accuracy in each resample of the test examples. The example weights (how
        often each test example is drawn) are made a chunk of resamples at a time, so memory stays bounded for
        large test splits; every row is scored on the same draws."""
        n = self.n_test
        correct = np.stack([unpack_correct(r["correct"], n) for r in rows], axis=1).astype(np.float32)  # (n, rows)
        out = np.empty((self.resamples, len(rows)), dtype=np.float64)
        per_chunk = max(1, chunk_bytes // (4 * n))
        for start in range(0, self.resamples, per_chunk):
            stop = min(self.resamples, start + per_chunk)
            weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(start, stop)])
            if self.example_weights is None:
                out[start:stop] = weights.astype(np.float32) @ correct / n
            else:  # the weighted mean on the drawn examples (a ratio: a draw changes the total weight)
                w = (weights * self.example_weights).astype(np.float32)
                out[start:stop] = (w @ correct) / w.sum(axis=1, keepdims=True)
        return {(r["method"], r["label_fraction"], r["seed"]): out[:, i] for i, r in enumerate(rows)}

    def per_seed(self, method: str, frac: float) -> dict[int, np.ndarray]:
        """seed -> accuracy in each resample of the test examples (constant without per-example results)."""
        if self.per_example:
            return {seed: self._per_seed[(method, frac, seed)] for seed in self.cells[(method, frac)]}
        return {seed: np.full(self.resamples, row["accuracy"], dtype=np.float64)
                for seed, row in self.cells[(method, frac)].items()}

    def samples(self, method: str, frac: float) -> np.ndarray:
        """Mean accuracy over the drawn seeds, per resample: shape (resamples,)."""
        key = (method, frac)
        if key not in self._samples:
            per_seed = self.per_seed(method, frac)
            # a cell whose seeds are not the grid's full set (a grid still running) resamples its own seeds
            own = sorted(per_seed)
            acc = np.stack([per_seed[s] for s in own], axis=1)  # (resamples, own seeds)
            pos = self.seed_draw[:, : len(own)] % len(own)
            self._samples[key] = np.take_along_axis(acc, pos, axis=1).mean(axis=1)
        return self._samples[key]

    def has_spread(self, method: str, frac: float) -> bool:
        """One seed without per-example results (rows from an old report) leaves nothing to resample."""
        return self.per_example or len(self.cells[(method, frac)]) > 1

    def interval(self, method: str, frac: float) -> list[float] | None:
        return _percentiles(self.samples(method, frac)) if self.has_spread(method, frac) else None

    def difference(self, method: str, baseline: str, frac: float) -> dict:
        """Paired gain of `method` over `baseline` at one fraction: interval, verdict and per-seed differences
        ({} when there is nothing to resample)."""
        if not (self.has_spread(method, frac) and self.has_spread(baseline, frac)):
            return {}
        a, b = self.samples(method, frac), self.samples(baseline, frac)
        lo, hi = _percentiles(a - b)
        ra, rb = self.cells[(method, frac)], self.cells[(baseline, frac)]
        paired = [{"seed": s, "difference": ra[s]["accuracy"] - rb[s]["accuracy"]} for s in sorted(set(ra) & set(rb))]
        return {"ci95": [lo, hi], "significant": bool(lo > 0 or hi < 0), "paired_differences": paired}

    def resampled_summaries(self, summary: list[dict]):
        """`summary` with every mean replaced by its value in resample b, for b = 0 … resamples-1."""
        cols = {(s["method"], s["label_fraction"]): self.samples(s["method"], s["label_fraction"]) for s in summary}
        for b in range(self.resamples):
            yield [{**s, "mean": float(cols[(s["method"], s["label_fraction"])][b])} for s in summary]


def _percentiles(x: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(x, [tail, 100 - tail])
    return [float(lo), float(hi)]


def multiplier_interval(values: list[float | None]) -> list[float | None]:
    """Percentile interval of resampled label multipliers; None (the baseline never catches up) counts as +inf and
    is reported as None (unbounded)."""
    x = np.array([math.inf if v is None else v for v in values], dtype=np.float64)
    tail = (1 - LEVEL) / 2 * 100
    lo = float(np.percentile(x, tail, method="lower"))
    hi = float(np.percentile(x, 100 - tail, method="higher"))
    return [None if math.isinf(lo) else lo, None if math.isinf(hi) else hi]
