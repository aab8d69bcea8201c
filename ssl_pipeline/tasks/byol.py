"""BYOL: an online network predicts a momentum (EMA) teacher's projection of the other view; no negatives."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ._vision import VisionTask, momentum_copy
from .registry import register


@dataclass
class BYOLConfig:
    projection_hidden_dim: int = 2048  # projection and prediction heads' hidden width (BYOL: 4096)
    projection_dim: int = 256  # projection output width
    momentum_start: float = 0.99  # teacher EMA momentum at step 0, raised to momentum_end on a cosine schedule (BYOL: 0.996 for long runs; lower suits short ones)
    momentum_end: float = 1.0  # teacher EMA momentum at the last step

    def __post_init__(self):
        for key in ("momentum_start", "momentum_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise UserError(f"config key 'pretrain.byol.{key}' must be in [0, 1], got {getattr(self, key)}")


class BYOLModel(nn.Module):
    """Online backbone + projection + predictor, and their frozen EMA copies (the teacher) in one module, so
    checkpoints and resume carry the teacher too."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, s: BYOLConfig):
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection = BYOLProjectionHead(embedding_dim, s.projection_hidden_dim, s.projection_dim)
        self.prediction = BYOLPredictionHead(s.projection_dim, s.projection_hidden_dim, s.projection_dim)
        self.teacher_backbone = momentum_copy(backbone)
        self.teacher_projection = momentum_copy(self.projection)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (online predictions, teacher projections) for the stacked views."""
        p = self.prediction(self.projection(self.backbone(x)))
        with torch.no_grad():
            t = self.teacher_projection(self.teacher_backbone(x))
        return p, t


@register("byol", config=BYOLConfig)
class BYOLTask(VisionTask):
    """BYOL (Grill et al. 2020) with lightly's heads, loss and momentum update; symmetric over the two views."""

    def __init__(self, cfg: Config, accelerator):
        from lightly.loss import NegativeCosineSimilarity

        super().__init__(cfg, accelerator)
        self.settings = cfg.pretrain.byol
        self.finish_model(BYOLModel(self.backbone, self.embedding_dim, self.settings))
        self.criterion = NegativeCosineSimilarity()

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        x = batch["views"]
        with accelerator.autocast():
            p, t = model(x)
        p0, p1 = p.float().chunk(2)
        t0, t1 = t.float().chunk(2)
        # -cos in [-1, 1] per pair, averaged over both directions: -1 = perfect agreement
        return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0)), {}

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Teacher <- m * teacher + (1 - m) * online, m rising from momentum_start to momentum_end (cosine)."""
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step, total_steps, self.settings.momentum_start, self.settings.momentum_end)
        update_momentum(model.backbone, model.teacher_backbone, m)
        update_momentum(model.projection, model.teacher_projection, m)
