"""Text sources -> texts (+ labels), a tokenizer trained on the corpus, and packed token blocks.

Embedded corpus: the docstrings of Python's own standard library, labelled by the package they document
(asyncio, email, tkinter, ...). It is real human-written English that ships with every Python, so the demo
and the tests run offline, and the package label makes a real 10-way classification task.

Packing: texts are tokenized with `datasets.map(batched=True)` (cached), joined with [SEP] between documents
and cut into blocks of exactly `data.max_length` tokens, so no compute is spent on padding.
"""
from __future__ import annotations

import ast
import functools
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import progress
from ..config import DataConfig
from ..errors import UserError
from . import folders
from .files import expand_files, own_split_files, source_of
from .columns import column_values
from .copies import text_copy_keys
from .splits import carve
from .text_columns import column_named, joined, joined_name, resolve_text_columns, table_strings, wanted_columns
from .text_files import load_table, wrong_encoding
from .labels import encode_labels, no_labels, unlabeled_rows

EMBEDDED_PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "tkinter",
                     "unittest", "urllib", "xml")
TEXT_SOURCES = ("embedded", "folder", "text", "jsonl", "csv", "parquet", "excel", "hf", "synthetic")


@dataclass
class TextSplit:
    texts: list[str]
    labels: Optional[np.ndarray]  # int64 class ids, None for unlabeled corpora
    class_names: list[str] = field(default_factory=list)
    ids: Optional[list] = None  # per text: its row in the source (after dropping empty texts)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.texts)


def docstrings_under(root: Path, skip_dirs: tuple[str, ...]):
    """Whitespace-normalised docstrings of every module, class and function in the .py files under `root` (sorted
    paths, source order), skipping files below a directory named in `skip_dirs` and files that do not parse."""
    for path in sorted(root.rglob("*.py")):
        if any(part in skip_dirs for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):  # ValueError: a source with null bytes
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield " ".join(doc.split())


def docstring_cache_dir() -> Path:
    """Where the parsed stdlib corpus is kept between runs: $SSL_PIPELINE_CACHE, else ~/.cache/ssl_pipeline."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ssl_pipeline"
    return Path(os.environ.get("SSL_PIPELINE_CACHE") or default)


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Docstrings (>= 5 words) of modules, classes and functions in the stdlib packages above. Parsing them is ~3 s
    of `ast` over ~700 files, in every process of every run (the demo, each process of a multi-process run, and
    most text tests): the result is kept on disk, keyed by the Python version and every source file's size and
    modification time, so an edited or upgraded stdlib is parsed again. An unwritable cache only costs the time."""
    import hashlib
    import json
    import sys

    from ..atomic import write_json

    root = Path(sysconfig.get_paths()["stdlib"])
    stamp = hashlib.sha1(repr((sys.version, str(root), EMBEDDED_PACKAGES)).encode())
    for package in EMBEDDED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            st = path.stat()
            stamp.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    cached = docstring_cache_dir() / f"stdlib_docstrings-{stamp.hexdigest()[:16]}.json"
    try:
        doc = json.loads(cached.read_text(encoding="utf-8"))
        return tuple(doc["texts"]), tuple(doc["labels"])
    except (OSError, ValueError, KeyError):
        pass
    texts, labels = _parse_stdlib_docstrings(root)
    try:
        write_json(cached, {"texts": texts, "labels": labels})
    except OSError:
        pass
    return tuple(texts), tuple(labels)


def _parse_stdlib_docstrings(root: Path) -> tuple[list[str], list[str]]:
    texts, labels, seen = [], [], set()
    for package in EMBEDDED_PACKAGES:
        for text in docstrings_under(root / package, ("test", "tests", "idle_test")):
            if len(text.split()) >= 5 and text not in seen:  # duplicates would leak across the split
                seen.add(text)
                texts.append(text)
                labels.append(package)
    return texts, labels


def _corpus_files(cfg: DataConfig) -> list[str]:
    patterns = list(cfg.files or ([] if cfg.root is None else [cfg.root]))
    if not patterns:
        raise UserError(f"data.files or data.root must name the corpus for data.source={cfg.source}")
    return expand_files(patterns)


