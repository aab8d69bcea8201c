"""Run under 2 processes: a contrastive loss with gathered negatives on each process's half of a global batch.

Writes the loss and the gradient of the full global batch (each rank contributes its half) to argv[1]; argv[2]
names the loss: `ntxent` (lightly's NT-Xent, SimCLR's), `dcl` / `dclw` (the project's decoupled loss, DCL's) or
`nnclr` (NNCLR's: the batch's own rows are the predictions, its projections another 16 x 8; a support set of 32
seeded rows, the same on every process; each process's support set after the step is saved too).
"""
import sys

import torch
from accelerate import Accelerator
from lightly.loss import NTXentLoss

from ssl_pipeline.tasks.dcl import DecoupledContrastiveLoss
from ssl_pipeline.tasks.nnclr import NNCLRLoss, SupportSet

acc = Accelerator(cpu=not torch.cuda.is_available())
g = torch.Generator().manual_seed(0)
z0_all, z1_all = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
half = 16 // acc.num_processes
sl = slice(acc.process_index * half, (acc.process_index + 1) * half)
z0 = z0_all[sl].clone().requires_grad_(True)
z1 = z1_all[sl].clone().requires_grad_(True)
support = None
if sys.argv[2] == "ntxent":
    criterion = NTXentLoss(temperature=0.5, gather_distributed=True)
elif sys.argv[2] == "nnclr":
    projections = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    support = SupportSet(size=32, dim=8)
    support.add(torch.randn(32, 8, generator=g))
    nnclr = NNCLRLoss(0.5, support, gather_distributed=True)
    criterion = lambda p0, p1: nnclr(projections[0][sl], projections[1][sl], p0, p1)  # noqa: E731
else:
    criterion = DecoupledContrastiveLoss(0.5, 0.5 if sys.argv[2] == "dclw" else 0.0, gather_distributed=True)
loss = criterion(z0, z1)
# DDP averages gradients across processes; the per-process loss is the mean over its own positives,
# so summing the per-rank gradients / world size gives the gradient of the global mean loss.
loss.backward()
grads = torch.cat([z0.grad, z1.grad], dim=1)
all_grads = acc.gather(grads)  # (16, 16) in rank order
all_loss = acc.gather(loss.detach()[None])
supports = None if support is None else acc.gather(support.bank[None])  # every process's support set, rank order
if acc.is_main_process:
    torch.save({"loss": all_loss.mean(), "grad": all_grads, "supports": supports}, sys.argv[1])
acc.wait_for_everyone()
torch.distributed.destroy_process_group()  # a clean gloo shutdown (avoids an abort at interpreter exit)
