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


def _identity(path: str):
    """(device, inode) of the file a path reaches (symbolic links followed) and its size; None if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None, -1
    return (st.st_dev, st.st_ino), st.st_size


def _digest(path: str):
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.digest()


def file_copy_keys(files: list[str], threads: int = 8) -> list:
    """One key per file; files share a key when they hold the same bytes: one file reached through symbolic or
    hard links, or byte-identical copies. Only files whose size some other file has are read (fdupes' trick), in
    threads (opening and reading wait on the file system, not the GIL)."""
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(_identity, files, chunksize=256))
    same_size = defaultdict(set)
    for inode, size in found:
        if inode is not None:
            same_size[size].add(inode)
    first_path = {}
    for path, (inode, size) in zip(files, found):
        if inode is not None and len(same_size[size]) > 1:
            first_path.setdefault(inode, path)
    with ThreadPoolExecutor(threads) as pool:
        digests = dict(zip(first_path, pool.map(_digest, first_path.values(), chunksize=64)))
    keys = []
    for path, (inode, _) in zip(files, found):
        if inode is None:
            keys.append(("unreadable", path))  # the readability check names it; no copy of anything
        else:
            keys.append(digests.get(inode) or inode)
    return keys


def text_copy_keys(texts: list[str]) -> list[str]:
    """Texts equal after the leakage guard's normalisation (Unicode NFKC, case folding, letters and digits only)
    share a key: what the guard counts as an exact duplicate."""
    from .leakage import normalise_text

    return [normalise_text(t) for t in texts]
