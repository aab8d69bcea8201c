"""`accelerate launch -m ssl_pipeline.embed --config CONFIG [finetune.encoder=DIR] out=FILE`

Writes one row per example of every split the data has (train, validation when it has its own, test; an
unlabeled pool as `unlabeled`): its id (file path, or row in the source), split, label name (if any) and
embedding vector — to Parquet (`.parquet`), or to `.npy` (the vectors) plus `.index.csv` (the other columns).
Examples are sharded over the launched processes and gathered on the main process, which writes the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import Config
from .errors import UserError

FORMATS = (".parquet", ".npy")


class _Indexed(Dataset):
    """Items of a split with their position, so gathered rows can be put back in order."""

    def __init__(self, base, n: int):
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        item = {"index": torch.tensor(i)}
        if self.base is not None:
            got = self.base.__getitems__([i]) if hasattr(self.base, "__getitems__") else self.base[i]
            item["images"] = got["images"][0] if got["images"].ndim == 4 else got["images"]
        return item


def _splits(cfg: Config, spec: dict) -> list[tuple[str, object]]:
    """[(split name, ImageSplit or TextSplit)] for what the source has."""
    import dataclasses

    if spec["modality"] == "vision":
        from .data.images import load_images as load

        data = dataclasses.replace(cfg.data, image_size=spec["image_size"], channels=spec["channels"])
    else:
        from .data.text import load_texts as load

        data = cfg.data
    try:
        train = load(data, "train")
    except UserError:
        train = None
    if train is None or train.labels is None:  # an unlabeled pool: every example, one split
        return [("unlabeled", load(data, "pretrain"))]
    out = [("train", train)]
    validation = load(data, "validation")
    if validation is not None:
        out.append(("validation", validation))
    out.append(("test", load(data, "test")))
    return out


def run_embed(cfg: Config, out: Path) -> Path:
    from .engine import make_accelerator
    from .export import load_encoder, read_spec, resolve_encoder_path

    if out.suffix not in FORMATS:
        raise UserError(f"out={out} must end in {' or '.join(FORMATS)}")
    if out.exists() and not cfg.overwrite:
        raise UserError(f"out={out} already exists; choose another file or set overwrite=true")
    encoder_path = resolve_encoder_path(cfg)
    spec = read_spec(encoder_path)
    from .tasks import modality_of

    want = modality_of(cfg.task)
    if spec["modality"] != want:
        raise UserError(f"encoder {encoder_path} is a {spec['modality']} encoder but task={cfg.task} reads "
                        f"{want} data (set task to match)")
    accelerator = make_accelerator(cfg)
    encoder = load_encoder(encoder_path).to(accelerator.device).eval()
    if spec["modality"] == "vision" and cfg.pretrain.channels_last:
        encoder.use_channels_last()  # as pretraining and fine-tuning run it: faster convolutions, same embeddings
    ids, splits, labels, vectors = [], [], [], []
    for name, split in _splits(cfg, spec):
        vecs = _embed_split(encoder, split, spec, cfg, accelerator)
        names = split.class_names
        ids += [str(i) for i in (split.ids if split.ids is not None else range(len(split)))]
        splits += [name] * len(split)
        labels += [None] * len(split) if split.labels is None else [names[int(c)] if names else str(int(c))
                                                                      for c in np.asarray(split.labels)]
        vectors.append(vecs)
        accelerator.print(f"embedded {len(split)} {name} examples")
    if accelerator.is_main_process:
        _write(out, ids, splits, labels, np.concatenate(vectors).astype(np.float32))
        print(f"embeddings: {out} ({len(ids)} rows x {vectors[0].shape[1]} dims)", flush=True)
    accelerator.wait_for_everyone()
    return out


@torch.no_grad()
def _embed_split(encoder, split, spec, cfg: Config, accelerator) -> np.ndarray:
    from .data.splits import collate_batch

    text = spec["modality"] == "text"
    ds = _Indexed(None if text else split.dataset, len(split))
    loader = DataLoader(ds, batch_size=cfg.finetune.probe_batch_size, collate_fn=collate_batch,
                        num_workers=0 if text else cfg.data.num_workers)
    loader = accelerator.prepare(loader)  # each process embeds its share
    index, vecs = [], []
    for batch in loader:
        if text:
            tok = encoder.tokenize([split.texts[int(i)] for i in batch["index"]])
            inputs = {k: v.to(accelerator.device) for k, v in tok.items()}
        else:
            inputs = {"images": batch["images"].to(accelerator.device)}
        with accelerator.autocast():
            emb = encoder(**inputs).float()
        idx, emb = accelerator.gather_for_metrics((batch["index"].to(accelerator.device), emb))
        index.append(idx.cpu())
        vecs.append(emb.cpu())
    order = torch.cat(index).argsort()
    return torch.cat(vecs)[order].numpy()


def _write(out: Path, ids, splits, labels, vectors: np.ndarray) -> None:
    """Atomic: a temporary file beside `out`, renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        table = pa.table({"id": ids, "split": splits, "label": pa.array(labels, type=pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
        pq.write_table(table, tmp)
        os.replace(tmp, out)
        return
    import csv
    import io

    from .atomic import write_text

    with open(tmp, "wb") as fh:
        np.save(fh, vectors)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "id", "split", "label"])
    w.writerows([i, a, b, "" if c is None else c] for i, (a, b, c) in enumerate(zip(ids, splits, labels)))
    write_text(out.with_suffix(".index.csv"), buf.getvalue())
    os.replace(tmp, out)


if __name__ == "__main__":
    from .cli import embed_main

    embed_main()
