"""What every data source shares: the seeded, stratified test carve and the batch collate.

The carve is the one place that decides which examples are held out when a source has no test split of its own;
pretraining and fine-tuning call it with the same `data.split_seed`, so the test examples are never pretrained on.
"""
from __future__ import annotations

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

    `copies`: a key per example (data/copies.py); copies are held out only together (with_copies_together), so the
    test split holds no copy of a training example. Data without copies carves as without keys."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    stratify = labels if labels is not None and len(np.unique(labels)) > 1 else None
    if stratify is not None:
        counts = np.bincount(labels)
        rare = [c for c in np.flatnonzero(counts) if counts[c] < 2]
        if rare:
            name = names[rare[0]] if names and rare[0] < len(names) else str(rare[0])
            raise UserError(f"class '{name}' has only {counts[rare[0]]} example: too few to carve a test split from "
                            "(need 2 per class); give your own test split (data.test_files / a test/ folder) or more examples")
    train_idx, test_idx = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.split_seed,
                                           stratify=stratify)
    in_test = with_copies_together(test_idx, len(idx), copies)
    return np.flatnonzero(~in_test if split == "train" else in_test)


def with_copies_together(held_out: np.ndarray, n: int, copies: Optional[Sequence[Hashable]]) -> np.ndarray:
    """(n,) bool: held out or not. An example is held out only when every example with its copy key is: copies
    that the stratified split put on both sides all stay on the training side, so no class loses its training
    examples to a group of copies (the held-out split shrinks by those copies instead)."""
    side = np.zeros(n, dtype=bool)
    side[held_out] = True
    if copies is None:
        return side
    ids: dict = {}
    group = np.fromiter((ids.setdefault(key, len(ids)) for key in copies), dtype=np.int64, count=n)
    all_out = np.ones(len(ids), dtype=bool)
    np.logical_and.at(all_out, group, side)
    return all_out[group]
