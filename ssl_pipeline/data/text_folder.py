"""A folder of text documents (`data.source=folder` with a text method): one file = one document.

The layout of 20 Newsgroups, IMDB's aclImdb, BBC News and scikit-learn's `load_files`: the class is the first
sub-folder (`news/sci.space/61042`), with the image folder's split layouts (data/folders.py). Plain-text files are
read — `.txt`, `.text`, `.md`, `.rst` and files without a suffix (20 Newsgroups' are numbers), and saved web pages
(`.html`) and e-mails (`.eml`) as the text a reader sees (data/markup.py); anything else
(`labeledBow.feat`, images) is skipped and counted. Two conventions of published corpora are honoured so they run
as they are: a class folder named `unsup` / `unlabeled` inside train/ (aclImdb's 50,000 unlabeled reviews) is read
as unlabeled text for pretraining only, and files lying beside class folders (aclImdb's `urls_pos.txt`, a README)
are skipped and counted rather than read as documents of no class.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import DataConfig
from ..errors import UnlabeledData, UserError
from .copies import text_copy_keys
from .folders import folder_layout, folder_root, names, not_read, scan, summarize
from .labels import encode_labels
from .document_files import read_documents
from .markup import EMAIL_SUFFIXES, HTML_SUFFIXES
from .splits import carve
from .text import TextSplit

DOCUMENT_SUFFIXES = ("", ".txt", ".text", ".md", ".rst", *HTML_SUFFIXES, *EMAIL_SUFFIXES)
UNLABELED_CLASS_DIRS = ("unsup", "unlabeled", "unlabelled")  # inside train/: pretraining only

_READ: dict[tuple[str, ...], list[str]] = {}  # files -> their texts: a process loads a split up to 3 times


def is_document(name: str) -> bool:
    return Path(name).suffix.lower() in DOCUMENT_SUFFIXES


@dataclass
class _Documents:
    """The readable documents under one split folder."""
    texts: list[str]
    classes: list[Optional[str]]  # first sub-folder; None: directly in the folder (unlabeled when no class folders)
    ids: list[str]  # path relative to data.root
    unlabeled: list[str]  # texts of train/unsup/, unlabeled/ and the like (read for pretraining only)
    unlabeled_ids: list[str]
    n_unlabeled: int  # how many there are (files, when they were not read)
    skipped: list[str]  # why files were not read, for the summary line


def _read_texts(files: list[str], encoding: str) -> list[str]:
    key = tuple(files)
    if key not in _READ:
        read = read_documents(files, encoding)
        error = next((e for _, e in read if e), None)
        if error:
            raise UserError(error)
        if len(_READ) >= 4:
            _READ.clear()
        _READ[key] = [text for text, _ in read]
    return _READ[key]


def _documents(base: Path, root: Path, cfg: DataConfig, split: str, read_unlabeled: bool,
               layout: Optional[dict] = None) -> _Documents:
    """The documents under one split folder; the unlabeled ones (all of unlabeled/, train/unsup/) are read only when
    `read_unlabeled` (pretraining), else just counted: fine-tuning never uses them."""
    every, classes = scan(base, lambda name: True, layout)
    # files beside class folders are skipped only when there are classes (two or more); unlabeled/ reads every file
    class_dirs = {c for c in classes if c is not None and c.lower() not in UNLABELED_CLASS_DIRS}
    has_classes = split != "unlabeled" and len(class_dirs) >= 2
    loose = [f for f, c in zip(every, classes) if c is None and has_classes]
    other = [f for f, c in zip(every, classes) if not is_document(f) and not (c is None and has_classes)]
    skipped = []
    if loose:
        skipped.append(f"{len(loose)} beside the class folders of {base.name}/ ({names(loose)})")
    if other:
        skipped.append(not_read(other, "plain text"))
    kept = [(f, c) for f, c in zip(every, classes) if is_document(f) and not (c is None and has_classes)]
    unlabeled = [f for f, c in kept if split == "unlabeled" or (split == "train" and c is not None
                                                                 and c.lower() in UNLABELED_CLASS_DIRS)]
    pool = set(unlabeled)
    labeled = [(f, c) for f, c in kept if f not in pool]
    docs = _Documents([], [], [], [], [], len(unlabeled), skipped)
    for (f, c), t in zip(labeled, _read_texts([f for f, _ in labeled], cfg.encoding)):
        if t:
            docs.texts.append(t)
            docs.classes.append(c)
            docs.ids.append(os.path.relpath(f, root))
    if read_unlabeled:
        for f, t in zip(unlabeled, _read_texts(unlabeled, cfg.encoding)):
            if t:
                docs.unlabeled.append(t)
                docs.unlabeled_ids.append(os.path.relpath(f, root))
        docs.n_unlabeled = len(docs.unlabeled)
    return docs


def _say(root: Path, docs: _Documents, extra: int, carve_fraction: Optional[float]) -> None:
    classes = sorted({c for c in docs.classes if c is not None})
    summarize(f"data.root {root}", len(docs.texts), "documents", classes, docs.n_unlabeled + extra, carve_fraction,
              docs.skipped)


def load_text_folder(cfg: DataConfig, split: str) -> Optional[TextSplit]:
    """split: 'pretrain' (training documents, carved test part excluded, + unlabeled ones), 'train', 'validation'
    (the folder's own; None without one) or 'test' (its own test/, or the carve)."""
    root = folder_root(cfg.root, "documents")
    layout = folder_layout(root, "doc.txt", "documents")
    if split == "validation" and "validation" not in layout:
        return None
    pretrain = split == "pretrain"
    train = _documents(layout["train"], root, cfg, "train", read_unlabeled=pretrain, layout=layout)
    extra = (_documents(layout["unlabeled"], root, cfg, "unlabeled", read_unlabeled=pretrain)
             if "unlabeled" in layout and split in ("pretrain", "train") else None)  # "train": for the summary's count
    extra_texts = [] if extra is None else extra.unlabeled
    extra_ids = [] if extra is None else extra.unlabeled_ids
    if not train.texts and not train.n_unlabeled:
        raise UserError(f"no documents found under {layout['train']} (plain-text files: "
                        f"{', '.join(s or 'no suffix' for s in DOCUMENT_SUFFIXES)}); if it holds images, use an image "
                        "method (task=simclr)")
    labeled = len({c for c in train.classes if c is not None}) >= 2
    carved = labeled and "test" not in layout
    if split in ("pretrain", "train"):
        _say(root, train, 0 if extra is None else extra.n_unlabeled, cfg.test_fraction if carved else None)
    if not labeled:
        if split == "pretrain":
            return TextSplit(train.texts + train.unlabeled + extra_texts, None, [],
                             train.ids + train.unlabeled_ids + extra_ids)
        raise UnlabeledData(f"{layout['train']} holds unlabeled documents (no class sub-folders): fine-tuning needs at "
                            "least two classes as sub-folders (ROOT/CLASS/doc.txt); an unlabeled folder can only be "
                            "pretrained on")
    labels, names = encode_labels(train.classes, where=f"the train folder {layout['train']}")
    if split == "pretrain":
        idx = carve(labels, "train", cfg, names, text_copy_keys(train.texts)) if carved else np.arange(len(labels))
        return TextSplit([train.texts[i] for i in idx] + train.unlabeled + extra_texts, None, [],
                         [train.ids[i] for i in idx] + train.unlabeled_ids + extra_ids)
    if split in ("validation", "test") and split in layout:  # the folder's own validation/ or test/
        own = _documents(layout[split], root, cfg, split, read_unlabeled=False)
        if not own.texts:
            raise UserError(f"no documents found under {layout[split]}")
        if any(c is None for c in own.classes):
            raise UserError(f"{layout[split]} holds documents outside class sub-folders: a {split} split is scored, "
                            "so each document needs its class folder")
        own_labels, _ = encode_labels(own.classes, names, where=f"the {split} folder {layout[split]}")
        return TextSplit(own.texts, own_labels, names, own.ids)
    idx = carve(labels, split, cfg, names, text_copy_keys(train.texts)) if carved else np.arange(len(labels))
    return TextSplit([train.texts[i] for i in idx], labels[idx], names, [train.ids[i] for i in idx])
