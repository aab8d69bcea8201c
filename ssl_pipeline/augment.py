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
            ops.append(ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_p))
        else:  # saturation and hue have no meaning for one channel
            ops.append(ColorJitter(0.8 * s, 0.8 * s, p=cfg.jitter_p))
    if channels == 3 and cfg.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
    if cfg.blur_p > 0:
        k = max(3, (image_size // 10) | 1)  # ~10 % of the image side, odd, as in SimCLR
        ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=cfg.blur_p))
    return ClampedAugment(*ops)


# RGB -> YIQ (NTSC): Y is luma, (I, Q) the chroma plane that a hue shift rotates
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_LUMA = _YIQ[0]


class ColorJitter(nn.Module):
    """kornia's ColorJitter on a batch, ~10x cheaper: the same per-image factors (additive brightness,
    multiplicative contrast, saturation and hue), applied with probability `p` per image, in a random order of
    the four per batch, clamped to [0, 1] after each.

    Why not kornia's own: it converts RGB -> HSV -> RGB twice (saturation and hue), 25 of the 42 ms that the
    views of a 256-image batch at 32 px took on 2 CPU cores (the model step there is ~260 ms). Here saturation
    is a blend with the grey image (torchvision's formula) and hue a rotation of the chroma plane in YIQ
    (NVIDIA DALI's hue op): each a 3x3 matrix per image, ~2 ms together. Hue in turns ([-0.5, 0.5])."""

    def __init__(self, brightness: float, contrast: float, saturation: float = 0.0, hue: float = 0.0, p: float = 1.0):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p
        self.yiq, self.yiq_inv = _YIQ.float(), torch.linalg.inv(_YIQ).float()  # per-image matrices are made on
        # the CPU (n x 3 x 3, tiny) and moved to the images' device

    def _factors(self, n: int, spread: float, applied: torch.Tensor) -> torch.Tensor:
        u = torch.empty(n).uniform_(max(0.0, 1.0 - spread), 1.0 + spread)
        return torch.where(applied, u, torch.ones(n))

    def _mix(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Per-image 3x3 colour matrix `m` (B, 3, 3) applied to every pixel."""
        return torch.einsum("bij,bjhw->bihw", m.to(x.dtype), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        applied = torch.rand(n) < self.p
        brightness = self._factors(n, self.brightness, applied) - 1.0
        contrast = self._factors(n, self.contrast, applied)
        saturation = self._factors(n, self.saturation, applied) if self.saturation else None
        hue = torch.where(applied, torch.empty(n).uniform_(-self.hue, self.hue), torch.zeros(n)) if self.hue else None
        order = torch.randperm(4).tolist()
        x = x.clamp(0.0, 1.0)
        for k in order:
            if k == 0:
                x = x + brightness.to(device).view(-1, 1, 1, 1)
            elif k == 1:
                x = x * contrast.to(device).view(-1, 1, 1, 1)
            elif k == 2 and saturation is not None:  # s * x + (1 - s) * grey
                s = saturation.view(-1, 1, 1)
                m = s * torch.eye(3) + (1 - s) * _LUMA.float().view(1, 1, 3).expand(n, 3, 3)
                x = self._mix(x, m.to(device))
            elif k == 3 and hue is not None:
                theta = hue * 2 * torch.pi
                rot = torch.zeros(n, 3, 3)
                rot[:, 0, 0] = 1.0
                rot[:, 1, 1], rot[:, 1, 2] = theta.cos(), -theta.sin()
                rot[:, 2, 1], rot[:, 2, 2] = theta.sin(), theta.cos()
                m = torch.where(applied.view(-1, 1, 1), self.yiq_inv @ rot @ self.yiq, torch.eye(3))  # exact when off
                x = self._mix(x, m.to(device))
            else:
                continue
            x = x.clamp(0.0, 1.0)
        return x


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


class StrongAugment(nn.Module):
    """FixMatch's strong view (Sohn et al. 2020): the weak crop + flip, RandAugment (`ops` random operations at
    magnitude `magnitude`, kornia) and a cutout; float [0, 1] in and out.

    kornia's RandAugment draws one operation sequence per call, so it runs on chunks of `chunk` images to give
    a batch many different sequences; its colour operations need RGB, so a grey batch passes through it as three
    equal channels and comes back as their mean."""

    def __init__(self, image_size: int, ops: int = 2, magnitude: int = 10, chunk: int = 32):
        super().__init__()
        import kornia.augmentation as K
        from kornia.augmentation.auto import RandAugment

        self.weak = weak_augment(image_size)
        self.rand_augment = RandAugment(n=ops, m=magnitude)
        self.cutout = K.RandomErasing(scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.5, p=1.0)
        self.chunk = chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.weak(x)
        grey = x.shape[1] == 1
        if grey:
            x = x.expand(-1, 3, -1, -1)
        x = torch.cat([self.rand_augment(part) for part in x.split(self.chunk)]).clamp_(0.0, 1.0)
        if grey:
            x = x.mean(1, keepdim=True)
        return self.cutout(x)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float inputs pass through."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD
