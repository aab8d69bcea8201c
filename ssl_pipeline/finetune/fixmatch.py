"""Use the unlabeled data at fine-tune time: FixMatch (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised
Learning with Consistency and Confidence") started from the SSL encoder — the recipe of SimCLRv2-style
"pretrain, then semi-supervised fine-tune" papers (e.g. SelfMatch, Kim et al. 2021).

Each step takes `finetune.batch_size` examples of the unlabeled *train* pool (their labels are dropped before
the batch is built; the test split is never touched) and 1/`unlabeled_ratio` as many of the labeled subset:

    loss = CE(model(weak(x_l)), y) + lambda_u * mean_u[ 1{max p(weak(u)) >= tau} * CE(model(strong(u)), argmax p(weak(u))) ]

The model labels each pool example's weak view (no gradient) and learns to give its strong view that label, only
where it is confident. Unlike `distill` there is no frozen teacher: the pseudo-labels improve as the model does.
The model starts as the `finetune` row does (SSL encoder, head from the converged linear probe), so its first
pseudo-labels are already the probe's. The encoder trains at `finetune.fixmatch.encoder_lr_scale` (0.5), not at the
`finetune` row's 0.1: the unlabeled pool keeps it from overfitting the few labels. Chosen on the Fashion-MNIST
validation carve at 1 % labels (seed 0; the `finetune` row 83.9 %): 4 epochs over the pool at encoder lr scale
0.1 / 0.5 / 1 gave 84.5 / 85.4 / 85.6 %, 8 epochs at 0.5 gave 87.2 %, 16 epochs 87.6 % (with the weights' moving
average 87.7 %: not worth twice the time as a default) (README).

`finetune.fixmatch.thresholds=flexmatch` replaces the one threshold with FlexMatch's per-class ones (Zhang et al.
2021, "FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo Labeling"): a class few pool examples
have been confidently given yet gets a lower threshold, so hard classes are not starved of pseudo-labels.

Written here rather than taken from a library: the field's FixMatch / FlexMatch code (USB, TorchSSL) is a framework
of its own with its own trainer and data pipeline; the methods themselves are the loss above and the thresholds
below, on this project's engine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import methods as M


class PoolWithLabeled(Dataset):
    """The unlabeled train pool (its labels dropped), each batch paired with a batch of the labeled subset; the
    labeled subset is walked in a seeded random order, reshuffled whenever it runs out."""

    def __init__(self, pool: Dataset, labeled: Dataset, labeled_batch: int, seed: int):
        self.pool, self.labeled, self.labeled_batch, self.seed = pool, labeled, labeled_batch, seed
        self.skip(0)

    def skip(self, batches: int) -> None:
        """The labeled order after `batches` batches (a resumed run's position). Replayed from the seed rather than
        saved: the loader fetches a batch ahead of the one training, so a saved queue would be one batch early."""
        self.generator = torch.Generator().manual_seed(self.seed)
        self.queue: list[int] = []
        for _ in range(batches):
            self._next_labeled()

    def __len__(self) -> int:
        return len(self.pool)

    def _next_labeled(self) -> list[int]:
        while len(self.queue) < self.labeled_batch:
            self.queue += torch.randperm(len(self.labeled), generator=self.generator).tolist()
        take, self.queue = self.queue[:self.labeled_batch], self.queue[self.labeled_batch:]
        return take

    def __getitems__(self, positions):
        unlabeled = self.pool.__getitems__(list(positions))
        unlabeled.pop("labels", None)  # the pool is unlabeled: its labels must not reach the loss
        return {"unlabeled": unlabeled, "labeled": self.labeled.__getitems__(self._next_labeled()),
                "pool_index": torch.as_tensor(list(positions), dtype=torch.long)}  # per-example state (FlexMatch)


class ClassThresholds:
    """FlexMatch's curriculum thresholds. Each pool example remembers the class it was last predicted with
    confidence >= `threshold` (none yet: -1). A class's learning effect is how many examples it holds, over the
    largest class's count — or over the examples not yet held by any, while those are more (the warm-up, when every
    threshold is low); its threshold is `threshold` * beta / (2 - beta) (the paper's convex mapping)."""

    def __init__(self, pool_size: int, num_classes: int, threshold: float, device="cpu"):
        self.num_classes, self.threshold = num_classes, threshold
        self.held = torch.full((pool_size,), -1, dtype=torch.long, device=device)

    def per_class(self) -> torch.Tensor:
        # scatter_add, not bincount: CUDA's bincount reads the maximum back to the host (a sync every step); the
        # ones are one value expanded, not a pool-sized tensor allocated every step
        one = torch.ones(1, device=self.held.device)
        counts = torch.zeros(self.num_classes + 1, device=one.device).scatter_add_(0, self.held + 1,
                                                                                 one.expand(len(self.held)))
        beta = counts[1:] / torch.maximum(counts[1:].max(), counts[0]).clamp(min=1)
        return self.threshold * beta / (2 - beta)

    def mask(self, confidence: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        return confidence >= self.per_class()[pseudo]

    def update(self, index: torch.Tensor, confidence: torch.Tensor, pseudo: torch.Tensor) -> None:
        sure = confidence >= self.threshold  # a where, not boolean indexing: no host sync for the count
        self.held[index] = torch.where(sure, pseudo, self.held[index])


def concat_inputs(a: dict, b: dict, keys) -> dict:
    """Two batches of encoder inputs as one (a single forward, as DDP needs): token batches are right-padded with
    zeros (an attention mask of 0 there) to the wider one's length."""
    out = {}
    for k in keys:
        x, y = a[k], b[k]
        if x.dim() == 2 and x.shape[1] != y.shape[1]:
            width = max(x.shape[1], y.shape[1])
            x, y = (F.pad(t, (0, width - t.shape[1])) for t in (x, y))
        out[k] = torch.cat([x, y])
    return out


class FixMatchTask(M.ClassifierTask):
    progress_keys = ("confident",)  # the fraction of pool examples that teach: FixMatch's working signal

    def __init__(self, model, dataset, data, num_processes: int, threshold: float, unlabeled_weight: float,
                 ema_decay: float = 0.0, class_thresholds: ClassThresholds | None = None):
        super().__init__(model, dataset, data.train_transform, num_processes)
        self.data, self.threshold, self.unlabeled_weight = data, threshold, unlabeled_weight
        self.ema_decay, self.ema = ema_decay, None
        self.class_thresholds = class_thresholds

    def after_optimizer_step(self, model, step, total_steps):
        """FixMatch scores an exponential moving average of the weights (timm's ModelEmaV3: parameters and
        BatchNorm statistics alike). Started from the weights after the first step, so it sits on the model's
        device whatever `accelerator.prepare` did."""
        if not self.ema_decay:
            return
        if self.ema is None:
            from timm.utils import ModelEmaV3
            self.ema = ModelEmaV3(model, decay=self.ema_decay)
        else:
            self.ema.update(model)

    def state_dict(self) -> dict:
        """What a checkpoint of the cell keeps beyond weights and optimizer (cell_runs.py): the moving average and
        FlexMatch's per-example memory."""
        state = {}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.class_thresholds is not None:
            state["held"] = self.class_thresholds.held.cpu()
        return state

    def load_state_dict(self, state: dict, batches_done) -> None:
        if "ema" in state:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.ema_decay)
            self.ema.load_state_dict(state["ema"])
        if "held" in state:
            self.class_thresholds.held.copy_(state["held"])
        self.dataset.skip(batches_done or 0)

    def scored_model(self) -> M.Classifier:
        return self.ema.module if self.ema is not None else self.model

    def prepare(self, batch: dict) -> dict:
        """The views, model-free: weak ones of the labeled and pool examples, a strong one of the pool's."""
        return {**batch, "labeled": self.transform(batch["labeled"]), "unlabeled": self.transform(batch["unlabeled"]),
                "strong": self.data.strong_transform(batch["unlabeled"])}

    def loss(self, model, batch, accelerator):
        labeled, unlabeled = batch["labeled"], batch["unlabeled"]
        with torch.no_grad(), accelerator.autocast():
            probs = model(unlabeled).float().softmax(-1)
        confidence, pseudo = probs.max(-1)
        if self.class_thresholds is None:
            confident = (confidence >= self.threshold).float()
        else:
            confident = self.class_thresholds.mask(confidence, pseudo).float()
            # every process keeps the same per-example state: each updates it with all processes' batches
            seen = (batch["pool_index"], confidence, pseudo)
            if accelerator.num_processes > 1:
                seen = accelerator.gather(seen)
            self.class_thresholds.update(*seen)
        both = concat_inputs(labeled, batch["strong"], self.data.input_keys)
        with accelerator.autocast():
            logits = model(both).float()
        n = len(labeled["labels"])
        label_loss = F.cross_entropy(logits[:n], labeled["labels"])
        # FixMatch's normalisation: over all unlabeled examples, so few confident ones give a small loss
        pseudo_loss = (F.cross_entropy(logits[n:], pseudo, reduction="none") * confident).mean()
        return label_loss + self.unlabeled_weight * pseudo_loss, {
            "label_loss": label_loss.detach(), "pseudo_loss": pseudo_loss.detach(), "confident": confident.mean()}

    def batch_items(self, batch: dict) -> dict:
        return {"samples": len(batch["labeled"]["labels"]) + len(next(iter(batch["unlabeled"].values())))}


def fixmatch(model: M.Classifier, data, idx: np.ndarray, ft, accelerator, seed: int,
             run_dir: Path | None = None) -> M.Classifier:
    """`model` (SSL encoder + probe head) trained with FixMatch on labeled subset `idx` and the whole train pool,
    for finetune.fixmatch.epochs over the pool, the encoder at finetune.fixmatch.encoder_lr_scale; the weights'
    moving average when finetune.fixmatch.ema_decay > 0. With `run_dir`, checkpointed there and resumed from its
    last checkpoint (cell_runs.py)."""
    fm = ft.fixmatch
    pool = data.dataset("train", np.arange(len(data.train_labels)))
    labeled_batch = max(1, min(len(idx), ft.batch_size // fm.unlabeled_ratio))
    dataset = PoolWithLabeled(pool, data.dataset("train", idx), labeled_batch,
                              seed * 1000 + accelerator.process_index)  # each process its own labeled batches
    flex = (ClassThresholds(len(pool), data.num_classes, fm.threshold, accelerator.device)
            if fm.thresholds == "flexmatch" else None)
    task = FixMatchTask(model, dataset, data, accelerator.num_processes, fm.threshold, fm.unlabeled_weight,
                        fm.ema_decay, flex)
    plan = M.plan_for(len(dataset), ft, accelerator, "fixmatch", epochs=fm.epochs, capped=False,
                      overlap=data.views_ahead)
    M.train(task, plan, accelerator, seed, output_dir=run_dir, resume=run_dir is not None,
            groups=M.param_groups(model, plan.weight_decay, {"encoder.": fm.encoder_lr_scale}))
    accelerator.free_memory()
    return task.scored_model()
