"""SimCLR view augmentations on whole batches, on the training device, via kornia.

kornia samples independent parameters for every image of the batch, so one call over the batch repeated
twice yields two independently augmented views of each image without any per-image Python work.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import AugmentConfig

MEAN, STD = 0.5, 0.5  # images in [0, 1] are mapped to about [-1, 1] before the backbone


def simclr_augment(cfg: AugmentConfig, image_size: int, channels: int,
                   crop_scale: tuple[float, float] | None = None) -> nn.Module:
    """Random resized crop, flip, colour jitter, grayscale and optional blur; float [0, 1] in and out.

    `crop_scale`: the crop's area range, (crop_scale_min, 1) by default (DINO's small local crops pass their own)."""
    import kornia.augmentation as K

    s = cfg.jitter_strength
    ops: list[nn.Module] = [
        K.RandomResizedCrop((image_size, image_size), scale=crop_scale or (cfg.crop_scale_min, 1.0)),
        K.RandomHorizontalFlip(p=cfg.flip_p),
    ]
    if cfg.jitter_p > 0 and s > 0:
        if channels == 3:
            ops.append(K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_p))
        else:  # saturation and hue have no meaning for one channel
            ops.append(K.ColorJitter(0.8 * s, 0.8 * s, p=cfg.jitter_p))
    if channels == 3 and cfg.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur_p > 0:
        k = max(3, (image_size // 10) | 1)  # ~10 % of the image side, odd, as in SimCLR
        ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=cfg.blur_p))
    return ClampedAugment(*ops)


class ClampedAugment(nn.Sequential):
    """Runs the ops in order and clamps to [0, 1] (interpolation and blur can overshoot by rounding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).clamp_(0.0, 1.0)


def weak_augment(image_size: int) -> nn.Module:
    """Crop + flip used for supervised training and fine-tuning on labeled images."""
    import kornia.augmentation as K

    return ClampedAugment(
        K.RandomResizedCrop((image_size, image_size), scale=(0.6, 1.0)),
        K.RandomHorizontalFlip(),
    )


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float inputs pass through."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD
