"""Is each file a readable image? Header parsing only (PIL), in parallel: threads for small folders, worker
processes for large ones (parsing is CPU work under the GIL; a million headers take ~90 s on one core).

This module imports no torch, so spawned workers start in well under a second."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from ..threads import job_cores

PROCESS_THRESHOLD = 50_000  # below it, starting worker processes costs more than it saves


def header_ok(path: str) -> bool:
    return why_unreadable(path) is None


def why_unreadable(path: str) -> str | None:
    """None for a file whose header Pillow parses (and of a size that is read: image_formats.too_large), else why
    not, in a few words for the error line (`cannot identify image file`, a truncated header, too many pixels)."""
    from PIL import Image

    from .image_formats import register_decoders, too_large

    register_decoders()  # in spawned workers too: HEIC files are images there as well
    try:
        with Image.open(path) as img:  # parses the header, not the pixels
            return too_large(img.size)
    except Exception as err:
        return str(err).replace(repr(path), "").replace(path, "").strip(" :") or type(err).__name__


def _chunk_ok(paths: list[str]) -> list[bool]:
    return [header_ok(p) for p in paths]


def readable(files: list[str], workers: int | None = None) -> list[bool]:
    """header_ok for every file, in order."""
    workers = workers or min(8, job_cores())
    if len(files) < PROCESS_THRESHOLD or workers < 2:
        with ThreadPoolExecutor(max_workers=8) as pool:  # opens wait on I/O (network file systems, cold caches)
            return list(pool.map(header_ok, files, chunksize=256))
    import multiprocessing

    chunk = 4096
    chunks = [files[i: i + chunk] for i in range(0, len(files), chunk)]
    # spawn, not fork: the caller may already run threads (Accelerate, gloo, OpenMP), which fork does not copy safely
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [ok for part in pool.map(_chunk_ok, chunks) for ok in part]
