"""Vision encoders: any timm backbone (optionally with a small-image stem) wrapped to map images to embeddings."""
from __future__ import annotations

import torch
from torch import nn

from ..augment import normalize, to_unit_float
from ..errors import UserError
from . import small_cnn  # noqa: F401  (registers the `ssl_cnn*` models with timm)


def apply_small_stem(model: nn.Module, in_chans: int) -> nn.Module:
    """3x3 stride-1 first conv and no max-pool, as SimCLR/MoCo do on 32 px images (ResNet-style models)."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise UserError(f"model.small_stem=true needs a ResNet-style backbone (conv1 + maxpool); "
                        f"{type(model).__name__} has none")
    model.conv1 = nn.Conv2d(in_chans, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def create_backbone(name: str, in_chans: int, small_stem: bool = False) -> nn.Module:
    """timm model by name, headless (num_classes=0), random init: pretraining starts from scratch."""
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:3]
        hint = f" (e.g. {', '.join(close)})" if close else ""
        raise UserError(f"model.backbone '{name}' is not a timm model{hint}")
    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)
    if small_stem:
        apply_small_stem(model, in_chans)
    return model


def check_image_size(backbone: nn.Module, channels: int, image_size: int) -> int:
    """Runs one dummy batch: fails clearly when the image is too small, returns the embedding width."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(2, channels, image_size, image_size))
    except Exception as err:  # timm raises RuntimeError or AssertionError depending on the model
        raise UserError(f"data.image_size={image_size} is too small for model.backbone: "
                        f"{(str(err).splitlines() or [type(err).__name__])[0]}") from None
    finally:
        backbone.train(was_training)
    if out.ndim != 2:
        raise UserError(f"model.backbone returns shape {tuple(out.shape)}, expected (batch, features)")
    return out.shape[1]


class VisionEncoder(nn.Module):
    """Float images (B, C, H, W) in [0, 1] (or uint8) -> embeddings (B, D); normalisation included."""

    def __init__(self, backbone: nn.Module, spec: dict):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.embedding_dim = spec["embedding_dim"]
        self.channels_last = False

    def use_channels_last(self) -> "VisionEncoder":
        """NHWC weights and inputs from here on: faster convolutions on CPU and GPU (a fine-tune step of ssl_cnn6
        on 2 CPU cores: 1.25x in bf16, 1.26x in fp32); the numbers computed are the same up to rounding."""
        self.backbone.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = normalize(to_unit_float(images))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def preprocess(self, images) -> torch.Tensor:
        """PIL images, file paths, HxW / HxWxC arrays, or uint8 tensors (C,H,W) / (B,C,H,W) -> uint8 (B, C, S, S)
        at the size and channels the encoder was trained on (what `ssl_encoder.json` records)."""
        import numpy as np
        from PIL import Image

        from ..data.images import pil_to_tensor, to_size

        size, channels = self.spec["image_size"], self.spec["channels"]
        if isinstance(images, torch.Tensor):
            batch = images if images.ndim == 4 else images[None]
            if batch.dtype != torch.uint8:
                raise UserError("encode() takes uint8 tensors (0-255); call the encoder itself on float images in [0, 1]")
            return to_size(batch, size, channels)
        if isinstance(images, (str, Image.Image, np.ndarray)):
            images = [images]
        out = []
        for img in images:
            if isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
                img = img.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C), as PIL expects
            if isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[-1] == 1:
                img = img[..., 0]
            if isinstance(img, np.ndarray) and img.dtype != np.uint8:
                img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8) if img.max() <= 1.0 else img.astype(np.uint8)
            out.append(pil_to_tensor(img, size, channels))
        return torch.stack(out)

    @torch.no_grad()
    def encode(self, images, batch_size: int = 256) -> torch.Tensor:
        """Embeddings (N, D) of images in any common form, preprocessed as at training time (see `preprocess`)."""
        x = self.preprocess(images)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = [self(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.embedding_dim)
