"""What an encoder's pretraining did, in a few numbers kept beside its weights (`ssl_encoder.json`, key
`pretraining`): steps, passes over how much data, and the last loss and representation checks. A fine-tune report
made anywhere from that encoder can then say *why* pretraining did or did not save labels, and what to change.

The one judgement made here is the masked-LM plateau: a text encoder whose held-out MLM loss is within
PLATEAU_MARGIN nats of the loss of knowing token frequencies alone has not yet learned from context. Measured
points behind the margin: the stdlib-docstring demo (−0.22 nats after 420 steps, no label saving), the same corpus
after 1,000 steps (−0.46: +15 points over supervised at 1 % labels on the validation carve; a small corpus's
held-out loss falls slowly while its embeddings improve) and two Debian encoders (−0.76 after 1,600 steps and −2.21
after 3,085: both saved labels, significantly).

The other judgement is memorising: a held-out MLM loss that has risen OVERFIT_MARGIN nats or more above its lowest
value of the run. On 2,500 package one-liners (161 packed blocks) the 1,000-step floor is 500 passes: the held-out
loss rose from 7.27 at step 200 to 8.36 at step 400 while the training loss fell to 2.0, and the kNN accuracy of the
embeddings fell with it; "longer pretraining" is then the wrong advice. Such a run now stops early and exports the
encoder of its lowest held-out loss (best_encoder.py): the record says so (`stopped_memorising`, `encoder_from`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

KEYS = ("loss", "eval_loss", "eval_token_frequency_loss", "knn_accuracy", "rankme", "embedding_std")
PLATEAU_MARGIN = 0.3  # nats below the token-frequency loss an MLM must reach before its encoder counts as trained
OVERFIT_MARGIN = 0.2  # nats the held-out MLM loss may rise above its lowest value before the run counts as memorising


def summarize(metrics_path: Path, examples: Optional[int], unit: str, init_from: Optional[str]) -> dict:
    """The record, from the run's metrics.jsonl (rows re-logged after a resume are already deduplicated there)."""
    from .curves import read_metrics

    rows = read_metrics(metrics_path) if metrics_path.is_file() else []
    final, first_knn, best_eval, stopped = {}, None, None, None
    for r in rows:
        if r.get("stopped_memorising"):
            stopped = r["step"]
        final.update({k: r[k] for k in KEYS if k in r})
        if first_knn is None and "knn_accuracy" in r:
            first_knn = {"step": r["step"], "accuracy": r["knn_accuracy"]}
        if "eval_loss" in r and (best_eval is None or r["eval_loss"] < best_eval["loss"]):
            best_eval = {"step": r["step"], "loss": r["eval_loss"]}
    logged = [r for r in rows if "samples_per_sec" in r and r.get("step")]  # training rows carry the epoch
    steps = rows[-1]["step"] if rows else 0
    # the last logged row may be a few steps before the last step (a run stopped between log steps): scaled up
    record = {"steps": steps,
              "epochs": round(float(logged[-1]["epoch"]) * steps / logged[-1]["step"], 2) if logged else None,
              "examples": examples, "unit": unit, "init_from": init_from, "final": final}
    if first_knn is not None:
        record["first_knn"] = first_knn
    if best_eval is not None:
        record["best_eval"] = best_eval
    if stopped is not None and stopped == record["steps"]:  # not a stop that a continued run (patience 0) went past
        record["stopped_memorising"] = stopped
    return record


def memorising(record: dict) -> bool:
    """True when the held-out MLM loss ended OVERFIT_MARGIN nats or more above its lowest value of the run."""
    best, final = record.get("best_eval"), record.get("final", {})
    return bool(best) and "eval_loss" in final and risen(final["eval_loss"], best["loss"])


def risen(loss: float, lowest: float) -> bool:
    """A held-out loss OVERFIT_MARGIN nats or more above the run's lowest: the run's own judgement (best_encoder.py)
    and its record's are this one."""
    return loss - lowest >= OVERFIT_MARGIN


