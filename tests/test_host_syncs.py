"""Training steps that never wait on the device: no tensor is read back to the host between log steps.

On a GPU, `.item()`, `bool(tensor)` or boolean-mask indexing in a step makes the CPU wait for every queued kernel
before it can queue the next ones. On CPU they cost nothing, so the count itself is what is tested: every such
read goes through one aten op, `_local_scalar_dense` (and a data-dependent shape through `nonzero`)."""
import contextlib

import pytest
import torch
from lightly.utils.lars import LARS as LightlyLARS
from torch.utils._python_dispatch import TorchDispatchMode

from ssl_pipeline.config import Config
from ssl_pipeline.engine import TrainPlan, build_optimizer, param_groups
from ssl_pipeline.lars import LARS


class CountHostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.scalars = self.nonzeros = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.scalars += 1
        elif func is torch.ops.aten.nonzero.default:
            self.nonzeros += 1
        return func(*args, **(kwargs or {}))


class _Accelerator:  # what the tasks use of Accelerate's object in a single CPU process
    num_processes, process_index, device = 1, 0, torch.device("cpu")
    print = staticmethod(print)

    @staticmethod
    def autocast():
        return contextlib.nullcontext()

    @staticmethod
    def main_process_first():
        return contextlib.nullcontext()


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 4))


@pytest.mark.parametrize("cls, reads", [(LARS, False), (LightlyLARS, True)], ids=["ours", "lightly"])
def test_lars_step_reads_nothing_back(cls, reads):
    """lightly's LARS decides per weight in Python whether to adapt (two reads per weight); ours does not."""
    model = _model()
    groups = param_groups(model, 1e-4)
    for g in groups:
        g["lr"] = 0.5
    opt = cls(groups, lr=0.5, momentum=0.9)
    for step in range(2):  # the first step creates the momentum buffers, the second uses them
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        with CountHostReads() as count:
            opt.step()
        assert (count.scalars > 0) == reads, count.scalars


def _step(task, model, optimizer, batch):
    loss, metrics = task.loss(model, batch, _Accelerator())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return metrics


@pytest.mark.parametrize("method", ["simclr", "byol", "vicreg", "dino"])
def test_vision_step_reads_nothing_back(method):
    """Views, forward, loss, backward, LARS and the method's hook (BYOL/DINO's momentum teacher update)."""
    from ssl_pipeline.tasks import method as registered

    cfg = Config(task=method)
    cfg.data.source, cfg.data.image_size, cfg.data.channels, cfg.data.num_samples = "synthetic", 16, 3, 32
    cfg.model.backbone = "ssl_cnn6"
    task = registered(method)(cfg, _Accelerator())
    model = task.model.train()
    opt = build_optimizer(param_groups(model, 1e-6), TrainPlan(batch_size=16, epochs=1, max_steps=1,
                                                               learning_rate=0.3, optimizer="lars"))
    batches = [task.prepare({"images": task.data.dataset.images[i * 16:(i + 1) * 16]}) for i in range(2)]
    _step(task, model, opt, batches[0])
    task.after_optimizer_step(model, 1, 10)
    with CountHostReads() as count:
        metrics = _step(task, model, opt, batches[1])
        task.after_optimizer_step(model, 2, 10)
    assert (count.scalars, count.nonzeros) == (0, 0)
    assert all(torch.is_tensor(v) or isinstance(v, float) for v in metrics.values())


def test_mlm_step_reads_back_only_the_masked_count():
    """The one read left: how many tokens were masked (`nonzero`), which sizes the head's input (the head runs
    on the masked positions only, padded to a few bucket sizes)."""
    from ssl_pipeline.tasks.mlm import MLMTask

    cfg = Config(task="mlm")
    cfg.data.source, cfg.data.max_length, cfg.data.num_samples = "synthetic", 32, 16
    cfg.model.vocab_size, cfg.model.hidden_size, cfg.model.num_layers = 512, 32, 1
    cfg.model.num_heads, cfg.model.intermediate_size = 2, 64
    task = MLMTask(cfg, _Accelerator())
    model = task.model.train()
    opt = build_optimizer(param_groups(model, 0.01), TrainPlan(batch_size=4, epochs=1, max_steps=1,
                                                               learning_rate=1e-4, optimizer="adamw"))
    batches = [task.data.__getitems__(list(range(i * 4, (i + 1) * 4))) for i in range(2)]
    _step(task, model, opt, batches[0])
    with CountHostReads() as count:
        metrics = _step(task, model, opt, batches[1])
    assert (count.scalars, count.nonzeros) == (0, 1)
    assert 0.0 <= float(metrics["masked_accuracy"]) <= 1.0
    padded = {"input_ids": torch.ones(2, 8, dtype=torch.long),
              "attention_mask": torch.tensor([[1] * 8, [1] * 3 + [0] * 5])}
    with CountHostReads() as count:  # what the engine counts for throughput, every step
        items = task.batch_items(padded)
    assert count.scalars == 0 and int(items["tokens"]) == 11


def test_flexmatch_thresholds_read_nothing_back():
    """FixMatch's per-class thresholds are updated and applied at every step of the `fixmatch` row."""
    from ssl_pipeline.finetune.fixmatch import ClassThresholds

    t = ClassThresholds(pool_size=50, num_classes=4, threshold=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        index = torch.randperm(50, generator=g)[:16]
        confidence, pseudo = torch.rand(16, generator=g), torch.randint(0, 4, (16,), generator=g)
        with CountHostReads() as count:
            mask = t.mask(confidence, pseudo)
            t.update(index, confidence, pseudo)
        assert (count.scalars, count.nonzeros) == (0, 0)
        assert mask.dtype == torch.bool and mask.shape == (16,)
    assert (t.held >= 0).any()  # some examples were confidently given a class
