"""Image datasets streamed with `datasets` (`data.source=hf data.streaming=true`): a hub dataset or local files
larger than the machine's disk or RAM, read as they train, like the webdataset source does for tar shards.

Each process reads its own part (`split_dataset_by_node`: whole shards when they divide evenly), each DataLoader
worker its own shards of that part (`datasets` splits them between workers), through a shuffle buffer that is
reseeded every pass; images are decoded in the workers and augmented on the device as for every source.
"""
from __future__ import annotations

import io

import torch

from ..config import DataConfig
from ..errors import UserError


def open_stream(cfg: DataConfig):
    """The source's train split as a `datasets.IterableDataset` (nothing is downloaded up front), and `cfg` with the
    image column it has."""
    from .files import expand_files
    from .hf import stream_train, with_dataset_columns

    where = cfg.name or cfg.files
    if not (cfg.files or cfg.name):
        raise UserError("data.name (a hub dataset or a local directory) or data.files must be set for data.source=hf")
    files = expand_files(list(cfg.files)) if cfg.files else None
    ds = stream_train(cfg.name, files, f"HF dataset {where}", default_format="parquet",
                      reading=(cfg.encoding, cfg.csv_delimiter, cfg.csv_columns))
    cfg = with_dataset_columns(cfg, ds.features)
    columns = ds.column_names  # None when the format does not say before reading
    if columns is not None and cfg.image_column not in columns:
        raise UserError(f"data.image_column '{cfg.image_column}' is not a column of {where} ({columns})")
    return ds, cfg


def _pil(value):
    """An `Image` feature gives PIL images; raw columns give {'bytes': ..., 'path': ...} or bytes."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        value = value.get("bytes") or open(value["path"], "rb").read()
    from .image_formats import register_decoders

    register_decoders()  # HEIC bytes, and the pixel limit of image_formats.too_large rather than Pillow's
    return Image.open(io.BytesIO(value))


class StreamedHubImages(torch.utils.data.IterableDataset):
    """An endless stream of decoded uint8 images (C, S, S): this process's part, this worker's shards."""

    def __init__(self, cfg: DataConfig, rank: int, world: int, seed: int):
        from datasets.distributed import split_dataset_by_node

        stream, self.cfg = open_stream(cfg)
        self.seed = seed
        self.stream = split_dataset_by_node(stream, rank=rank, world_size=world)

    def __iter__(self):
        from .images import pil_to_tensor

        size, channels, column = self.cfg.image_size, self.cfg.channels, self.cfg.image_column
        epoch = 0
        while True:  # passes over this reader's part, each in a new shard order and buffer shuffle
            ds = self.stream.shuffle(seed=self.seed, buffer_size=self.cfg.shuffle_buffer)
            ds.set_epoch(epoch)
            n = 0
            for example in ds:
                n += 1
                with _pil(example[column]) as img:
                    yield {"images": pil_to_tensor(img, size, channels)}
            if n == 0:  # a worker left without shards (fewer shards than workers): the others go on
                return
            epoch += 1


def first_images(cfg: DataConfig, n: int) -> tuple[dict, torch.Tensor | None]:
    """The first `n` images of the (unshuffled) stream, with labels when it has a label column: the fixed set
    the representation monitor checks."""
    from .images import pil_to_tensor
    from .labels import encode_labels

    images, raw = [], []
    stream, cfg = open_stream(cfg)
    for example in stream.take(n):
        with _pil(example[cfg.image_column]) as img:
            images.append(pil_to_tensor(img, cfg.image_size, cfg.channels))
        raw.append(example.get(cfg.label_column))
    if not images:
        raise UserError(f"the stream {cfg.name or cfg.files} gave no images")
    labels = None
    if all(r is not None for r in raw) and len(set(map(str, raw))) >= 2:
        ids, _ = encode_labels(raw, where="the streamed train split")
        labels = torch.as_tensor(ids)
    return {"images": torch.stack(images)}, labels
