"""Class-balanced, seeded labeled subsets.

For a seed, each class's training examples are shuffled once; a request takes the first k_c of every class
(k_c = round(fraction * n_c), at least 1 when the fraction holds a label per class; or `labels_per_class`). So, for one seed, smaller subsets are nested in larger
ones (curves are not confounded by resampling), while different seeds draw independently.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from ..errors import UserError


class EmptyClassError(UserError):
    """A label fraction too small for the data: some class would get no label at all."""


def per_class_counts(labels: np.ndarray, num_classes: int, fraction: float | None = None,
                     per_class: int | None = None, names: list[str] | None = None) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes)
    if per_class is not None:
        k = np.full(num_classes, per_class)
        short = np.flatnonzero(k > counts)
        if len(short):
            c = short[0]
            raise UserError(f"finetune.labels_per_class={per_class} but class {_name(c, names)} has only "
                            f"{_examples(counts[c])}")
        return k
    k = np.rint(counts * fraction).astype(int)
    k = np.minimum(np.maximum(k, 0), counts)
    empty = one_label_classes(counts, fraction)
    if len(empty) and counts[empty].min() > 0 and fraction * counts.sum() >= num_classes:
        k[empty] = 1  # a rare class gets the one label anyone labelling a few examples of each class would give
    elif len(empty):  # the budget is below one label per class: a different experiment (labels_per_class=1)
        c = empty[np.argmin(counts[empty])]
        # the smallest fraction that works: one label per class in all (every rare class then gets its one)
        enough = math.ceil(num_classes / max(counts.sum(), 1) * 10_000) / 10_000
        raise EmptyClassError(f"label fraction {fraction} leaves class {_name(c, names)} ({_examples(counts[c])}) "
                              f"with no labels: {fraction * counts.sum():.1f} labels for {num_classes} classes; use a "
                              f"fraction >= {enough:.4f} (one label per class) or finetune.labels_per_class")
    return k


def one_label_classes(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Classes whose share of a label fraction rounds to no label: given one (when the budget holds at least one
    label per class) or the fraction is skipped."""
    return np.flatnonzero(np.rint(counts * fraction) < 1)


def _examples(count: int) -> str:
    return f"{count} training example{'' if count == 1 else 's'}"


def _name(c: int, names) -> str:
    return f"'{names[c]}'" if names and c < len(names) else str(c)


def balanced_subset(labels: np.ndarray, num_classes: int, seed: int, fraction: float | None = None,
                    per_class: int | None = None, names: list[str] | None = None) -> np.ndarray:
    """Sorted indices into `labels` of a class-balanced subset (stratified: every class gets its share)."""
    labels = np.asarray(labels)
    k = per_class_counts(labels, num_classes, fraction, per_class, names)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[:k[c]])
    return np.sort(np.concatenate(chosen))


def subset_digest(idx: np.ndarray) -> str:
    """A labeled subset's identity (its indices, in order): what the probe, a cached fixmatch model and a cell's
    checkpoints are keyed on."""
    return hashlib.sha1(np.ascontiguousarray(idx)).hexdigest()
