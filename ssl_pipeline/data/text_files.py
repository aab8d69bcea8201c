"""Reading users' text files (csv / tsv / JSON lines / parquet / plain text, plain or .gz/.bz2/.xz) into a `datasets`
table.

Files as users have them: Excel exports in cp1252 (`data.encoding`), semicolon- or tab-separated "csv" files
(`data.csv_delimiter`, guessed from the header line by default), and an error that names the file and the byte
when the encoding is wrong, instead of `datasets`' "An error occurred while generating the dataset".
"""
from __future__ import annotations

import codecs
import contextlib
import io
import logging
import os
import shutil
import tempfile
from typing import Optional

from ..config import DataConfig
from ..errors import UserError
from .files import BUILDER_OF_SOURCE, COMPRESSION, format_suffix, open_bytes
DELIMITERS = (",", ";", "\t", "|")


def load_table(cfg: DataConfig, files: list[str]):
    """-> a `datasets.Dataset` of every row of `files` (all of format `cfg.source`)."""
    import datasets

    builder = BUILDER_OF_SOURCE[cfg.source]
    if builder == "excel":
        return read_excel(files, cfg.sheet)
    options = reader_options(builder, files, cfg.encoding, cfg.csv_delimiter, cfg.csv_columns)
    encoding = options.get("encoding")
    try:
        with _quiet_datasets_errors(), tempfile.TemporaryDirectory() as tmp:  # it logs the failure it then raises;
            if builder == "text" and codecs.lookup(encoding).name != "utf-8":  # the user gets one line, below
                files = _decompressed(files, tmp)
            table = datasets.load_dataset(builder, data_files=files, split="train", **options)
            field = records_field(table, len(files)) if builder == "json" else None
            if builder == "csv" and not cfg.csv_columns:
                _refuse_data_as_header(table, cfg, files[0])
            if field is None:
                return flat(table, files) if builder == "json" else table  # parquet's structs ({bytes, path}) are images
            from ..progress import say_once

            say_once(f"{', '.join(os.path.basename(f) for f in files)}: the rows are the records under the key "
                     f"'{field}', as in {{\"{field}\": [{{...}}, ...]}}: reading those")
            return flat(datasets.load_dataset(builder, data_files=files, split="train", field=field, **options), files)
    except UserError:
        raise
    except Exception as err:  # malformed files surface as many exception types
        wrong = None if builder == "parquet" else undecodable(files, encoding)
        if wrong:
            raise UserError(wrong_encoding(wrong)) from None
        raise UserError(f"cannot read {cfg.source} corpus {files[0]}: {str(err).splitlines()[0]}") from None


def flat(table, files: list[str]):
    """Nested JSON fields as columns named by their path: `{"content": {"title": …}, "annotation": {"label": …}}`
    gives `content.title` and `annotation.label` (datasets' flatten), which data.text_column / data.label_column can
    name; said once with the names. Before, the nested objects were the columns and no key could reach the text.
    A struct of {bytes, path} is an image cell (image tables read it whole), so such tables are left as they are."""
    structs = [feature for feature in table.features.values() if isinstance(feature, dict)]
    if not structs or any(set(feature) <= {"bytes", "path"} for feature in structs):
        return table
    from ..progress import say_once

    table = table.flatten()
    nested = [c for c in table.column_names if "." in c]
    say_once(f"{', '.join(os.path.basename(f) for f in files)}: nested fields are read as columns named by their path "
             f"({', '.join(nested[:6])}{', ...' if len(nested) > 6 else ''}); data.text_column and data.label_column "
             "can name them")
    return table


def records_field(table, n_files: int) -> Optional[str]:
    """The key under which JSON files (one object each, not JSON lines) keep their rows: `{"data": [{"text": ...,
    "label": ...}, ...]}`, SQuAD's layout and many exports'. `datasets` reads such a file as one row whose column
    holds the whole list; None for a table of rows, or when more than one column holds a list of records."""
    if len(table) != n_files:
        return None
    nested = [name for name, feature in table.features.items() if _holds_records(feature)]
    return nested[0] if len(nested) == 1 else None


def _holds_records(feature) -> bool:
    """A column type that is a list of records: `List({...})` (datasets >= 4), `[{...}]` or `Sequence({...})`."""
    inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
    return isinstance(inner, dict)


BYTE_ORDER_MARKS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def file_encoding(path: str, encoding: str) -> str:
    """The encoding to read `path` with. Under the default (utf-8) a byte-order mark decides: Windows Notepad and
    Excel's "CSV UTF-8" start UTF-8 files with one (kept, it glued itself to the first text or column name), and
    Excel's "Unicode Text" export is UTF-16 (which the cp1252 / latin-1 advice would have garbled). A
    data.encoding the user chose is used as it is."""
    if codecs.lookup(encoding).name != "utf-8":
        return encoding
    with open_bytes(path) as f:
        head = f.read(4)
    if head.startswith(b"\xff\xfe\x00\x00"):  # UTF-32's mark begins with UTF-16's
        return "utf-32"
    return next((name for mark, name in BYTE_ORDER_MARKS if head.startswith(mark)), encoding)


