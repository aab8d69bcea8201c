"""Contrastive losses across 2 processes equal the single-process loss and gradients on the same global batch:
SimCLR's NT-Xent (lightly's), DCL's decoupled loss (the project's, also checked against lightly's here) and NNCLR's
(nearest neighbours from a support set that every process fills with the same gathered rows)."""
import subprocess

import pytest
import torch
from lightly.loss import DCLLoss, DCLWLoss, NTXentLoss

from conftest import ROOT, cli_env, launch_args
from ssl_pipeline.tasks.dcl import DecoupledContrastiveLoss
from ssl_pipeline.tasks.nnclr import NNCLRLoss, SupportSet

SINGLE_PROCESS = {
    "ntxent": lambda: NTXentLoss(temperature=0.5),
    "dcl": lambda: DecoupledContrastiveLoss(0.5),
    "dclw": lambda: DecoupledContrastiveLoss(0.5, weight_sigma=0.5),
}


def _two_processes(tmp_path, loss_name: str) -> dict:
    out = tmp_path / "dist.pt"
    cmd = launch_args(2)[:-1] + [str(ROOT / "tests/scripts/contrastive_dist.py"), str(out), loss_name]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("loss_name", sorted(SINGLE_PROCESS))
def test_two_process_loss_matches_single_process(tmp_path, loss_name):
    dist = _two_processes(tmp_path, loss_name)

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, 8, generator=g).requires_grad_(True), torch.randn(16, 8, generator=g).requires_grad_(True)
    loss = SINGLE_PROCESS[loss_name]()(z0, z1)
    loss.backward()
    # DDP averages gradients over the 2 processes: the single-process gradient of the global mean loss
    # equals the per-rank gradients (each of its own mean loss over half the batch) divided by 2.
    single_grad = torch.cat([z0.grad, z1.grad], dim=1)
    assert torch.allclose(dist["loss"], loss.detach(), atol=1e-5), (dist["loss"], loss)
    assert torch.allclose(dist["grad"] / 2, single_grad, atol=1e-6)
    # the gathered negatives matter: without them the loss differs
    local = SINGLE_PROCESS[loss_name]()(z0[:8].detach(), z1[:8].detach())
    assert not torch.allclose(local, loss.detach(), atol=1e-3)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # lightly's DCLW weights, the reason for ours
def test_decoupled_loss_equals_lightlys_and_differs_from_ntxent():
    """The project's sync-free DCL / DCLW give lightly's values and gradients; DCL is not NT-Xent renamed."""
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    z1 = z1 + 2 * z0  # positives that agree, as after some training: the coupling term then matters
    for ours, theirs in ((DecoupledContrastiveLoss(0.2), DCLLoss(0.2)),
                         (DecoupledContrastiveLoss(0.2, weight_sigma=0.5), DCLWLoss(0.2, sigma=0.5))):
        a, b = z0.clone().requires_grad_(True), z1.clone().requires_grad_(True)
        ours(a, b).backward()
        c, d = z0.clone().requires_grad_(True), z1.clone().requires_grad_(True)
        theirs(c, d).backward()
        assert torch.allclose(ours(z0, z1), theirs(z0, z1), atol=1e-5)
        assert torch.allclose(a.grad, c.grad, atol=1e-6) and torch.allclose(b.grad, d.grad, atol=1e-6)
    # NT-Xent keeps the positive in its denominator: log(1 + ...) above DCL's value
    assert NTXentLoss(temperature=0.2)(z0, z1) > DecoupledContrastiveLoss(0.2)(z0, z1) + 1e-3


def test_nnclr_two_processes_match_one_and_fill_the_same_support_set(tmp_path):
    """NNCLR's loss and gradients on 2 processes equal 1 process's on the global batch, and both support sets end
    with the global batch's first-view projections in process order (tests/scripts/contrastive_dist.py)."""
    dist = _two_processes(tmp_path, "nnclr")
    g = torch.Generator().manual_seed(0)
    p0, p1 = torch.randn(16, 8, generator=g).requires_grad_(True), torch.randn(16, 8, generator=g).requires_grad_(True)
    z0, z1 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    support = SupportSet(size=32, dim=8)
    support.add(torch.randn(32, 8, generator=g))
    loss = NNCLRLoss(0.5, support)(z0, z1, p0, p1)
    loss.backward()
    assert torch.allclose(dist["loss"], loss.detach(), atol=1e-5), (dist["loss"], loss)
    assert torch.allclose(dist["grad"] / 2, torch.cat([p0.grad, p1.grad], dim=1), atol=1e-6)
    assert len(dist["supports"]) == 2 and all(torch.equal(s, support.bank) for s in dist["supports"])
    assert torch.equal(support.bank[:16], z0)
