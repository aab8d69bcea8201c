"""`ssl_cnn6`: a 6-conv-layer CNN for small (28-32 px) images, registered with timm.

Registering it with timm keeps the "any timm backbone" contract: `timm.create_model("ssl_cnn6")` works in
any process that imported ssl_pipeline, and CPU recipes get a backbone that trains many epochs per hour.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.models import register_model


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Six 3x3 conv-BN-ReLU layers, widths w, 2w, 2w, 4w, 4w, 8w, downsampling at layers 2 and 4, global pool.

    Downsampling early keeps most compute at 1/4 and 1/16 resolution: ~36 M multiply-adds per 28 px image at
    w=32, so contrastive pretraining on a 2-core CPU sees tens of epochs of Fashion-MNIST per hour.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 0, width: int = 32, **_):
        super().__init__()
        w = width
        plan = [(in_chans, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 8 * w, 1)]
        self.features = nn.Sequential(*[_block(cin, cout, stride) for cin, cout, stride in plan])
        self.num_features = 8 * w
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.forward_features(x)).flatten(1))


@register_model
def ssl_cnn6(pretrained: bool = False, **kwargs) -> SmallCNN:
    return SmallCNN(width=32, **kwargs)


@register_model
def ssl_cnn6_wide(pretrained: bool = False, **kwargs) -> SmallCNN:
    return SmallCNN(width=64, **kwargs)


@register_model
def ssl_cnn6_narrow(pretrained: bool = False, **kwargs) -> SmallCNN:
    """A quarter of ssl_cnn6's parameters: a compact distillation student (finetune.student)."""
    return SmallCNN(width=16, **kwargs)


@register_model
def ssl_cnn6_half(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Under half of ssl_cnn6's parameters (0.47x): the largest student that still halves the encoder."""
    return SmallCNN(width=22, **kwargs)