def files_encoding(files: list[str], encoding: str) -> str:
    """One encoding for files read together (`datasets` takes one): file_encoding's, utf-8-sig for UTF-8 with and
    without a mark, and an error naming two files that differ otherwise."""
    found = {f: file_encoding(f, encoding) for f in files}
    kinds = set(found.values())
    if kinds <= {"utf-8", "utf-8-sig"}:
        return "utf-8-sig" if "utf-8-sig" in kinds else encoding
    if len(kinds) > 1:
        a, b = sorted(kinds)[:2]
        raise UserError(f"data files in different encodings: {next(f for f in files if found[f] == a)} is {a}, "
                        f"{next(f for f in files if found[f] == b)} is {b}; convert them to one (UTF-8)")
    return kinds.pop()


def read_excel(files: list[str], sheet: Optional[str] = None):
    """The rows of each .xlsx workbook, one `datasets.Dataset` (labels typed by hand live in spreadsheets): its first
    sheet (and a line saying so when it has more), the sheet named `sheet`, or every sheet when `sheet` is 'all'
    (monthly tabs of one log; empty sheets skipped). Cells are read as text, so a column mixing numbers and words (a
    text column with a bare "42", labels 1, 2 and "other") is one Arrow type; empty cells stay empty (their rows are
    pretraining only). Needs openpyxl."""
    import datasets
    import pandas as pd

    frames, where = [], []
    for path in files:
        try:
            book = pd.ExcelFile(path)
            for name in _sheets(path, book.sheet_names, sheet):
                frame = book.parse(name, dtype=str)
                if sheet == "all" and frame.empty and not len(frame.columns):
                    continue  # a blank tab beside the data
                frames.append(frame.astype(object).where(frame.notna(), None))
                where.append(f"{path}" + (f" (sheet '{name}')" if len(book.sheet_names) > 1 else ""))
        except ImportError as err:
            raise UserError(f"reading {path} needs the openpyxl package ({err}); pip install openpyxl, or save "
                            "the sheet as .csv") from None
        except UserError:
            raise
        except Exception as err:  # not a workbook, encrypted, ...: many exception types
            raise UserError(f"cannot read the Excel workbook {path}: {str(err).splitlines()[0]}") from None
    if not frames:
        raise UserError(f"the workbooks hold no rows: every sheet of {', '.join(files)} is empty")
    columns = [list(f.columns) for f in frames]
    odd = next((i for i, c in enumerate(columns) if c != columns[0]), None)
    if odd is not None:
        raise UserError(f"the sheets read have different columns ({columns[0]} in {where[0]}, {columns[odd]} in "
                        f"{where[odd]}); give them one header, or choose one sheet with data.sheet")
    return datasets.Dataset.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)


def _sheets(path: str, names: list[str], sheet: Optional[str]) -> list[str]:
    """The sheets of a workbook that data.sheet asks for; a one-line error naming its sheets when one is missing."""
    if sheet == "all":
        return names
    if sheet is None:
        if len(names) > 1:
            from ..progress import say_once

            say_once(f"{os.path.basename(path)} has {len(names)} sheets ({', '.join(names[:6])}"
                     f"{', ...' if len(names) > 6 else ''}): reading the first, '{names[0]}' (data.sheet=NAME reads "
                     "another, data.sheet=all every one)", key=f"sheets {path}")
        return names[:1]
    if sheet not in names:
        raise UserError(f"data.sheet '{sheet}' is not a sheet of {path} (its sheets: {', '.join(names)}); or "
                        "data.sheet=all")
    return [sheet]


def _decompressed(files: list[str], tmp: str) -> list[str]:
    """Compressed files copied out plain: `datasets`' text builder (5.2) reads a compressed file as UTF-8 whatever
    its `encoding` says (csv and json honour it)."""
    plain = []
    for i, path in enumerate(files):
        if path.lower().endswith(tuple(COMPRESSION)):
            out = os.path.join(tmp, f"{i}_{os.path.basename(path).rsplit('.', 1)[0]}")
            with open_bytes(path) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            path = out
        plain.append(path)
    return plain


def reader_options(builder: str, files: list[str], encoding: str, delimiter: str,
                   columns: Optional[list[str]] = None) -> dict:
    """The `datasets` builder's keyword arguments for `files` (data.encoding, data.csv_delimiter, data.csv_columns):
    one answer for the in-memory and the streaming reader."""
    if columns and builder != "csv":
        raise UserError(f"data.csv_columns names the columns of csv/tsv files without a header row; {files[0]} is read "
                        f"as {builder}, whose columns have names: leave data.csv_columns unset")
    if builder == "parquet":
        return {}
    options = {"encoding": files_encoding(files, encoding)}
    if builder == "csv":
        options["sep"] = csv_delimiter(files, encoding, delimiter)
        if columns:
            for path in files:
                _check_field_count(path, options["sep"], file_encoding(path, encoding), list(columns))
            options["column_names"] = list(columns)  # pandas' `names`: the first line is then a row of data
    return options


def _text(path: str, encoding: str):
    """The (decompressed) file as text for a look at its first line; undecodable bytes replaced, newlines kept."""
    return io.TextIOWrapper(open_bytes(path), encoding=encoding, errors="replace", newline="")


def _first_row(path: str, delimiter: str, encoding: str) -> list[str]:
    import csv

    with _text(path, encoding) as f:
        return next(csv.reader(f, delimiter=delimiter), [])


def _check_field_count(path: str, delimiter: str, encoding: str, columns: list[str]) -> None:
    """data.csv_columns must name every field: with fewer names pandas silently makes the first fields an index and
    shifts the rest (labels read as texts)."""
    row = _first_row(path, delimiter, encoding)
    if len(row) != len(columns):
        shown = ", ".join(repr(v[:30]) for v in row[:4]) + (", ..." if len(row) > 4 else "")
        raise UserError(f"data.csv_columns names {len(columns)} columns ({', '.join(columns)}) but {path} has "
                        f"{len(row)} fields in its first row ({shown}): name each of them, in order")


def _refuse_data_as_header(table, cfg: DataConfig, path: str) -> None:
    """A csv file without a header row (AG News, many exports: `"3","Wall St. Bears ...","Reuters - ..."`) has its
    first row read as the column names, which then look like data. When a column the run wants is missing and the
    names look so (a number, a value their column holds again, a sentence), that is a one-line error saying how to
    name the columns; before, the error listed the first row as the columns, or the first text was silently
    taken for a header."""
    from .text_columns import column_named, wanted_columns

    names = table.column_names
    wanted = wanted_columns(cfg.text_column) + [cfg.label_column]
    if all(column_named(names, w) for w in wanted):
        return
    first = table.select(range(min(len(table), 1000))) if len(table) else table
    looks = [n for n in names if _looks_like_data(n, first[n])]
    if not looks:
        return
    example = ",".join({1: ["text"], 2: ["label", "text"]}.get(
        len(names), ["label", "title", "text"] + [f"extra{i}" for i in range(1, len(names) - 2)]))
    shown = ", ".join(repr(n[:40]) for n in names[:4]) + (", ..." if len(names) > 4 else "")
    raise UserError(f"{path} seems to have no header row: its first row ({shown}) looks like data, not column "
                    f"names; name its {len(names)} columns with data.csv_columns, in order (e.g. "
                    f"data.csv_columns=[{example}]), and point data.text_column / data.label_column at them")


def _looks_like_data(name: str, values: list) -> bool:
    """A column name that is a number, that its column holds again as a value, or that is a sentence (5+ words)."""
    stripped = name.strip()
    try:
        float(stripped)
        return True
    except ValueError:
        pass
    if len(stripped.split()) >= 5:
        return True
    return any(isinstance(v, str) and v.strip() == stripped for v in values)


def csv_delimiter(files: list[str], encoding: str, delimiter: str) -> str:
    """`data.csv_delimiter`; `auto`: tab for .tsv files, else the candidate found most often in the header line."""
    if delimiter != "auto":
        return "\t" if delimiter == "tab" else delimiter
    if all(format_suffix(f) == ".tsv" for f in files):
        return "\t"
    with _text(files[0], file_encoding(files[0], encoding)) as f:
        header = f.readline()
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def wrong_encoding(where: str) -> str:
    """The error for a file that is not in data.encoding (`where`: undecodable's description of it)."""
    return (f"{where}; set data.encoding (cp1252 for files from Excel or Windows, latin-1; utf-16 for Excel's "
            "'Unicode Text') or convert the file to UTF-8")


def undecodable(files: list[str], encoding: str) -> str | None:
    """'FILE is not ENCODING text (byte 0x.. near offset N)' for the first such file, else None."""
    for path in files:
        decoder, offset = codecs.getincrementaldecoder(encoding)(), 0
        with open_bytes(path) as f:
            while chunk := f.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    return (f"{path} is not {encoding} text (byte 0x{err.object[err.start]:02x} near offset "
                            f"{offset + err.start})")
                offset += len(chunk)
    return None


@contextlib.contextmanager
def _quiet_datasets_errors():
    log = logging.getLogger("datasets")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
