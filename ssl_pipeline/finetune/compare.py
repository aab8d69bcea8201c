"""Which method saves the most labels on my data? One table from several label-efficiency reports of the same
data (e.g. SimCLR, BYOL, VICReg and DINO encoders), with paired 95 % intervals against `supervised`:

    python -m ssl_pipeline.finetune.compare runs/simclr/label_efficiency.json runs/dino/label_efficiency.json \
        [--against ROW] [--metric balanced_accuracy] [--out comparison.md]

`--metric balanced_accuracy` scores the mean recall over classes (imbalanced data), from the per-example results.
`--against ROW` measures every other row against that one instead (any row of the table, e.g. two settings of one
method: `--against "simclr:fixmatch (run_a)"`), so "is setting B better than setting A?" gets its paired interval.

SSL rows are named `<task>:<row>` (dino:finetune); baseline rows (supervised, classic) do not depend on the
encoder — same subsets, seeds and recipe — so they are taken once, and must agree between the reports that have
them (checked). The reports must score the same split of the same data (checked: size, labels and per-example
results' length) for the comparison to be paired.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UserError, exit_on_user_error
from .evaluators import BASELINES, COMBINED
from .report import label_multiplier, metric_name, scored_rows, summarize
from .significance import Bootstrap


def merged_rows(docs: list[dict], names: list[str] | None = None) -> list[dict]:
    """SSL rows as `<task>:<row>`; a name two reports share (two SimCLR runs, say) gets its report's name appended,
    `simclr:finetune (run_a)`, so their seeds are never pooled into one row. `names`: one per report (default
    "report 1", "report 2", ...)."""
    names = names or [f"report {i + 1}" for i in range(len(docs))]
    owners: dict[str, set] = {}
    for i, d in enumerate(docs):
        for r in d["rows"]:
            if r["method"] not in BASELINES:
                owners.setdefault(f"{d.get('task', 'ssl')}:{r['method']}", set()).add(i)
    keys = {(d.get("data"), d.get("n_test"), d.get("evaluated_on", "test"), d.get("num_classes")) for d in docs}
    if len(keys) > 1:
        raise UserError(f"the reports score different data or splits: {sorted(map(str, keys))}")
    rows, baselines = [], {}
    for i, d in enumerate(docs):
        task = d.get("task", "ssl")
        for r in d["rows"]:
            if r["method"] in BASELINES:
                key = (r["method"], r["label_fraction"], r["seed"])
                if key in baselines and abs(baselines[key]["accuracy"] - r["accuracy"]) > 1e-9:
                    raise UserError(f"{r['method']} at {r['label_fraction']} seed {r['seed']} differs between the "
                                    "reports (different fine-tune recipes?): they cannot share a baseline")
                baselines.setdefault(key, r)
            else:
                name = f"{task}:{r['method']}"
                rows.append({**r, "method": name if len(owners[name]) == 1 else f"{name} ({names[i]})"})
    return rows + list(baselines.values())


def _is_ssl(name: str) -> bool:
    """A merged row of an SSL method (`dino:finetune`, `mlm:knn (run_a)`), not a baseline or a combined row."""
    return name not in BASELINES and name.split(":", 1)[-1].split(" (")[0] not in COMBINED


def comparison(docs: list[dict], names: list[str] | None = None, against: str = "supervised",
               metric: str = "accuracy") -> dict:
    """`against`: the row every other row's gain is measured from (paired, same subsets and test examples).
    `metric`: accuracy, or balanced_accuracy (the reports must keep the same scored labels)."""
    if metric != "accuracy" and len({d.get("test_labels") for d in docs}) > 1:
        raise UserError("--metric balanced_accuracy needs reports that keep the same scored labels (test_labels); "
                        "these differ or some predate them")
    rows, weights = scored_rows(docs[0], merged_rows(docs, names), metric)
    summary = summarize(rows)
    present = list(dict.fromkeys(s["method"] for s in summary))
    if against != "supervised" and against not in present:
        raise UserError(f"--against {against!r} is not a row of these reports; rows: {', '.join(present)}")
    boot = Bootstrap(rows, docs[0].get("n_test", 0), example_weights=weights)
    for s in summary:
        s["ci95"] = boot.interval(s["method"], s["label_fraction"])
    reference = {s["label_fraction"]: s for s in summary if s["method"] == against}
    gains = []
    for s in summary:
        # against supervised: the SSL rows (baselines are not compared with each other, and a combined row is half a
        # baseline: `--against classic` measures it); against a row: all others
        compared = _is_ssl(s["method"]) if against == "supervised" else s["method"] != against
        ref = reference.get(s["label_fraction"])
        if compared and ref is not None:
            gains.append({"method": s["method"], "label_fraction": s["label_fraction"], "gain": s["mean"] - ref["mean"],
                          **boot.difference(s["method"], against, s["label_fraction"])})
    multipliers = {}
    sup_rows = [s for s in summary if s["method"] == "supervised"]
    for m in dict.fromkeys(s["method"] for s in summary if _is_ssl(s["method"])):
        own = [{**s, "method": "finetune"} for s in summary if s["method"] == m]  # one SSL row vs supervised
        lm = label_multiplier(own + sup_rows)
        multipliers[m] = lm["text"] if lm else "–"
    return {"summary": summary, "gains": gains, "against": against, "label_multiplier": multipliers, "metric": metric,
            "bootstrap": {"over": "seeds and test examples" if boot.per_example else "seeds only"}}


def markdown(doc: dict) -> str:
    summary = doc["summary"]
    fracs = sorted({s["label_fraction"] for s in summary})
    n_of = {f: next(s["n_labels"] for s in summary if s["label_fraction"] == f) for f in fracs}
    cell = {(s["method"], s["label_fraction"]): s for s in summary}
    gain = {(g["method"], g["label_fraction"]): g for g in doc["gains"]}
    methods = list(dict.fromkeys(s["method"] for s in summary if s["method"] not in BASELINES))
    methods += [m for m in BASELINES if any(s["method"] == m for s in summary)]
    lines = [f"{metric_name(doc.get('metric', 'accuracy')).capitalize()} (%), mean ± std over seeds; in brackets the gain over `{doc.get('against', 'supervised')}` "
             f"with its 95 % interval "
             f"(paired bootstrap over {doc['bootstrap']['over']}; n.s. = not significant).", "",
             "| row | " + " | ".join(f"{f * 100:g} % ({n_of[f]:,} labels)" for f in fracs) + " | label multiplier |",
             "| --- | " + " | ".join("---" for _ in fracs) + " | --- |"]
    for m in methods:
        vals = []
        for f in fracs:
            s = cell.get((m, f))
            if s is None:
                vals.append("–")
                continue
            text = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
            g = gain.get((m, f))
            if g and "ci95" in g:
                lo, hi = g["ci95"]
                text += (f" ({100 * g['gain']:+.1f}, {100 * lo:+.1f} to {100 * hi:+.1f}"
                         f"{'' if g['significant'] else ', n.s.'})")
            vals.append(text)
        lines.append(f"| {m} | " + " | ".join(vals) + f" | {doc['label_multiplier'].get(m, '')} |")
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ssl_pipeline.finetune.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--against", default="supervised",
                    help="the row the others are measured from (default supervised; any row name of the table)")
    ap.add_argument("--metric", default="accuracy", choices=["accuracy", "balanced_accuracy"],
                    help="balanced_accuracy: mean recall over classes (for imbalanced data)")
    ap.add_argument("--out", default=None, help="also write the table (markdown) and OUT.json")
    args = ap.parse_args(argv)
    docs = []
    for p in args.reports:
        path = Path(p)
        if not path.is_file():
            raise UserError(f"{p} is not a file (a label_efficiency.json)")
        try:
            docs.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            raise UserError(f"{p} is not valid JSON") from None
    names = [Path(p).resolve().parent.name for p in args.reports]  # the run directory, e.g. runs/simclr_a -> simclr_a
    if len(set(names)) < len(names):
        names = list(args.reports)
    doc = comparison(docs, names, args.against, args.metric)
    md = markdown(doc)
    print(md, end="")
    if args.out:
        from ..atomic import write_json, write_text

        write_text(Path(args.out), md)
        write_json(Path(args.out).with_suffix(".json"), doc)


if __name__ == "__main__":
    main(sys.argv[1:])

