"""Training steps that never wait on the device: no tensor is read back to the host between log steps
(`conftest.CountHostReads` says how that is counted; the LARS optimizer's own test: test_lars.py)."""
import pytest
import torch
from conftest import CountHostReads

from ssl_pipeline.config import Config, load_config
from ssl_pipeline.engine import TrainPlan, build_optimizer, make_accelerator, param_groups


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator(load_config(None, ["threads=1"]))


def _step(task, model, optimizer, batch, accelerator):
    loss, metrics = task.loss(model, batch, accelerator)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return metrics


@pytest.mark.parametrize("method", ["simclr", "dcl", "nnclr", "byol", "vicreg", "dino"])
def test_vision_step_reads_nothing_back(method, accelerator):
    """Views, forward, loss, backward, LARS, the method's hook (BYOL/DINO's momentum teacher update) and NNCLR's support set."""
    from ssl_pipeline.tasks import method as registered

    cfg = Config(task=method)
    cfg.data.source, cfg.data.image_size, cfg.data.channels, cfg.data.num_samples = "synthetic", 16, 3, 32
    cfg.model.backbone = "ssl_cnn6"
    task = registered(method)(cfg, accelerator)
    model = task.model.train()
    opt = build_optimizer(param_groups(model, 1e-6), TrainPlan(batch_size=16, epochs=1, max_steps=1,
                                                               learning_rate=0.3, optimizer="lars"))
    batches = [task.prepare({"images": task.data.dataset.images[i * 16:(i + 1) * 16]}) for i in range(2)]
    _step(task, model, opt, batches[0], accelerator)
    task.after_optimizer_step(model, 1, 10)
    with CountHostReads() as count:
        metrics = _step(task, model, opt, batches[1], accelerator)
        task.after_optimizer_step(model, 2, 10)
    assert (count.scalars, count.nonzeros) == (0, 0)
    assert all(torch.is_tensor(v) or isinstance(v, float) for v in metrics.values())


def test_mlm_step_reads_back_only_the_masked_count(accelerator):
    """The one read left: how many tokens were masked (`nonzero`), which sizes the head's input (the head runs
    on the masked positions only, padded to a few bucket sizes)."""
    from ssl_pipeline.tasks.mlm import MLMTask

    cfg = Config(task="mlm")
    cfg.data.source, cfg.data.max_length, cfg.data.num_samples = "synthetic", 32, 16
    cfg.model.vocab_size, cfg.model.hidden_size, cfg.model.num_layers = 512, 32, 1
    cfg.model.num_heads, cfg.model.intermediate_size = 2, 64
    task = MLMTask(cfg, accelerator)
    model = task.model.train()
    opt = build_optimizer(param_groups(model, 0.01), TrainPlan(batch_size=4, epochs=1, max_steps=1,
                                                               learning_rate=1e-4, optimizer="adamw"))
    batches = [task.data.__getitems__(list(range(i * 4, (i + 1) * 4))) for i in range(2)]
    _step(task, model, opt, batches[0], accelerator)
    with CountHostReads() as count:
        metrics = _step(task, model, opt, batches[1], accelerator)
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