def _load_table(cfg: DataConfig, files: Optional[list[str]] = None):
    return load_table(cfg, files or _corpus_files(cfg))


def _text_columns(table, cfg: DataConfig, what: str) -> list[str]:
    """The column(s) holding the text (`text` for plain-text files): data/text_columns.py."""
    if cfg.source == "text":
        return ["text"]
    return resolve_text_columns(table_strings(table), cfg.text_column, cfg.label_column, what)


def _texts(table, columns: list[str]) -> list[str]:
    """Each row's text: its one text column's value ("" when missing), or its fields joined."""
    if len(columns) == 1:
        return [t if isinstance(t, str) else "" for t in column_values(table, columns[0])]
    return joined(zip(*(column_values(table, c) for c in columns)))


def _read(cfg: DataConfig, files: Optional[list[str]], what: str, say: bool = False):
    """-> (texts, raw labels or None, row ids, number of rows dropped), empty texts dropped. `say`: warn when other
    columns than the text exist but none is data.label_column (the corpus is then pretrained on whole, as unlabeled)."""
    table = _load_table(cfg, files)
    columns = _text_columns(table, cfg, what)
    texts = _texts(table, columns)
    label = None if cfg.source == "text" else column_named(table.column_names, cfg.label_column)
    raw = None if label is None else column_values(table, label)
    others = [c for c in table.column_names if c not in columns]
    if say and label is None and others:
        progress.say_once(f"data.label_column '{cfg.label_column}' is not a column of {what} (columns: "
                          f"{', '.join(table.column_names)}): every row is pretrained on as unlabeled text and no test "
                          "split is held out. If a column holds labels, set data.label_column to it before pretraining: "
                          "fine-tuning holds its test split out of these rows.")
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        raise UserError(f"{what} holds no non-empty text")
    return [texts[i] for i in keep], None if raw is None else [raw[i] for i in keep], keep, len(texts) - len(keep)


def load_texts(cfg: DataConfig, split: str) -> Optional[TextSplit]:
    """split: 'pretrain' (all training texts, labels ignored), 'train', 'validation' (the source's own; None when
    it has none) or 'test'. With no labels nothing is carved: pretraining uses every text."""
    if cfg.source not in TEXT_SOURCES:
        raise UserError(f"data.source '{cfg.source}' is not a text source; choose one of {list(TEXT_SOURCES)}")
    if cfg.source == "synthetic":
        raise UserError("data.source=synthetic gives token ids, not texts")
    if cfg.source == "hf":
        return _load_hf(cfg, split)
    if cfg.source == "folder":
        from .text_folder import load_text_folder  # it builds TextSplits: imported here, not at the top

        return load_text_folder(cfg, split)
    own = {} if cfg.source == "embedded" else own_split_files(cfg, _corpus_files(cfg))
    if split == "validation" and "validation" not in own:
        return None
    empty = 0
    if cfg.source == "embedded":
        texts, raw_labels = map(list, stdlib_docstrings())
        ids = list(range(len(texts)))
    else:
        texts, raw_labels, ids, empty = _read(cfg, None, f"the {cfg.source} corpus", say=split == "pretrain")
    unlabeled, unlabeled_ids = [], []  # rows whose label cell is empty: pretraining only
    missing = unlabeled_rows(raw_labels)
    if missing is None:
        raw_labels = None
    elif missing.any():
        unlabeled = [t for t, m in zip(texts, missing) if m]
        unlabeled_ids = [i for i, m in zip(ids, missing) if m]
        texts, raw_labels, ids = ([x for x, m in zip(seq, missing) if not m] for seq in (texts, raw_labels, ids))
    carved = raw_labels is not None and "test" not in own
    said = split in ("pretrain", "train") and cfg.source != "embedded"  # the data line, once
    if raw_labels is None:
        if split == "pretrain":
            if said:
                _say(cfg, len(texts), [], 0, empty, None)
            return TextSplit(texts, None, [], ids)
        table = _load_table(cfg)  # (datasets' cache: no second read)
        raise no_labels(cfg.label_column, "the corpus", table.column_names, _text_columns(table, cfg, "the corpus"),
                        empty=cfg.source != "text" and column_named(table.column_names, cfg.label_column) is not None)
    labels, names = encode_labels(raw_labels, where="the training data")
    if said:
        _say(cfg, len(texts), names, len(unlabeled), empty, cfg.test_fraction if carved else None)
    if split == "pretrain":
        if carved:  # the test carve is excluded from pretraining
            idx = carve(labels, "train", cfg, names, text_copy_keys(texts))
            texts, ids = [texts[i] for i in idx], [ids[i] for i in idx]
        return TextSplit(texts + unlabeled, None, [], ids + unlabeled_ids)
    if split in own:
        o_texts, o_raw, o_ids, _ = _read(cfg, own[split], f"data.{split}_files")
        if o_raw is None:
            raise UserError(f"data.{split}_files have no '{cfg.label_column}' column: they cannot be scored")
        o_labels, _ = encode_labels(o_raw, names, where=f"data.{split}_files")
        return TextSplit(o_texts, o_labels, names, o_ids)
    idx = carve(labels, split, cfg, names, text_copy_keys(texts)) if carved else np.arange(len(texts))
    return TextSplit([texts[i] for i in idx], labels[idx], names, [ids[i] for i in idx])


