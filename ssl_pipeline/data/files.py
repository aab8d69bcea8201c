"""File arguments shared by the image and text loaders: globs and directories -> sorted file lists."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import UserError

# file suffix -> the data.source that reads it; data.source -> the `datasets` packaged builder behind it
SOURCE_OF_SUFFIX = {"jsonl": "jsonl", "json": "jsonl", "csv": "csv", "tsv": "csv", "parquet": "parquet",
                    "txt": "text", "text": "text", "xlsx": "excel"}
# "excel" is no `datasets` builder: text_files.read_excel reads it (pandas + openpyxl)
BUILDER_OF_SOURCE = {"jsonl": "json", "csv": "csv", "parquet": "parquet", "text": "text", "excel": "excel"}


def expand_files(patterns: list[str]) -> list[str]:
    """Each pattern is a file, a glob (`**` allowed) or a directory (all files below it), in sorted order."""
    files = []
    for p in patterns:
        p = os.path.expanduser(p)
        if os.path.isdir(p):
            hits = sorted(f for f in glob.glob(os.path.join(p, "**", "*"), recursive=True) if os.path.isfile(f))
        else:
            hits = sorted(glob.glob(p, recursive=True))
        if not hits:
            raise UserError(f"data path does not exist or matches no file: {p}")
        files.extend(hits)
    return files


# corpora are often shipped compressed (`train.jsonl.gz`); `datasets` decompresses these itself, and open_bytes
# below reads them for the checks made before it (the csv delimiter, the encoding)
COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def format_suffix(path: str) -> str:
    """'.jsonl' for `corpus.jsonl` and `corpus.jsonl.gz` alike (lower case)."""
    name = Path(path)
    if name.suffix.lower() in COMPRESSION:
        name = name.with_suffix("")
    return name.suffix.lower()


def own_split_files(cfg, pool: list[str]) -> dict[str, list[str]]:
    """data.test_files / data.validation_files (a DataConfig's), expanded: {"test": [...], "validation": [...]} for
    those given. None may be a file of the training pool `pool` (it would be trained on and scored)."""
    own = {split: expand_files(list(patterns)) for split, patterns in (("test", cfg.test_files),
                                                                      ("validation", cfg.validation_files)) if patterns}
    training = set(map(os.path.realpath, pool)) if own else set()
    for split, files in own.items():
        shared = [f for f in files if os.path.realpath(f) in training]
        if shared:
            raise UserError(f"data.{split}_files and data.files both hold {shared[0]}: a {split} file must not be in "
                            "the training pool")
    return own


def source_of(path: str, default: str = "text") -> str:
    """The data.source for a text file, from its (format) suffix."""
    return SOURCE_OF_SUFFIX.get(format_suffix(path).lstrip("."), default)


def open_bytes(path: str):
    """A binary file object of `path`'s content, decompressed when its suffix names a compression."""
    import importlib

    module = COMPRESSION.get(Path(path).suffix.lower())
    return importlib.import_module(module).open(path, "rb") if module else open(path, "rb")


def file_format(path: str, default: str = "text") -> str:
    """The `datasets` builder for a file, from its suffix (`default`: a builder, for unknown suffixes)."""
    source = source_of(path, default="")
    return BUILDER_OF_SOURCE[source] if source else default


TABLE_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv")
SNAPSHOT_EXTRAS = ("readme", "license", "licence", "dataset_infos.json", "dataset_info.json", ".gitattributes")


def is_table_folder(path: str) -> bool:
    """A directory of data tables only (what `huggingface-cli download` gives: README.md + data/train-*.parquet, or a
    user's train.csv + test.csv): read as an HF dataset directory (splits from the file names), not as a folder of
    documents or images, which read the README as the one document."""
    from .folders import list_files

    p = Path(path).expanduser()
    if not p.is_dir():
        return False
    files = list_files(p, lambda name: not name.lower().startswith(SNAPSHOT_EXTRAS))
    return bool(files) and all(format_suffix(f) in TABLE_SUFFIXES for f in files)


def is_saved_dataset(path: str) -> bool:
    """A directory written by `datasets`' `save_to_disk` (a Dataset's state.json, a DatasetDict's dataset_dict.json):
    read with `load_from_disk`, which `load_dataset` refuses."""
    p = Path(path).expanduser()
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())
