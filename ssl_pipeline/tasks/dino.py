"""DINO: a student matches a momentum teacher's centred, sharpened distribution over prototypes, across views;
optional multi-crop (small local views seen by the student only)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..augment import simclr_augment
from ..config import Config
from ..errors import UserError
from ._vision import VisionTask, momentum_copy
from .registry import register


@dataclass
class DINOConfig:
    head_hidden_dim: int = 2048  # head MLP hidden width
    bottleneck_dim: int = 256  # head bottleneck before the prototypes
    output_dim: int = 4096  # number of prototypes (DINO: 65536 for ImageNet; fewer suit small data)
    head_batch_norm: bool = True  # BatchNorm in the head's hidden layers: CNN features (non-negative, with a large shared component) collapse to one prototype without it; DINO's ViTs use none
    student_temperature: float = 0.1  # student softmax temperature
    teacher_temperature: float = 0.04  # teacher softmax temperature after warm-up (sharpening)
    warmup_teacher_temperature: float = 0.04  # teacher temperature at step 0, raised linearly to teacher_temperature
    teacher_temperature_warmup_fraction: float = 0.3  # fraction of the steps the teacher temperature warm-up takes
    center_momentum: float = 0.9  # EMA of the teacher-output centre (kept in sync across processes)
    momentum_start: float = 0.99  # teacher EMA momentum at step 0, raised to momentum_end on a cosine schedule (DINO: 0.996 for long runs)
    momentum_end: float = 1.0  # teacher EMA momentum at the last step
    local_crops: int = 0  # multi-crop: extra small views per image for the student (DINO: 6-10; 0 = two global views only)
    local_crop_size: int = 0  # side of the local views in pixels (0: 3/7 of data.image_size, DINO's 96/224)
    local_crop_scale_max: float = 0.4  # local views cover at most this fraction of the image (at least 0.05)

    def __post_init__(self):
        for key in ("head_hidden_dim", "bottleneck_dim", "output_dim", "student_temperature", "teacher_temperature",
                    "warmup_teacher_temperature"):
            if getattr(self, key) <= 0:
                raise UserError(f"config key 'pretrain.dino.{key}' must be positive, got {getattr(self, key)}")
        for key in ("momentum_start", "momentum_end", "center_momentum", "teacher_temperature_warmup_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise UserError(f"config key 'pretrain.dino.{key}' must be in [0, 1], got {getattr(self, key)}")
        if self.local_crops < 0 or self.local_crop_size < 0:
            raise UserError("config keys 'pretrain.dino.local_crops' and 'pretrain.dino.local_crop_size' must be >= 0")
        if not 0.05 < self.local_crop_scale_max <= 1.0:
            raise UserError(f"config key 'pretrain.dino.local_crop_scale_max' must be in (0.05, 1], "
                            f"got {self.local_crop_scale_max}")


def _head(embedding_dim: int, s: DINOConfig) -> nn.Module:
    import warnings

    from lightly.models.modules import DINOProjectionHead

    with warnings.catch_warnings():  # lightly's head uses torch's older weight_norm: a FutureWarning users can't act on
        warnings.simplefilter("ignore", FutureWarning)
        return DINOProjectionHead(embedding_dim, s.head_hidden_dim, s.bottleneck_dim, s.output_dim,
                                  batch_norm=s.head_batch_norm)


class DINOModel(nn.Module):
    """Student backbone + head and the frozen EMA teacher in one module (checkpoints carry the teacher and the
    loss's centre). One forward takes global and local views, so DDP sees a single call per step."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, s: DINOConfig, criterion: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, _head(embedding_dim, s)
        self.teacher_backbone = momentum_copy(backbone)
        # weight-normed heads do not deepcopy: build the teacher's and copy the weights
        self.teacher_head = _head(embedding_dim, s)
        self.teacher_head.load_state_dict(self.head.state_dict())
        self.teacher_head.requires_grad_(False)
        self.criterion = criterion  # holds the teacher centre (a buffer): saved and restored with the model
        # (step, total steps) of the last optimizer step: the schedules continue exactly after a resume
        self.register_buffer("progress", torch.zeros(2, dtype=torch.long))

    def forward(self, global_views: torch.Tensor, local_views: torch.Tensor | None = None):
        """-> (student outputs for all views, teacher outputs for the global views)."""
        student = self.head(self.backbone(global_views))
        if local_views is not None:
            student = torch.cat([student, self.head(self.backbone(local_views))])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(global_views))
        return student, teacher


@register("dino", config=DINOConfig)
class DINOTask(VisionTask):
    """DINO (Caron et al. 2021) with lightly's head, loss (centre all-reduced over processes) and momentum update."""

    def __init__(self, cfg: Config, accelerator):
        from lightly.loss import DINOLoss

        super().__init__(cfg, accelerator)
        s = self.settings = cfg.pretrain.dino
        criterion = DINOLoss(output_dim=s.output_dim, teacher_temp=s.teacher_temperature,
                             warmup_teacher_temp=s.warmup_teacher_temperature, student_temp=s.student_temperature,
                             center_momentum=s.center_momentum)
        self.finish_model(DINOModel(self.backbone, self.embedding_dim, s, criterion))
        self.local_augment = None
        if s.local_crops:
            size = s.local_crop_size or max(8, round(cfg.data.image_size * 3 / 7))
            self.local_augment = simclr_augment(cfg.pretrain.augment, size, cfg.data.channels,
                                                crop_scale=(0.05, s.local_crop_scale_max))
        self._progress: tuple[int, int] | None = None  # copy of model.progress: read once (one sync) per (re)start

    def teacher_temperature(self, step: int, total_steps: int) -> float:
        s = self.settings
        warmup = s.teacher_temperature_warmup_fraction * total_steps
        if warmup <= 0 or step >= warmup:
            return s.teacher_temperature
        return s.warmup_teacher_temperature + (s.teacher_temperature - s.warmup_teacher_temperature) * step / warmup

    def prepare(self, batch: dict) -> dict:
        """Two global views and, with multi-crop, `local_crops` small local views of every image."""
        out = super().prepare(batch)
        if self.local_augment:
            out["local_views"] = self.views(batch["images"], self.settings.local_crops, self.local_augment)
        return out

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        raw = self.model  # the unwrapped module: its buffers, not DDP's
        if self._progress is None:
            self._progress = tuple(raw.progress.tolist())
        with accelerator.autocast():
            student, teacher = model(batch["views"], batch.get("local_views"))
        n = batch["images"].shape[0]
        temp = self.teacher_temperature(*self._progress) if self._progress[1] else self.settings.warmup_teacher_temperature
        loss = raw.criterion(list(teacher.float().split(n)), list(student.float().split(n)), teacher_temp=temp)
        return loss, {"teacher_temperature": temp}

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        self._progress = (step, total_steps)
        model.progress.copy_(torch.tensor(self._progress))
        m = cosine_schedule(step, total_steps, self.settings.momentum_start, self.settings.momentum_end)
        update_momentum(model.backbone, model.teacher_backbone, m)
        update_momentum(model.head, model.teacher_head, m)
