"""Reading the files of a folder of documents into texts: plain text in `data.encoding`, web pages and e-mails
as their text (markup.py). Parsing markup is pure Python, so many such files are parsed in worker processes; this
module imports no torch, so spawned workers start in a fraction of a second."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..threads import job_cores
from .markup import EMAIL_SUFFIXES, HTML_SUFFIXES, email_text, html_text
from .text_files import file_encoding, undecodable, wrong_encoding

MARKUP_PROCESS_THRESHOLD = 2_000  # web pages / e-mails from which parsing them in worker processes pays (~14 s alone)


def _read_document(path: str, encoding: str) -> str:
    """A file's text: e-mails in the charsets they declare, web pages without their markup."""
    suffix = Path(path).suffix.lower()
    if suffix in EMAIL_SUFFIXES:
        return email_text(Path(path).read_bytes())
    with open(path, encoding=file_encoding(path, encoding)) as f:  # a byte-order mark decides
        text = f.read()
    return html_text(text) if suffix in HTML_SUFFIXES else text


def _read_one(path: str, encoding: str) -> tuple[Optional[str], Optional[str]]:
    """(the document's text, None), or (None, the one-line error naming it): a worker process returns, not raises."""
    try:
        return _read_document(path, encoding).strip(), None
    except UnicodeDecodeError:
        return None, wrong_encoding(undecodable([path], file_encoding(path, encoding)))
    except OSError as err:
        return None, f"cannot read the document {path}: {err.strerror or err}"


def _read_chunk(paths: list[str], encoding: str) -> list[tuple[Optional[str], Optional[str]]]:
    return [_read_one(p, encoding) for p in paths]


def read_documents(files: list[str], encoding: str) -> list[tuple[Optional[str], Optional[str]]]:
    """_read_one for every file, in order. Web pages and e-mails are parsed in pure Python (~7 ms a 24 kB page), so
    many of them are parsed in worker processes, one per core (2,905 pages: 19.3 s in one process)."""
    markup = sum(Path(f).suffix.lower() in HTML_SUFFIXES + EMAIL_SUFFIXES for f in files)
    workers = min(8, job_cores())
    if markup < MARKUP_PROCESS_THRESHOLD or workers < 2:
        return _read_chunk(files, encoding)
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [files[i: i + 256] for i in range(0, len(files), 256)]
    # spawn, not fork, as for image headers (data/headers.py): the caller may already run threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [r for part in pool.map(functools.partial(_read_chunk, encoding=encoding), chunks) for r in part]
