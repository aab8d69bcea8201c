"""What every data source shares: the seeded, stratified test carve and the batch collate.

The carve is the one place that decides which examples are held out when a source has no test split of its own;
pretraining and fine-tuning call it with the same `data.split_seed`, so the test examples are never pretrained on.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..config import DataConfig
from ..errors import UserError


def collate_batch(items):
    """Collate for datasets that return whole batches (`__getitems__`) or single dict samples."""
    if isinstance(items, dict):
        return items
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def carve(labels: np.ndarray, split: str, cfg: DataConfig, names: Optional[list[str]] = None) -> np.ndarray:
    """Indices of `split` in a seeded, stratified train/test carve of a source that has no test split."""
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
    return np.sort(train_idx if split == "train" else test_idx)
