"""Batched on-device SimCLR augmentation: independent per-sample parameters, shape/dtype/range kept."""
import torch

from ssl_pipeline.augment import simclr_augment
from ssl_pipeline.config import AugmentConfig, Config
from ssl_pipeline.tasks.simclr import SimCLRTask


def _images(n=64, c=3, s=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, c, s, s, generator=g)


def test_shape_dtype_range_rgb_and_gray():
    for c in (1, 3):
        aug = simclr_augment(AugmentConfig(blur_p=0.5), 32, c)
        x = _images(c=c)
        y = aug(x)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert y.min() >= 0.0 and y.max() <= 1.0


def test_per_sample_parameters_differ():
    torch.manual_seed(0)
    aug = simclr_augment(AugmentConfig(), 32, 3)
    x = _images(1).expand(32, -1, -1, -1).contiguous()  # the same image 32 times
    y = aug(x)
    flat = y.flatten(1)
    distinct = {tuple(row.round(decimals=4).tolist()[:50]) for row in flat}
    assert len(distinct) > 25  # independent crops/jitters per sample, not one set of params for the batch
    crop = aug[0]
    assert crop._params["src"].shape[0] == 32 and not torch.allclose(crop._params["src"][0], crop._params["src"][1])


def test_two_views_differ_and_are_normalised():
    torch.manual_seed(0)
    cfg = Config()
    cfg.data.source, cfg.data.image_size, cfg.data.channels = "synthetic", 16, 3
    cfg.data.num_samples = 8
    cfg.model.backbone = "ssl_cnn6"

    class _Acc:
        num_processes = 1
        print = staticmethod(print)  # the task logs its data checks through it

    task = SimCLRTask(cfg, _Acc())
    images = (torch.rand(8, 3, 16, 16) * 255).to(torch.uint8)
    v = task.views(images)
    assert v.shape == (16, 3, 16, 16)
    assert not torch.allclose(v[:8], v[8:])
    assert v.min() >= -1.0 - 1e-6 and v.max() <= 1.0 + 1e-6


def test_color_jitter_identity_grey_and_hue_keep_their_meaning():
    from ssl_pipeline.augment import ColorJitter

    torch.manual_seed(0)
    x = _images(16)
    assert torch.equal(ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.0)(x), x)  # p=0: untouched
    neutral = ColorJitter(0.0, 0.0, 0.0, 1e-9)(x)  # factors 1, hue ~0: the colour matrices are the identity
    assert torch.allclose(neutral, x, atol=1e-5)
    # saturation 0 (brightness and contrast forced to identity below): every channel equals the luma
    jit = ColorJitter(0.0, 0.0, 1.0)
    jit._factors = lambda n, spread, applied: torch.zeros(n) if spread == 1.0 else torch.ones(n)
    g = jit(x)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(g[:, 0], luma, atol=1e-5) and torch.allclose(g[:, 1], g[:, 2], atol=1e-5)
    # a hue shift keeps luma (before clamping) and moves colour; a grey image has no hue to shift
    mid = 0.45 + 0.1 * _images(16)  # chroma small enough that no rotation leaves [0, 1]
    h = ColorJitter(0.0, 0.0, 0.0, 0.5)(mid)
    assert torch.allclose(0.299 * h[:, 0] + 0.587 * h[:, 1] + 0.114 * h[:, 2],
                          0.299 * mid[:, 0] + 0.587 * mid[:, 1] + 0.114 * mid[:, 2], atol=2e-3)
    assert (h - mid).abs().mean() > 0.005
    flat = torch.full((4, 3, 8, 8), 0.4)
    assert torch.allclose(ColorJitter(0.0, 0.0, 0.0, 0.5)(flat), flat, atol=1e-5)
    # brightness is additive and contrast multiplicative, as in kornia; one channel works
    one = _images(64, c=1)
    y = ColorJitter(0.4, 0.4)(one)
    assert y.shape == one.shape and y.min() >= 0 and y.max() <= 1 and not torch.allclose(y, one)
