"""NNCLR's support set: nearest neighbours among written slots only, FIFO over the newest rows, and saved with the
checkpoint so a resumed run searches what the uninterrupted one does."""
import pytest
import torch

from conftest import OneProcess, crash_then_resume
from ssl_pipeline.errors import UserError
from ssl_pipeline.tasks.nnclr import NNCLRLoss, SupportSet


def test_an_empty_support_set_gives_the_query_itself_then_only_written_slots():
    support = SupportSet(size=6, dim=3)
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.equal(support.nearest(q), q)  # no neighbour yet: the query is its own positive (SimCLR's step 0)
    support.add(torch.tensor([[0.0, 2.0, 0.1]]))
    # the zero slots would tie at cosine 0; the one written row is everyone's neighbour
    assert torch.equal(support.nearest(q), torch.tensor([[0.0, 2.0, 0.1]] * 2))


def test_neighbours_are_the_highest_cosine_rows_and_the_queue_keeps_the_newest():
    g = torch.Generator().manual_seed(0)
    support = SupportSet(size=8, dim=4)
    rows = [torch.randn(3, 4, generator=g) for _ in range(4)]  # 12 rows through 8 slots: the first 4 are gone
    for r in rows:
        support.add(r)
    kept = torch.cat(rows)[-8:]
    assert int(support.filled) == 8 and int(support.pointer) == 12 % 8
    assert sorted(map(tuple, support.bank.tolist())) == sorted(map(tuple, kept.tolist()))
    q = torch.randn(5, 4, generator=g)
    cos = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(kept, dim=1).T
    assert torch.equal(support.nearest(q), kept[cos.argmax(1)])
    support.add(torch.randn(20, 4, generator=g))  # more rows than slots: the newest 8 stay
    assert int(support.filled) == 8


def test_the_support_set_round_trips_and_refuses_another_shape():
    a = SupportSet(size=5, dim=2)
    a.add(torch.arange(6.0).reshape(3, 2))
    b = SupportSet(size=5, dim=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.bank, b.bank) and int(b.filled) == 3 and int(b.pointer) == 3
    with pytest.raises(UserError, match="pretrain.nnclr.support_size"):
        SupportSet(size=4, dim=2).load_state_dict(a.state_dict())


def test_positives_are_neighbours_and_gradients_reach_only_the_predictions():
    g = torch.Generator().manual_seed(1)
    support = SupportSet(size=16, dim=8)
    support.add(torch.randn(16, 8, generator=g))
    z0, z1 = torch.randn(4, 8, generator=g).requires_grad_(True), torch.randn(4, 8, generator=g).requires_grad_(True)
    p0, p1 = torch.randn(4, 8, generator=g).requires_grad_(True), torch.randn(4, 8, generator=g).requires_grad_(True)
    criterion = NNCLRLoss(0.1, support)
    from lightly.loss import NTXentLoss

    ntxent = NTXentLoss(temperature=0.1)
    expected = 0.5 * (ntxent(support.nearest(z0), p1) + ntxent(support.nearest(z1), p0))
    loss = criterion(z0, z1, p0, p1)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert z0.grad is None and z1.grad is None and p0.grad.abs().sum() > 0
    assert torch.equal(support.bank[:4], z0.detach())  # the first view's projections joined the queue


def test_nnclr_resume_searches_the_saved_support_set(tmp_path):
    """A crash after a checkpoint, then resume=auto, ends with the uninterrupted run's weights: the support set
    is in the checkpoint (without it, the resumed steps would take other positives)."""
    from safetensors.torch import load_file

    args = ["--config", "configs/vision/simclr_digits.yaml", "task=nnclr", "pretrain.max_steps=8",
            "pretrain.batch_size=64", "pretrain.checkpoint_every=3", "pretrain.log_every=1",
            "pretrain.nnclr.projection_hidden_dim=128", "pretrain.nnclr.projection_dim=32",
            "pretrain.nnclr.support_size=256"]
    full, crashed = crash_then_resume(args, tmp_path)
    a, b = load_file(str(full / "encoder" / "model.safetensors")), load_file(str(crashed / "encoder" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_the_default_support_set_is_a_tenth_of_a_small_image_set_and_a_larger_one_is_kept_but_named(capsys):
    from ssl_pipeline.config import load_config
    from ssl_pipeline.tasks.nnclr import NNCLRTask

    task = NNCLRTask(load_config("configs/vision/simclr_digits.yaml", ["task=nnclr"]), OneProcess())
    n = len(task.data)  # the digits pretraining pool: well under 40,960 images
    assert task.support.size == n // 10 and "NNCLR support set" not in capsys.readouterr().out
    cfg = load_config("configs/vision/simclr_digits.yaml", ["task=nnclr", "pretrain.nnclr.support_size=1000"])
    assert NNCLRTask(cfg, OneProcess()).support.size == 1000  # the user's choice, with a line saying what it means
    assert f"support_size=1000 is {100 * 1000 / n:.0f} % of the {n} pretraining images" in capsys.readouterr().out
    cfg = load_config("configs/vision/simclr_digits.yaml", ["task=nnclr", "pretrain.nnclr.support_size=64"])
    assert NNCLRTask(cfg, OneProcess()).support.size == 64 and "NNCLR support set" not in capsys.readouterr().out
