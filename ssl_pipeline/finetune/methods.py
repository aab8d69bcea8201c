"""The methods of the label-efficiency grid; each returns test accuracy for one (subset, seed).

`linear_probe`, `finetune` and `supervised` train through the shared engine (so Accelerate, DDP and mixed
precision apply), `knn` and `classic` are scikit-learn models, on frozen embeddings and raw inputs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.images import collate_batch
from ..engine import TrainPlan, param_groups, train

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


class ClassifierTask:
    """Cross-entropy on labeled batches, plugged into the shared engine like a pretext task."""

    def __init__(self, model: Classifier, dataset: Dataset, transform=None, num_processes: int = 1):
        self.model, self.dataset, self.transform = model, dataset, transform
        self.num_processes = num_processes

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        bs = per_process_batch(batch_size, len(self.dataset), self.num_processes)
        # drop the ragged last batch (BatchNorm cannot train on a batch of one); every epoch reshuffles
        return DataLoader(self.dataset, batch_size=bs, shuffle=True, drop_last=True, collate_fn=collate_batch,
                          generator=generator)

    def loss(self, model, batch, accelerator):
        if self.transform is not None:
            batch = self.transform(batch)
        with accelerator.autocast():
            logits = model(batch)
        return F.cross_entropy(logits.float(), batch["labels"]), {}

    @staticmethod
    def batch_items(batch: dict) -> dict:
        return {"samples": len(batch["labels"])}

    def evaluate(self, model, accelerator) -> dict:
        return {}

    def export(self, model, path) -> None:
        pass


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, accelerator, batch_size: int) -> np.ndarray:
    """Test predictions, sharded over processes and gathered (duplicates from even batches removed)."""
    loader = accelerator.prepare(DataLoader(dataset, batch_size=batch_size, collate_fn=collate_batch))
    model = model.to(accelerator.device).eval()
    preds = []
    for batch in loader:
        with accelerator.autocast():
            logits = model(batch)
        preds.append(accelerator.gather_for_metrics(logits.argmax(-1)))
    accelerator.free_memory(loader)
    return torch.cat(preds).cpu().numpy()


@torch.no_grad()
def embed(encoder: nn.Module, dataset: Dataset, input_keys, accelerator, batch_size: int) -> torch.Tensor:
    """Frozen embeddings of a whole split (computed on every process: they are small and reused by all cells)."""
    encoder = encoder.to(accelerator.device).eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        inputs = {k: batch[k].to(accelerator.device) for k in input_keys}
        with accelerator.autocast():
            out.append(encoder(**inputs).float().cpu())
    return torch.cat(out)


def per_process_batch(batch_size: int, n: int, num_processes: int) -> int:
    """Small labeled subsets: cap the batch so every process still gets a full batch each step."""
    return max(1, min(batch_size, n // num_processes))


def plan_for(n_train: int, ft, accelerator, description: str) -> TrainPlan:
    per_step = per_process_batch(ft.batch_size, n_train, accelerator.num_processes) * accelerator.num_processes
    steps = max(ft.min_steps, ft.epochs * math.ceil(n_train / per_step))
    if ft.max_steps:
        steps = min(steps, ft.max_steps)
    return TrainPlan(batch_size=ft.batch_size, epochs=1, max_steps=steps, learning_rate=ft.learning_rate,
                     optimizer="adamw", weight_decay=ft.weight_decay, warmup_fraction=0.05,
                     log_every=10 ** 9, description=description, show_progress=False)


def train_classifier(model: Classifier, dataset: Dataset, ft, accelerator, seed: int, transform=None,
                     encoder_lr_scale: float = 1.0) -> Classifier:
    task = ClassifierTask(model, dataset, transform, accelerator.num_processes)
    plan = plan_for(len(dataset), ft, accelerator, "cell")
    groups = param_groups(model, plan.weight_decay, {"encoder.": encoder_lr_scale})
    train(task, plan, accelerator, seed, groups=groups)
    trained = task.model
    accelerator.free_memory()
    return trained


def linear_probe(train_feats, train_labels, test_feats, num_classes, ft, accelerator, seed) -> tuple[float, Classifier]:
    mean, std = train_feats.mean(0), train_feats.std(0, unbiased=False) + 1e-6
    model = Classifier(Features(mean, std), make_head(ft.head, train_feats.shape[1], num_classes), ("features",))
    model.encoder.requires_grad_(False)
    trained = train_classifier(model, FeatureSet(train_feats, torch.as_tensor(train_labels)), ft, accelerator, seed)
    dummy = torch.zeros(len(test_feats), dtype=torch.long)
    preds = predict(trained, FeatureSet(test_feats, dummy), accelerator, ft.probe_batch_size)
    return preds, trained


def knn(train_feats, train_labels, test_feats, k: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", weights="distance")
    clf.fit(train_feats.numpy(), train_labels)
    return clf.predict(test_feats.numpy())
