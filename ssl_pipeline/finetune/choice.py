"""Which SSL row a test report headlines (its gains and label multipliers), chosen without the test split.

Picking the best of several SSL rows (finetune, linear_probe, knn, fixmatch …) by their test means and then
reporting that mean on the same split flatters it: the largest of several noisy means is biased upwards (the
winner's curse), and with 18–40 labels the rows are often within noise of each other. When the user ran the same
encoder with `finetune.evaluate_on=validation` first (OUTPUT_DIR/validation), that run's ranking chooses instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .evaluators import SSL_METHODS
from .report import scored_rows, summarize


def validation_ranking(path: Path, encoder_sha1: str, metric: str,
                       settings_of: Callable[[str], dict]) -> dict | None:
    """The SSL rows of the validation report at `path`, ranked by their mean per label budget — or None when there
    is none, it is unreadable, or it scored another encoder. A method whose rows were made with other settings than
    this run's (`settings_of(method)`, e.g. finetune.fixmatch.*) is left out: its ranking was of another recipe."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if doc.get("encoder_sha1") != encoder_sha1 or doc.get("evaluated_on") != "validation":
        return None
    rows = [r for r in doc.get("rows", [])
            if r.get("method") in SSL_METHODS and r.get("settings", {}) == settings_of(r["method"])]
    try:
        scored, _ = scored_rows(doc, rows, metric)
    except UserError:  # rows from before per-example results: ranked by plain accuracy
        scored = rows
    fractions: dict[float, dict] = {}
    for s in sorted(summarize(scored), key=lambda s: -s["mean"]):
        entry = fractions.setdefault(s["label_fraction"], {"label_fraction": s["label_fraction"],
                                                           "n_labels": s["n_labels"], "ranking": []})
        entry["ranking"].append(s["method"])
    if not fractions:
        return None
    return {"report": str(path), "fractions": sorted(fractions.values(), key=lambda e: e["label_fraction"])}
