"""SimCLR: two augmented views per image, one forward over both, NT-Xent with negatives from all processes."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..augment import normalize, simclr_augment, to_unit_float
from ..config import Config
from ..data.images import load_images
from ..data.splits import collate_batch
from ..engine import Task
from ..errors import UserError
from ..export import save_vision_encoder
from ..models.vision import check_image_size, create_backbone
from .registry import register


class SimCLRModel(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@register("simclr")
class SimCLRTask(Task):
    """SimCLR (Chen et al. 2020): two views per image, one forward over both, NT-Xent over all processes."""

    modality = "vision"

    def __init__(self, cfg: Config, accelerator):
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.data = load_images(cfg.data, "pretrain")
        if cfg.model.init_from:  # continued pretraining: the architecture comes from the checkpoint
            from ..models.init import vision_init

            with accelerator.main_process_first():  # a hub download happens once
                backbone, name, small_stem = vision_init(cfg)
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=name, small_stem=small_stem))
        else:
            backbone = create_backbone(cfg.model.backbone, cfg.data.channels, cfg.model.small_stem)
        self.cfg = cfg
        self.embedding_dim = check_image_size(backbone, cfg.data.channels, cfg.data.image_size)
        head = SimCLRProjectionHead(self.embedding_dim, cfg.model.projection_hidden_dim, cfg.model.projection_dim)
        self.model = SimCLRModel(backbone, head)
        if cfg.pretrain.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.augment = simclr_augment(cfg.pretrain.augment, cfg.data.image_size, cfg.data.channels)
        # gather_distributed: negatives come from every process, with gradients flowing back to each
        self.criterion = NTXentLoss(temperature=cfg.pretrain.temperature,
                                    gather_distributed=accelerator.num_processes > 1)

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        n = len(self.data)
        if self.cfg.pretrain.drop_last and batch_size > n:
            raise UserError(f"pretrain.batch_size={batch_size} is larger than the {n} training images "
                            "(with pretrain.drop_last=true no batch would be formed)")
        return DataLoader(self.data.dataset, batch_size=batch_size, shuffle=True, drop_last=self.cfg.pretrain.drop_last,
                          collate_fn=collate_batch, num_workers=self.cfg.data.num_workers, generator=generator,
                          persistent_workers=self.cfg.data.num_workers > 0)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> normalised float (2B, C, H, W): first B = view 1, last B = view 2."""
        x = to_unit_float(images)
        x = self.augment(torch.cat([x, x]))
        x = normalize(x)
        if self.cfg.pretrain.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        with torch.no_grad():
            x = self.views(batch["images"])
        with accelerator.autocast():
            z = model(x)
        z0, z1 = z.float().chunk(2)
        return self.criterion(z0, z1), {}

    def export(self, model: nn.Module, path) -> None:
        save_vision_encoder(model.backbone, path, self.cfg)
