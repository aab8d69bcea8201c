"""Leakage guard: which pretraining examples duplicate a test example, exactly or nearly.

A test image or text seen during pretraining inflates the SSL rows and not the supervised ones, so the report
counts them and `data.dedupe=true` drops them from pretraining.

Images: exact = identical pixels at the pretraining resolution; near = a 16x16 grey thumbnail (the perceptual
fingerprint) among the 4 nearest of a test image's whose mean absolute difference is at most NEAR_IMAGE_MAD (0-1
scale). A bucketed perceptual hash was measured first and dropped: equal 64-bit dHashes missed 2 of 5 planted
copies with +-2 grey levels of noise (flat regions flip bits), and on Fashion-MNIST 1,373 of the 10k test images
share a dHash with some train image while only 7 are within 0.01. Nearest thumbnails are chunked matrix
products (10 s for Fashion-MNIST's 60k x 10k on a busy 2-core CPU: 19 test images have a near duplicate). Hand-written: perceptual-hash libraries (imagehash)
hash one PIL image at a time and do not search.

Texts: exact = identical after Unicode NFKC, case folding and collapsing everything but letters and digits;
near = Jaccard similarity of character 5-gram sets >= NEAR_TEXT_JACCARD, among candidates from datasketch's MinHash
LSH (banded for recall: MINHASH_BANDS), each shingle hashed with zlib's CRC-32 (half the time of datasketch's
default, SHA-1 cut to 32 bits; the same 32-bit spread, which MinHash's random permutations take from there).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .copies import pixel_copy_keys

NEAR_IMAGE_MAD = 0.01
THUMB = 16
NEAR_TEXT_JACCARD = 0.8
MINHASH_PERMUTATIONS = 64
# LSH bands x rows of the 64 permutations. datasketch's split for a 0.8 threshold (5 bands of 11) finds a pair at
# Jaccard 0.8 with probability 1-(1-0.8^11)^5 = 36 % (WordNet glosses: 3 of 5 true near pairs); 12 bands of 5 find it
# with 99 %, 0.9 with 100 %; the extra candidates cost one exact Jaccard each (+2.4 s on 66k x 16k texts).
MINHASH_BANDS = (12, 5)


@dataclass
class Duplicates:
    """Pool indices that duplicate some test example, and how many test examples have a duplicate in the pool."""

    pool_exact: np.ndarray
    pool_near: np.ndarray  # near but not exact
    test_exact: int
    test_near: int

    @property
    def pool_indices(self) -> np.ndarray:
        return np.union1d(self.pool_exact, self.pool_near)

    def summary(self) -> dict:
        return {"test_examples_with_exact_duplicates": self.test_exact,
                "test_examples_with_near_duplicates": self.test_near,
                "pretraining_duplicates": int(len(self.pool_indices))}


def image_batches(dataset, batch: int = 1024):
    """uint8 (B, C, H, W) batches of an image dataset (in-memory tensor or decoded one by one)."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        yield from images.split(batch)
        return
    for start in range(0, len(dataset), batch):
        yield torch.stack([dataset[i]["images"] for i in range(start, min(start + batch, len(dataset)))])


def _image_keys(batches) -> tuple[list[bytes], torch.Tensor]:
    """Per image: a digest of its pixels (exact) and its 16x16 grey thumbnail on a 0-1 scale (near)."""
    exact, thumbs = [], []
    for x in batches:
        exact += pixel_copy_keys(x)
        grey = x.float().mean(1, keepdim=True)
        thumbs.append(F.interpolate(grey, size=(THUMB, THUMB), mode="area").flatten(1) / 255.0)
    return exact, torch.cat(thumbs)


def _nearest(pool: torch.Tensor, test: torch.Tensor, k: int = 4, chunk: int = 512) -> torch.Tensor:
    """Indices of the k nearest pool thumbnails (L2) of each test thumbnail, by chunked matrix products."""
    k = min(k, len(pool))
    p_sq = (pool * pool).sum(1)
    out = []
    for t in test.split(chunk):
        d = p_sq[None, :] - 2 * t @ pool.T  # + |t|^2, the same for every pool image of the row
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def image_duplicates(pool, test) -> Duplicates:
    """`pool` and `test`: image datasets at the same size and channels."""
    p_exact, p_thumb = _image_keys(image_batches(pool))
    t_exact, t_thumb = _image_keys(image_batches(test))
    by_exact = defaultdict(list)
    for i, key in enumerate(p_exact):
        by_exact[key].append(i)
    nearest = _nearest(p_thumb, t_thumb)
    mad = (p_thumb[nearest] - t_thumb[:, None, :]).abs().mean(-1)  # (test, k)
    pool_exact, pool_near, n_exact, n_near = set(), set(), 0, 0
    for j in range(len(t_exact)):
        same = by_exact.get(t_exact[j], [])
        if same:
            pool_exact.update(same)
            n_exact += 1
        close = [int(i) for i, d in zip(nearest[j], mad[j]) if d <= NEAR_IMAGE_MAD and int(i) not in same]
        if close:
            pool_near.update(close)
            n_near += not same
    return _result(pool_exact, pool_near, n_exact, n_near)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def _shingles(text: str, k: int = 5) -> set[bytes]:
    if len(text) <= k:
        return {text.encode()}
    return {text[i: i + k].encode() for i in range(len(text) - k + 1)}


