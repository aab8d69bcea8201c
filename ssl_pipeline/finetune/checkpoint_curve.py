"""Label efficiency against pretraining steps — the "when to stop" answer.

`finetune.checkpoints=[all]` exports every kept checkpoint of the run (`OUTPUT_DIR/checkpoint_encoders/step_N`)
and adds the final encoder; `finetune.checkpoints=[DIR, DIR, ...]` names exported encoders. Each gets the usual
grid and report in `OUTPUT_DIR/checkpoint_curve/<name>/` (resumable like any grid), then
`checkpoint_curve.{json,md,png}` put accuracy against pretraining step per method and label fraction, with
the best step of each curve and whether the last step is significantly worse than it (paired bootstrap over
test examples and seeds: every encoder is scored on the same subsets and the same test examples).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from ..atomic import write_json, write_text
from ..config import Config
from ..errors import UserError
from .significance import Bootstrap

EXPORTS = "checkpoint_encoders"
GRIDS = "checkpoint_curve"


def _step_of(path: Path) -> int | None:
    m = re.search(r"step_(\d+)", path.name)
    return int(m.group(1)) if m else None


def export_checkpoints(cfg: Config, accelerator) -> list[tuple[int, Path]]:
    """(step, encoder dir) for every kept checkpoint of the run in output_dir, exported once, plus the final
    encoder at the step the run completed."""
    import torch

    from ..checkpoint import complete
    from ..spec import SPEC_FILE

    run = Path(cfg.output_dir)
    ckpts = complete(run / "checkpoints")
    done_file = run / "pretrain_done.json"
    final = run / "encoder"
    if not ckpts and not final.is_dir():
        raise UserError(f"finetune.checkpoints=[all]: {run} has no checkpoints and no encoder; run pretrain first")
    todo = [c for c in ckpts if not (run / EXPORTS / c.name / SPEC_FILE).is_file()]
    accelerator.wait_for_everyone()  # every process has decided before any export appears
    if todo:
        from ..tasks import build_task

        task = build_task(cfg, accelerator)  # on every process: building may synchronise them (tokenizer cache)
    if todo and accelerator.is_main_process:
        for c in todo:
            state = torch.load(c / "pytorch_model.bin", map_location="cpu", weights_only=True)
            state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # saved from a compiled model
            task.model.load_state_dict(state)
            task.export(task.model, run / EXPORTS / c.name)
            accelerator.print(f"exported checkpoint {c.name} to {run / EXPORTS / c.name}")
    accelerator.wait_for_everyone()
    out = [(_step_of(c), run / EXPORTS / c.name) for c in ckpts]
    if final.is_dir() and done_file.is_file():
        step = json.loads(done_file.read_text())["step"]
        if step not in {s for s, _ in out}:
            out.append((step, final))
    return sorted(out)


def named_encoders(paths: list[str]) -> list[tuple[int | None, Path]]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise UserError(f"finetune.checkpoints: {p} is not a directory (an exported encoder, or [all])")
        out.append((_step_of(path), path))
    return out


def run_checkpoint_curve(cfg: Config) -> dict:
    from ..engine import make_accelerator
    from .runner import run_finetune

    accelerator = make_accelerator(cfg)
    entries = cfg.finetune.checkpoints
    encoders = export_checkpoints(cfg, accelerator) if entries == ["all"] else named_encoders(entries)
    if len(encoders) < 2:
        accelerator.print(f"finetune.checkpoints: only {len(encoders)} encoder(s) found; the curve needs two or more")
    out = Path(cfg.output_dir)
    results = []
    for i, (step, path) in enumerate(encoders):
        name = f"step_{step:07d}" if step is not None else f"{i:02d}_{path.name}"
        sub = dataclasses.replace(cfg, output_dir=str(out / GRIDS / name),
                                  finetune=dataclasses.replace(cfg.finetune, encoder=str(path), checkpoints=None))
        accelerator.print(f"checkpoint curve: encoder {i + 1}/{len(encoders)} {path} (pretraining step {step})")
        doc = run_finetune(sub)
        results.append({"step": step if step is not None else i, "encoder": str(path), "doc": doc})
    if not accelerator.is_main_process:
        return {}
    report_dir = out if cfg.finetune.evaluate_on == "test" else out / "validation"
    return write_curve(report_dir, results)


def curve_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        for s in r["doc"].get("summary", []):
            rows.append({"step": r["step"], "encoder": r["encoder"], **{k: s[k] for k in
                         ("method", "label_fraction", "n_labels", "mean", "std", "seeds")}, "ci95": s.get("ci95")})
    return rows


def stopping_points(results: list[dict]) -> list[dict]:
    """Per method and fraction: the best step, and the last step's paired gap to it with its interval."""
    merged = []
    for r in results:
        merged += [{**row, "method": f"{row['method']}@{r['step']}"} for row in r["doc"].get("rows", [])]
    n_test = max((r["doc"].get("n_test", 0) for r in results), default=0)
    boot = Bootstrap(merged, n_test) if merged else None
    rows = curve_rows(results)
    out = []
    for key in sorted({(r["method"], r["label_fraction"]) for r in rows}):
        pts = sorted((r for r in rows if (r["method"], r["label_fraction"]) == key), key=lambda r: r["step"])
        best, last = max(pts, key=lambda r: r["mean"]), pts[-1]
        item = {"method": key[0], "label_fraction": key[1], "best_step": best["step"], "best": best["mean"],
                "last_step": last["step"], "last": last["mean"], "last_minus_best": last["mean"] - best["mean"]}
        if boot is not None and best is not last:
            diff = boot.difference(f"{key[0]}@{last['step']}", f"{key[0]}@{best['step']}", key[1])
            item.update(diff)
        out.append(item)
    return out


