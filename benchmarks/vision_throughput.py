"""Images/s of the project's SimCLR step vs lightly's documented recipe, side by side in one process.

Project: uint8 batch in memory -> two views by kornia on the device in one call -> one forward over both
views (channels_last) -> lightly NT-Xent -> LARS step, via the real SimCLRTask and engine pieces.
Peer: lightly's documented recipe: per-image `SimCLRTransform` in a DataLoader over PIL images,
`SimCLRProjectionHead`, `NTXentLoss`, two forwards, SGD.
Both: the same timm backbone (standard stem), image size and batch, fp32 and bf16 autocast.

usage: python benchmarks/vision_throughput.py [--backbone resnet18] [--image-size 32] [--batch 128] [--steps 12]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
from PIL import Image


def project_step_fn(args, bf16: bool):
    from ssl_pipeline.config import Config
    from ssl_pipeline.engine import TrainPlan, build_optimizer, param_groups
    from ssl_pipeline.tasks.simclr import SimCLRTask

    cfg = Config()
    cfg.data.source, cfg.data.image_size, cfg.data.channels = "synthetic", args.image_size, 3
    cfg.data.num_samples = args.batch * 4
    cfg.model.backbone = args.backbone
    cfg.pretrain.augment.crop_scale_min = 0.08

    class Acc:
        num_processes = 1
        print = staticmethod(print)  # the task logs its data checks through it

        @staticmethod
        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    task = SimCLRTask(cfg, Acc())
    model = task.model.train()
    opt = build_optimizer(param_groups(model, 1e-6), TrainPlan(batch_size=args.batch, epochs=1, max_steps=1,
                                                               learning_rate=0.3, optimizer="lars"))
    images = task.data.dataset.images

    def step(i):
        idx = torch.randint(0, len(images), (args.batch,))
        loss, _ = task.loss(model, {"images": images[idx]}, Acc())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def lightly_step_fn(args, bf16: bool):
    import timm
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
           for _ in range(args.batch * 4)]
    transform = SimCLRTransform(input_size=args.image_size, gaussian_blur=0.0)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 10 ** 9

        def __getitem__(self, i):
            return transform(pil[i % len(pil)])

    loader = iter(torch.utils.data.DataLoader(DS(), batch_size=args.batch, num_workers=args.workers, shuffle=False,
                                              drop_last=True, persistent_workers=args.workers > 0))
    backbone = timm.create_model(args.backbone, num_classes=0, pretrained=False)
    head = SimCLRProjectionHead(backbone.num_features, 2048, 128)
    model = torch.nn.Sequential(backbone, head).train()
    criterion = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9)

    def step(i):
        x0, x1 = next(loader)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            z0, z1 = model(x0), model(x1)
        loss = criterion(z0.float(), z1.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def images_per_sec(step, args) -> float:
    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    return args.steps * args.batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for lightly's per-image recipe")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"{args.backbone}, {args.image_size}x{args.image_size} RGB, batch {args.batch}, {torch.get_num_threads()} "
          f"threads, {args.steps} timed steps")
    print(f"{'precision':<10} {'project img/s':>14} {'lightly img/s':>14} {'ratio':>7}")
    for bf16 in (False, True):
        ours = images_per_sec(project_step_fn(args, bf16), args)
        peer = images_per_sec(lightly_step_fn(args, bf16), args)
        print(f"{'bf16' if bf16 else 'fp32':<10} {ours:>14.1f} {peer:>14.1f} {ours / peer:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
