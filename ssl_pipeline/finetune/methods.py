"""The methods of the label-efficiency grid; each returns test accuracy for one (subset, seed).

`finetune` and `supervised` (and the MLP probe) train through the shared engine (so Accelerate, DDP and mixed
precision apply); the linear probe, `knn` and `classic` are scikit-learn models on frozen embeddings and raw
inputs.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.splits import collate_batch
from ..engine import Task, TrainPlan, param_groups, train
from ..progress import first_process, progress
from .labeled import SubsetView


def make_head(kind: str, dim: int, num_classes: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, num_classes))
    return nn.Linear(dim, num_classes)


class Classifier(nn.Module):
    """encoder(**inputs) -> head; the encoder is any module mapping its inputs to (B, D) embeddings."""

    def __init__(self, encoder: nn.Module, head: nn.Module, input_keys: tuple):
        super().__init__()
        self.encoder, self.head, self.input_keys = encoder, head, input_keys

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encoder(**{k: batch[k] for k in self.input_keys}))


def feature_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the labeled embeddings: how every probe standardises its inputs."""
    return feats.mean(0), feats.std(0, unbiased=False) + 1e-6


class Features(nn.Module):
    """Frozen embeddings computed once: the probe's 'encoder' is the identity on them, after standardising."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


class FeatureSet(Dataset):
    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx):
        index = torch.as_tensor(idx, dtype=torch.long)
        return {"features": self.features[index], "labels": self.labels[index]}


class ClassifierTask(Task):
    """Cross-entropy on labeled batches, plugged into the shared engine like a pretext task."""

    def __init__(self, model: Classifier, dataset: Dataset, transform=None, num_processes: int = 1):
        self.model, self.dataset, self.transform = model, dataset, transform
        self.num_processes = num_processes

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        bs = per_process_batch(batch_size, len(self.dataset), self.num_processes)
        # drop the ragged last batch (BatchNorm cannot train on a batch of one); every epoch reshuffles
        return DataLoader(self.dataset, batch_size=bs, shuffle=True, drop_last=True, collate_fn=collate_batch,
                          generator=generator)

    def prepare(self, batch: dict) -> dict:
        """The train augmentation (seeded per batch by the engine; one batch ahead when the plan overlaps)."""
        return batch if self.transform is None else self.transform(batch)

    @property
    def prepares(self) -> bool:
        return self.transform is not None  # a head on frozen features has no augmentation to make

    def loss(self, model, batch, accelerator):
        with accelerator.autocast():
            logits = model(batch)
        return F.cross_entropy(logits.float(), batch["labels"]), {}

    @staticmethod
    def batch_items(batch: dict) -> dict:
        return {"samples": len(batch["labels"])}


def shortest_first(dataset: Dataset) -> tuple[Dataset, Optional[np.ndarray]]:
    """`dataset` in order of length when it knows its examples' lengths (texts), and that order (None: as it is).
    A text batch is cut to its longest text, so in row order one long text makes a whole batch nearly full width;
    sorted, batches of short texts stay short (benchmarks/text_embedding_order.py: 2.1-3.3x the texts/s)."""
    lengths = dataset.lengths() if hasattr(dataset, "lengths") else None
    if lengths is None:
        return dataset, None
    order = np.argsort(lengths, kind="stable")
    return SubsetView(dataset, order), order


def in_rows(values: torch.Tensor, order: Optional[np.ndarray]) -> torch.Tensor:
    """Results computed in `order` (shortest_first) put back in row order."""
    if order is None:
        return values
    rows = torch.empty_like(values)
    rows[torch.as_tensor(order)] = values
    return rows


@torch.no_grad()
def logits_of(model: nn.Module, dataset: Dataset, accelerator, batch_size: int) -> torch.Tensor:
    """A split's logits, sharded over processes and gathered in order (duplicates from even batches removed)."""
    ordered, order = shortest_first(dataset)
    loader = accelerator.prepare(DataLoader(ordered, batch_size=batch_size, collate_fn=collate_batch))
    model = model.to(accelerator.device).eval()
    out = []
    for batch in loader:
        with accelerator.autocast():
            logits = model(batch).float()
        out.append(accelerator.gather_for_metrics(logits))
    accelerator.free_memory(loader)
    return in_rows(torch.cat(out).cpu(), order)


def predict(model: nn.Module, dataset: Dataset, accelerator, batch_size: int) -> np.ndarray:
    """Test predictions (the argmax of `logits_of`)."""
    return logits_of(model, dataset, accelerator, batch_size).argmax(-1).numpy()


EMBED_PROGRESS_AFTER = 10.0  # seconds: a split embeds in seconds on most data, in many minutes on a large corpus


