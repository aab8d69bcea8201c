"""Label-efficiency report: rows -> summary (mean ± std over seeds), gains over `supervised`, the label
multiplier, and the four files (json, csv, png, md). Files are written atomically."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..atomic import write_json, write_text

SSL_METHODS = ("linear_probe", "finetune", "knn")
METHOD_ORDER = ("finetune", "linear_probe", "knn", "supervised", "classic")


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["label_fraction"]), []).append(r)
    out = []
    for (method, frac), rs in groups.items():
        accs = np.array([r["accuracy"] for r in rs])
        out.append({"method": method, "label_fraction": frac, "n_labels": int(round(np.mean([r["n_labels"] for r in rs]))),
                    "mean": float(accs.mean()), "std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                    "seeds": len(accs)})
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(out, key=lambda s: (order.get(s["method"], 99), s["label_fraction"]))


def _curve(summary: list[dict], method: str) -> list[tuple[int, float]]:
    return sorted((s["n_labels"], s["mean"]) for s in summary if s["method"] == method)


def label_multiplier(summary: list[dict]) -> dict | None:
    """How many times more labels `supervised` needs to match the best SSL method at the smallest fraction.

    Interpolates the supervised curve linearly in log(number of labels); "> N×" when it never gets there.
    """
    sup = _curve(summary, "supervised")
    ssl = [s for s in summary if s["method"] in SSL_METHODS]
    if not sup or not ssl:
        return None
    smallest = min(s["n_labels"] for s in ssl)
    best = max((s for s in ssl if s["n_labels"] == smallest), key=lambda s: s["mean"])
    target = best["mean"]
    result = {"ssl_method": best["method"], "n_labels": smallest, "ssl_accuracy": target}
    if sup[0][1] >= target:
        reach = sup[0][0]
    else:
        reach = None
        for (n0, a0), (n1, a1) in zip(sup, sup[1:]):
            if a0 < target <= a1:
                t = (target - a0) / (a1 - a0)
                reach = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
                break
    if reach is None:
        result.update(multiplier=None, text=f"> {sup[-1][0] / smallest:.1f}×")
    else:
        result.update(multiplier=reach / smallest, text=f"{reach / smallest:.1f}×")
    return result


def gains(summary: list[dict]) -> list[dict]:
    """Best SSL method minus `supervised`, per label fraction."""
    out = []
    for frac in sorted({s["label_fraction"] for s in summary}):
        sup = [s for s in summary if s["method"] == "supervised" and s["label_fraction"] == frac]
        ssl = [s for s in summary if s["method"] in SSL_METHODS and s["label_fraction"] == frac]
        if sup and ssl:
            best = max(ssl, key=lambda s: s["mean"])
            out.append({"label_fraction": frac, "best_ssl_method": best["method"], "best_ssl": best["mean"],
                        "supervised": sup[0]["mean"], "gain": best["mean"] - sup[0]["mean"]})
    return out


def write_report(output_dir: Path, header: dict, rows: list[dict]) -> dict:
    summary = summarize(rows)
    doc = {**header, "metric": "accuracy", "rows": rows, "summary": summary, "gain_over_supervised": gains(summary),
           "label_multiplier": label_multiplier(summary)}
    write_json(output_dir / "label_efficiency.json", doc)
    write_text(output_dir / "label_efficiency.csv", _csv(rows))
    write_text(output_dir / "label_efficiency.md", markdown(doc))
    _plot(output_dir / "label_efficiency.png", summary, f"{header.get('task', '')} on {header.get('data', '')}")
    return doc


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["method", "label_fraction", "n_labels", "seed", "accuracy"], extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _pct(frac: float) -> str:
    return f"{frac * 100:g} %"


def markdown(doc: dict) -> str:
    summary = doc["summary"]
    fracs = sorted({s["label_fraction"] for s in summary})
    methods = [m for m in METHOD_ORDER if any(s["method"] == m for s in summary)]
    cell = {(s["method"], s["label_fraction"]): s for s in summary}
    n_of = {f: next(s["n_labels"] for s in summary if s["label_fraction"] == f) for f in fracs}
    lines = [f"### Label efficiency — {doc.get('task', '')} ({doc.get('data', '')})", "",
             f"{'Validation' if doc.get('evaluated_on') == 'validation' else 'Test'} accuracy (%), mean ± std over {max(s['seeds'] for s in summary)} seeds; encoder `{doc.get('encoder', '')}`.", "",
             "| method | " + " | ".join(f"{_pct(f)} ({n_of[f]} labels)" for f in fracs) + " |",
             "| --- | " + " | ".join("---" for _ in fracs) + " |"]
    for m in methods:
        vals = []
        for f in fracs:
            s = cell.get((m, f))
            vals.append(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" if s else "–")
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    if doc["gain_over_supervised"]:
        lines += ["", "Gain of the best SSL method over `supervised` (same architecture from random weights):", ""]
        for g in doc["gain_over_supervised"]:
            lines.append(f"- {_pct(g['label_fraction'])} labels: {g['best_ssl_method']} {100 * g['best_ssl']:.1f} % vs "
                         f"{100 * g['supervised']:.1f} % → {100 * g['gain']:+.1f} points")
    lm = doc.get("label_multiplier")
    if lm:
        lines += ["", f"Label multiplier: `supervised` needs **{lm['text']}** the labels to match {lm['ssl_method']} with "
                      f"{lm['n_labels']} labels ({100 * lm['ssl_accuracy']:.1f} %), interpolated on a log scale."]
    return "\n".join(lines) + "\n"


def _plot(path: Path, summary: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m in METHOD_ORDER:
        pts = sorted((s["n_labels"], s["mean"], s["std"]) for s in summary if s["method"] == m)
        if not pts:
            continue
        n, mean, std = (np.array(v) for v in zip(*pts))
        style = "--" if m in ("supervised", "classic") else "-"
        ax.plot(n, 100 * mean, style, marker="o", label=m)
        ax.fill_between(n, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("number of labeled training examples (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Label efficiency: {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
