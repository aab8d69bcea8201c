"""Labels as users have them (ints, strings, a `datasets` ClassLabel) -> int64 class ids + class names.

The names travel with the data into subsets, reports and errors (`class 'circle'`, not `class '0'`). Every split
is encoded with the training split's names, so a class id means the same class in train, validation and test.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import UnlabeledData, UserError
from .. import progress


def is_missing(value) -> bool:
    """An empty label cell: None, NaN (a numeric CSV column with holes) or blank text."""
    return value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip())


def unlabeled_rows(raw: Optional[Sequence], class_label: bool = False) -> Optional[np.ndarray]:
    """Boolean mask of the rows without a label (they go to pretraining only; the data line counts them), or None
    when no row has one. `class_label`: -1 also means "no label" (a `datasets` ClassLabel)."""
    if raw is None:
        return None
    missing = np.array([is_missing(v) or (class_label and v == -1) for v in raw], dtype=bool)
    if missing.all():
        return None
    return missing


def no_labels(label_column: str, where: str, columns: list[str], data_column: str | list[str], empty: bool = False):
    """The UnlabeledData error for fine-tuning data that has no `label_column`: the columns it has besides the text
    or image column(s) `data_column` (the labels are often under another name), or that the column is all empty."""
    others = [c for c in columns if c not in ([data_column] if isinstance(data_column, str) else data_column)]
    hint = (" (every cell of that column is empty)" if empty else
            f" (its columns: {', '.join(columns)}); set data.label_column to the one holding the labels" if others else "")
    return UnlabeledData(f"data.label_column '{label_column}' is not in {where}: it has no labels to fine-tune on{hint}")


def encode_labels(raw: Sequence, names: Optional[list[str]] = None, where: str = "the data",
                  feature_names: Optional[list[str]] = None) -> tuple[np.ndarray, list[str]]:
    """-> (ids, names). `names` (the train split's) fixes the mapping; `feature_names` are a ClassLabel's."""
    raw = list(raw)
    nested = next((v for v in raw if isinstance(v, (list, tuple, dict, np.ndarray))), None)
    if nested is not None:  # str() made "['bug', 'ui']" a class of its own
        raise UserError(f"{where} has a label that is a {type(nested).__name__} ({str(nested)[:60]}): several labels "
                        "per example (multi-label) are not supported; keep one label per example in "
                        "data.label_column")
    if any(is_missing(v) for v in raw):
        raise UserError(f"{where} has {sum(map(is_missing, raw))} example(s) without a label; label or drop them")
    if raw and all(isinstance(v, (float, np.floating)) and float(v).is_integer() for v in raw):
        raw = [int(v) for v in raw]  # an integer column read as floats because some of its cells were empty
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw)
    if ints and feature_names:  # ClassLabel: ids are already right, names come with the feature
        raw = [feature_names[int(v)] for v in raw]
        ints = False
    if ints:
        arr = np.asarray(raw, dtype=np.int64)
        if len(arr) and arr.min() < 0:
            raise UserError(f"{where} has a negative label ({int(arr.min())}); labels must be 0..K-1 or names")
        if names is None:
            present = np.unique(arr)
            if np.array_equal(present, np.arange(len(present))):  # class ids 0..K-1
                return arr, [str(i) for i in range(len(present))]
            # values, not ids (star ratings 1-5, years): the classes are the values present, in order; as ids they
            # made "6 classes (0, 1, 2, 3, 4, 5)" with an empty class 0, or 2,011 classes for three years
        elif not all(n.lstrip("-").isdigit() for n in names):  # ids of named classes (a ClassLabel train split,
            if len(arr) and arr.max() >= len(names):                # a test table of plain ids)
                raise UserError(f"{where} has label {int(arr.max())}, but the train split has only {len(names)} "
                                "classes")
            return arr, names
    if names is None and not feature_names and all(isinstance(v, (int, float, np.number)) for v in raw):
        _refuse_quantities(raw, where)
    text = [str(v).strip() for v in raw]  # "pos " typed in a spreadsheet is the class "pos", not a second one
    if names is None and feature_names:  # the ClassLabel's order (the dataset's own ids), classes present only
        present = set(text)
        names = [n for n in map(str, feature_names) if n in present]
    elif names is None:
        names = sorted(set(text), key=_natural)
        _say_case_twins(names, where)
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(text) - index.keys())
    if unknown:
        raise UserError(f"{where} has class '{unknown[0]}' that the train split does not have "
                        f"(train classes: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
    return np.asarray([index[t] for t in text], dtype=np.int64), names


def _refuse_quantities(values: list, where: str) -> None:
    """A one-line error for a numeric label column that measures rather than names: many distinct values (over 50)
    with a median of fewer than 3 examples each — prices, scores, ages. As classes they failed the test carve with
    "class '3.71' has only 1 example", which named the symptom, not the column's kind."""
    distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    if len(distinct) > 50 and np.median(counts) < 3:
        shown = ", ".join(f"{v:g}" for v in distinct[:: max(1, len(distinct) // 3)][:3])
        raise UserError(f"{where} has {len(distinct):,} distinct numeric labels for {len(values):,} examples (e.g. "
                        f"{shown}): a quantity to predict (regression), not classes; fine-tuning here trains a "
                        "classifier: bin the values into classes, or set data.label_column to a column of classes")


def _say_case_twins(names: list[str], where: str) -> None:
    """A note when class names differ only in case ('Spam' and 'spam'): kept apart (it may be meant), but most often
    two spellings of one label typed by hand, which splits a class in two."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            progress.say_once(f"note: {where} has classes '{other}' and '{name}', which differ only in case: they are "
                              "two classes; if they are one, write them alike", key=("case twins", other, name))
            return


def _natural(name: str):
    """'2' before '10' when names are numbers written as text (CSV columns read as strings)."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)