def _say(cfg: DataConfig, n_texts: int, classes: list[str], unlabeled: int, empty: int, carve_fraction) -> None:
    """A table's one line, as a folder's: rows read as texts, the classes of its label column, rows without a label
    (pretraining only), the test carve, and rows dropped for an empty text. Texts joined from several fields say
    which (the user sees the join was made, and in what order)."""
    fields = wanted_columns(cfg.text_column)
    unit = f"texts ({' + '.join(fields)})" if len(fields) > 1 else "texts"
    folders.summarize_rows(f"data.files {folders.names(_corpus_files(cfg))}", n_texts, unit, classes, unlabeled,
                           carve_fraction, empty, f"with no {cfg.label_column}")


def extra_pretrain_texts(cfg: DataConfig) -> list[str]:
    """`data.extra_pretrain_files`: unlabeled text added to pretraining only (its column is data.text_column)."""
    if not cfg.extra_pretrain_files:
        return []
    import dataclasses

    source = source_of(cfg.extra_pretrain_files[0])
    extra = dataclasses.replace(cfg, files=cfg.extra_pretrain_files, root=None, source=source)
    table = _load_table(extra)
    return [t for t in _texts(table, _text_columns(table, extra, "data.extra_pretrain_files")) if t.strip()]


def _load_hf(cfg: DataConfig, split: str) -> Optional[TextSplit]:
    from .hf import hf_split, load_dataset_dict, no_labels, with_dataset_columns

    splits = load_dataset_dict(cfg)
    cfg = with_dataset_columns(cfg, getattr(splits.get("train"), "features", None), images=False)
    splits, column = _with_text_column(splits, cfg)
    part = hf_split(cfg, split, column, "data.text_column", splits=splits)
    if part is None:
        return None
    if split != "pretrain" and part.labels is None:
        raise no_labels(cfg, part.dataset, column)
    texts = [t if isinstance(t, str) else "" for t in column_values(part.dataset, column)]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    labels = None if part.labels is None else part.labels[keep]
    return TextSplit([texts[i] for i in keep], labels, part.class_names if labels is not None else [],
                     [part.ids[i] for i in keep])


def _with_text_column(splits: dict, cfg: DataConfig) -> tuple[dict, str]:
    """-> (the dataset's splits, the column holding each text): data.text_column resolved on the train split, and
    when it names several fields, a column of them joined added to every split (each must have them all)."""
    if "train" not in splits:
        return splits, wanted_columns(cfg.text_column)[0]  # hf_split says there is no train split
    where = cfg.name or ", ".join(cfg.files or [])
    columns = resolve_text_columns(table_strings(splits["train"]), cfg.text_column, cfg.label_column, where)
    if len(columns) == 1:
        return splits, columns[0]
    name = joined_name(columns)
    out = {}
    for split, ds in splits.items():
        lacking = [c for c in columns if c not in ds.column_names]
        if lacking:
            raise UserError(f"the {split} split of {where} has no column '{lacking[0]}' of data.text_column "
                            f"(its columns: {ds.column_names})")
        out[split] = ds.add_column(name, _texts(ds, columns))
    return out, name


