"""`pretrain_curves.png`: the loss beside the representation checks (kNN accuracy, RankMe, embedding std) against
pretraining step, from `metrics.jsonl`. Written at the end of pretraining; for a run still going:

    python -m ssl_pipeline.curves OUTPUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PANELS = (("loss", "pretext loss"), ("knn_accuracy", "kNN accuracy, labeled train carve (%)"),
          ("rankme", "RankMe (effective rank)"), ("embedding_std", "embedding std × √D (collapse < 0.02)"))


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written while we read
            continue
    return rows


def plot_pretraining(output_dir: Path, title: str = "") -> Path | None:
    """Writes OUTPUT_DIR/pretrain_curves.png (atomically); None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = Path(output_dir) / "metrics.jsonl"
    if not metrics.is_file():
        return None
    rows = read_metrics(metrics)
    panels = [(k, label) for k, label in PANELS if any(k in r for r in rows)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), dpi=110, squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        pts = sorted((r["step"], r[key]) for r in rows if key in r and r[key] is not None)
        x = [p[0] for p in pts]
        y = [100 * p[1] if key == "knn_accuracy" else p[1] for p in pts]
        ax.plot(x, y, marker="o" if len(pts) < 40 else None, markersize=3, label="training")
        if key == "loss":
            _held_out(ax, rows)
        ax.set_xlabel("pretraining step")
        ax.set_title(label, fontsize=8)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    from .atomic import save_figure

    return save_figure(fig, Path(output_dir) / "pretrain_curves.png")


def _held_out(ax, rows: list[dict]) -> None:
    """Text: the held-out MLM loss and, dashed, the loss of knowing token frequencies alone — the plateau an
    encoder has to leave before it has learned from context (pretraining_record.py)."""
    pts = sorted((r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None)
    if not pts:
        return
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", markersize=3, label="held-out")
    freq = next((r["eval_token_frequency_loss"] for r in rows if r.get("eval_token_frequency_loss") is not None), None)
    if freq is not None:
        ax.axhline(freq, color="grey", linestyle="--", linewidth=1, label="token frequencies alone")
    ax.legend(fontsize=6)


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ssl_pipeline.curves OUTPUT_DIR", file=sys.stderr)
        sys.exit(2)
    out = plot_pretraining(Path(args[0]))
    if out is None:
        print(f"error: no metrics.jsonl rows to plot in {args[0]}", file=sys.stderr)
        sys.exit(2)
    print(out)


if __name__ == "__main__":
    main()
