"""VICReg: invariance between the views' embeddings, variance kept above a margin and covariance pushed to zero
per dimension. No negatives and no teacher, so it works at small batch sizes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ._vision import BackboneHead, VisionTask
from .registry import register


@dataclass
class VICRegConfig:
    expander_hidden_dim: int = 2048  # expander (projection) hidden width (VICReg: 8192)
    expander_dim: int = 2048  # expander output width, where the loss is computed (VICReg: 8192)
    invariance_weight: float = 25.0  # lambda: weight of the mean squared distance between the views
    variance_weight: float = 25.0  # mu: weight of the hinge keeping each dimension's std above 1
    covariance_weight: float = 1.0  # nu: weight of the off-diagonal covariance penalty

    def __post_init__(self):
        for key in ("expander_hidden_dim", "expander_dim", "invariance_weight", "variance_weight"):
            if getattr(self, key) <= 0:
                raise UserError(f"config key 'pretrain.vicreg.{key}' must be positive, got {getattr(self, key)}")
        if self.covariance_weight < 0:
            raise UserError(f"config key 'pretrain.vicreg.covariance_weight' must be >= 0, got {self.covariance_weight}")



@register("vicreg", config=VICRegConfig)
class VICRegTask(VisionTask):
    """VICReg (Bardes et al. 2022) with lightly's expander and loss; variance and covariance over all processes."""

    def __init__(self, cfg: Config, accelerator):
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        super().__init__(cfg, accelerator)
        s = cfg.pretrain.vicreg
        self.finish_model(BackboneHead(self.backbone, VICRegProjectionHead(self.embedding_dim, s.expander_hidden_dim,
                                                                          s.expander_dim, num_layers=3)))
        # gather_distributed: the variance and covariance terms see the global batch (gradients flow back)
        self.criterion = VICRegLoss(lambda_param=s.invariance_weight, mu_param=s.variance_weight,
                                    nu_param=s.covariance_weight, gather_distributed=accelerator.num_processes > 1)

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        return self.paired_view_loss(model, batch, accelerator), {}
