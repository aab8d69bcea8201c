"""Images in tar shards (the `webdataset` format): for pools larger than one machine's RAM or disk walk.

Write them from an image folder (any layout `data.source=folder` accepts; its splits and class names are kept):

    python -m ssl_pipeline.data.make_shards FOLDER OUT [--shard-size 10000]

OUT gets `train-000000.tar …` (labeled: the image's original bytes + `cls`), `test-…`, `validation-…`,
`unlabeled-…` (pretraining only) and `meta.json` (class names, split sizes). Pretraining with
`data.source=webdataset data.root=OUT` streams `train-*` + `unlabeled-*` (or `data.files=[URL patterns]`, brace
ranges allowed, local or http): each process reads its own shards, DataLoader workers split them again and decode,
a shuffle buffer of `data.shuffle_buffer` images mixes them, and views are made on the device as for every
source. Fine-tuning reads the labeled splits (`train-*`, `test-*`) from OUT into memory.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Optional

import torch

from ..config import DataConfig
from ..errors import UserError, exit_on_user_error
from .image_formats import is_image

META = "meta.json"
SPLITS = ("train", "validation", "test", "unlabeled")


def _expand(patterns: list[str]) -> list[str]:
    import braceexpand

    return [u for p in patterns for u in braceexpand.braceexpand(p)]


def shard_urls(cfg: DataConfig, split: str) -> list[str]:
    """The shards of a split: `data.files` (pretraining pool only) or OUT/<split>-*.tar under data.root."""
    if split == "pretrain" and cfg.files:
        urls = _expand(cfg.files)
    else:
        if not cfg.root:
            raise UserError("data.source=webdataset needs data.root (a directory written by make_shards) or, for "
                            "pretraining, data.files=[shard URL patterns]")
        root = Path(cfg.root).expanduser()
        names = ("train", "unlabeled") if split == "pretrain" else (split,)
        urls = [str(p) for n in names for p in sorted(root.glob(f"{n}-*.tar"))]
    if not urls and split in ("pretrain", "train"):
        raise UserError(f"data.source=webdataset: no {split} shards found (data.root={cfg.root}, data.files={cfg.files})")
    return urls


def _decode(sample: dict, size: int, channels: int) -> dict:
    from .images import pil_to_tensor

    key = next((k for k in sample if is_image("." + k.rsplit(".", 1)[-1])), None)  # keys are suffixes: "jpg", "cls"
    if key is None:
        raise UserError(f"shard sample {sample.get('__key__')} has no image (keys: {sorted(sample)})")
    out = {"images": pil_to_tensor(io.BytesIO(sample[key]), size, channels)}  # JPEGs decoded at reduced scale
    if "cls" in sample:
        out["labels"] = torch.tensor(int(sample["cls"]))
    return out


class StreamedImages(torch.utils.data.IterableDataset):
    """An endless stream of decoded uint8 images (C, S, S) from this process's shards, shuffled in a buffer."""

    def __init__(self, urls: list[str], cfg: DataConfig, rank: int, world: int, seed: int, labels: bool = False):
        """`labels`: also yield `labels` (every sample must have one); pretraining mixes unlabeled shards in."""
        self.urls, self.cfg, self.rank, self.world, self.seed = urls, cfg, rank, world, seed
        self.labels = labels
        workers = max(1, cfg.num_workers)
        if len(urls) < world * workers:
            raise UserError(f"{len(urls)} shard(s) for {world} process(es) x {workers} DataLoader worker(s): every "
                            "reader needs a shard of its own; write smaller shards (make_shards --shard-size)")

    def __iter__(self):
        import random

        import webdataset as wds

        mine = self.urls[self.rank::self.world]  # this process's shards ...
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None:  # ... and this DataLoader worker's share of them
            mine = mine[info.id::info.num_workers]
        size, channels = self.cfg.image_size, self.cfg.channels
        epoch = 0
        while True:  # epochs over this reader's shards, each in a new order with a new shuffle
            rng = random.Random(f"{self.seed}/{self.rank}/{worker}/{epoch}")
            order = list(mine)
            rng.shuffle(order)
            ds = (wds.WebDataset(order, shardshuffle=False, nodesplitter=_as_is, workersplitter=_as_is,
                                 empty_check=False)
                  .shuffle(self.cfg.shuffle_buffer, initial=min(self.cfg.shuffle_buffer, 100), rng=rng))
            for sample in ds:  # decoded here (in the DataLoader worker), tensors only
                item = _decode(sample, size, channels)
                yield item if self.labels else {"images": item["images"]}
            epoch += 1


