"""Images/s of the project's SimCLR step vs lightly's documented recipe, side by side in one process.

Project: uint8 batch in memory -> two views by kornia on the device in one call -> one forward over both
views (channels_last) -> lightly NT-Xent -> LARS step, via the real SimCLRTask and engine pieces; views made
inline, or one batch ahead in a background thread (the default, prefetch.Ahead), against the model-only step
(views made outside the timing: the limit).
Peer: lightly's documented recipe: per-image `SimCLRTransform` in a DataLoader over PIL images,
`SimCLRProjectionHead`, `NTXentLoss`, two forwards, SGD.
Both: the same timm backbone (standard stem), image size and batch, fp32 and bf16 autocast.

usage: python benchmarks/vision_throughput.py [--backbone resnet18] [--image-size 32] [--batch 128] [--steps 12]
                                             [--device cuda] [--compile] [--precisions fp32 bf16]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
from PIL import Image

from ssl_pipeline.precision import timed_precisions


def project_step_fn(args, bf16: bool, mode: str):
    """mode: "overlap" (the engine's default: views of the next batch in a background thread), "inline"
    (views made before each step, on the trainer's thread) or "model" (views made once, outside the timing:
    the model-only step, the limit)."""
    from ssl_pipeline.config import Config
    from ssl_pipeline.engine import TrainPlan, build_optimizer, param_groups
    from ssl_pipeline.prefetch import Ahead, batch_seed, seeded
    from ssl_pipeline.tasks.simclr import SimCLRTask

    cfg = Config()
    cfg.data.source, cfg.data.image_size, cfg.data.channels = "synthetic", args.image_size, 3
    cfg.data.num_samples = args.batch * 4
    cfg.model.backbone = args.backbone
    cfg.pretrain.augment.crop_scale_min = 0.08

    device = torch.device(args.device)

    class Acc:
        num_processes = 1
        print = staticmethod(print)  # the task logs its data checks through it

        @staticmethod
        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    task = SimCLRTask(cfg, Acc())
    model = task.model.to(device).train()
    if args.compile:  # what pretrain.compile=true does
        model = torch.compile(model)
    opt = build_optimizer(param_groups(model, 1e-6), TrainPlan(batch_size=args.batch, epochs=1, max_steps=1,
                                                               learning_rate=0.3, optimizer="lars"))
    images = task.data.dataset.images.to(device)  # Accelerate places each batch on the device before the views
    g = torch.Generator().manual_seed(0)

    def raw_batches():
        while True:
            yield {"images": images[torch.randint(0, len(images), (args.batch,), generator=g).to(device)]}

    raw = raw_batches()
    if mode == "overlap":
        ahead = Ahead(task.prepare, device)
        batches = ahead.run(raw, lambda i: batch_seed(0, 0, 0, i))
    elif mode == "inline":
        batches = (seeded(task.prepare, b, batch_seed(0, 0, 0, i), device) for i, b in enumerate(raw))
    else:
        fixed = [task.prepare(next(raw)) for _ in range(4)]
        batches = (fixed[i % 4] for i in range(10 ** 9))

    def step(i):
        loss, _ = task.loss(model, next(batches), Acc())
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
    device = torch.device(args.device)
    model = torch.nn.Sequential(backbone, head).to(device).train()
    criterion = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9)

    def step(i):
        x0, x1 = (x.to(device, non_blocking=True) for x in next(loader))
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            z0, z1 = model(x0), model(x1)
        loss = criterion(z0.float(), z1.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def images_per_sec(step, args, warmup: int | None = None) -> float:
    for i in range(args.warmup if warmup is None else warmup):
        step(i)
    sync(args.device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(args.device)
    return args.steps * args.batch / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the four recipes (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers for lightly's per-image recipe")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the project's model (not the peer's)")
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                    help="default: fp32, and bf16 where the hardware computes in it (ssl_pipeline.precision)")
    return ap


def measure(args) -> list[dict]:
    """One row per precision: images/s of the model-only, inline, overlapped and lightly steps (printed too)."""
    torch.manual_seed(0)
    print(f"{args.backbone}, {args.image_size}x{args.image_size} RGB, batch {args.batch}, {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds of {args.steps} steps{', compiled' if args.compile else ''}")
    print(f"{'precision':<10} {'model-only':>11} {'inline':>8} {'overlap':>8} {'lightly':>8} "
          f"{'overlap/model':>14} {'overlap/lightly':>16}   (images/s)")
    rows = []
    for precision in args.precisions or timed_precisions(args.device):
        bf16 = precision == "bf16"
        steps = {"model": project_step_fn(args, bf16, "model"), "inline": project_step_fn(args, bf16, "inline"),
                 "overlap": project_step_fn(args, bf16, "overlap"), "lightly": lightly_step_fn(args, bf16)}
        for step in steps.values():
            for i in range(args.warmup):
                step(i)
        # rounds interleave the four recipes, so a drift in the (shared, virtual) machine's speed hits all alike;
        # the median round of each is reported
        speeds = {k: [] for k in steps}
        for _ in range(args.rounds):
            for k, step in steps.items():
                speeds[k].append(images_per_sec(step, args, warmup=0))
        model_only, inline, overlap, peer = (statistics.median(speeds[k]) for k in ("model", "inline", "overlap", "lightly"))
        print(f"{precision:<10} {model_only:>11.1f} {inline:>8.1f} {overlap:>8.1f} {peer:>8.1f} "
              f"{overlap / model_only:>14.2f} {overlap / peer:>15.2f}x", flush=True)
        rows.append({"backbone": args.backbone, "image_size": args.image_size, "batch": args.batch,
                     "precision": precision, "compile": args.compile, "model_only": model_only, "inline": inline,
                     "overlap": overlap, "lightly": peer, "overlap_over_model_only": overlap / model_only,
                     "overlap_over_lightly": overlap / peer})
    return rows


def main() -> None:
    measure(parser().parse_args())


if __name__ == "__main__":
    main()
