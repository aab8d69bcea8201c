"""Which column(s) of a table hold the text: `data.text_column` as named (or in another case), several joined into
one text, or — when the default `text` is not a column — the table's one text column.

Users' tables name their text as they like (SST-2's `sentence`, a review export's `review`), and tickets, reviews
and news keep it in several fields (`subject` + `body`, `title` + `content`): joining them is what users did by hand
before a run could start. One string column besides the labels is unambiguous, so the run takes it and says so;
two or more are not guessed (an id or a date can be a string too): the error names the columns.
"""
from __future__ import annotations

from typing import Optional, Union

from ..errors import UserError

SEPARATOR = "\n"  # between the fields of one text: whitespace to the tokenizer, a line break to a reader
DEFAULT = "text"


def column_named(columns: list[str], wanted: str) -> Optional[str]:
    """`wanted`, else the one column that differs from it only in case (a spreadsheet's `Text` / `Label` header);
    None when there is neither. A missed label column would make the corpus unlabeled: pretrained on whole,
    test rows included."""
    if wanted in columns:
        return wanted
    folded = [c for c in columns if c.casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def wanted_columns(text_column: Union[str, list[str]]) -> list[str]:
    """data.text_column as a list: one name, or the fields joined into each text."""
    return [text_column] if isinstance(text_column, str) else list(text_column)


def resolve_text_columns(strings: dict[str, bool], text_column: Union[str, list[str]], label_column: Optional[str],
                         what: str) -> list[str]:
    """The columns whose values make each text, in order. `strings`: every column of the table -> whether it holds
    strings. A one-line error naming the columns when a wanted one is missing and the default cannot be resolved."""
    from ..progress import say_once

    columns = list(strings)
    wanted = wanted_columns(text_column)
    if not wanted:
        raise UserError("data.text_column is empty: name the column holding the text (or several to join)")
    found = [column_named(columns, w) for w in wanted]
    if all(found):
        return found
    if wanted == [DEFAULT]:
        label = column_named(columns, label_column) if label_column else None
        texts = [c for c in columns if strings[c] and c != label]
        if len(texts) == 1:
            say_once(f"data.text_column '{DEFAULT}' is not a column of {what}: reading the texts from its one text "
                     f"column, '{texts[0]}' (set data.text_column to choose)")
            return texts
    missing = next(w for w, f in zip(wanted, found) if f is None)
    raise UserError(f"data.text_column '{missing}' is not a column of {what} (columns: {columns}); set "
                    "data.text_column to the column holding the text, or to several to join, e.g. "
                    "data.text_column=[title,body]")


def table_strings(table) -> dict[str, bool]:
    """`resolve_text_columns`' view of a `datasets` table: its columns and which are typed as strings."""
    return {name: getattr(feature, "dtype", None) in ("string", "large_string")
            for name, feature in table.features.items()}


def joined(rows) -> list[str]:
    """One text per row of field values (a tuple each): the non-empty string fields, stripped, one per line."""
    return [SEPARATOR.join(v.strip() for v in fields if isinstance(v, str) and v.strip()) for fields in rows]


def joined_name(columns: list[str]) -> str:
    """The name of the column that holds the joined fields (it says which they are in messages)."""
    return " + ".join(columns)
