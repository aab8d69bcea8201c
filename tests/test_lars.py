"""The project's LARS: lightly's update rule, optimizer states that load across both classes, and no host reads."""
import copy

import pytest
import torch
from conftest import CountHostReads
from lightly.utils.lars import LARS as LightlyLARS

from ssl_pipeline.engine import param_groups
from ssl_pipeline.lars import LARS


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                            torch.nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        m[0].weight.zero_()  # a zero-norm weight: not adapted, no weight decay (lightly's rule)
    return m


def _groups(model):
    groups = param_groups(model, 1e-4)  # weights decay and adapt; biases and BN parameters do neither
    for g in groups:
        g["lr"] = 0.5
    return groups


def _set_grads(models, step):
    g = torch.Generator().manual_seed(step)
    for params in zip(*(m.parameters() for m in models)):
        grad = torch.randn(params[0].shape, generator=g) * 0.01
        if step == 1 and params[0].ndim == 2:
            grad.zero_()  # a zero gradient: not adapted on this step
        for p in params:
            p.grad = grad.clone()


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                    dict(momentum=0.9, dampening=0.1), dict()])
def test_updates_match_lightlys_lars(kwargs):
    ours, ref = _model(), _model()
    opt, ref_opt = LARS(_groups(ours), lr=0.5, **kwargs), LightlyLARS(_groups(ref), lr=0.5, **kwargs)
    before = copy.deepcopy(ours.state_dict())
    for step in range(4):
        _set_grads([ours, ref], step)
        opt.step()
        ref_opt.step()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    assert not torch.equal(ours[3].weight, before["3.weight"])  # it moved


def test_state_loads_across_lightlys_class_both_ways():
    """Checkpoints of runs made with lightly's LARS resume with this one (and the other way round)."""
    a, b, c = _model(), _model(), _model()
    ref_opt = LightlyLARS(_groups(a), lr=0.5, momentum=0.9)
    _set_grads([a], 0)
    ref_opt.step()
    b.load_state_dict(a.state_dict())
    ours = LARS(_groups(b), lr=0.5, momentum=0.9)
    ours.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # as from a checkpoint file: no shared buffers
    _set_grads([a, b], 1)
    ref_opt.step()
    ours.step()
    c.load_state_dict(b.state_dict())
    back = LightlyLARS(_groups(c), lr=0.5, momentum=0.9)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))
    _set_grads([a, b, c], 2)
    ref_opt.step()
    ours.step()
    back.step()
    for x, y, z in zip(a.parameters(), b.parameters(), c.parameters()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(z, x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls, reads", [(LARS, False), (LightlyLARS, True)], ids=["ours", "lightly"])
def test_a_step_reads_nothing_back_to_the_host(cls, reads):
    """lightly's LARS decides per weight in Python whether to adapt (two reads per weight); ours does not."""
    model = _model()
    opt = cls(_groups(model), lr=0.5, momentum=0.9)
    for step in range(2):  # the first step creates the momentum buffers, the second uses them
        _set_grads([model], step)
        with CountHostReads() as count:
            opt.step()
        assert (count.scalars > 0) == reads, count.scalars
