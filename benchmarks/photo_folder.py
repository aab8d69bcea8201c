"""Seconds to feed E pretraining epochs from a folder of camera photos, the project's way against lightly's recipe.

Data only: the model step is the same for both (vision_throughput.py measures it); what differs is how a folder of
12-megapixel JPEGs becomes 32-px training images.
Project: the folder source (listing + header check + carve), then the images decoded once in threads with the JPEG
decoder's own downscaling (`data/decode.py`), then every epoch's batches indexed from memory, as the pretraining task
does. Also shown: the same per-epoch path the project used before (decoding every epoch in DataLoader workers),
with and without the reduced-scale JPEG decode, i.e. what each of the two changes gives.
Peer: lightly's documented recipe — `LightlyDataset(input_dir)` with `SimCLRTransform(input_size=32)` in a
DataLoader with the same workers: every image decoded at full size, every epoch.

usage: python benchmarks/photo_folder.py [--photos 160] [--epochs 3] [--workers 2] [--dir DIR (kept; reused)]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_photos(root: Path, n: int) -> None:
    """n 4032x3024 JPEGs (quality 90, ~2 MB: a phone camera's size) in train/ (2 class folders) and 8 more in test/
    (so nothing is carved: both sides read the same train/ images): crops of scikit-learn's two sample photos,
    upscaled, with sensor-like noise so the files do not compress like flat colour."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    bases = [Image.fromarray(img).resize((4232, 3224), Image.BICUBIC) for img in load_sample_images().images]
    for i in range(n + 8):
        c, split = i % 2, "train" if i < n else "test"
        (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
        x0, y0 = (int(v) for v in rng.integers(0, 200, 2))
        arr = np.asarray(bases[c].crop((x0, y0, x0 + 4032, y0 + 3024)), dtype=np.int16)
        arr = arr + rng.integers(-6, 7, arr.shape, dtype=np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / split / f"c{c}" / f"{i:05d}.jpg", quality=90)


def epochs_from_loader(loader, epochs: int) -> list[float]:
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - t0)
    return times


def project(root: Path, args, decode_once: bool, reduced_jpeg: bool) -> tuple[float, list[float]]:
    """(seconds before the first epoch, seconds per epoch) of the pretraining data path."""
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data import folders, images
    from ssl_pipeline.data.decode import decoded_once
    from ssl_pipeline.data.images import TensorImages, load_images
    from ssl_pipeline.data.splits import collate_batch

    images._READABLE.clear()  # the header check's and the listing's memos: each variant pays for its own
    folders._LISTED.clear()
    cfg = DataConfig(source="folder", root=str(root), image_size=32, channels=3, num_workers=args.workers,
                     in_memory_gb=8.0 if decode_once else 0.0)
    from PIL import JpegImagePlugin

    real_draft = JpegImagePlugin.JpegImageFile.draft
    if not reduced_jpeg:  # the full-size decode of before: PIL's draft mode turned into a no-op
        JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None
    t0 = time.perf_counter()
    split = decoded_once(load_images(cfg, "pretrain"), cfg, "pretraining images")
    setup = time.perf_counter() - t0
    workers = 0 if isinstance(split.dataset, TensorImages) else args.workers
    loader = torch.utils.data.DataLoader(split.dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                                         collate_fn=collate_batch, num_workers=workers,
                                         persistent_workers=workers > 0)
    times = epochs_from_loader(loader, args.epochs)
    JpegImagePlugin.JpegImageFile.draft = real_draft
    return setup, times


def lightly(root: Path, args) -> list[float]:
    from lightly.data import LightlyDataset
    from lightly.transforms import SimCLRTransform

    dataset = LightlyDataset(input_dir=str(root / "train"), transform=SimCLRTransform(input_size=32, gaussian_blur=0.0))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0)
    return epochs_from_loader(loader, args.epochs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=160)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "photos"
        if not root.exists():
            t0 = time.perf_counter()
            write_photos(root, args.photos)
            print(f"wrote {args.photos} 4032x3024 JPEGs in {time.perf_counter() - t0:.0f} s", flush=True)
        n = sum(1 for _ in (root / "train").rglob("*.jpg"))
        rows = [("lightly recipe (full-size decode every epoch)", 0.0, lightly(root, args))]
        for name, once, reduced in (("project, full-size decode every epoch (as before, with the cheaper EXIF check and resize)", False, False),
                                    ("project, reduced-scale JPEG decode every epoch", False, True),
                                    ("project (decoded once, reduced scale; the default)", True, True)):
            setup, times = project(root, args, once, reduced)
            rows.append((name, setup, times))
        print(f"{n} photos, {args.epochs} epochs, batch {args.batch}, {args.workers} DataLoader workers / decode "
              "threads, 32 px")
        peer_total = sum(rows[0][2])
        for name, setup, times in rows:
            total = setup + sum(times)
            print(f"  {name}: {total:.1f} s (start {setup:.1f} s, epochs {' / '.join(f'{t:.1f}' for t in times)} s) "
                  f"-> {peer_total / total:.2f}x the lightly recipe's speed", flush=True)


if __name__ == "__main__":
    main()
