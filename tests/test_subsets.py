"""Labeled subsets: class-balanced, seeded, nested within a seed, independent across seeds, never test."""
import numpy as np
import torch
import pytest

from ssl_pipeline.config import DataConfig
from ssl_pipeline.data.images import load_images
from ssl_pipeline.errors import UserError
from ssl_pipeline.finetune.subsets import balanced_subset

LABELS = np.repeat(np.arange(5), [100, 80, 120, 100, 60])


def test_balanced_and_seeded():
    idx = balanced_subset(LABELS, 5, seed=0, fraction=0.1)
    counts = np.bincount(LABELS[idx], minlength=5)
    assert counts.tolist() == [10, 8, 12, 10, 6]  # each class gets its share
    assert np.array_equal(idx, balanced_subset(LABELS, 5, seed=0, fraction=0.1))
    assert len(set(idx)) == len(idx)


def test_nested_within_seed_independent_across_seeds():
    small, large = balanced_subset(LABELS, 5, 0, fraction=0.05), balanced_subset(LABELS, 5, 0, fraction=0.5)
    assert set(small) <= set(large)
    other = balanced_subset(LABELS, 5, 1, fraction=0.05)
    assert set(small) != set(other)
    overlap = len(set(small) & set(other)) / len(small)
    assert overlap < 0.5  # independent draws overlap about as much as chance (5 %)


def test_labels_per_class():
    idx = balanced_subset(LABELS, 5, 3, per_class=7)
    assert np.bincount(LABELS[idx]).tolist() == [7] * 5
    with pytest.raises(UserError, match="class 4 has only 60"):
        balanced_subset(LABELS, 5, 3, per_class=61)


def test_fraction_leaving_a_class_empty_is_an_error():
    with pytest.raises(UserError, match="leaves class 4 .* with no labels"):
        balanced_subset(LABELS, 5, 0, fraction=0.008)


def test_a_rare_class_gets_one_label_when_the_budget_holds_one_per_class():
    """An imbalanced folder (an icon theme: 445 'actions', 2 'animations'): 10 % rounds to no label for the rare
    classes; each gets one, as anyone labelling a tenth of the data would give, instead of skipping the budget."""
    labels = np.repeat(np.arange(4), [200, 150, 3, 2])
    idx = balanced_subset(labels, 4, seed=0, fraction=0.1)
    assert np.bincount(labels[idx], minlength=4).tolist() == [20, 15, 1, 1]
    assert set(idx) <= set(balanced_subset(labels, 4, seed=0, fraction=0.5))  # still nested
    with pytest.raises(UserError, match="leaves class 3 .* with no labels") as err:  # 3.6 labels, 4 classes: skipped
        balanced_subset(labels, 4, seed=0, fraction=0.01)
    # the rarest class is named, and the fraction the message suggests is the smallest that works
    assert "class 3 (2 training examples)" in str(err.value) and "3.6 labels for 4 classes" in str(err.value)
    enough = float(str(err.value).split("use a fraction >= ")[1].split()[0])
    assert np.bincount(labels[balanced_subset(labels, 4, seed=0, fraction=enough)], minlength=4).min() == 1
    with pytest.raises(UserError):
        balanced_subset(labels, 4, seed=0, fraction=enough - 0.0001)


def test_subsets_come_from_train_only():
    cfg = DataConfig(source="embedded", image_size=8, channels=1)
    train, test = load_images(cfg, "train"), load_images(cfg, "test")
    idx = balanced_subset(train.labels.numpy(), 10, 0, fraction=1.0)
    chosen = {tuple(train.dataset.images[i].flatten().tolist()) for i in idx}
    leaked = sum(tuple(x.flatten().tolist()) in chosen for x in test.dataset.images)
    assert leaked < 5  # only the few exact duplicate images that digits itself contains


def test_validation_view_is_carved_from_train_and_never_touches_test():
    from ssl_pipeline.config import load_config
    from ssl_pipeline.finetune.labeled import ValidationView, labeled_data

    cfg = load_config(None, ["data.image_size=8", "data.channels=1", "finetune.evaluate_on=validation"])
    spec = {"modality": "vision", "image_size": 8, "channels": 1, "timm_name": "ssl_cnn6", "small_stem": False, "embedding_dim": 256}
    view = labeled_data(cfg, spec, None)
    assert isinstance(view, ValidationView)
    assert not set(view.fit_idx) & set(view.val_idx)
    assert len(view.fit_idx) + len(view.val_idx) == 1437  # the whole train split, nothing from test
    assert abs(len(view.val_idx) - 144) <= 1
    assert np.bincount(view.test_labels, minlength=10).min() >= 13  # stratified
    batch = view.dataset("test", [0, 1])
    assert torch.equal(batch.__getitems__([0, 1])["images"], view.data.train.dataset.images[view.val_idx[:2]])
