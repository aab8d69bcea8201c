"""DCL: SimCLR's two views and projection head, with the positive pair taken out of the contrastive denominator
(Yeh et al. 2022, "Decoupled Contrastive Learning"). NT-Xent's gradient on a positive pair shrinks by how easily it
already beats the negatives, which starves small batches of signal; removing that coupling makes the loss far less
sensitive to batch size and number of epochs — the CPU regime. Optional von Mises-Fisher weighting of the
positives (DCLW)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ._vision import BackboneHead, VisionTask
from .registry import register


@dataclass
class DCLConfig:
    temperature: float = 0.1  # similarity temperature (DCL: 0.1; less sensitive to it than NT-Xent)
    weight_sigma: float = 0.0  # 0: DCL; > 0: DCLW, positives weighted by 2 - N * softmax(cos / sigma) (DCLW: 0.5)
    projection_hidden_dim: int = 2048  # projection head hidden width (SimCLR's head)
    projection_dim: int = 128  # projection output width (the space the loss compares in)

    def __post_init__(self):
        if self.temperature <= 0:
            raise UserError(f"config key 'pretrain.dcl.temperature' must be positive, got {self.temperature}")
        if self.weight_sigma < 0:
            raise UserError(f"config key 'pretrain.dcl.weight_sigma' must be >= 0 (0 = no weighting), "
                            f"got {self.weight_sigma}")


class DecoupledContrastiveLoss(nn.Module):
    """Equation 6 of the DCL paper, both views as anchors, negatives gathered from every process (with gradients).

    Written here instead of taking lightly's `DCLLoss` / `DCLWLoss` (the same values on one process, checked in
    tests/test_contrastive_distributed.py): lightly's pick the positives and drop them from the negatives by
    boolean-mask indexing and build DCLW's weights with `torch.tensor(tensor)`, each a host sync on a GPU every
    step, and normalise those weights over each process's own batch, so 2 processes train on another loss than 1.
    Here positives are row-wise dot products, excluded pairs are masked with -inf (the step reads nothing back:
    test_host_syncs.py) and the weights are normalised over the global batch.
    """

    def __init__(self, temperature: float, weight_sigma: float = 0.0, gather_distributed: bool = False):
        super().__init__()
        self.temperature, self.weight_sigma, self.gather_distributed = temperature, weight_sigma, gather_distributed

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        from lightly.utils import dist

        z0, z1 = nn.functional.normalize(z0, dim=1), nn.functional.normalize(z1, dim=1)
        distributed = self.gather_distributed and dist.world_size() > 1
        if distributed:
            z0_all, z1_all = torch.cat(dist.gather(z0)), torch.cat(dist.gather(z1))
            offset = dist.rank() * len(z0)
        else:
            z0_all, z1_all, offset = z0, z1, 0
        # (n, n * world) True where a row meets its own image: itself (same view) and its positive (other view);
        # lightly's `dist.eye_rank` is this mask, but made on the CPU whatever the device of the outputs
        own = torch.zeros(len(z0), len(z0_all), dtype=torch.bool, device=z0.device)
        own[:, offset:offset + len(z0)] = torch.eye(len(z0), dtype=torch.bool, device=z0.device)
        cos = (z0 * z1).sum(1)
        positive = -cos / self.temperature
        if self.weight_sigma > 0:  # DCLW: the softmax over the global batch, as one process would take it
            scaled = cos.detach() / self.weight_sigma
            scaled_all = torch.cat(dist.gather(scaled)) if distributed else scaled
            positive = positive * (2 - len(scaled_all) * torch.softmax(scaled_all, dim=0)[offset:offset + len(z0)])
        negatives = 0.5 * (self._negatives(z0, z0_all, z1_all, own) + self._negatives(z1, z1_all, z0_all, own))
        return positive.mean() + negatives

    def _negatives(self, a, a_all, b_all, own) -> torch.Tensor:
        """Mean over anchors `a` of log sum exp(cos / t) over every other image's two views."""
        negatives = torch.cat([(a @ a_all.T / self.temperature).masked_fill(own, float("-inf")),
                               (a @ b_all.T / self.temperature).masked_fill(own, float("-inf"))], dim=1)
        return torch.logsumexp(negatives, dim=1).mean()


@register("dcl", config=DCLConfig)
class DCLTask(VisionTask):
    """Decoupled contrastive learning: SimCLR's model and views, the decoupled loss (negatives from all processes)."""

    def __init__(self, cfg: Config, accelerator):
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__(cfg, accelerator)
        s = cfg.pretrain.dcl
        self.finish_model(BackboneHead(self.backbone, SimCLRProjectionHead(self.embedding_dim, s.projection_hidden_dim,
                                                                           s.projection_dim)))
        self.criterion = DecoupledContrastiveLoss(s.temperature, s.weight_sigma,
                                                  gather_distributed=accelerator.num_processes > 1)

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        return self.paired_view_loss(model, batch, accelerator), {}
