"""SimCLR: two augmented views per image, one forward over both, NT-Xent with negatives from all processes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ._vision import BackboneHead, VisionTask
from .registry import register


@dataclass
class SimCLRConfig:
    temperature: float = 0.5  # NT-Xent temperature (0.1-0.2 for small images and batches)
    projection_hidden_dim: int = 2048  # projection head hidden width
    projection_dim: int = 128  # projection output width (the space the loss compares in)

    def __post_init__(self):
        if self.temperature <= 0:
            raise UserError(f"config key 'pretrain.simclr.temperature' must be positive, got {self.temperature}")



@register("simclr", config=SimCLRConfig)
class SimCLRTask(VisionTask):
    """SimCLR (Chen et al. 2020): two views per image, one forward over both, NT-Xent over all processes."""

    def __init__(self, cfg: Config, accelerator):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__(cfg, accelerator)
        s = cfg.pretrain.simclr
        self.finish_model(BackboneHead(self.backbone, SimCLRProjectionHead(self.embedding_dim, s.projection_hidden_dim,
                                                                           s.projection_dim)))
        # gather_distributed: negatives come from every process, with gradients flowing back to each
        self.criterion = NTXentLoss(temperature=s.temperature, gather_distributed=accelerator.num_processes > 1)

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        return self.paired_view_loss(model, batch, accelerator), {}
