"""Seconds to index a folder of N small images (recursive scan + header check of every file).

usage: python benchmarks/folder_index.py [--n 100000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.images import load_images

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        for c in range(args.classes):
            (Path(tmp) / f"class{c}").mkdir()
        base = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(64)]
        for i in range(args.n):
            base[i % 64].save(Path(tmp) / f"class{i % args.classes}" / f"{i:06d}.png", compress_level=1)
        made = time.time() - t0
        t0 = time.time()
        split = load_images(DataConfig(source="folder", root=tmp, image_size=16, channels=3), "pretrain")
        took = time.time() - t0
        print(f"wrote {args.n} PNGs in {made:.0f} s; indexed (scan + header check + stratified split) in {took:.1f} s "
              f"-> {len(split)} training images")


if __name__ == "__main__":
    main()
