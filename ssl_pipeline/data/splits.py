"""What every data source shares: the seeded, stratified test carve and the batch collate.

The carve is the one place that decides which examples are held out when a source has no test split of its own;
pretraining and fine-tuning call it with the same `data.split_seed`, so the test examples are never pretrained on.
"""
from __future__ import annotations

import math
from typing import Hashable, Optional, Sequence

import numpy as np
import torch

from ..config import DataConfig
from ..errors import UserError


def collate_batch(items):
    """Collate for datasets that return whole batches (`__getitems__`) or single dict samples."""
    if isinstance(items, dict):
        return items
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def carve(labels: np.ndarray, split: str, cfg: DataConfig, names: Optional[list[str]] = None,
          copies: Optional[Sequence[Hashable]] = None) -> np.ndarray:
    """Indices of `split` in a seeded, stratified train/test carve of a source that has no test split.

    `copies`: a key per example (data/copies.py); copies are held out only together (held_out_together), so the
    test split holds no copy of a training example. Data without copies carves as without keys."""
    in_test = held_out_together(labels, cfg.test_fraction, cfg.split_seed, names, TEST_CARVE, copies)
    return np.flatnonzero(~in_test if split == "train" else in_test)


TEST_CARVE = ("test", "data.test_fraction", "data.test_files / a test/ folder")
VALIDATION_CARVE = ("validation", "finetune.validation_fraction", "data.validation_files / a val/ folder")


def stratified_holdout(labels: Optional[np.ndarray], fraction: float, seed: int, names: Optional[list[str]],
                       carve_kind: tuple[str, str, str]) -> np.ndarray:
    """Held-out indices of a seeded split stratified by `labels` (sklearn's). A class of one example cannot be split:
    it stays for training (lone_classes_trained_on). What sklearn refuses with a ValueError (fewer held-out or
    remaining examples than classes: many small classes) is a one-line error naming the key to change.
    `carve_kind`: (split, its fraction key, where a user's own split goes)."""
    from sklearn.model_selection import train_test_split

    split, key, own = carve_kind
    n = len(labels) if labels is not None else 0
    stratify = labels if labels is not None and len(np.unique(labels)) > 1 else None
    if stratify is not None:
        present, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            rest = lone_classes_trained_on(labels, present[counts < 2], names, carve_kind)
            return rest[stratified_holdout(labels[rest], fraction, seed, names, carve_kind)]
        held = math.ceil(fraction * n)  # sklearn's rounding
        if held < len(present) or n - held < len(present):
            low, high = math.ceil(100 * len(present) / n) / 100, math.floor(100 * (1 - len(present) / n)) / 100
            raise UserError(f"a stratified {fraction:g} {split} split of {n} examples in {len(present)} classes needs "
                            f"at least one example of each class on both sides: set {key} between {low:g} and "
                            f"{high:g}, or give your own {split} split ({own})")
    _, held_out = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=stratify)
    return held_out


def lone_classes_trained_on(labels: np.ndarray, lone: np.ndarray, names: Optional[list[str]],
                            carve_kind: tuple[str, str, str]) -> np.ndarray:
    """Indices of the examples whose class can be carved, when the classes `lone` have one example each. A long tail
    of one-example classes (a queue used once, a typo in a label) stays for training and is said once; the split is
    carved from the other classes. Before, the run stopped until the user merged or deleted those rows by hand.
    A one-line error when fewer than two classes would be left to score (one class scores nothing but a guess)."""
    from ..progress import say_once

    split, _, own = carve_kind
    single = [names[c] if names and c < len(names) else str(c) for c in lone.tolist()]
    which = (f"class '{single[0]}' has only 1 example" if len(single) == 1 else
             f"{len(single)} classes have only 1 example each (e.g. {', '.join(repr(n) for n in single[:3])})")
    rest = np.flatnonzero(~np.isin(labels, lone))
    if len(np.unique(labels[rest])) < 2:
        raise UserError(f"{which}: too few to carve a {split} split from (need 2 per class); give "
                        f"your own {split} split ({own}), more examples, or leave out or merge "
                        f"{'that class' if len(single) == 1 else 'those classes'} (e.g. into one 'other' class)")
    say_once(f"note: {which}: trained on, but not in the {split} split (a class needs 2 examples to be carved); "
             f"the {split} split scores the other {len(np.unique(labels[rest])):,} classes",
             key=("lone classes", split, tuple(single)))
    return rest


