"""Use the unlabeled data twice: SimCLRv2's third step (Chen et al. 2020, "Big Self-Supervised Models are Strong
Semi-Supervised Learners").

For one labeled subset and seed: the fine-tuned SSL model of that subset (the teacher; or its FixMatch model,
`finetune.distill_teacher=fixmatch`: a teacher that has already used the unlabeled pool, where SimCLRv2's has
not) gives soft labels (softmax at `finetune.distill_temperature`) to every example of the *train* pool — labels
unused, the test split never touched — and a student learns from them, plus cross-entropy on the labeled subset
weighted by `finetune.distill_label_weight`:

    loss = T^2 * KL(softmax(teacher / T) || softmax(student / T)) + w * CE(student, y)[labeled examples]

With a train-time augmentation (vision), the teacher labels the very view the student sees, at every step
("consistent teaching", Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and consistent"):
soft labels computed once on the unaugmented pool ask the student to give a crop the label of the whole image.
`finetune.distill_consistent=false` (or no augmentation, text) computes them once instead, which is cheaper.

Students: the same architecture initialised from the SSL encoder (row `distill`), or a smaller one (row
`distill_small`, `finetune.student`: a timm name or a text size preset from scratch, or an exported encoder, e.g. a
smaller one pretrained on the same data). Both train on the shared engine (multi-process like every cell). Each
student row also reports its parameter count, size on disk and measured CPU inference throughput.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from . import methods as M


class SoftLabeled(Dataset):
    """The train pool with the teacher's logits (None: the teacher labels each batch online); `labeled` marks the
    examples of the labeled subset."""

    def __init__(self, base: Dataset, logits: Optional[torch.Tensor], labels: torch.Tensor, labeled: torch.Tensor):
        self.base, self.logits, self.labels, self.labeled = base, logits, labels, labeled

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx):
        index = torch.as_tensor(idx, dtype=torch.long)
        batch = self.base.__getitems__(list(idx))
        if self.logits is not None:
            batch["teacher"] = self.logits[index]
        batch["labels"] = self.labels[index]
        batch["labeled"] = self.labeled[index]
        return batch


class DistillTask(M.ClassifierTask):
    """`teacher`: a frozen model that labels each (augmented) batch online; None: the batch carries `teacher`
    logits computed beforehand."""

    def __init__(self, model, dataset, transform, num_processes: int, temperature: float, label_weight: float,
                 teacher: Optional[nn.Module] = None):
        super().__init__(model, dataset, transform, num_processes)
        self.temperature, self.label_weight, self.teacher = temperature, label_weight, teacher

    def loss(self, model, batch, accelerator):
        if self.teacher is not None:
            with torch.no_grad(), accelerator.autocast():
                batch["teacher"] = self.teacher(batch)
        with accelerator.autocast():
            logits = model(batch).float()
        t = self.temperature
        soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(batch["teacher"].float() / t, -1),
                        log_target=True, reduction="batchmean") * t * t
        labeled = batch["labeled"]
        # mean over the labeled examples of the batch; 0 (with a graph, for DDP) when there are none
        hard = (F.cross_entropy(logits, batch["labels"], reduction="none") * labeled).sum() / labeled.sum().clamp(min=1)
        return soft + self.label_weight * hard, {"soft_loss": soft.detach(), "label_loss": hard.detach()}


def distill(teacher: nn.Module, student: M.Classifier, data, idx: np.ndarray, ft, accelerator, seed: int,
            encoder_lr_scale: float = 1.0, run_dir: Optional[Path] = None) -> M.Classifier:
    """`student` trained on the teacher's soft labels for the whole train pool (+ the subset's labels); with
    `run_dir`, checkpointed there and resumed from its last checkpoint (cell_runs.py)."""
    pool = np.arange(len(data.train_labels))
    base = data.dataset("train", pool)
    online = ft.distill_consistent and data.train_transform is not None
    if online:
        teacher = teacher.to(accelerator.device).eval().requires_grad_(False)
    logits = None if online else M.logits_of(teacher, base, accelerator, ft.probe_batch_size)
    labeled = torch.zeros(len(pool), dtype=torch.float32)
    labeled[torch.as_tensor(idx)] = 1.0
    labels = torch.as_tensor(data.train_labels, dtype=torch.long)  # read only where `labeled` is 1
    dataset = SoftLabeled(base, logits, labels, labeled)
    task = DistillTask(student, dataset, data.train_transform, accelerator.num_processes, ft.distill_temperature,
                       ft.distill_label_weight, teacher if online else None)
    # the student's budget is finetune.distill_epochs over the pool, not finetune.max_steps: that cap, sized for
    # a labeled subset, had cut Debian students to 1.3 epochs and left a from-scratch student 14 points below its
    # teacher on Fashion-MNIST after 2 epochs (README)
    plan = M.plan_for(len(dataset), ft, accelerator, "distill", epochs=ft.distill_epochs, capped=False,
                      overlap=data.views_ahead)
    M.train(task, plan, accelerator, seed, output_dir=run_dir, resume=run_dir is not None,
            groups=M.param_groups(student, plan.weight_decay, {"encoder.": encoder_lr_scale}))
    accelerator.free_memory()
    return task.model


def safetensors_bytes(model: nn.Module) -> int:
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    return len(save(_untied(state)))


def student_stats(model: nn.Module, sample: dict, repeats: int = 3, size_of=safetensors_bytes) -> dict:
    """Parameter count, size of its weights on disk and CPU inference throughput in examples/s (the threads the
    run uses, a batch of `sample`, best of `repeats`). An int8 model's packed weights are not parameters: its size
    is what `torch.save` writes (`size_of=bytes_of`)."""
    model = model.cpu().eval()
    params = weight_count(model)
    size = size_of(model)
    n = len(next(iter(sample.values())))
    best = float("inf")
    with torch.no_grad():
        model(sample)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(sample)
            best = min(best, time.perf_counter() - t)
    return {"params": int(params), "size_bytes": int(size), "examples_per_sec": n / best}


def weight_count(model: nn.Module) -> int:
    """Parameters, counting an int8 Linear's packed weight and bias too (they are not `nn.Parameter`s): an int8
    model has as many weights as its float original, each in a quarter of the bytes."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    count = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, QLinear):
            weight, bias = m._packed_params._weight_bias()
            count += weight.numel() + (bias.numel() if bias is not None else 0)
    return count


def _untied(state: dict) -> dict:
    """safetensors refuses tensors that share memory (tied embeddings): store each once, as a copy."""
    seen, out = set(), {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def quantized_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of the Linear layers (torch.ao), on a CPU copy. Transformers are almost all Linear
    layers and gain from it; a CNN keeps its convolutions in float (only its head is quantized), which the report's
    size and throughput columns then show plainly."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch 2.10+ announces a move of these kernels to torchao; they work today
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def bytes_of(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


@torch.no_grad()
def predict_cpu(model: nn.Module, dataset: Dataset, batch_size: int) -> np.ndarray:
    """Predictions of a CPU-only (int8) model; every process computes all of them (no device, no gather)."""
    preds = []
    for start in range(0, len(dataset), batch_size):
        batch = dataset.__getitems__(list(range(start, min(start + batch_size, len(dataset)))))
        preds.append(model(batch).argmax(-1))
    return torch.cat(preds).numpy()
