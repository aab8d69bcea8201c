"""Label-efficiency report: rows -> summary (mean ± std over seeds), gains and label multipliers over `supervised`
and over the best baseline (the strongest of supervised, classic and the starting checkpoint's base_* rows at
each fraction: what the user would otherwise use), each with a 95 % bootstrap interval and a significance verdict
(significance.py), and the four files (json, csv, png, md), written atomically."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..atomic import write_json, write_text
from ..progress import duration

from .evaluators import BASELINES, COMBINED, SSL_METHODS
from .evaluators import ORDER as METHOD_ORDER
from .significance import LEVEL, Bootstrap, balanced_weights, multiplier_interval, unpack_correct, unpack_labels


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
        timed = [r["seconds"] for r in rs if "seconds" in r]  # rows written before cells were timed have none
        if timed:
            out[-1]["seconds"] = float(np.mean(timed))
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(out, key=lambda s: (order.get(s["method"], 99), s["label_fraction"]))


def _curve(summary: list[dict], method: str) -> list[tuple[int, float]]:
    return sorted((s["n_labels"], s["mean"]) for s in summary if s["method"] == method)


def best_baselines(summary: list[dict]) -> list[dict]:
    """Per label fraction, the strongest baseline row (mean accuracy) among BASELINES."""
    out = []
    for frac in sorted({s["label_fraction"] for s in summary}):
        rows = [s for s in summary if s["method"] in BASELINES and s["label_fraction"] == frac]
        if rows:
            best = max(rows, key=lambda s: s["mean"])
            out.append({"label_fraction": frac, "n_labels": best["n_labels"], "method": best["method"],
                        "accuracy": best["mean"]})
    return out


def headline_ssl(ssl: list[dict], choice: dict | None = None) -> tuple[dict, str]:
    """The SSL row a report headlines among `ssl` (one label fraction's summary rows), and where it was chosen.

    With `choice` (the runner's `validation_ranking`: the user's `finetune.evaluate_on=validation` run of the same
    encoder), the row ranked highest on the validation carve among those scored here: "validation". Otherwise the
    row with the best mean here: "this_split" when there was a choice to make — the largest of several noisy means, which
    flatters the headline (the winner's curse), and which the report says — "only" when there was one row.
    """
    if choice:
        frac, n = ssl[0]["label_fraction"], ssl[0]["n_labels"]
        for entry in choice.get("fractions", []):  # a label fraction, or a per-class count (the same n_labels)
            if math.isclose(entry["label_fraction"], frac, rel_tol=1e-9) or entry["n_labels"] == n:
                ranked = [s for m in entry["ranking"] for s in ssl if s["method"] == m]
                if ranked:
                    return ranked[0], "validation"
    return max(ssl, key=lambda s: s["mean"]), "this_split" if len(ssl) > 1 else "only"


def label_multiplier(summary: list[dict], baseline: str = "supervised", choice: dict | None = None) -> dict | None:
    """How many times more labels the baseline needs to match the headline SSL row at the smallest fraction.

    `baseline`: "supervised", or "best" for the best-baseline envelope (the strongest baseline at each fraction).
    `choice`: the validation carve's ranking of the SSL rows (`headline_ssl`).
    Interpolates the baseline curve linearly in log(number of labels); "> N×" when it never gets there.
    """
    sup = (_curve(summary, "supervised") if baseline == "supervised"
           else sorted((b["n_labels"], b["accuracy"]) for b in best_baselines(summary)))
    ssl = [s for s in summary if s["method"] in SSL_METHODS]
    if not sup or not ssl:
        return None
    smallest = min(s["n_labels"] for s in ssl)
    best, chosen_on = headline_ssl([s for s in ssl if s["n_labels"] == smallest], choice)
    target = best["mean"]
    result = {"ssl_method": best["method"], "n_labels": smallest, "ssl_accuracy": target, "chosen_on": chosen_on}
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
    elif sup[0][1] >= target and sup[0][0] <= smallest:  # no saving: the baseline matches it with as few labels
        result.update(multiplier=reach / smallest, text=f"≤ {reach / smallest:.1f}× (no label saving)")
    else:
        result.update(multiplier=reach / smallest, text=f"{reach / smallest:.1f}×")
    return result


def gains_over_best_baseline(summary: list[dict], boot: Bootstrap | None = None,
                             choice: dict | None = None) -> list[dict]:
    """The headline SSL row minus the best baseline, per label fraction (with its interval when `boot` is given)."""
    out = []
    for b in best_baselines(summary):
        ssl = [s for s in summary if s["method"] in SSL_METHODS and s["label_fraction"] == b["label_fraction"]]
        if ssl:
            best, chosen_on = headline_ssl(ssl, choice)
            g = {"label_fraction": b["label_fraction"], "best_ssl_method": best["method"], "best_ssl": best["mean"],
                 "chosen_on": chosen_on, "best_baseline": b["method"], "baseline": b["accuracy"],
                 "gain": best["mean"] - b["accuracy"]}
            if boot is not None:
                g.update(boot.difference(best["method"], b["method"], b["label_fraction"]))
            out.append(g)
    return out


def gains(summary: list[dict], boot: Bootstrap | None = None, choice: dict | None = None) -> list[dict]:
    """The headline SSL row minus `supervised`, per label fraction (with its interval when `boot` is given)."""
    out = []
    for frac in sorted({s["label_fraction"] for s in summary}):
        sup = [s for s in summary if s["method"] == "supervised" and s["label_fraction"] == frac]
        ssl = [s for s in summary if s["method"] in SSL_METHODS and s["label_fraction"] == frac]
        if sup and ssl:
            best, chosen_on = headline_ssl(ssl, choice)
            g = {"label_fraction": frac, "best_ssl_method": best["method"], "best_ssl": best["mean"],
                 "chosen_on": chosen_on, "supervised": sup[0]["mean"], "gain": best["mean"] - sup[0]["mean"]}
            if boot is not None:
                g.update(boot.difference(best["method"], "supervised", frac))
            out.append(g)
    return out


def gains_of_combined(summary: list[dict], boot: Bootstrap | None = None) -> list[dict]:
    """Each combined row (the encoder together with a baseline: probe_classic) minus that baseline alone, per label
    fraction, with its interval: what the encoder adds to what the user would otherwise use; and minus the SSL row
    alone (`over_ssl`): what the baseline adds to the encoder (it can take away: pixels beside a good probe). Kept
    out of the SSL headline and multipliers, whose gains over `supervised` would then be partly the baseline's."""
    at = {(s["method"], s["label_fraction"]): s for s in summary}
    out = []
    for s in summary:
        baseline, ssl = COMBINED.get(s["method"], (None, None))
        partner, alone = at.get((baseline, s["label_fraction"])), at.get((ssl, s["label_fraction"]))
        if partner:
            g = {"method": s["method"], "label_fraction": s["label_fraction"], "accuracy": s["mean"],
                 "baseline": baseline, "baseline_accuracy": partner["mean"], "gain": s["mean"] - partner["mean"]}
            if boot is not None:
                g.update(boot.difference(s["method"], baseline, s["label_fraction"]))
            if alone:
                g["over_ssl"] = {"method": ssl, "accuracy": alone["mean"], "gain": s["mean"] - alone["mean"],
                                 **(boot.difference(s["method"], ssl, s["label_fraction"]) if boot else {})}
            out.append(g)
    return out


def significance(summary: list[dict], boot: Bootstrap) -> list[dict]:
    """Every SSL method against `supervised` at every fraction: gain, 95 % interval, verdict, per-seed differences."""
    out = []
    at = {(s["method"], s["label_fraction"]): s for s in summary}
    for s in summary:
        sup = at.get(("supervised", s["label_fraction"]))
        diff = boot.difference(s["method"], "supervised", s["label_fraction"]) if s["method"] in SSL_METHODS and sup else {}
        if diff:
            out.append({"method": s["method"], "label_fraction": s["label_fraction"], "baseline": "supervised",
                        "gain": s["mean"] - sup["mean"], **diff})
    return out


def _with_interval(multiplier: dict | None, summary: list[dict], boot: Bootstrap, baseline: str,
                   choice: dict | None = None) -> dict | None:
    """The label multiplier with the percentile interval of its value over the bootstrap resamples."""
    if multiplier is None or not all(boot.has_spread(s["method"], s["label_fraction"]) for s in summary):
        return multiplier
    values = []
    for resampled in boot.resampled_summaries(summary):
        m = label_multiplier(resampled, baseline, choice)
        values.append(m["multiplier"] if m else None)
    return {**multiplier, "ci95": multiplier_interval(values)}


def findings(summary: list[dict], pretraining: dict | None = None, modality: str = "",
             boot: Bootstrap | None = None) -> list[str]:
    """Plain-language verdicts per label fraction: where SSL saves no labels, and where `classic` wins outright;
    where either happens with labels to save (below 100 %), what the encoder's pretraining record (`pretraining`)
    says about why and what to try. With every label, SSL level with scratch is the usual outcome, said as such: it
    was reported as "no label saving" with that diagnosis under a table showing a 4× saving at 1 %."""
    out = []
    no_saving = False
    most = {}  # per method, its row with the most labels: what it reaches with every label measured
    for s in summary:
        if s["label_fraction"] > most.get(s["method"], {}).get("label_fraction", -1):
            most[s["method"]] = s
    for frac in sorted({s["label_fraction"] for s in summary}):
        at = {s["method"]: s for s in summary if s["label_fraction"] == frac}
        ssl = [s for m, s in at.items() if m in SSL_METHODS]
        if not ssl:
            continue
        best = max(ssl, key=lambda s: s["mean"])
        sup, classic = at.get("supervised"), at.get("classic")
        scarce = frac < 1  # with every label there are none to save: SSL and scratch usually meet there
        if sup and best["mean"] <= sup["mean"]:
            full = _reached(sup, most)
            if not scarce:
                out.append(f"with all the labels ({_pct(frac)}) pretraining adds nothing over the same model trained "
                           f"from scratch: {best['method']} {100 * best['mean']:.1f} % vs {100 * sup['mean']:.1f} % for "
                           "supervised, as is usual once labels are plentiful; the label saving, if any, is at the "
                           "smaller fractions")
            elif full:
                out.append(f"no label saving over supervised at {_pct(frac)}, and none to be had there: the same model "
                           f"from scratch already scores {100 * sup['mean']:.1f} % with these {sup['n_labels']:,} "
                           f"labels against {100 * full['mean']:.1f} % with {full['n_labels']:,} (the best SSL method, "
                           f"{best['method']}, {100 * best['mean']:.1f} %); the label saving, if any, is at the smaller "
                           "fractions")
            else:
                no_saving = True
                out.append(f"no label saving over supervised at {_pct(frac)}: the best SSL method ({best['method']}, "
                           f"{100 * best['mean']:.1f} %) does not beat the same model trained from scratch "
                           f"({100 * sup['mean']:.1f} %)")
        if classic and classic["mean"] > best["mean"]:
            # against what the user would otherwise use, SSL saved nothing here either (unless classic has already
            # reached what it does with every label: then there was nothing left to save at this fraction)
            no_saving = no_saving or (scarce and not _reached(classic, most))
            out.append(f"classic beats every SSL method at {_pct(frac)}: {100 * classic['mean']:.1f} % vs "
                       f"{100 * best['mean']:.1f} % for {best['method']}"
                       + _unsure(boot, best["method"], "classic", frac) + _added_to(at, "classic", boot))
        base = max((at[m] for m in ("base_probe", "base_finetune") if m in at), key=lambda s: s["mean"], default=None)
        if base and base["mean"] >= best["mean"]:
            out.append(f"no label saving over the starting checkpoint at {_pct(frac)}: {base['method']} "
                       f"{100 * base['mean']:.1f} % vs {100 * best['mean']:.1f} % for {best['method']} after SSL")
    if no_saving and pretraining:
        from ..pretraining_record import advice, describe

        out.append(f"why it may save no labels: the encoder was {describe(pretraining)}. {advice(pretraining, modality)}")
    return out


SATURATED = 0.005  # a baseline within half a point of its accuracy with the most labels has nothing left to gain


def _reached(row: dict, most: dict) -> dict | None:
    """The baseline's row with the most labels when `row` (fewer labels) is already within SATURATED of it — or
    above it: the task is saturated at this budget (letters of 1,000 fonts: 99.1 % from scratch with 10 % of the
    labels, 99.0 % with all), so no method can save labels there, and the report's "why it may save no labels"
    diagnosis (longer pretraining …) would send the user after a gain that does not exist."""
    full = most.get(row["method"])
    if full is None or full["label_fraction"] <= row["label_fraction"]:
        return None
    return full if row["mean"] >= full["mean"] - SATURATED else None


def _unsure(boot: Bootstrap | None, method: str, baseline: str, frac: float) -> str:
    """' (not significant: …)' when the paired interval of the gap includes 0: a lead of 5 points over three
    seeds and 200 test texts was stated as 'classic beats every SSL method' with an interval of −12.6 to +4.7."""
    diff = boot.difference(method, baseline, frac) if boot is not None else {}
    if not diff or diff["significant"]:
        return ""
    lo, hi = (100 * v for v in diff["ci95"])
    return f" (not significant: the 95 % interval of {baseline} minus {method} is {-hi:+.1f} to {-lo:+.1f} points)"


def _added_to(at: dict, baseline: str, boot: Bootstrap | None) -> str:
    """'; but together with it the encoder adds …' when a combined row with `baseline` was scored at this fraction:
    SSL can lose to TF-IDF alone and still improve it."""
    combined = next((at[m] for m, (b, _) in COMBINED.items() if b == baseline and m in at), None)
    if combined is None:
        return ""
    gain = 100 * (combined["mean"] - at[baseline]["mean"])
    diff = boot.difference(combined["method"], baseline, combined["label_fraction"]) if boot is not None else {}
    if diff and not diff["significant"]:
        return f"; together with it ({combined['method']}) the encoder adds nothing significant ({gain:+.1f} points)"
    if gain <= 0:
        return f"; together with it ({combined['method']}) the encoder adds nothing ({gain:+.1f} points)"
    return f"; but together with it the encoder adds {gain:+.1f} points ({combined['method']} {100 * combined['mean']:.1f} %)"


def students(rows: list[dict]) -> dict:
    """Per distilled row: parameters, size on disk and CPU throughput (median over its cells), next to the
    teacher's parameter count — the deployment side of the trade-off."""
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows if "params" in r):
        rs = [r for r in rows if r["method"] == m]
        out[m] = {"params": rs[0]["params"], "size_bytes": rs[0]["size_bytes"],
                  "teacher": rs[0].get("teacher", "finetune"), "teacher_params": rs[0]["teacher_params"],
                  "examples_per_sec": float(np.median([r["examples_per_sec"] for r in rs]))}
    return out


def write_report(output_dir: Path, header: dict, rows: list[dict], plot: bool = True) -> dict:
    """The json/csv/md report of `rows`; `plot=False` leaves the png as it is (drawing it costs ~0.4 s, which the
    grid does not pay after every few-second cell)."""
    metric = header.get("metric", "accuracy")
    scored, weights = scored_rows(header, rows, metric)  # the stored rows keep their plain accuracy
    summary = summarize(scored)
    choice = header.get("ssl_choice")  # the validation carve's ranking of the SSL rows, when the user ran it
    boot = Bootstrap(scored, header.get("n_test", 0), example_weights=weights)
    for s in summary:
        s["ci95"] = boot.interval(s["method"], s["label_fraction"])
    doc = {**header, "metric": metric, "rows": rows, "summary": summary,
           "bootstrap": {"level": LEVEL, "resamples": boot.resamples,
                         "over": "seeds and test examples" if boot.per_example else "seeds only"},
           "gain_over_supervised": gains(summary, boot, choice),
           "label_multiplier": _with_interval(label_multiplier(summary, choice=choice), summary, boot, "supervised",
                                              choice),
           "best_baseline": best_baselines(summary),
           "gain_over_best_baseline": gains_over_best_baseline(summary, boot, choice),
           "label_multiplier_vs_best_baseline": _with_interval(label_multiplier(summary, "best", choice), summary,
                                                               boot, "best", choice),
           "gain_of_combined": gains_of_combined(summary, boot),
           "significance": significance(summary, boot), "students": students(rows),
           "findings": (findings(summary, header.get("pretraining"), header.get("modality", ""), boot)
                        + imbalance(header) + truncation(header) + small_scored_split(header))}
    write_json(output_dir / "label_efficiency.json", doc)
    write_text(output_dir / "label_efficiency.csv", _csv(rows))
    write_text(output_dir / "label_efficiency.md", markdown(doc))
    if plot:
        _plot(output_dir / "label_efficiency.png", summary, _title(doc), doc.get("evaluated_on") == "validation",
              doc["significance"], metric=metric.replace("_", " "))
    return doc


def scored_rows(header: dict, rows: list[dict], metric: str) -> tuple[list[dict], np.ndarray | None]:
    """`rows` with `accuracy` replaced by `metric`'s value, and the per-example weights the bootstrap needs for it
    (None: plain accuracy). Balanced accuracy weighs each row's per-example results by the kept test labels."""
    if metric == "accuracy":
        return rows, None
    from ..errors import UserError

    if not header.get("test_labels") or not all("correct" in r for r in rows):
        raise UserError("finetune.metric=balanced_accuracy needs the per-example results and labels that reports keep "
                        "since this release; this report's rows predate them (overwrite=true re-runs the grid)")
    weights = balanced_weights(unpack_labels(header["test_labels"]))
    return [{**r, "accuracy": float(weights @ unpack_correct(r["correct"], len(weights)))} for r in rows], weights


IMBALANCED = 3.0  # largest / smallest class of the scored split from which accuracy gets a word of warning


def imbalance(header: dict) -> list[str]:
    """A finding when accuracy is scored on a split whose classes differ a lot in size: accuracy then rewards
    favouring the large classes (a model that answers the largest class everywhere scores its share)."""
    if header.get("metric", "accuracy") != "accuracy" or not header.get("test_labels"):
        return []
    counts = np.bincount(unpack_labels(header["test_labels"]))
    present = np.flatnonzero(counts)
    if len(present) < 2 or counts[present].max() < IMBALANCED * counts[present].min():
        return []
    names = header.get("class_names") or []
    name = lambda c: f"'{names[c]}'" if c < len(names) else str(c)  # noqa: E731
    big, small, n = present[np.argmax(counts[present])], present[np.argmin(counts[present])], counts.sum()
    rare = f"{counts[small] / n:.1%}" if counts[small] / n >= 0.001 else f"{counts[small]:,} of {n:,}"  # not "0.0%"
    return [f"The scored classes are imbalanced (largest {name(big)} {counts[big] / n:.0%} of the examples, smallest "
            f"{name(small)} {rare}): accuracy rewards favouring the large classes (always answering "
            f"{name(big)} scores {counts[big] / n:.0%}). finetune.metric=balanced_accuracy scores the mean recall over "
            "classes instead (the same command with it rewrites the report; nothing retrains)"]


SMALL_SCORED = 100  # scored examples below which one example is more than a point of accuracy


def small_scored_split(header: dict) -> list[str]:
    """A finding when the scored split is so small that each example moves accuracy by a point or more: on a folder
    of 121 photos the carved test split held 24, every gain was 'not significant', and nothing said why."""
    n = header.get("n_test", 0)
    if not 0 < n < SMALL_SCORED:
        return []
    if header.get("evaluated_on") == "validation":
        split, more = "validation carve", "a larger finetune.validation_fraction"
    else:
        split, more = "test split", ("more examples in test/, or a larger data.test_fraction where the test split is "
                                     "carved from the training data")
    return [f"The {split} holds only {n} examples: each is {100 / n:.1f} points of accuracy, so rows a few points "
            f"apart may differ by chance (the intervals above say how far). Score on more examples for a sharper "
            f"answer: {more}"]


TRUNCATED = 0.5  # share of the training texts longer than the encoder reads from which the report says so


def truncation(header: dict) -> list[str]:
    """A finding when most texts are longer than the encoder reads: its rows classify from the first `max_length`
    tokens while `classic` reads whole texts, so a gap between them may be the documents' length, not the method."""
    lengths = header.get("input_lengths")
    if not lengths or lengths["truncated"] < TRUNCATED:
        return []
    n = lengths["max_length"]
    return [f"Most texts are longer than the encoder reads: {lengths['truncated']:.0%} of the training texts exceed its "
            f"{n} tokens (median {lengths['median_tokens']:,}), so the encoder's rows classify from their first {n} "
            f"tokens while classic reads them whole. A larger data.max_length, pretrained and fine-tuned with, lets the "
            "encoder read more (time grows with it)"]


def metric_name(metric: str) -> str:
    """How tables name `finetune.metric`."""
    return "balanced accuracy (mean recall over classes)" if metric == "balanced_accuracy" else "accuracy"


def _title(doc: dict) -> str:
    return f"{doc.get('task', '')} on {doc.get('data', '')}, encoder {doc.get('encoder_model') or doc.get('encoder', '')}"


def _mean_std(s: dict) -> str:
    """'82.6 ± 0.4 [82.1, 83.0]' over several seeds (mean ± std [95 % interval]); a single seed has no spread."""
    text = f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" if s["seeds"] > 1 else f"{100 * s['mean']:.1f}"
    if s.get("ci95"):
        text += f" [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}]"
    return text


def _gain_ci(g: dict) -> str:
    """', 95 % CI +2.9 to +4.5, significant; per seed +3.5 / +3.9 / +3.6' for a gain with its interval."""
    if "ci95" not in g:
        return ""
    lo, hi = g["ci95"]
    verdict = "significant" if g["significant"] else "**not significant**"
    seeds = " / ".join(f"{100 * d['difference']:+.1f}" for d in g["paired_differences"])
    return f" (95 % CI {100 * lo:+.1f} to {100 * hi:+.1f}, {verdict}; per seed {seeds})"


def _multiplier_ci(lm: dict) -> str:
    if not lm.get("ci95"):
        return ""
    lo, hi = lm["ci95"]
    if lo is None:  # the baseline never catches up in most resamples
        return " (95 % CI: beyond the measured label range)"
    return f" (95 % CI {lo:.1f}× to {'beyond the measured label range' if hi is None else f'{hi:.1f}×'})"


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["method", "label_fraction", "n_labels", "seed", "accuracy", "seconds"],
                       extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _pct(frac: float) -> str:
    return f"{frac * 100:g} %"


def _cost_table(methods: list[str], fracs: list[float], cell: dict) -> list[str]:
    """What each row costs to run, beside what it gains: mean wall-clock per cell (a fixmatch cell passes over the
    whole unlabeled pool for minutes to hours where a probe takes seconds)."""
    timed = [m for m in methods if any("seconds" in cell.get((m, f), {}) for f in fracs)]
    if not timed:
        return []
    lines = ["", "Wall-clock time per cell (mean over seeds, in the run that finished it):", "",
             "| method | " + " | ".join(_pct(f) for f in fracs) + " |", "| --- | " + " | ".join("---" for _ in fracs) + " |"]
    for m in timed:
        lines.append(f"| {m} | " + " | ".join(duration(cell[(m, f)]["seconds"]) if "seconds" in cell.get((m, f), {})
                                              else "–" for f in fracs) + " |")
    return lines


def _choice_note(doc: dict) -> list[str]:
    """Where the SSL row of the gains and multipliers was chosen, per label budget: on the validation carve, or —
    said as a caveat — as the best of several rows on the very split it is scored on."""
    picks = doc.get("gain_over_supervised", []) + doc.get("gain_over_best_baseline", [])

    def where(on: str) -> str:
        return ", ".join(_pct(f) for f in sorted({p["label_fraction"] for p in picks if p.get("chosen_on") == on}))

    lines = []
    if where("validation"):
        lines += ["", f"At {where('validation')} the SSL row these gains and the label multiplier name was chosen on "
                      f"the validation carve (the ranking of `{doc['ssl_choice']['report']}`, same encoder), not on the "
                      "split it is scored on here."]
    if where("this_split") and doc.get("evaluated_on", "test") == "test":
        lines += ["", f"At {where('this_split')} the SSL row these gains and the label multiplier name is the best of "
                      "several on this test split, a choice that flatters it a little (the largest of several noisy "
                      "means). Run the same command with `finetune.evaluate_on=validation` (same output_dir) and this "
                      "report chooses on the validation carve instead."]
    return lines


def _gain_line(g: dict) -> str:
    """One gain of `gains` (vs supervised: its accuracy) or of `gains_over_best_baseline` (vs that baseline, named)."""
    against = (f"{g['best_baseline']} {100 * g['baseline']:.1f} %" if "best_baseline" in g
               else f"{100 * g['supervised']:.1f} %")
    return (f"{_pct(g['label_fraction'])} labels: {g['best_ssl_method']} {100 * g['best_ssl']:.1f} % vs {against} → "
            f"{100 * g['gain']:+.1f} points{_gain_ci(g)}")


def _combined_line(g: dict) -> str:
    line = (f"{_pct(g['label_fraction'])} labels: {g['method']} {100 * g['accuracy']:.1f} % vs {g['baseline']} "
            f"{100 * g['baseline_accuracy']:.1f} % → {100 * g['gain']:+.1f} points{_gain_ci(g)}")
    alone = g.get("over_ssl")
    if alone:
        verdict = ", not significant" if alone.get("significant") is False else ""
        line += (f"; against {alone['method']} alone ({100 * alone['accuracy']:.1f} %) {100 * alone['gain']:+.1f}"
                 f"{verdict}")
    return line


def _multiplier_sentence(lm: dict) -> str:
    return (f"`supervised` needs **{lm['text']}** the labels to match {lm['ssl_method']} with {lm['n_labels']} labels "
            f"({100 * lm['ssl_accuracy']:.1f} %), interpolated on a log scale{_multiplier_ci(lm)}")


def console_summary(doc: dict) -> list[str]:
    """The report's answer as the run's last lines — gain over `supervised` per label budget, the label multiplier
    and the findings — so the question the grid was run for is answered where the user watched it run."""
    lines = [f"  gain over supervised at {_gain_line(g)}" for g in doc.get("gain_over_supervised", [])]
    lines += [f"  added to {g['baseline']} at {_combined_line(g)}" for g in doc.get("gain_of_combined", [])]
    lines += [f"  {line}" for line in _best_without_pretraining(doc)]
    if doc.get("label_multiplier"):
        lines.append(f"  label multiplier: {_multiplier_sentence(doc['label_multiplier'])}")
    lines += [f"  {f}" for f in doc.get("findings", [])]
    return [line.replace("**", "").replace("`", "") for line in lines]


def _best_without_pretraining(doc: dict) -> list[str]:
    """A report of the baselines alone (no SSL encoder yet): its answer, the strongest row at each label budget."""
    if not doc.get("baselines_only"):
        return []
    scratch = {s["label_fraction"]: s["mean"] for s in doc["summary"] if s["method"] == "supervised"}
    lines = []
    for b in doc.get("best_baseline", []):
        frac = b["label_fraction"]
        than = f" (supervised {100 * scratch[frac]:.1f} %)" if b["method"] != "supervised" and frac in scratch else ""
        lines.append(f"without pretraining, the best at {_pct(frac)} labels ({b['n_labels']:,}): {b['method']} "
                     f"{100 * b['accuracy']:.1f} %{than}")
    return lines


def _alone_note(doc: dict) -> list[str]:
    if not doc.get("baselines_only"):
        return []
    return [f"No SSL encoder yet: the starting checkpoint `{doc.get('base_encoder')}` and the baselines alone — what "
            "you would get without pretraining. Pretrain with this config, then run `finetune` again: its report (one "
            "folder up) puts the SSL rows beside these, on the same subsets and seeds.", "",
            *[f"- {line[0].upper()}{line[1:]}." for line in _best_without_pretraining(doc)], ""]


def markdown(doc: dict) -> str:
    summary = doc["summary"]
    fracs = sorted({s["label_fraction"] for s in summary})
    methods = [m for m in METHOD_ORDER if any(s["method"] == m for s in summary)]
    cell = {(s["method"], s["label_fraction"]): s for s in summary}
    n_of = {f: next(s["n_labels"] for s in summary if s["label_fraction"] == f) for f in fracs}
    seeds = max(s["seeds"] for s in summary)
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "n = 1 seed (no spread: add seeds to see one)"
    classes = doc.get("class_names") or []
    sep = " | " if any("," in str(c) for c in classes) else ", "  # names with commas ("Cooking, recipes") stay readable
    named = f"; {len(classes)} classes: {sep.join(classes[:12])}{' …' if len(classes) > 12 else ''}" if classes else ""
    boot = doc.get("bootstrap")
    interval = (f" [95 % bootstrap interval over {boot['over']}]" if boot else "")
    lines = [f"### Label efficiency — {_title(doc)}", "",
             f"{'Validation' if doc.get('evaluated_on') == 'validation' else 'Test'} {metric_name(doc.get('metric', 'accuracy'))} (%), {spread}{interval}; "
             f"encoder `{doc.get('encoder', '')}`{named}.", "",
             *_alone_note(doc),
             "| method | " + " | ".join(f"{_pct(f)} ({n_of[f]:,} labels)" for f in fracs) + " |",
             "| --- | " + " | ".join("---" for _ in fracs) + " |"]
    for m in methods:
        vals = []
        for f in fracs:
            s = cell.get((m, f))
            vals.append(_mean_std(s) if s else "–")
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    lines += _cost_table(methods, fracs, cell)
    if doc["gain_over_supervised"]:
        lines += ["", "Gain of the best SSL method over `supervised` (same architecture from random weights):", ""]
        lines += [f"- {_gain_line(g)}" for g in doc["gain_over_supervised"]]
    if doc.get("gain_over_best_baseline") and any(b["method"] != "supervised" for b in doc.get("best_baseline", [])):
        lines += ["", "Gain over the **best baseline** at each fraction (the strongest of "
                      f"{', '.join(m for m in BASELINES if any(s['method'] == m for s in summary))}):", ""]
        lines += [f"- {_gain_line(g)}" for g in doc["gain_over_best_baseline"]]
        lmb = doc.get("label_multiplier_vs_best_baseline")
        if lmb:
            lines += ["", f"Label multiplier vs the best baseline: **{lmb['text']}** the labels to match "
                          f"{lmb['ssl_method']} with {lmb['n_labels']} labels{_multiplier_ci(lmb)}."]
    if doc.get("gain_of_combined"):
        lines += ["", "What the encoder adds to the baseline the user would otherwise use (the combined row minus that "
                      "baseline alone; not counted as an SSL row above):", ""]
        lines += [f"- {_combined_line(g)}" for g in doc["gain_of_combined"]]
    lines += _choice_note(doc)
    if doc.get("findings"):
        lines += [""] + [f"- **{f[0].upper()}{f[1:]}.**" for f in doc["findings"]]
    if doc.get("students"):
        lines += ["", "Distilled students (CPU inference, examples/s at the threads of this run; median over cells):", "",
                  "| row | teacher | parameters | × teacher | size on disk | examples/s |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for m, st in doc["students"].items():
            lines.append(f"| {m} | {st.get('teacher', 'finetune')} | {st['params'] / 1e6:.2f} M | "
                         f"{st['params'] / st['teacher_params']:.2f} | "
                         f"{st['size_bytes'] / 2 ** 20:.1f} MiB | {st['examples_per_sec']:,.0f} |")
    for skipped in doc.get("skipped_label_fractions", []):
        lines += ["", f"Skipped: {skipped}."]
    for note in doc.get("label_fraction_notes", []):
        lines += ["", f"Note: {note}."]
    if doc.get("pretraining"):
        from ..pretraining_record import describe as pretraining

        lines += ["", f"Encoder: {pretraining(doc['pretraining'])}."]
    if "test_duplicates_in_pretraining" in doc:
        from ..data.leakage import describe

        unit = "texts" if doc.get("modality") == "text" else "images"
        lines += ["", f"Leakage guard — {describe(doc['test_duplicates_in_pretraining'], unit)}."]
    if doc.get("label_multiplier"):
        lines += ["", f"Label multiplier: {_multiplier_sentence(doc['label_multiplier'])}."]
    unsure = [g for g in doc.get("significance", []) if not g["significant"]]
    if unsure:
        lines += ["", "Not significant (the 95 % interval of the gain over `supervised` includes 0): "
                      + ", ".join(f"{g['method']} at {_pct(g['label_fraction'])} ({100 * g['gain']:+.1f}, "
                                  f"{100 * g['ci95'][0]:+.1f} to {100 * g['ci95'][1]:+.1f})" for g in unsure) + "."]
    return "\n".join(lines) + "\n"


def legend_label(method: str, seeds: int, significance: list[dict]) -> str:
    """The method's name, 'n = 1' without spread, and the fractions where its gain over supervised is not
    significant, so the plot alone does not oversell a gap between two curves."""
    unsure = [_pct(g["label_fraction"]) for g in significance if g["method"] == method and not g["significant"]]
    return (method if seeds > 1 else f"{method} (n = 1)") + (f" — gain n.s. at {', '.join(unsure)}" if unsure else "")


def label_budget_axis(ax, budgets: list[int]) -> None:
    """A log x axis ticked at the label budgets measured, written out (24, 240, 6,000): matplotlib's own log
    ticks label a narrow range with minor ticks in scientific notation (3×10¹, 4×10¹ …), none a measured budget."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("number of labeled training examples (log scale)")


def _plot(path: Path, summary: list[dict], title: str, validation: bool = False,
          significance: list[dict] = (), metric: str = "accuracy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m in METHOD_ORDER:
        pts = sorted((s["n_labels"], s["mean"], s["std"]) for s in summary if s["method"] == m)
        if not pts:
            continue
        n, mean, std = (np.array(v) for v in zip(*pts))
        style = "--" if m in BASELINES else "-." if m in COMBINED else "-"
        seeds = min(s["seeds"] for s in summary if s["method"] == m)
        ax.plot(n, 100 * mean, style, marker="o", label=legend_label(m, seeds, significance))
        if seeds > 1:
            ax.fill_between(n, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
    label_budget_axis(ax, sorted({s["n_labels"] for s in summary}))
    ax.set_ylabel(f"{'validation' if validation else 'test'} {metric} (%)")
    ax.set_title(f"Label efficiency: {title}", fontsize=9, wrap=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from ..atomic import save_figure

    save_figure(fig, path)
