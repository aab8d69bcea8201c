"""Run under 2 processes: the statistics VICReg and DINO share across processes, built by the real tasks.

Each rank holds half of a fixed global batch. Saves (rank 0) to argv[1]: VICReg's per-rank losses, and DINO's
teacher centre after one update on every rank."""
import sys

import torch

from ssl_pipeline.config import load_config
from ssl_pipeline.engine import make_accelerator
from ssl_pipeline.tasks import build_task

cfg = load_config("configs/vision/simclr_digits.yaml", ["threads=1", "pretrain.vicreg.expander_dim=8",
                                                        "pretrain.dino.output_dim=8"])
acc = make_accelerator(cfg)
g = torch.Generator().manual_seed(0)
za, zb, teacher = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g), torch.randn(2, 16, 8, generator=g)
half = slice(acc.process_index * 8, (acc.process_index + 1) * 8)

vicreg = build_task(load_config("configs/vision/simclr_digits.yaml", ["task=vicreg", "pretrain.vicreg.expander_dim=8"]), acc)
vicreg_loss = vicreg.criterion(za[half], zb[half]).detach()

dino = build_task(load_config("configs/vision/simclr_digits.yaml", ["task=dino", "pretrain.dino.output_dim=8"]), acc)
criterion = dino.model.criterion
t = list(teacher[:, half])
criterion(t, [x + 0.1 for x in t], teacher_temp=0.04)
centres = acc.gather(criterion.center.detach().reshape(1, -1))  # (2, 8): one row per rank
losses = acc.gather(vicreg_loss[None])
if acc.is_main_process:
    torch.save({"vicreg_losses": losses, "centres": centres}, sys.argv[1])
acc.wait_for_everyone()
torch.distributed.destroy_process_group()
