"""Seconds to index a folder of N tiny images: the project's parallel listing + header check + stratified split,
against the serial recipe side by side (os.walk, then PIL header parsing one file after another).

The page cache is warm for both (the files were just written); on a network file system the listing gains more.

usage: python benchmarks/folder_index.py [--n 1000000] [--classes 100] [--dir DIR (kept; reused if it exists)]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_folder(root: Path, n: int, classes: int) -> float:
    """n 16x16 PNGs in `classes` class folders (64 distinct images, written as bytes: fast to create). Each file ends
    in its own 4-byte number after the image, so no two files are copies and all have the same size: the worst
    case for the carve's copy check, which then reads and hashes every file."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(64):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
        blobs.append(buf.getvalue())
    t0 = time.time()
    for c in range(classes):
        (root / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with open(root / f"class{i % classes:03d}" / f"{i:07d}.png", "wb") as fh:
            fh.write(blobs[i % 64] + i.to_bytes(4, "little"))
    return time.time() - t0


def serial_index(root: Path) -> tuple[float, float, int]:
    """The plain recipe: os.walk, then Image.open on every file in turn."""
    from ssl_pipeline.data.headers import header_ok
    from ssl_pipeline.data.image_formats import image_extensions

    suffixes = image_extensions()
    t0 = time.time()
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                   if f.lower().endswith(suffixes))
    listed = time.time() - t0
    t0 = time.time()
    ok = sum(header_ok(f) for f in files)
    return listed, time.time() - t0, ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--dir", default=None, help="write the folder here and keep it (reused when it already exists)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.headers import readable
    from ssl_pipeline.data import folders, images
    from ssl_pipeline.data.images import _list_images, load_images

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        made = write_folder(root, args.n, args.classes) if not (root / "class000").is_dir() else 0.0
        print(f"{args.n} PNGs of 16x16 in {args.classes} class folders (written in {made:.0f} s), "
              f"{os.cpu_count()} CPU cores")
        t0 = time.time()
        files = _list_images(root)
        listed = time.time() - t0
        t0 = time.time()
        ok = sum(readable(files))
        checked = time.time() - t0
        folders._LISTED.clear()  # end to end from a cold start of the process (it caches listings and verdicts)
        images._READABLE.clear()
        t0 = time.time()
        split = load_images(DataConfig(source="folder", root=str(root), image_size=16, channels=3), "pretrain")
        whole = time.time() - t0
        from ssl_pipeline.data.copies import file_copy_keys

        t0 = time.time()
        distinct = len(set(file_copy_keys(files)))
        copies = time.time() - t0
        s_listed, s_checked, s_ok = serial_index(root)
        assert ok == s_ok == len(files), (ok, s_ok, len(files))
        print(f"{'':<28} {'list':>8} {'headers':>8} {'total':>8}")
        print(f"{'project (parallel)':<28} {listed:>7.1f}s {checked:>7.1f}s {listed + checked:>7.1f}s")
        print(f"{'serial (os.walk + PIL)':<28} {s_listed:>7.1f}s {s_checked:>7.1f}s {s_listed + s_checked:>7.1f}s")
        print(f"speed-up {(s_listed + s_checked) / (listed + checked):.2f}x; load_images(pretrain) end to end "
              f"(list + check + stratified split that keeps copies together): {whole:.1f} s -> {len(split)} "
              f"training images; of that, the copy check alone {copies:.1f} s ({distinct} distinct files)")


if __name__ == "__main__":
    main()