@torch.no_grad()
def embed(encoder: nn.Module, dataset: Dataset, input_keys, accelerator, batch_size: int,
          what: str = "") -> torch.Tensor:
    """Frozen embeddings of a whole split (computed on every process: they are small and reused by all cells),
    texts shortest first (`shortest_first`), with a progress line when it takes long (a large corpus: minutes)."""
    encoder = encoder.to(accelerator.device).eval()
    ordered, order = shortest_first(dataset)
    bar = progress(len(dataset), desc=f"embedding {what}".strip(), unit="examples", delay=EMBED_PROGRESS_AFTER,
                   disable=not first_process())
    out = []
    for start in range(0, len(ordered), batch_size):
        batch = ordered.__getitems__(list(range(start, min(start + batch_size, len(ordered)))))
        inputs = {k: batch[k].to(accelerator.device) for k in input_keys}
        with accelerator.autocast():
            out.append(encoder(**inputs).float().cpu())
        bar.update(len(out[-1]))
    bar.close()
    return in_rows(torch.cat(out), order)


def per_process_batch(batch_size: int, n: int, num_processes: int) -> int:
    """Small labeled subsets: cap the batch so every process still gets a full batch each step."""
    return max(1, min(batch_size, n // num_processes))


CELL_PROGRESS_AFTER = 60.0  # seconds


def plan_for(n_train: int, ft, accelerator, description: str, epochs: int | None = None,
             capped: bool = True, overlap: bool = False) -> TrainPlan:
    """`epochs` (default finetune.epochs) over `n_train` examples, at least finetune.min_steps and, when `capped`,
    at most finetune.max_steps (a bound meant for the labeled subsets, not for a student's pass over the pool).
    Passes over the pool (not `capped`) take minutes per cell: they show their own progress and loss, and checkpoint
    every finetune.checkpoint_every steps when given a directory (cell_runs.py). A labeled subset's cell shows its
    steps only once it lasts CELL_PROGRESS_AFTER seconds (most take seconds; a 100 % cell of long texts, many
    minutes, which the grid's line, updated as each cell ends, would leave silent). `overlap`: the task's views
    made one batch ahead (the data adapter's `views_ahead`)."""
    per_step = per_process_batch(ft.batch_size, n_train, accelerator.num_processes) * accelerator.num_processes
    steps = max(ft.min_steps, (ft.epochs if epochs is None else epochs) * math.ceil(n_train / per_step))
    if ft.max_steps and capped:
        steps = min(steps, ft.max_steps)
    return TrainPlan(batch_size=ft.batch_size, epochs=1, max_steps=steps, learning_rate=ft.learning_rate,
                     optimizer="adamw", weight_decay=ft.weight_decay, warmup_fraction=0.05,
                     log_every=10 ** 9 if capped else max(1, steps // 20), description=description,
                     progress_after=CELL_PROGRESS_AFTER if capped else 0.0,
                     checkpoint_every=None if capped else (ft.checkpoint_every or None),
                     keep_checkpoints=1, log_to_trackers=False, overlap=overlap)


def train_classifier(model: Classifier, dataset: Dataset, ft, accelerator, seed: int, transform=None,
                     encoder_lr_scale: float = 1.0, overlap: bool = False) -> Classifier:
    task = ClassifierTask(model, dataset, transform, accelerator.num_processes)
    plan = plan_for(len(dataset), ft, accelerator, "cell", overlap=overlap)
    groups = param_groups(model, plan.weight_decay, {"encoder.": encoder_lr_scale})
    train(task, plan, accelerator, seed, groups=groups)
    trained = task.model
    accelerator.free_memory()
    return trained


class LinearProbe:
    """Multinomial logistic regression on standardised frozen embeddings, solved to convergence (L-BFGS).

    This is the linear-evaluation protocol of SimCLR (Chen et al., 2020): the probe is convex, so a converged
    solver gives the encoder's real linear accuracy, where a few hundred SGD steps under-report it
    (measured on the Fashion-MNIST validation carve: +1 point at 1 % labels, +2.5 at 10 %).
    """

    def __init__(self, train_feats: torch.Tensor, train_labels: np.ndarray, num_classes: int, c: float):
        from sklearn.linear_model import LogisticRegression

        self.mean, self.std = feature_stats(train_feats)
        x = ((train_feats - self.mean) / self.std).numpy()
        self.clf = LogisticRegression(C=c, max_iter=2000).fit(x, train_labels)
        self.num_classes = num_classes

    def predict(self, feats: torch.Tensor) -> np.ndarray:
        return self.clf.predict(((feats - self.mean) / self.std).numpy())

    def log_proba(self, feats: torch.Tensor) -> np.ndarray:
        """log p(class | embedding), one column per class of the labeled subset (`clf.classes_`)."""
        return self.clf.predict_log_proba(((feats - self.mean) / self.std).numpy())

    def as_head(self) -> nn.Linear:
        """The probe as an nn.Linear on raw embeddings (standardisation folded in), to start fine-tuning from.

        Starting the fine-tune from the probe instead of a random head (LP-FT, Kumar et al., 2022) keeps the
        early, large gradients of a random head from distorting the pretrained features.
        """
        classes = self.clf.classes_
        w = torch.zeros(self.num_classes, self.mean.numel())
        b = torch.full((self.num_classes,), -1e4)  # classes absent from the labeled subset are never predicted
        coef, intercept = torch.as_tensor(self.clf.coef_, dtype=torch.float32), torch.as_tensor(self.clf.intercept_, dtype=torch.float32)
        if len(classes) == 2:  # binary: sklearn stores one row for the positive class
            coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
        w_raw = coef / self.std
        w[classes] = w_raw
        b[classes] = intercept - w_raw @ self.mean
        head = nn.Linear(self.mean.numel(), self.num_classes)
        with torch.no_grad():
            head.weight.copy_(w)
            head.bias.copy_(b)
        return head


def mlp_probe(train_feats, train_labels, test_feats, num_classes, ft, accelerator, seed) -> np.ndarray:
    """head=mlp: a small non-linear probe on frozen embeddings, trained through the shared engine."""
    model = Classifier(Features(*feature_stats(train_feats)), make_head("mlp", train_feats.shape[1], num_classes), ("features",))
    model.encoder.requires_grad_(False)
    trained = train_classifier(model, FeatureSet(train_feats, torch.as_tensor(train_labels)), ft, accelerator, seed)
    dummy = torch.zeros(len(test_feats), dtype=torch.long)
    return predict(trained, FeatureSet(test_feats, dummy), accelerator, ft.probe_batch_size)


def product_of_experts(probe: LinearProbe, test_feats: torch.Tensor, classic, classic_inputs,
                       weights: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The class with the largest weighted sum of the probe's and the classic model's log-probabilities (both fitted
    on the same labeled subset, so on the same classes): a product of experts, each overruling the other only where
    it is confident. It needs no scale between TF-IDF and embeddings, as one model on both feature sets would
    (README "What the encoder adds to `classic`" measured the options); `weights` come from `expert_weights`."""
    if not np.array_equal(probe.clf.classes_, classic.classes_):
        raise ValueError("the probe and the classic model were fitted on different classes")
    log_p = weights[0] * probe.log_proba(test_feats) + weights[1] * classic.predict_log_proba(classic_inputs)
    return probe.clf.classes_[log_p.argmax(1)]


# per expert: damped to sharpened, never off (on CMake's 5 % subsets a 0 chosen from 4 labels a class dropped TF-IDF,
# 3.3 points below keeping a quarter of it; README "What the encoder adds to `classic`")
EXPERT_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
EXPERT_FOLDS = 3


def expert_weights(labels: np.ndarray, experts, seed: int) -> tuple[float, ...]:
    """The weights of the experts' log-probabilities with the lowest out-of-fold log-loss on the labeled subset
    itself (3-fold, stratified; no other data is read). Equal weights let an overconfident weak expert drag a strong
    one down: a probe 15 points below TF-IDF took 6 points off it on library docstrings, where these weights kept it
    within a point. `experts`: each (fit, held) -> (classes, log-probabilities of the held examples), positions in `labels`.
    Equal weights when the subset is too small to hold any out (a class needs two labels)."""
    import warnings

    from scipy.special import log_softmax
    from sklearn.model_selection import StratifiedKFold

    classes, target = np.unique(labels, return_inverse=True)
    folds = min(EXPERT_FOLDS, int(np.bincount(target).max()))
    if folds < 2:
        return (1.0,) * len(experts)
    oof = np.full((len(experts), len(labels), len(classes)), np.log(1e-12))
    with warnings.catch_warnings():  # classes with fewer labels than folds: sklearn warns, and splits them anyway
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))
    for fit, held in splits:
        if len(np.unique(labels[fit])) < 2:  # nothing to learn a boundary from
            return (1.0,) * len(experts)
        for e, expert in enumerate(experts):
            fitted_classes, log_p = expert(fit, held)
            oof[e][np.ix_(held, np.searchsorted(classes, fitted_classes))] = log_p
    grid = [w for w in np.array(np.meshgrid(*[EXPERT_WEIGHTS] * len(experts))).T.reshape(-1, len(experts)) if w.any()]
    loss = [-log_softmax(np.tensordot(w, oof, 1), axis=1)[np.arange(len(labels)), target].mean() for w in grid]
    return tuple(float(v) for v in grid[int(np.argmin(loss))])


def knn(train_feats, train_labels, test_feats, k: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", weights="distance")
    clf.fit(train_feats.numpy(), train_labels)
    return clf.predict(test_feats.numpy())
