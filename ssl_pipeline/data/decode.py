"""Decode a folder's (or an HF dataset's) images once, in threads, and keep them in memory.

Otherwise those sources are decoded per sample in DataLoader workers, every epoch. A folder of camera photos
(12-megapixel JPEGs, ~140 ms each at full size, ~22 ms with the JPEG decoder's own downscaling) then holds every
pretraining step for seconds while a 32-px model step takes a fraction of one — and the 1,000-step floor for small
folders means hundreds of passes. Decoded once at `data.image_size` an image takes channels x size x size bytes
(3 KiB at 32 px): every later epoch, the leakage guard and fine-tuning read memory. Pillow releases the GIL while it
decodes and resizes, so a thread pool scales over the cores without worker processes or pickling.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from ..config import DataConfig
from ..progress import first_process, progress, say
from ..threads import job_cores, local_processes

SAY_DECODED_FROM = 1000  # images: below this, decoding is not worth a line
DECODE_PROGRESS_AFTER = 10.0  # seconds: 3,000 emoji decode in 1 s (no bar); 1,000 camera photos take ~20 s


def decoded_gib(n: int, cfg: DataConfig) -> float:
    """GiB that `n` images take decoded at the configured size and channels."""
    return n * cfg.channels * cfg.image_size ** 2 / 2 ** 30


def decoded_once(split, cfg: DataConfig, what: str, always: bool = False):
    """`split` (an ImageSplit) with its images decoded into a TensorImages, when they fit `data.in_memory_gb` or
    `always` (fine-tuning: its grid reuses them in every cell); else as it is, said once. Sources already in memory
    (embedded, torchvision, synthetic) and streams pass through."""
    from .images import DecodedImages, TensorImages

    if split is None or not isinstance(split.dataset, DecodedImages):
        return split
    n = len(split.dataset)
    gib = decoded_gib(n, cfg)
    # the limit depends on the data and the config only, never on free memory: a resumed run reads its data alike
    if not always and gib > cfg.in_memory_gb:
        say(f"{what}: {n:,} images take {gib:.1f} GiB decoded at {cfg.image_size} px, more than data.in_memory_gb="
            f"{cfg.in_memory_gb:g}: they are decoded again every epoch, in data.num_workers={cfg.num_workers} "
            "worker(s); raise data.in_memory_gb to decode them once")
        return split
    images = decode_all(split.dataset, what)
    return dataclasses.replace(split, dataset=TensorImages(images, split.dataset.labels))


def decode_all(dataset, what: str) -> torch.Tensor:
    """uint8 (N, C, S, S) of every item of a DecodedImages, decoded in a pool of threads (this process's share of the
    cores); an unreadable file stops it with the file named (DecodedImages' error)."""
    n = len(dataset)
    out = torch.empty((n, dataset.channels, dataset.image_size, dataset.image_size), dtype=torch.uint8)
    threads = max(1, job_cores() // local_processes())
    bar = progress(total=n, desc=f"decoding {what}", disable=not first_process(), delay=DECODE_PROGRESS_AFTER)
    start = time.perf_counter()

    def one(i: int) -> None:
        out[i] = dataset[i]["images"]

    chunk = 256  # map in chunks: the bar moves and an error surfaces without queueing every image first
    with ThreadPoolExecutor(threads) as pool:
        for lo in range(0, n, chunk):
            list(pool.map(one, range(lo, min(lo + chunk, n))))
            bar.update(min(chunk, n - lo))
    bar.close()
    if n >= SAY_DECODED_FROM:
        say(f"{what}: decoded {n:,} images once into memory ({out.numel() / 2 ** 20:,.1f} MiB at "
            f"{dataset.image_size} px) in {time.perf_counter() - start:.0f} s")
    return out
