"""Text sources -> texts (+ labels), a tokenizer trained on the corpus, and packed token blocks.

Embedded corpus: the docstrings of Python's own standard library, labelled by the package they document
(asyncio, email, tkinter, ...). It is real human-written English that ships with every Python, so the demo
and the tests run offline, and the package label makes a real 10-way classification task.

Packing: texts are tokenized with `datasets.map(batched=True)` (cached), joined with [SEP] between documents
and cut into blocks of exactly `data.max_length` tokens, so no compute is spent on padding.
"""
from __future__ import annotations

import ast
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import DataConfig
from ..errors import UserError
from .files import expand_files, file_format
from .images import carve

EMBEDDED_PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "tkinter",
                     "unittest", "urllib", "xml")
TEXT_SOURCES = ("embedded", "text", "jsonl", "csv", "parquet", "hf", "synthetic")


@dataclass
class TextSplit:
    texts: list[str]
    labels: Optional[np.ndarray]  # int64 class ids, None for unlabeled corpora
    class_names: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.texts)


def stdlib_docstrings() -> tuple[list[str], list[str]]:
    """Docstrings (>= 5 words) of modules, classes and functions in the stdlib packages above."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts, labels, seen = [], [], set()
    for package in EMBEDDED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if any(part in ("test", "tests", "idle_test") for part in path.parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    text = " ".join(doc.split()) if doc else ""
                    if len(text.split()) >= 5 and text not in seen:  # duplicates would leak across the split
                        seen.add(text)
                        texts.append(text)
                        labels.append(package)
    return texts, labels


def _encode_labels(raw) -> tuple[np.ndarray, list[str]]:
    raw = list(raw)
    if raw and all(isinstance(v, (int, np.integer)) for v in raw):
        arr = np.asarray(raw, dtype=np.int64)
        return arr, [str(i) for i in range(int(arr.max()) + 1)]
    names = sorted({str(v) for v in raw})
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[str(v)] for v in raw], dtype=np.int64), names


def _corpus_files(cfg: DataConfig) -> list[str]:
    patterns = list(cfg.files or ([] if cfg.root is None else [cfg.root]))
    if not patterns:
        raise UserError(f"data.files or data.root must name the corpus for data.source={cfg.source}")
    return expand_files(patterns)


def _load_table(cfg: DataConfig):
    import datasets

    fmt = {"jsonl": "json", "csv": "csv", "parquet": "parquet", "text": "text"}[cfg.source]
    files = _corpus_files(cfg)
    try:
        return datasets.load_dataset(fmt, data_files=files, split="train")
    except Exception as err:  # malformed files surface as many exception types
        raise UserError(f"cannot read {cfg.source} corpus {files[0]}: {str(err).splitlines()[0]}") from None


def load_texts(cfg: DataConfig, split: str) -> TextSplit:
    """split: 'pretrain' (all training texts, labels ignored), 'train' or 'test' (labeled)."""
    if cfg.source not in TEXT_SOURCES:
        raise UserError(f"data.source '{cfg.source}' is not a text source; choose one of {list(TEXT_SOURCES)}")
    if cfg.source == "synthetic":
        raise UserError("data.source=synthetic gives token ids, not texts")
    if cfg.source == "hf":
        return _load_hf(cfg, split)
    if cfg.source == "embedded":
        texts, raw_labels = stdlib_docstrings()
    else:
        table = _load_table(cfg)
        column = "text" if cfg.source == "text" else cfg.text_column
        if column not in table.column_names:
            raise UserError(f"data.text_column '{column}' is not a column of the corpus (columns: {table.column_names})")
        texts = [t if isinstance(t, str) else "" for t in table[column]]
        raw_labels = table[cfg.label_column] if cfg.label_column in table.column_names else None
    return _finish(texts, raw_labels, cfg, split)


def extra_pretrain_texts(cfg: DataConfig) -> list[str]:
    """`data.extra_pretrain_files`: unlabeled text added to pretraining only (its column is data.text_column)."""
    if not cfg.extra_pretrain_files:
        return []
    import dataclasses

    extra = dataclasses.replace(cfg, files=cfg.extra_pretrain_files, root=None)
    suffix = Path(extra.files[0]).suffix.lower()
    extra.source = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}.get(suffix, "text")
    table = _load_table(extra)
    column = "text" if extra.source == "text" else cfg.text_column
    if column not in table.column_names:
        raise UserError(f"data.text_column '{column}' is not a column of data.extra_pretrain_files ({table.column_names})")
    return [t for t in table[column] if isinstance(t, str) and t.strip()]


def _finish(texts, raw_labels, cfg: DataConfig, split: str) -> TextSplit:
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        raise UserError(f"the {cfg.source} corpus holds no non-empty text")
    texts = [texts[i] for i in keep]
    if raw_labels is None:
        if split != "pretrain":
            raise UserError(f"data.label_column '{cfg.label_column}' is not in the corpus: it has no labels to fine-tune on")
        labels, names = None, []
    else:
        raw_labels = [raw_labels[i] for i in keep]
        labels, names = _encode_labels(raw_labels)
    # the test carve is excluded from every split, pretraining included
    idx = carve(labels if labels is not None else np.zeros(len(texts)), "test" if split == "test" else "train", cfg)
    return TextSplit([texts[i] for i in idx], None if labels is None else labels[idx], names)


def _load_hf(cfg: DataConfig, split: str) -> TextSplit:
    import datasets

    if not cfg.name:
        raise UserError("data.name must name a Hugging Face dataset for data.source=hf")
    try:
        dsd = datasets.load_dataset(cfg.name)
    except Exception as err:
        raise UserError(f"cannot load HF dataset {cfg.name}: {str(err).splitlines()[0]}") from None
    if "test" in dsd:
        ds = dsd["test" if split == "test" else "train"]
        if split == "pretrain" and "unsupervised" in dsd:  # e.g. IMDb's 50k unlabeled reviews
            ds = datasets.concatenate_datasets([ds, dsd["unsupervised"]])
        if cfg.text_column not in ds.column_names:
            raise UserError(f"data.text_column '{cfg.text_column}' is not a column of {cfg.name} ({ds.column_names})")
        labels = None
        if cfg.label_column in ds.column_names and split != "pretrain":
            labels = np.asarray(ds[cfg.label_column], dtype=np.int64)
        names = ds.features[cfg.label_column].names if labels is not None and hasattr(
            ds.features[cfg.label_column], "names") else ([str(i) for i in range(int(labels.max()) + 1)] if labels is not None else [])
        return TextSplit(list(ds[cfg.text_column]), labels, names)
    ds = dsd["train"]
    if cfg.text_column not in ds.column_names:
        raise UserError(f"data.text_column '{cfg.text_column}' is not a column of {cfg.name} ({ds.column_names})")
    raw = ds[cfg.label_column] if cfg.label_column in ds.column_names else None
    return _finish(list(ds[cfg.text_column]), raw, cfg, split)


def stream_texts(cfg: DataConfig, rank: int, world_size: int):
    """An HF streaming corpus, sharded so that each process reads its own, disjoint part."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    try:
        if cfg.name:
            ds = datasets.load_dataset(cfg.name, split="train", streaming=True)
        else:
            files = _corpus_files(cfg)
            ds = datasets.load_dataset(file_format(files[0]), data_files=files, split="train", streaming=True)
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"cannot stream {cfg.name or cfg.files}: {str(err).splitlines()[0]}") from None
    return split_dataset_by_node(ds, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------------------------- tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts, vocab_size: int):
    """A lower-cased BERT WordPiece tokenizer trained on `texts`, returned as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    if not Path(path).exists():
        raise UserError(f"model.tokenizer path does not exist: {path}")
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as err:
        raise UserError(f"model.tokenizer {path} is not a tokenizer: {str(err).splitlines()[0]}") from None


# ----------------------------------------------------------------------------------------------- packing


def pack_ids(sequences, block: int, sep_id: int) -> list[list[int]]:
    """Joins token sequences with [SEP] after each and cuts the stream into blocks of `block` tokens.

    Every token appears exactly once; all blocks are full except possibly the last.
    """
    stream: list[int] = []
    for ids in sequences:
        stream.extend(ids)
        stream.append(sep_id)
    return [stream[i:i + block] for i in range(0, len(stream), block)]


def corpus_digest(texts: list[str]) -> str:
    """Identifies a corpus for the caches keyed on it (tokenizer, tokenized blocks); computed once per run."""
    import hashlib

    return hashlib.sha1("\x00".join(texts).encode()).hexdigest()


def tokenize_and_pack(texts: list[str], tokenizer, max_length: int, cache_dir: Optional[str], digest: str):
    """-> a `datasets.Dataset` of packed blocks {"input_ids"} (the last one may be shorter).

    `digest` is `corpus_digest(texts)`: with the tokenizer it names the cached tokenization."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts})
    kwargs = {}
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        import hashlib

        key = hashlib.sha1(digest.encode() + tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
        kwargs = {"cache_file_name": os.path.join(cache_dir, f"tokenized-{key[:16]}.arrow")}
    tokenized = ds.map(lambda b: {"ids": tokenizer(b["text"], add_special_tokens=False)["input_ids"]},
                       batched=True, remove_columns=["text"], desc="tokenize", **kwargs)
    sep = tokenizer.sep_token_id
    blocks = pack_ids(tokenized["ids"], max_length, sep)
    return blocks


class PackedBlocks(torch.utils.data.Dataset):
    """Packed blocks as one int32 tensor (N, L) plus the last block's length; batches are slices.

    A batch carries an `attention_mask` only when one of its blocks is padded (at most the corpus's last block):
    deciding this here, on the host, spares the model a per-step device sync and lets SDPA take its unmasked path.
    """

    def __init__(self, blocks: list[list[int]], max_length: int, pad_id: int):
        n = len(blocks)
        self.ids = torch.full((n, max_length), pad_id, dtype=torch.int32)
        self.lengths = torch.empty(n, dtype=torch.int32)
        for i, b in enumerate(blocks):
            self.ids[i, :len(b)] = torch.as_tensor(b, dtype=torch.int32)
            self.lengths[i] = len(b)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, idx):
        index = torch.as_tensor(idx, dtype=torch.long)
        ids, lengths = self.ids[index], self.lengths[index]
        if bool((lengths == ids.shape[1]).all()):
            return {"input_ids": ids.long()}
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        return {"input_ids": ids.long(), "attention_mask": mask.long()}

    def __getitem__(self, i):
        return self.__getitems__([i])


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packs a (per-process) streaming corpus on the fly, carrying the remainder across documents."""

    def __init__(self, stream, tokenizer, text_column: str, max_length: int):
        self.stream, self.tokenizer = stream, tokenizer
        self.text_column, self.max_length = text_column, max_length

    def __iter__(self):
        buf: list[int] = []
        sep = self.tokenizer.sep_token_id
        for row in self.stream:
            text = row.get(self.text_column)
            if not text or not text.strip():
                continue
            buf.extend(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            buf.append(sep)
            while len(buf) >= self.max_length:
                block, buf = buf[:self.max_length], buf[self.max_length:]
                yield {"input_ids": torch.tensor(block)}  # always a full block: no attention mask needed
