"""What an encoder's pretraining did, in a few numbers kept beside its weights (`ssl_encoder.json`, key
`pretraining`): steps, passes over how much data, and the last loss and representation checks. A fine-tune report
made anywhere from that encoder can then say *why* pretraining did or did not save labels, and what to change.

The one judgement made here is the masked-LM plateau: a text encoder whose held-out MLM loss is within
PLATEAU_MARGIN nats of the loss of knowing token frequencies alone has not yet learned from context. Measured
points behind the margin: the stdlib-docstring demo (−0.22 nats after 420 steps, no label saving), the same corpus
after 1,000 steps (−0.46: +15 points over supervised at 1 % labels on the validation carve; a small corpus's
held-out loss falls slowly while its embeddings improve) and two Debian encoders (−0.76 after 1,600 steps and −2.21
after 3,085: both saved labels, significantly).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

KEYS = ("loss", "eval_loss", "eval_token_frequency_loss", "knn_accuracy", "rankme", "embedding_std")
PLATEAU_MARGIN = 0.3  # nats below the token-frequency loss an MLM must reach before its encoder counts as trained


def summarize(metrics_path: Path, examples: Optional[int], unit: str, init_from: Optional[str]) -> dict:
    """The record, from the run's metrics.jsonl (rows re-logged after a resume are already deduplicated there)."""
    from .curves import read_metrics

    rows = read_metrics(metrics_path) if metrics_path.is_file() else []
    final, first_knn = {}, None
    for r in rows:
        final.update({k: r[k] for k in KEYS if k in r})
        if first_knn is None and "knn_accuracy" in r:
            first_knn = {"step": r["step"], "accuracy": r["knn_accuracy"]}
    logged = [r for r in rows if "samples_per_sec" in r]  # training rows carry the fractional epoch
    record = {"steps": rows[-1]["step"] if rows else 0,
              "epochs": round(float(logged[-1]["epoch"]), 2) if logged else None,
              "examples": examples, "unit": unit, "init_from": init_from, "final": final}
    if first_knn is not None:
        record["first_knn"] = first_knn
    return record


def on_plateau(record: dict) -> bool:
    """True when a text encoder's held-out MLM loss never left the token-frequency plateau."""
    f = record.get("final", {})
    return ("eval_loss" in f and "eval_token_frequency_loss" in f
            and f["eval_token_frequency_loss"] - f["eval_loss"] < PLATEAU_MARGIN)


def describe(record: dict) -> str:
    """One sentence of facts: 'pretrained for 420 steps (20.0 passes over 1,380 packed token blocks) from …'."""
    from .monitor import collapse_claim_due

    passes = "" if record.get("epochs") is None else (
        f" ({record['epochs']:.1f} passes over {record['examples']:,} {record['unit']})" if record.get("examples")
        else f" ({record['epochs']:.1f} passes over the data)")
    budget = f" within a budget of {record['max_minutes']:g} minutes" if record.get("max_minutes") else ""
    parts = [f"pretrained for {record['steps']:,} steps{passes}{budget}"
             + (f" from {record['init_from']}" if record.get("init_from") else " from random weights")]
    f = record.get("final", {})
    if "eval_loss" in f and "eval_token_frequency_loss" in f:
        gap = f["eval_token_frequency_loss"] - f["eval_loss"]
        parts.append(f"held-out MLM loss {f['eval_loss']:.2f}, {gap:.2f} nats below the "
                     f"{f['eval_token_frequency_loss']:.2f} of knowing token frequencies alone"
                     + (" — still on that plateau: the encoder has learned little from context" if on_plateau(record)
                        else ""))
    if "knn_accuracy" in f:
        first = record.get("first_knn")
        start = (f"{100 * first['accuracy']:.1f} % at step {first['step']:,} → "
                 if first and first["step"] != record["steps"] else "")
        parts.append(f"kNN accuracy of its embeddings on a labeled train carve {start}{100 * f['knn_accuracy']:.1f} %")
    # the run's last step is past its warm-up; the engine's alarm asked the same at every check
    if "embedding_std" in f and collapse_claim_due(f, record["steps"]):
        parts.append(f"its embeddings collapsed (std {f['embedding_std']:.3f})")
    return "; ".join(parts)


def advice(record: dict, modality: str) -> str:
    """What to change when pretraining saved no labels, most likely lever first."""
    more_data = ("more unlabeled text (data.extra_pretrain_files)" if modality == "text"
                 else "more unlabeled images (an unlabeled/ folder beside train/)")
    levers = ["longer pretraining (pretrain.epochs, pretrain.min_steps, pretrain.max_steps or pretrain.max_minutes)", more_data]
    if not record.get("init_from"):
        levers.insert(0 if on_plateau(record) else 2, "starting from a public checkpoint (model.init_from)")
    return "To try: " + "; ".join(levers)
