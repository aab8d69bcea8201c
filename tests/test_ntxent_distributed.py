"""NT-Xent across 2 processes equals the single-process loss and gradients on the same global batch."""
import subprocess

import torch
from lightly.loss import NTXentLoss

from conftest import ROOT, cli_env, launch_args


def test_two_process_ntxent_matches_single_process(tmp_path):
    out = tmp_path / "dist.pt"
    cmd = launch_args(2)[:-1] + [str(ROOT / "tests/scripts/ntxent_dist.py"), str(out)]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = torch.load(out)

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, 8, generator=g).requires_grad_(True), torch.randn(16, 8, generator=g).requires_grad_(True)
    loss = NTXentLoss(temperature=0.5)(z0, z1)
    loss.backward()
    # DDP averages gradients over the 2 processes: the single-process gradient of the global mean loss
    # equals the per-rank gradients (each of its own mean loss over half the batch) divided by 2.
    single_grad = torch.cat([z0.grad, z1.grad], dim=1)
    assert torch.allclose(dist["loss"], loss.detach(), atol=1e-5), (dist["loss"], loss)
    assert torch.allclose(dist["grad"] / 2, single_grad, atol=1e-6)
    # the gathered negatives matter: without them the loss differs
    local = NTXentLoss(temperature=0.5)(z0[:8].detach(), z1[:8].detach())
    assert not torch.allclose(local, loss.detach(), atol=1e-3)
