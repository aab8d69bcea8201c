"""Which examples are the same one stored twice, so the test carve can keep them on one side (data/splits.py).

A folder holds copies when an image was saved twice or is linked from two class folders (icon themes, scraped
sets); a table holds them as repeated rows. A carved test split with a copy of a training example scores
memory, not generalisation, and flatters every row of the report.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor


def _identities(paths: list[str]) -> list[tuple]:
    """((device, inode) of the file each path reaches, symbolic links followed, or None if unreadable; size)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((None, -1))
            continue
        out.append(((st.st_dev, st.st_ino), st.st_size))
    return out


def _digests(paths: list[str]) -> list:
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                out.append(hashlib.blake2b(f.read(), digest_size=16).digest())
        except OSError:
            out.append(None)
    return out


def _chunked(fn, items: list, threads: int, chunk: int = 2048) -> list:
    """fn over `items` a chunk per task (a future per file costs more than reading a small file)."""
    parts = [items[i: i + chunk] for i in range(0, len(items), chunk)]
    if len(parts) <= 1:
        return fn(items)
    with ThreadPoolExecutor(threads) as pool:  # opens and reads wait on the file system, not the GIL
        return [x for part in pool.map(fn, parts) for x in part]


def file_copy_keys(files: list[str], threads: int = 2) -> list:
    """One key per file; files share a key when they hold the same bytes: one file reached through symbolic or
    hard links, or byte-identical copies. Only files whose size some other file has are read (fdupes' trick)."""
    found = _chunked(_identities, files, threads)
    same_size = defaultdict(set)
    for inode, size in found:
        if inode is not None:
            same_size[size].add(inode)
    first_path = {}
    for path, (inode, size) in zip(files, found):
        if inode is not None and len(same_size[size]) > 1:
            first_path.setdefault(inode, path)
    digests = dict(zip(first_path, _chunked(_digests, list(first_path.values()), threads)))
    keys = []
    for path, (inode, _) in zip(files, found):
        if inode is None:
            keys.append(("unreadable", path))  # the readability check names it; no copy of anything
        else:
            keys.append(digests.get(inode) or inode)
    return keys


def pixel_copy_keys(images) -> list[bytes]:
    """Images (a uint8 tensor, N x C x H x W) with identical pixels share a key: the leakage guard's "exact"."""
    return [hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest() for image in images]


def text_copy_keys(texts: list[str]) -> list[str]:
    """Texts equal after the leakage guard's normalisation (Unicode NFKC, case folding, letters and digits only)
    share a key: what the guard counts as an exact duplicate."""
    from .leakage import normalise_text

    return [normalise_text(t) for t in texts]