def held_out_together(labels: Optional[np.ndarray], fraction: float, seed: int, names: Optional[list[str]],
                      carve_kind: tuple[str, str, str], copies: Optional[Sequence[Hashable]]) -> np.ndarray:
    """(n,) bool: held out or not, in a stratified split (stratified_holdout) where copies stay on one side.

    Copies are usually few: the examples' split with those that straddle it kept for training (with_copies_together)
    — the carve the data had before copies were looked for, less a few held-out examples. When that keeps less
    than half of the held-out examples (short texts that repeat: ticket subjects, product names, retweets), whole
    groups of copies are split instead (by_groups), else the held-out split was near empty or empty."""
    held = stratified_holdout(labels, fraction, seed, names, carve_kind)
    n = len(labels) if labels is not None else 0
    group = None if copies is None else copy_groups(copies)
    side = with_copies_together(held, n, group)
    if group is None or 2 * int(side.sum()) >= len(held):
        return side
    distinct = int(group.max()) + 1
    folds = max(2, round(1 / fraction))
    if distinct >= folds:
        side = by_groups(labels, group, folds, seed, carve_kind[0])
    if not side.any():
        split, _, own = carve_kind
        raise UserError(f"the carved {split} split is empty: the {n:,} examples are copies of only {distinct:,} "
                        f"distinct ones, held out only together (a copy of a training example would score memory); "
                        f"give your own {split} split ({own})")
    return side


def by_groups(labels: Optional[np.ndarray], group: np.ndarray, folds: int, seed: int, split: str) -> np.ndarray:
    """(n,) bool: held out or not, whole groups of copies (`group`: an id per example) at a time: one fold of
    sklearn's StratifiedGroupKFold (`folds` = round(1 / fraction), shuffled by `seed`: 20 % for 0.2), whose folds
    keep the classes' proportions as near as whole groups allow. A class left with no training example (all of it
    one group) keeps every example for training. Said once: how many examples repeat, what the split holds."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    from ..progress import say_once

    n, distinct = len(group), int(group.max()) + 1  # ids 0 .. distinct-1 (copy_groups)
    y = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    with warnings.catch_warnings():  # "the least populated class has only k members": a class of few groups
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y, group))
    side = np.zeros(n, dtype=bool)
    side[held] = True
    side &= np.isin(y, np.unique(y[~side]))
    say_once(f"{n - distinct:,} of the {n:,} examples repeat another one ({distinct:,} distinct): the {split} split is "
             f"carved from whole groups of copies, {int(side.sum()):,} examples ({side.mean():.0%})")
    return side


def copy_groups(copies: Sequence[Hashable]) -> np.ndarray:
    """(n,) int64: one id per copy key, numbered 0, 1, ... as first met (data/copies.py's keys)."""
    ids: dict = {}
    return np.fromiter((ids.setdefault(key, len(ids)) for key in copies), dtype=np.int64, count=len(copies))


def with_copies_together(held_out: np.ndarray, n: int, group: Optional[np.ndarray]) -> np.ndarray:
    """(n,) bool: held out or not. An example is held out only when every example of its copy group (copy_groups)
    is: copies that the stratified split put on both sides all stay on the training side, so no class loses its
    training examples to a group of copies (the held-out split shrinks by those copies instead)."""
    side = np.zeros(n, dtype=bool)
    side[held_out] = True
    if group is None:
        return side
    all_out = np.ones(int(group.max()) + 1 if n else 0, dtype=bool)
    np.logical_and.at(all_out, group, side)
    return all_out[group]