def _as_is(src):
    """Shards are split between processes and workers above, deterministically."""
    return src


def read_split(cfg: DataConfig, split: str):
    """A labeled split of a make_shards directory, decoded into memory (fine-tuning subsets are small; the test
    split is read once)."""
    from .images import ImageSplit, TensorImages

    urls = shard_urls(cfg, split)
    if not urls:
        return None
    import webdataset as wds

    images, labels = [], []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        item = _decode(sample, cfg.image_size, cfg.channels)
        images.append(item["images"])
        labels.append(int(item["labels"]) if "labels" in item else -1)
    lab = torch.tensor(labels)
    meta = json.loads((Path(cfg.root).expanduser() / META).read_text()) if (Path(cfg.root) / META).is_file() else {}
    names = meta.get("class_names") or [str(i) for i in range(int(lab.max()) + 1)]
    if (lab < 0).any():
        if split == "pretrain":
            lab = None
        else:
            raise UserError(f"the {split} shards under {cfg.root} hold unlabeled images: fine-tuning needs labels")
    return ImageSplit(TensorImages(torch.stack(images), lab), lab, len(names) if lab is not None else 0,
                      cfg.image_size, cfg.channels, names if lab is not None else [], list(range(len(images))))


def make_shards(folder: str, out: str, shard_size: int = 10000, cfg: Optional[DataConfig] = None) -> dict:
    """Writes the folder's splits as shards (the original file bytes, not re-encoded) + meta.json."""
    import webdataset as wds

    from .images import load_folder

    base = cfg or DataConfig(source="folder", root=folder)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts, names = {}, []
    labeled = None
    for split in ("train", "validation", "test"):
        try:
            part = load_folder(base, split)
        except UserError:
            if split == "train":  # an unlabeled folder: every image goes to unlabeled-*
                labeled = False
                break
            raise
        if part is None:
            continue
        labeled, names = True, part.class_names
        counts[split] = _write(wds, out_dir, split, part.ids, part.labels.tolist(), shard_size)
    pool = load_folder(base, "pretrain")
    train_files = set()
    if labeled:
        train_files = set(load_folder(base, "train").ids)
    extra = [f for f in pool.ids if f not in train_files]
    if extra:
        counts["unlabeled"] = _write(wds, out_dir, "unlabeled", extra, None, shard_size)
    meta = {"class_names": names, "splits": counts, "source": str(folder), "test_fraction": base.test_fraction,
            "split_seed": base.split_seed}
    (out_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _write(wds, out_dir: Path, split: str, files: list[str], labels, shard_size: int) -> int:
    with wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for i, f in enumerate(files):
            sample = {"__key__": f"{split}{i:09d}", Path(f).suffix.lower().lstrip(".") or "img": Path(f).read_bytes()}
            if labels is not None:
                sample["cls"] = str(int(labels[i]))
            sink.write(sample)
    return len(files)


@exit_on_user_error
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssl_pipeline.data.make_shards",
                                 description="Write an image folder as webdataset tar shards (+ meta.json).")
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--shard-size", type=int, default=10000, help="images per shard")
    args = ap.parse_args(argv)
    if args.shard_size < 1:
        raise UserError("--shard-size must be >= 1")
    meta = make_shards(args.folder, args.out, args.shard_size)
    print(f"wrote {', '.join(f'{n} {k}' for k, n in meta['splits'].items())} images as shards in {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