def on_plateau(record: dict) -> bool:
    """True when the exported text encoder's held-out MLM loss never left the token-frequency plateau."""
    f = record.get("final", {})
    return ("eval_loss" in f and "eval_token_frequency_loss" in f
            and _under_plateau(record, _exported_loss(record)) < PLATEAU_MARGIN)


def _under_plateau(record: dict, loss: float) -> float:
    """Nats by which a held-out MLM loss of the run is below the loss of knowing token frequencies alone."""
    return record["final"]["eval_token_frequency_loss"] - loss


def _nats_from_plateau(record: dict, loss: float) -> str:
    """'0.07 nats below' / '0.28 nats above': where a held-out loss sits against the token-frequency loss."""
    gap = _under_plateau(record, loss)
    return f"{abs(gap):.2f} nats {'below' if gap >= 0 else 'above'}"


def _exported_loss(record: dict) -> float:
    """The held-out loss of the encoder the run exported: its lowest one's when it kept that (`encoder_from`)."""
    kept = record.get("encoder_from")
    return kept["eval_loss"] if kept else record["final"]["eval_loss"]


def describe(record: dict) -> str:
    """One sentence of facts: 'pretrained for 420 steps (20.0 passes over 1,380 packed token blocks) from …'."""
    from .monitor import collapse_claim_due

    notes = []  # in one parenthesis after the step count
    if record.get("epochs") is not None:
        over = f"{record['examples']:,} {record['unit']}" if record.get("examples") else "the data"
        notes.append(f"{record['epochs']:.1f} passes over {over}")
    if record.get("stopped_memorising"):
        notes.append("stopped early: memorising")
    passes = f" ({'; '.join(notes)})" if notes else ""
    budget = f" within a budget of {record['max_minutes']:g} minutes" if record.get("max_minutes") else ""
    parts = [f"pretrained for {record['steps']:,} steps{passes}{budget}"
             + (f" from {record['init_from']}" if record.get("init_from") else " from random weights")]
    f = record.get("final", {})
    if "eval_loss" in f and "eval_token_frequency_loss" in f:
        if memorising(record):
            best = record["best_eval"]
            verdict = (f" — it had been {best['loss']:.2f} at step {best['step']:,}: the held-out loss rose while the "
                       f"training loss fell" + (f" to {f['loss']:.2f}" if "loss" in f else "")
                       + ", so the encoder memorised this corpus instead of learning from context")
            if record.get("encoder_from"):  # the best held-out loss, named just above
                verdict += f"; the encoder exported is step {record['encoder_from']['step']:,}'s, where it was lowest"
                if on_plateau(record):  # memorising before it had learned anything: too little text for this model
                    verdict += (f", {_nats_from_plateau(record, _exported_loss(record))} the token-frequency loss: "
                                "it began to memorise before it had left that plateau")
        else:
            verdict = " — still on that plateau: the encoder has learned little from context" if on_plateau(record) else ""
        parts.append(f"held-out MLM loss {f['eval_loss']:.2f}, {_nats_from_plateau(record, f['eval_loss'])} "
                     f"the {f['eval_token_frequency_loss']:.2f} of knowing token frequencies alone" + verdict)
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
    if memorising(record):  # more of the same steps would memorise more: more text, a checkpoint, or fewer steps
        best = record["best_eval"]["step"]
        # also when the run kept that step's encoder: a schedule that ends there decays its lr before it, and
        # its encoder was measured better (2,500 one-liners: 37.5 % against 30.8 % at 10 % labels)
        levers = [more_data, f"fewer steps (the held-out loss was lowest at step {best:,}: pretrain.max_steps={best}, "
                             "pretrain.min_steps=0)"]
        checkpoint_first = True
    else:
        levers = ["longer pretraining (pretrain.epochs, pretrain.min_steps, pretrain.max_steps or pretrain.max_minutes)",
                  more_data]
        checkpoint_first = on_plateau(record)
    if not record.get("init_from"):
        levers.insert(0 if checkpoint_first else 2, "starting from a public checkpoint (model.init_from)")
    return "To try: " + "; ".join(levers)