def write_curve(report_dir: Path, results: list[dict]) -> dict:
    rows = curve_rows(results)
    doc = {"metric": "accuracy", "steps": [r["step"] for r in results], "encoders": [r["encoder"] for r in results],
           "evaluated_on": next((r["doc"].get("evaluated_on") for r in results if r["doc"].get("evaluated_on")), "test"),
           "points": rows, "stopping": stopping_points(results)}
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(report_dir / "checkpoint_curve.json", doc)
    write_text(report_dir / "checkpoint_curve.md", curve_markdown(doc))
    _plot(report_dir / "checkpoint_curve.png", rows)
    return doc


def curve_markdown(doc: dict) -> str:
    steps = doc["steps"]
    cell = {(p["method"], p["label_fraction"], p["step"]): p for p in doc["points"]}
    keys = sorted({(p["method"], p["label_fraction"]) for p in doc["points"]})
    lines = ["### Label efficiency vs pretraining step", "",
             "Accuracy (%), mean ± std over seeds, per encoder (pretraining step).", "",
             "| method @ labels | " + " | ".join(f"step {s}" for s in steps) + " |",
             "| --- | " + " | ".join("---" for _ in steps) + " |"]
    for m, f in keys:
        vals = []
        for s in steps:
            p = cell.get((m, f, s))
            vals.append("–" if p is None else f"{100 * p['mean']:.1f} ± {100 * p['std']:.1f}" if p["seeds"] > 1
                        else f"{100 * p['mean']:.1f}")
        lines.append(f"| {m} @ {f * 100:g} % | " + " | ".join(vals) + " |")
    lines += ["", "When to stop:", ""]
    for s in doc["stopping"]:
        line = f"- {s['method']} @ {s['label_fraction'] * 100:g} %: best at step {s['best_step']} ({100 * s['best']:.1f} %)"
        if s["best_step"] != s["last_step"]:
            line += f", last step {s['last_step']} {100 * s['last']:.1f} % ({100 * s['last_minus_best']:+.1f}"
            if "ci95" in s:
                lo, hi = s["ci95"]
                line += (f", 95 % CI {100 * lo:+.1f} to {100 * hi:+.1f}: "
                         f"{'significantly worse' if s['significant'] else 'not significantly different'}")
            line += ")"
        else:
            line += " — the last step: more pretraining may still help"
        lines.append(line)
    if doc.get("evaluated_on", "test") == "test":  # a step picked by its test score is a setting chosen on test
        lines += ["", "These best steps are read off the test split: to choose the step to keep, run the same command "
                      "with `finetune.evaluate_on=validation`, and score only that encoder on test."]
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m, f in sorted({(r["method"], r["label_fraction"]) for r in rows}):
        pts = sorted((r["step"], r["mean"], r["std"]) for r in rows if (r["method"], r["label_fraction"]) == (m, f))
        x, y, e = (np.array(v) for v in zip(*pts))
        ax.plot(x, 100 * y, marker="o", label=f"{m} @ {f * 100:g} %")
        ax.fill_between(x, 100 * (y - e), 100 * (y + e), alpha=0.15)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Label efficiency vs pretraining step", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from ..atomic import save_figure

    save_figure(fig, path)
