"""Hugging Face `datasets` sources for both modalities: a hub name, a local directory of split files
(`train.jsonl`, `test.csv`, ... as `datasets` recognises them), a directory written by `save_to_disk`, or
`data.files`.

The source's own test / validation splits are used when it has them; otherwise the test split is carved
(stratified, seeded) from train, and never when there are no labels (an unlabeled pool is pretrained on whole).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..config import DataConfig
from ..errors import UnlabeledData, UserError
from .files import expand_files, file_format, is_saved_dataset, own_split_files, source_of
from . import labels
from .columns import column_values
from .labels import encode_labels, unlabeled_rows

UNLABELED_SPLITS = ("unsupervised", "unlabeled", "unlabelled")  # e.g. IMDb's 50k unlabeled reviews
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")


@dataclass
class HFSplit:
    dataset: object  # datasets.Dataset restricted to the split's rows
    labels: Optional[np.ndarray]
    class_names: list[str] = field(default_factory=list)
    ids: list = field(default_factory=list)  # row index in the source split


def load_dataset_dict(cfg: DataConfig) -> dict:
    """Every split of the source, loaded once per process: the pretrain, train, validation and test requests of a
    run all read this one load (a hub or file source is otherwise re-resolved and re-scanned each time)."""
    if (cfg.test_files or cfg.validation_files) and not cfg.files:
        raise UserError("data.test_files / data.validation_files go with data.files (a table of the training rows); "
                        f"the HF dataset {cfg.name} brings its own splits")
    reading = (cfg.encoding, cfg.csv_delimiter, cfg.sheet, tuple(cfg.csv_columns) if cfg.csv_columns else None)
    splits = dict(_load_dataset_dict(tuple(cfg.files) if cfg.files else None, cfg.name, reading))
    own = own_split_files(cfg, expand_files(list(cfg.files))) if cfg.files else {}
    for split, files in own.items():  # a user's own test (validation) table: scored, never carved nor pretrained on
        splits[split] = _load_dataset_dict(tuple(files), None, reading)["train"]
    return splits


@functools.lru_cache(maxsize=8)
def _load_dataset_dict(files: Optional[tuple], name: Optional[str], reading: tuple) -> dict:
    """`reading`: (data.encoding, data.csv_delimiter, data.sheet, data.csv_columns) for `files`, read as the text sources read theirs (one
    reader: delimiter guess, byte-order marks, compression, Excel) — a semicolon-separated table of image paths
    too."""
    import datasets

    try:
        if files:
            from .text_files import load_table

            files = expand_files(list(files))
            source = source_of(files[0], default="parquet")
            return {"train": load_table(DataConfig(source=source, encoding=reading[0], csv_delimiter=reading[1],
                                                   sheet=reading[2], csv_columns=reading[3] and list(reading[3])),
                                        files)}
        if not name:
            raise UserError("data.name (a hub dataset or a local directory) or data.files must be set for data.source=hf")
        if is_saved_dataset(name):
            saved = datasets.load_from_disk(os.path.expanduser(name))  # memory-mapped Arrow files, as written
            return {"train": saved} if isinstance(saved, datasets.Dataset) else dict(saved)
        return dict(datasets.load_dataset(name))
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"cannot load HF dataset {name or list(files)}: {str(err).splitlines()[0]}") from None


def hf_split(cfg: DataConfig, split: str, column: str, column_key: str, texts: bool = True,
             splits: Optional[dict] = None) -> Optional[HFSplit]:
    """split: pretrain | train | validation | test; None for a validation split the source does not have.
    `splits`: the source's splits as the caller prepared them (default: load_dataset_dict's)."""
    from .splits import carve

    dsd = load_dataset_dict(cfg) if splits is None else splits
    if "train" not in dsd:
        raise UserError(f"HF dataset {cfg.name} has no train split (splits: {sorted(dsd)})")
    train = dsd["train"]
    if column not in train.column_names:
        raise UserError(f"{column_key} '{column}' is not a column of {cfg.name or cfg.files} ({train.column_names})")
    feature = train.features.get(cfg.label_column)
    feature_names = getattr(feature, "names", None)
    raw = column_values(train, cfg.label_column) if cfg.label_column in train.column_names else None
    missing = unlabeled_rows(raw, class_label=feature_names is not None)
    if missing is None:
        raw, missing = None, np.zeros(len(train), bool)
    empty = _empty_texts(column_values(train, column)) if texts else np.zeros(len(train), bool)
    missing &= ~empty  # an empty text is neither an example nor unlabeled data: dropped, and counted in the line
    labeled = np.flatnonzero(~missing & ~empty)  # row indices of the labeled examples
    train_labels, names = (None, []) if raw is None else encode_labels([raw[i] for i in labeled],
                                                                       where="the train split",
                                                                       feature_names=feature_names)
    own_test = "test" in dsd
    val_name = next((v for v in VALIDATION_SPLITS if v in dsd), None)
    carved = train_labels is not None and not own_test
    if split in ("pretrain", "train"):
        _summarize(cfg, len(labeled), int(missing.sum()), sum(len(dsd[u]) for u in UNLABELED_SPLITS if u in dsd),
                   names, carved, "texts" if texts else "images", int(empty.sum()))
    if split == "pretrain":
        import datasets

        idx = (labeled[carve(train_labels, "train", cfg, names, _copy_keys(train, column, labeled, texts))] if carved
               else np.flatnonzero(~empty))
        if carved and missing.any():
            idx = np.sort(np.concatenate([idx, np.flatnonzero(missing)]))
        parts = [train.select(idx).select_columns([column])]
        parts += [dsd[u].select_columns([column]) for u in UNLABELED_SPLITS if u in dsd]
        return HFSplit(datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0], None, [], list(range(sum(map(len, parts)))))
    if train_labels is None:
        return HFSplit(train.select(labeled), None, [], labeled.tolist())
    if split == "validation" and val_name is None:
        return None
    if split in ("validation", "test") and (split == "validation" or own_test):
        ds = dsd[val_name if split == "validation" else "test"]
        if cfg.label_column not in ds.column_names:
            raise UserError(f"the {split} split of {cfg.name} has no '{cfg.label_column}' column")
        labels, _ = encode_labels(column_values(ds, cfg.label_column), names, where=f"the {split} split",
                                  feature_names=getattr(ds.features.get(cfg.label_column), "names", None))
        return HFSplit(ds, labels, names, list(range(len(ds))))
    idx = (carve(train_labels, split, cfg, names, _copy_keys(train, column, labeled, texts)) if carved
           else np.arange(len(train_labels)))
    return HFSplit(train.select(labeled[idx]), train_labels[idx], names, labeled[idx].tolist())


def _empty_texts(values) -> np.ndarray:
    """Rows whose text is missing or blank: nothing to read."""
    return np.array([not (isinstance(t, str) and t.strip()) for t in values], dtype=bool)


def _summarize(cfg: DataConfig, labeled: int, without: int, extra: int, classes: list[str], carved: bool,
               unit: str, empty: int) -> None:
    """The data line a folder or a table of files gets: what was read, rows without a label and unlabeled splits
    (pretraining only), the test carve, rows dropped for an empty text."""
    from .folders import names, summarize_rows

    where = f"data.name {cfg.name}" if cfg.name else f"data.files {names(expand_files(list(cfg.files)))}"  # as text's
    summarize_rows(where, labeled, unit, classes, without + extra, cfg.test_fraction if carved else None, empty,
                   f"with no {cfg.label_column}" if without and not extra else "unlabeled")


def _copy_keys(train, column: str, labeled: np.ndarray, texts: bool) -> Optional[list]:
    """Copy keys (data/copies.py) of the labeled rows of a text column; None for images, whose decoded pixels
    the carve does not read (the leakage guard still counts their duplicates) — a column of image paths too,
    whose normalised text is no copy key (ids in mixed case, 'aB3.jpg' and 'Ab3.jpg', would have been copies)."""
    feature = train.features.get(column)
    if not texts or getattr(feature, "dtype", None) not in ("string", "large_string"):
        return None
    from .copies import text_copy_keys

    values = column_values(train, column)
    return text_copy_keys([values[i] for i in labeled])


def with_dataset_columns(cfg: DataConfig, features, images: bool = True) -> DataConfig:
    """`cfg` with `data.image_column` / `data.label_column` set to the dataset's one `Image` / `ClassLabel` column
    when the configured name is not a column: hub datasets name them as they like (CIFAR-10: `img`; beans and
    cats_vs_dogs: `labels`), and a column of that type is unambiguous, so the run takes it and says so once. A
    missed label column would have made the dataset unlabeled (pretrained on whole, no test split held out).
    Otherwise `cfg` unchanged: the caller's error or note lists the columns there are. `images`: the caller reads
    the image column (a text method on a dataset that also has images leaves it alone)."""
    import dataclasses

    import datasets

    from ..progress import say_once

    changes = {}
    for key, kind, what in (("image_column", datasets.Image, "images"),
                            ("label_column", datasets.ClassLabel, "labels")):
        if key == "image_column" and not images:
            continue
        name = getattr(cfg, key)
        if not features or name in features:
            continue
        found = [column for column, feature in features.items() if isinstance(feature, kind)]
        if len(found) == 1:
            say_once(f"data.{key} '{name}' is not a column of {cfg.name or ', '.join(cfg.files or [])}: reading "
                     f"{what} from its one {kind.__name__} column, '{found[0]}' (set data.{key} to choose)")
            changes[key] = found[0]
    return dataclasses.replace(cfg, **changes) if changes else cfg


def no_labels(cfg: DataConfig, dataset, column: str) -> UnlabeledData:
    """labels.no_labels for an HF source (`column`: its text or image column)."""
    return labels.no_labels(cfg.label_column, cfg.name or ", ".join(cfg.files or []), dataset.column_names, column)


def stream_train(name: Optional[str], files: Optional[list[str]], where: str, default_format: str = "text",
                 reading: tuple = ("utf-8", "auto", None)):
    """The train split of hub dataset `name`, or of `files`, as a streaming `datasets.IterableDataset` (nothing is
    downloaded up front); a one-line error naming `where` when it cannot be opened. Text and image streams both.
    `reading`: (data.encoding, data.csv_delimiter, data.csv_columns) for `files`, honoured as the in-memory reader honours them (a
    streamed cp1252 corpus was decoded as UTF-8)."""
    import datasets

    from .text_files import reader_options

    if files and file_format(files[0]) == "excel":
        raise UserError(f"data.streaming reads csv, jsonl, parquet and text files, not Excel workbooks ({files[0]}): "
                        "set data.streaming=false (a workbook fits in memory), or save it as .csv")
    try:
        if files:
            builder = file_format(files[0], default=default_format)
            return datasets.load_dataset(builder, data_files=files, split="train", streaming=True,
                                         **reader_options(builder, files, *reading))
        if is_saved_dataset(name):  # streamed from its Arrow files; shards let processes and workers split it
            train = _load_dataset_dict(None, name, ("utf-8", "auto", None))["train"]
            return train.to_iterable_dataset(num_shards=max(1, min(len(train), 64)))
        return datasets.load_dataset(name, split="train", streaming=True)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"cannot stream {where}: {str(err).splitlines()[0]}") from None