def stream_texts(cfg: DataConfig, rank: int, world_size: int):
    """An HF streaming corpus, sharded so that each process reads its own, disjoint part."""
    from datasets.distributed import split_dataset_by_node

    from .hf import stream_train

    ds = stream_train(cfg.name, None if cfg.name else _corpus_files(cfg), str(cfg.name or cfg.files),
                      reading=(cfg.encoding, cfg.csv_delimiter, cfg.csv_columns))
    return split_dataset_by_node(ds, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------------------------- tokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts, vocab_size: int):
    """A lower-cased BERT WordPiece tokenizer trained on `texts`, returned as a transformers fast tokenizer.

    Accents and other combining marks are kept (BERT-uncased strips them): stripping merges distinct words in most
    languages but English — on Debian's package descriptions it altered 55 % of the Japanese words (the voicing
    marks: データ read as テータ, で as て), 7 % of the Russian (технологий as технологии, ё as е) and of the German
    (würde as wurde). NFKC first folds compatibility forms (full-width ＡＢＣ１２３, ligatures) to their plain ones."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def pipeline(model):
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(),
                                               normalizers.BertNormalizer(lowercase=True, strip_accents=False)])
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    trainer_tok = pipeline(models.WordPiece(unk_token="[UNK]"))
    # The trainer numbers each word-inner character ('##e') as it first meets it in a hash map's order, which changes
    # from process to process; merges of equal count are then taken in a different order, and the same corpus gave
    # different vocabularies (2,500 one-liners: 'sudo' in one run, 'sud' in the next): every text result differed
    # between runs of one seed, `supervised` included. Given to the trainer up front, in sorted order, those tokens
    # have fixed ids, and the vocabulary is the same in every run (tests/test_text.py).
    inner = _word_inner_characters(trainer_tok, texts)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + inner, min_frequency=2,
                                        show_progress=False)
    trainer_tok.train_from_iterator(texts, trainer=trainer)
    tok = pipeline(models.WordPiece(vocab=trainer_tok.get_vocab(), unk_token="[UNK]"))
    tok.add_special_tokens(SPECIAL_TOKENS)  # the '##e' pieces stay ordinary vocabulary
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def _word_inner_characters(tok, texts, chunk: int = 1000) -> list[str]:
    """'##c' for every character that follows another inside a pre-tokenized word of `texts`, sorted."""
    seen: set[str] = set()
    for start in range(0, len(texts), chunk):
        normalized = tok.normalizer.normalize_str("\n".join(texts[start:start + chunk]))
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalized):
            seen.update(word[1:])
    return [f"##{c}" for c in sorted(seen)]


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

    def __init__(self, stream, tokenizer, text_column, max_length: int, label_column: Optional[str] = None):
        self.stream, self.tokenizer = stream, tokenizer
        self.text_column, self.max_length, self.label_column = text_column, max_length, label_column

    def __iter__(self):
        buf: list[int] = []
        sep = self.tokenizer.sep_token_id
        for text in self._texts():
            buf.extend(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            buf.append(sep)
            while len(buf) >= self.max_length:
                block, buf = buf[:self.max_length], buf[self.max_length:]
                yield {"input_ids": torch.tensor(block)}  # always a full block: no attention mask needed

    def _texts(self):
        """The stream's non-empty texts, data.text_column resolved on its first row (a missing column would skip
        every row: "the stream is empty", a false lead). Files are decoded lazily, mid-run: a wrong encoding is
        one line, not a traceback out of the DataLoader."""
        columns = None
        try:
            for row in self.stream:
                if columns is None:
                    columns = resolve_text_columns({k: isinstance(v, str) for k, v in row.items()}, self.text_column,
                                                   self.label_column, "the streamed corpus")
                text = row.get(columns[0]) if len(columns) == 1 else joined([tuple(row.get(c) for c in columns)])[0]
                if isinstance(text, str) and text.strip():
                    yield text
        except UnicodeDecodeError as err:
            raise UserError(wrong_encoding(f"the streamed corpus is not {err.encoding} text (byte "
                                           f"0x{err.object[err.start]:02x})")) from None