def text_duplicates(pool: list[str], test: list[str]) -> Duplicates:
    from datasketch import MinHash, MinHashLSH

    p_norm, t_norm = [normalise_text(t) for t in pool], [normalise_text(t) for t in test]
    by_exact = defaultdict(list)
    for i, t in enumerate(p_norm):
        by_exact[t].append(i)
    lsh = MinHashLSH(num_perm=MINHASH_PERMUTATIONS, params=MINHASH_BANDS)
    p_sets = [_shingles(t) for t in p_norm]
    p_hashes = MinHash.bulk(p_sets, num_perm=MINHASH_PERMUTATIONS, hashfunc=zlib.crc32)
    with lsh.insertion_session() as session:
        for i, m in enumerate(p_hashes):
            session.insert(i, m, check_duplication=False)
    t_sets = [_shingles(t) for t in t_norm]
    pool_exact, pool_near, n_exact, n_near = set(), set(), 0, 0
    for j, m in enumerate(MinHash.bulk(t_sets, num_perm=MINHASH_PERMUTATIONS, hashfunc=zlib.crc32)):
        same = by_exact.get(t_norm[j], [])
        if same:
            pool_exact.update(same)
            n_exact += 1
        # LSH gives candidates; keep those whose true Jaccard passes (the estimate alone over-reports)
        close = [i for i in lsh.query(m) if t_norm[j] != p_norm[i] and _jaccard(t_sets[j], p_sets[i]) >= NEAR_TEXT_JACCARD]
        if close:
            pool_near.update(close)
            n_near += not same
    return _result(pool_exact, pool_near, n_exact, n_near)


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def _result(pool_exact: set, pool_near: set, n_exact: int, n_near: int) -> Duplicates:
    exact = np.array(sorted(pool_exact), dtype=np.int64)
    near = np.array(sorted(pool_near - pool_exact), dtype=np.int64)
    return Duplicates(exact, near, n_exact, n_near)


def image_split_fingerprint(dataset) -> str:
    """Identifies a test split's content, so a record made at pretraining is only reported against that split."""
    h = hashlib.sha1()
    for x in image_batches(dataset):
        h.update(np.ascontiguousarray(x.numpy()).tobytes())
    return h.hexdigest()[:16]


def text_split_fingerprint(texts: list[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


NO_TEST_SPLIT = "no test split"  # the reason recorded for data without labels (the fine-tune report reads it back)


def test_split_or_reason(load):
    """(the test split `load()` gives, "") — or (None, why the guard has none): data without labels has no test
    split; one that exists but cannot be read is named (fine-tuning will stop on it, pretraining need not)."""
    from ..errors import UnlabeledData, UserError

    try:
        test = load()
    except UnlabeledData:
        return None, NO_TEST_SPLIT
    except UserError as err:
        return None, f"the test split cannot be read: {err}"
    return (test, "") if test is not None else (None, NO_TEST_SPLIT)


def leakage_record(dups: Duplicates | None, test_fingerprint: str | None, dropped: bool, reason: str = "") -> dict:
    """What the encoder's spec keeps about its pretraining pool vs the test split (read back by the report)."""
    if dups is None:
        return {"checked": False, "reason": reason}
    return {"checked": True, "test_fingerprint": test_fingerprint, **dups.summary(),
            "dropped_from_pretraining": int(len(dups.pool_indices)) if dropped else 0}


def describe(record: dict | None, unit: str) -> str:
    """One log/report line for a leakage record."""
    if not record or not record.get("checked"):
        why = (record or {}).get("reason") or "the encoder was not pretrained by ssl_pipeline on this data"
        return f"duplicates between pretraining and test data: not checked ({why})"
    exact, pool = record["test_examples_with_exact_duplicates"], record["pretraining_duplicates"]
    one = unit.removesuffix("s")  # "1 test image", not "1 test images"
    line = (f"duplicates between pretraining and test data: {exact} test {one if exact == 1 else unit} with an exact "
            f"and {record['test_examples_with_near_duplicates']} with only a near duplicate in the pretraining pool")
    if pool:  # "(0 pretraining images)" read as an empty pool
        line += f" (they match {pool} pretraining {one if pool == 1 else unit})"
    if record["dropped_from_pretraining"]:
        return line + f"; {record['dropped_from_pretraining']} dropped from pretraining (data.dedupe=true)"
    if record["pretraining_duplicates"]:
        return line + "; set data.dedupe=true to drop them"
    return line
