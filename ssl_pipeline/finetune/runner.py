"""The fine-tune stage: run the (method × label fraction × seed) grid and write the label-efficiency report.

Every finished cell is appended to `label_efficiency.json` atomically, so an interrupted grid resumes where
it stopped. All requests are validated (encoder, modality, labels, subset sizes) before any training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..config import Config, base_encoder_ref, explicit, flatten
from ..data.leakage import NO_TEST_SPLIT
from ..errors import UserError
from ..export import read_spec, resolve_encoder_path
from ..progress import say_once
from ..run_dir import changed_keys, check_writable, listed_changes
from ..tasks import modality_of
from . import methods as M
from .base import STARTING_CHECKPOINT, base_encoder_dir
from .cell_runs import CellRuns
from .choice import validation_ranking
from .evaluators import BASE_METHODS, BY_NAME, DISTILL_METHODS, EVALUATORS
from .labeled import labeled_data
from .report import console_summary, write_report
from .significance import pack_correct, pack_labels
from .subsets import EmptyClassError, balanced_subset, one_label_classes, per_class_counts, subset_digest

# a method's own config section (finetune.fixmatch) changes only its rows: stamped on each, checked on resume
SECTIONS = tuple(sorted({e.settings for e in EVALUATORS if e.settings}))
# finetune and data keys added after reports were written, at the value that behaves as before they existed: left out of the
# fingerprint there, so those reports stay resumable. Only reports without a stored `recipe` need this (written before
# it existed); newer ones are compared key by key, where a key the report lacks counts at its default.
ADDED_KEYS = {"finetune": {"distill_teacher": "finetune"}, "data": {"sheet": None, "csv_columns": None}}
# rows of a method written before it had its own settings, and what they were made with (method, modality) -> settings
LEGACY_ROW_SETTINGS = {("classic", "text"): {"classic": {"text_features": "words"}}}
# keys the results do not depend on: what the grid covers, and what the encoder's weights already identify
GRID_KEYS = ("methods", "seeds", "label_fractions", "labels_per_class", "encoder", "checkpoints")
# keys that never change a result: adding a tracker to a grid resumes it (reports written before they kept their
# recipe hashed these too, so the fingerprints of that era put them back)
TRACKING_KEYS = ("log_with",)
RUN_KEYS = ("checkpoint_every",)  # how a cell is run, not what it gives (added after those eras)
REPORT_KEYS = ("metric",)  # how the rows are summed up, not what they are: a report switches metric without retraining
PRETRAINING_DATA_KEYS = ("dedupe", "leakage_check")
DATA_RUN_KEYS = ("in_memory_gb",)  # how images are read (decoded once or every epoch), not what they are
PLOT_EVERY_S = 30  # how stale label_efficiency.png may get while the grid runs (its tables follow every cell)


def _defaults(section) -> dict:
    """A config section's shipped values (what a key missing from a stamp or a stored recipe, or absent from a
    legacy fingerprint, was)."""
    return dataclasses.asdict(type(section)())


def _as_stored(tree: dict) -> dict:
    """`tree` as it reads back from the report's json (tuples as lists, ...), so stored and current values compare."""
    return json.loads(json.dumps(tree))


def _encoder_hash(encoder: Path):
    """sha1 over the exported encoder's weights and json files (names and bytes), still open for more input."""
    h = hashlib.sha1()
    for f in sorted(encoder.iterdir()):
        if f.suffix in (".safetensors", ".json") and f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h


def _recipe(cfg: Config) -> dict:
    """The data and fine-tune keys the stored rows depend on (method sections stay out: stamped on their rows)."""
    ft = {k: v for k, v in cfg.to_dict()["finetune"].items()
          if k not in GRID_KEYS + SECTIONS + TRACKING_KEYS + RUN_KEYS + REPORT_KEYS}
    ft["base_encoder"] = base_encoder_ref(cfg)  # base_* rows from another checkpoint must not mix either
    # data.dedupe decides what pretraining saw, which the encoder's weights already identify; leaving it out also
    # keeps reports written before the key existed resumable
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k not in PRETRAINING_DATA_KEYS + DATA_RUN_KEYS}
    return _as_stored({"data": data, "finetune": ft})


def _fingerprint_of(encoder_hash, recipe: dict, cfg: Config, era: str = "current") -> str:
    """Identifies what the stored results depend on; a changed encoder or recipe must not mix with old rows.
    Method sections stay out (`row_settings` stamps them on their rows), so changing one never orphans the other
    rows. Reports written before they kept their recipe are recognised by the value of their era, accepted on load
    (and rewritten with the current one): `stamped` hashed the tracking keys too; `sectioned`, before rows were
    stamped, also a section's keys off their defaults."""
    h = encoder_hash.copy()
    kept = {part: {k: v for k, v in recipe[part].items() if not (k in added and v == added[k])}
            for part, added in ADDED_KEYS.items()}
    ft = kept["finetune"]
    if era != "current":
        ft.update(_as_stored({k: getattr(cfg.finetune, k) for k in TRACKING_KEYS}))
    for section in SECTIONS if era == "sectioned" else ():
        values = getattr(cfg.finetune, section)
        default = _defaults(values)
        off_default = {k: v for k, v in dataclasses.asdict(values).items() if v != default[k]}
        if off_default:
            ft[section] = off_default
    h.update(json.dumps({**recipe, **kept}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _fingerprint(cfg: Config, encoder: Path, era: str = "current") -> str:
    return _fingerprint_of(_encoder_hash(encoder), _recipe(cfg), cfg, era)


def report_identity(cfg: Config, encoder: Path) -> dict:
    """What a report stores to recognise its recipe on resume: the fingerprint, the encoder's digest and the recipe
    itself (so a mismatch can name the key that changed)."""
    h, recipe = _encoder_hash(encoder), _recipe(cfg)
    return {"fingerprint": _fingerprint_of(h, recipe, cfg), "encoder_sha1": h.hexdigest(), "recipe": recipe}


def _recipe_changes(doc: dict, header: dict, cfg: Config) -> list[tuple[str, object, object]]:
    """(key, value there, value now) for each recipe key that differs, keys the report lacks at their defaults."""
    defaults = flatten(_as_stored({"data": _defaults(cfg.data), "finetune": _defaults(cfg.finetune)}))
    return changed_keys(flatten(doc["recipe"]), dict(sorted(flatten(header["recipe"]).items())), defaults)


def _check_identity(path: Path, doc: dict, header: dict, cfg: Config, encoder: Path) -> None:
    """A report whose fingerprint differs from this run's: resumable only if its encoder and recipe are this run's
    (keys added since count at their defaults); otherwise one line naming what differs."""
    if "recipe" not in doc:  # written before reports kept their recipe: only the fingerprint can tell
        # re-hashes the encoder's weights: computed only here, for a report that did not match
        h, recipe = _encoder_hash(encoder), _recipe(cfg)
        if doc.get("fingerprint") not in (_fingerprint_of(h, recipe, cfg, era) for era in ("stamped", "sectioned")):
            raise UserError(f"{path} holds results for a different encoder or fine-tune recipe; use another "
                            "output_dir or overwrite=true to replace them")
        return
    if doc.get("encoder_sha1") != header["encoder_sha1"]:
        raise UserError(f"{path} holds results for another encoder (the weights in {encoder} differ from the ones "
                        "it was made with); use another output_dir or overwrite=true to replace them")
    changes = _recipe_changes(doc, header, cfg)
    if changes:
        raise UserError(f"{path} holds results made with another recipe: {listed_changes(changes)}; use those "
                        "settings, another output_dir, or overwrite=true to replace them")


def row_settings(cfg: Config, method: str) -> dict:
    """The config sections a row depends on beyond the fingerprint, as it records them: the method's own (fixmatch),
    and fixmatch's for a distilled student whose teacher is the fixmatch model ({} for the other rows)."""
    evaluator = BY_NAME[method]
    applies = evaluator.settings_modality in ("", modality_of(cfg.task))  # images have no finetune.classic keys
    sections = [evaluator.settings] if evaluator.settings and applies else []
    if evaluator.protocol in DISTILL_METHODS and cfg.finetune.distill_teacher == "fixmatch":
        sections.append("fixmatch")
    return {s: dataclasses.asdict(getattr(cfg.finetune, s)) for s in sections}


def data_label(d, modality: str = "vision") -> str:
    """What the report was measured on, in the user's words: dataset name, folder or files."""
    if d.source == "embedded":
        return "scikit-learn digits (embedded)" if modality == "vision" else "Python stdlib docstrings (embedded)"
    if d.source == "folder" or (d.source == "torchvision" and not d.name):
        return f"folder {d.root}"
    if d.name:
        return str(d.name)
    files = list(d.files or ([d.root] if d.root else []))
    shown = ", ".join(Path(f).name for f in files[:2]) + (f" +{len(files) - 2} more" if len(files) > 2 else "")
    return f"{d.source} files {shown}" if files else d.source


def encoder_label(spec: dict) -> str:
    if spec["modality"] == "vision":
        return f"{spec['timm_name']} ({spec.get('pretext', 'ssl')})"
    return f"{spec.get('architecture', 'transformer')} {spec.get('embedding_dim', '')}d ({spec.get('pretext', 'ssl')})"


def _requests(cfg: Config) -> list[tuple[str, float | int, float]]:
    """(kind, label budget, encoder lr scale) per requested label budget."""
    ft = cfg.finetune
    budgets = ft.label_budgets()
    scales = ft.encoder_lr_scale * len(budgets) if len(ft.encoder_lr_scale) == 1 else ft.encoder_lr_scale
    return [(kind, value, scale) for (kind, value), scale in zip(budgets, scales)]


def split_digest(train_labels: np.ndarray, test_labels: np.ndarray) -> str:
    """Identifies the labeled pool the subsets are drawn from and the split that is scored, by their labels in
    order: examples added to a folder, removed, or carved otherwise change it (unless the label sequences happen to
    stay the same), so a resumed report never mixes rows scored on two different splits."""
    h = hashlib.sha1()
    for labels in (train_labels, test_labels):
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def _check_same_split(path: Path, doc: dict, header: dict) -> None:
    """Refuses stored rows made on other examples (reports written before the digest: by their example counts)."""
    keys = ("split_digest",) if doc.get("split_digest") and header.get("split_digest") else ("n_train", "n_test")
    if all(doc.get(k, header.get(k)) == header.get(k) for k in keys):
        return
    counts = ", ".join(f"{k} {doc.get(k)} there, {header.get(k)} now" for k in ("n_train", "n_test")
                       if doc.get(k) != header.get(k))
    raise UserError(f"{path} holds results on other examples ({counts or 'the same counts, other examples'}): the "
                    "data or its test carve changed since; use another output_dir, or overwrite=true to replace them")


def _load_rows(path: Path, header: dict, cfg: Config, encoder: Path, methods: list[str]) -> list[dict]:
    """The stored rows of this recipe; a requested method's rows must have been made with its current settings."""
    if not path.is_file() or cfg.overwrite:
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON; move it away or set overwrite=true") from None
    if doc.get("fingerprint") != header["fingerprint"]:
        _check_identity(path, doc, header, cfg, encoder)
    if doc.get("rows"):
        _check_same_split(path, doc, header)
    rows = doc.get("rows", [])
    for row in rows:
        current = row_settings(cfg, row["method"]) if row["method"] in BY_NAME else {}
        if not current:
            continue
        # rows written before the stamp: the report's (legacy) fingerprint held their sections' values, or they were
        # made before the method had settings, with the values LEGACY_ROW_SETTINGS names
        stored = row.setdefault("settings", LEGACY_ROW_SETTINGS.get((row["method"], header.get("modality")), current))
        if row["method"] not in methods:
            continue  # not requested now: the row keeps its own stamp
        for section, values in current.items():
            differ = changed_keys(stored.get(section, {}), values, _defaults(getattr(cfg.finetune, section)),
                                  prefix=f"finetune.{section}.")
            if differ:
                raise UserError(f"{path} holds {row['method']} rows made with other settings: "
                                f"{listed_changes(differ)}; use those, another output_dir, or overwrite=true to "
                                "replace them")
    return rows


def _pct_key(frac: float) -> str:
    return f"{frac * 100:g}pct"


def _leakage(spec: dict, data, cfg: Config) -> dict:
    """The leakage guard's count for the split this report scores, as recorded when the encoder was pretrained."""
    record = spec.get("leakage")
    if cfg.finetune.evaluate_on != "test":
        return {"checked": False, "reason": "this report scores a validation split (part of the pretraining pool, "
                                            "labels unused there)"}
    if not record and spec.get("pretext") == STARTING_CHECKPOINT:
        return {"checked": False, "reason": "a starting checkpoint: what it was pretrained on is not known here"}
    if not record:
        return {"checked": False, "reason": "the encoder was not pretrained by this version of ssl_pipeline"}
    if record.get("checked") and record.get("test_fingerprint") != data.test_fingerprint():
        return {"checked": False, "reason": "the encoder was pretrained on data with another test split"}
    if not record.get("checked") and record.get("reason") == NO_TEST_SPLIT:  # e.g. labels named only now
        return {"checked": False, "reason": "its pretraining data had no labels, so nothing was held out of it: if "
                                            "that was this data, these test examples were pretrained on"}
    return record


FIXMATCH_EXAMPLE_COST = 2.5  # a pool example's weak view (no gradient) and strong view, plus the labeled share


def cell_work(cell: dict, n_train: int, cfg: Config, accelerator) -> int:
    """About how many examples a cell trains on — what its time is proportional to, measured: 60 steps on 18 labels
    (batches of 18), 60 on 177 and 280 on 1,778 (batches of 64) took 18, 52 and 245 s, 60–73 examples/s. Frozen-
    embedding rows (probe, kNN) cost next to nothing once the embeddings are made; `classic` about a label each."""
    ft, n, protocol = cfg.finetune, cell["n_labels"], BY_NAME[cell["method"]].protocol

    def trained(examples: int, **kwargs) -> int:
        plan = M.plan_for(examples, ft, accelerator, "", **kwargs)
        return plan.max_steps * M.per_process_batch(ft.batch_size, examples, accelerator.num_processes) * \
            accelerator.num_processes

    if protocol in ("finetune", "supervised"):
        return trained(n)
    if protocol == "fixmatch":
        return round(FIXMATCH_EXAMPLE_COST * trained(n_train, epochs=ft.fixmatch.epochs, capped=False))
    if protocol in DISTILL_METHODS:  # the teacher (a finetune cell), then the student's passes over the pool
        return trained(n) + trained(n_train, epochs=ft.distill_epochs, capped=False)
    if protocol == "probe_classic":  # the subset's probe and classic model, then both again on each of 3 folds
        return 3 * n
    return n if protocol == "classic" else max(1, n // 10)


def _one_label_note(data, fraction: float, n_labels: int) -> list[str]:
    """Says which rare classes a label fraction gave one label instead of none (at most one line)."""
    counts = np.bincount(data.train_labels, minlength=data.num_classes)
    rare = one_label_classes(counts, fraction)
    if not len(rare):
        return []
    named = ", ".join(f"'{data.class_names[c]}' ({counts[c]} training examples)" for c in rare[:3])
    more = f" and {len(rare) - 3} more" if len(rare) > 3 else ""
    return [f"label fraction {fraction:g} rounds to no label for class {named}{more}: each gets one (at least one "
            f"label per class), {n_labels} labels in all ({n_labels / len(data.train_labels):.1%})"]


def run_finetune(cfg: Config) -> dict:
    from accelerate.utils import set_seed

    from ..progress import progress

    from ..engine import make_accelerator

    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)  # the reports and cells go there: said before any encoder or data is read
    methods = methods_for(cfg)
    alone = checkpoint_alone(cfg, methods)
    want = modality_of(cfg.task)
    if not alone:
        encoder_path = resolve_encoder_path(cfg, also=(f', or score the starting checkpoint alone first: '
                                                       f'"finetune.methods=[{",".join(ALONE_EXAMPLE)}]"'
                                                       if base_encoder_ref(cfg) else ""))
        _check_modality(read_spec(encoder_path), encoder_path, cfg.task, want)
    report_dir = output_dir if cfg.finetune.evaluate_on == "test" else output_dir / "validation"
    report_dir = report_dir / "baselines" if alone else report_dir
    if cfg.finetune.log_with:
        report_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg, log_dir=report_dir if cfg.finetune.log_with else None,
                                   log_with=tuple(cfg.finetune.log_with), stage="finetune")
    if alone:  # the checkpoint is the encoder the grid reads its inputs through (image size, tokenizer)
        encoder_path = base_encoder_dir(cfg, output_dir, want, accelerator)
        accelerator.print(f"no encoder pretrained here yet: scoring the starting checkpoint {base_encoder_ref(cfg)} "
                          f"and the baselines alone ({', '.join(methods)}), into {report_dir}")
    spec = read_spec(encoder_path)
    data = labeled_data(cfg, spec, encoder_path)
    n_train = len(data.train_labels)

    # validate every request before any training: impossible subsets fail fast
    cells, too_small, lifted = [], [], []
    if "distill_small" in methods:  # a student that cannot be built fails now, not after the first teacher trained
        data.student_encoder(cfg.finetune.student, encoder_path)
    for kind, value, lr_scale in _requests(cfg):
        kwargs = {"fraction": value} if kind == "label_fraction" else {"per_class": value}
        try:
            n_labels = int(per_class_counts(data.train_labels, data.num_classes, names=data.class_names, **kwargs).sum())
        except EmptyClassError as err:  # e.g. the default 1 % on a small folder: the larger fractions still run
            too_small.append(err)
            continue
        frac = value if kind == "label_fraction" else n_labels / n_train
        if kind == "label_fraction":
            lifted += _one_label_note(data, value, n_labels)
        for seed in cfg.finetune.seeds:
            for method in methods:
                cells.append({"method": method, "label_fraction": frac, "n_labels": n_labels, "seed": seed,
                              "kwargs": kwargs, "encoder_lr_scale": lr_scale})

    if too_small and not cells:
        raise too_small[0]
    for err in too_small:
        accelerator.print(f"skipped: {err}")
    for note in lifted:
        accelerator.print(f"note: {note}")
    header = {"task": cfg.task, "modality": spec["modality"], "encoder": str(encoder_path), "encoder_model": encoder_label(spec),
              "data": data_label(cfg.data, spec["modality"]), "class_names": list(data.class_names),
              "evaluated_on": cfg.finetune.evaluate_on,
              **report_identity(cfg, encoder_path), "n_train": n_train, "n_test": len(data.test_labels),
              "split_digest": split_digest(data.train_labels, data.test_labels),
              "metric": cfg.finetune.metric, "test_labels": pack_labels(data.test_labels),
              "input_lengths": getattr(data, "input_lengths", None),  # text: how much of the texts the encoder reads
              "num_classes": data.num_classes, "base_encoder": base_encoder_ref(cfg),
              "test_duplicates_in_pretraining": _leakage(spec, data, cfg),
              "pretraining": spec.get("pretraining"),  # what the encoder's pretraining did (pretraining_record.py)
              "skipped_label_fractions": [str(err) for err in too_small], "label_fraction_notes": lifted,
              "baselines_only": alone}
    if cfg.finetune.evaluate_on == "test" and not alone:
        ranking = validation_ranking(output_dir / "validation" / "label_efficiency.json", header["encoder_sha1"],
                                     cfg.finetune.metric, lambda method: row_settings(cfg, method))
        if ranking:
            header["ssl_choice"] = ranking
            budgets = ", ".join(f"{e['n_labels']:,}" for e in ranking["fractions"])
            accelerator.print(f"the SSL row the report headlines is the one ranked first in {ranking['report']} "
                              f"(this encoder's validation run, at its budgets of {budgets} labels), not the best on "
                              "the test split")
    results_path = report_dir / "label_efficiency.json"
    rows = _load_rows(results_path, header, cfg, encoder_path, methods)
    done = {(r["method"], r["label_fraction"], r["seed"]) for r in rows}
    todo = [c for c in cells if (c["method"], c["label_fraction"], c["seed"]) not in done]
    accelerator.print(f"finetune: {len(cells)} grid cells ({len(cells) - len(todo)} already done), "
                      f"{n_train:,} labeled train / {len(data.test_labels):,} {cfg.finetune.evaluate_on} examples, "
                      f"{data.num_classes} classes")

    ssl = Evaluated(encoder_path, data)
    ssl.features = _features(ssl, cfg, accelerator, want, [c["method"] for c in todo], base=False)
    base = None
    if any(c["method"] in BASE_METHODS for c in todo):
        if alone:  # no SSL row reads `ssl` (its features stayed None): the checkpoint's data serves both kinds of row
            base = ssl
        else:
            base_path = base_encoder_dir(cfg, output_dir, want, accelerator)
            base = Evaluated(base_path, labeled_data(cfg, read_spec(base_path), base_path))
            if not np.array_equal(base.data.train_labels, data.train_labels):
                raise UserError("the base encoder's view of the data differs from the SSL encoder's (labels out of "
                                "order)")
        base.features = _features(base, cfg, accelerator, want, [c["method"] for c in todo], base=True)

    from ..interrupt import RememberedCtrlC

    if cfg.finetune.log_with:
        from ..engine import start_trackers

        start_trackers(accelerator, "finetune", {k: v for k, v in header.items() if isinstance(v, (int, float, str, bool))})

    # a half-trained cell resumes only on the recipe and the examples it started on
    runs = CellRuns(report_dir / "cells", f"{header['fingerprint']}/{header['split_digest']}", accelerator,
                    cfg.finetune.checkpoint_every)
    # counted in the examples the cells will train on (an estimate: cell_work), so the eta weighs a 100 % cell, or a
    # pass over the pool, as more than a 1 % one; the cell count is in the postfix
    work = {id(c): cell_work(c, n_train, cfg, accelerator) for c in cells}
    bar = progress(sum(work.values()), sum(work[id(c)] for c in cells if c not in todo), "finetune grid",
                   disable=not accelerator.is_local_main_process, unit="examples")
    plotted, doc = time.perf_counter(), None
    with RememberedCtrlC() as ctrl_c:
        for cell in todo:
            ctrl_c.check()
            bar.set_postfix(cell=f"{cells.index(cell) + 1}/{len(cells)}", method=cell["method"], labels=cell["n_labels"],
                            seed=cell["seed"])
            idx = balanced_subset(data.train_labels, data.num_classes, cell["seed"], names=data.class_names, **cell["kwargs"])
            set_seed(cell["seed"])
            started = time.perf_counter()
            on = base if cell["method"] in BASE_METHODS else ssl
            method = BY_NAME[cell["method"]].protocol  # base_* = the same protocol as their SSL twin, on the checkpoint
            if method in DISTILL_METHODS:
                results = run_distill_cell(cell["method"], idx, on.data, on.features, cfg, accelerator, on.path,
                                           cell["seed"], cell["encoder_lr_scale"], on.probes, on.models, runs)
            else:
                results = [(cell["method"], run_cell(method, idx, on.data, on.features, cfg, accelerator, on.path,
                                                     cell["seed"], cell["encoder_lr_scale"], on.probes, on.models,
                                                     runs), {})]
            # what a row costs: wall-clock of the cell in the run that finished it (work shared by several cells —
            # the subset's probe, a fixmatch teacher — counts in the first that needs it)
            seconds = round(time.perf_counter() - started, 1)
            for name, preds, extra in results:  # one row, or a student and its int8 copy (written together)
                correct = np.asarray(preds) == data.test_labels
                row = {k: cell[k] for k in ("method", "label_fraction", "n_labels", "seed")}
                row.update(method=name, accuracy=float(correct.mean()), seconds=seconds, **extra)
                settings = row_settings(cfg, name)
                if settings:
                    row["settings"] = settings
                row["correct"] = pack_correct(correct)  # per-example results: the report's bootstrap resamples them
                rows.append(row)
            if accelerator.is_main_process:
                # the tables follow every cell; the plot at most every PLOT_EVERY_S, on Ctrl-C and after the last cell
                last = cell is todo[-1]
                plot = last or time.perf_counter() - plotted >= PLOT_EVERY_S or ctrl_c.pressed
                with ctrl_c.deferred():
                    doc = write_report(report_dir, header, rows, plot=plot)
                plotted = time.perf_counter() if plot else plotted
            runs.written()
            if cfg.finetune.log_with:  # each finished cell, as it lands
                accelerator.log({f"{r['method']}/{_pct_key(r['label_fraction'])}/seed_{r['seed']}": r["accuracy"]
                                 for r in rows[-len(results):]}, step=len(rows))
            bar.update(work[id(cell)])
        ctrl_c.check()
    bar.close()
    if doc is None:  # no cell ran (all were done): the report is still rewritten, for this code's format
        doc = write_report(report_dir, header, rows) if accelerator.is_main_process else {}
    if cfg.finetune.log_with and doc:
        accelerator.log({f"mean/{s['method']}/{_pct_key(s['label_fraction'])}": s["mean"] for s in doc["summary"]},
                        step=len(rows))
    accelerator.end_training()
    accelerator.print(f"label-efficiency report: {report_dir / 'label_efficiency.md'} (+ .json, .csv, .png)")
    for line in console_summary(doc) if doc else []:
        accelerator.print(line)
    return doc


class Evaluated:
    """One encoder the grid scores: its export, its view of the labeled data, frozen features and probes."""

    def __init__(self, path: Path, data):
        self.path, self.data = path, data
        self.features = None
        self.probes: dict = {}  # the latest labeled subset's probe and classic model, shared by the rows on it
        self.models: dict = {}  # the latest subset's fixmatch model: its row and a distilled student's teacher


def needs_embeddings(todo: list[str], ft, base: bool) -> bool:
    """Whether a pending row reads frozen embeddings of the SSL encoder (or, `base`, of the starting checkpoint):
    probes and kNN always, LP-FT-style rows only for the probe their linear head starts from (`evaluators`)."""
    probe_init = ft.head == "linear" and ft.head_init == "probe"
    return any(BY_NAME[m].needs_base == base and
               (BY_NAME[m].embeddings == "frozen" or (BY_NAME[m].embeddings == "probe_head" and probe_init))
               for m in todo)


def _features(on: Evaluated, cfg: Config, accelerator, modality: str, todo: list[str], base: bool):
    """Frozen train/test embeddings when a pending cell needs them (probes, kNN, the LP-FT head)."""
    if not needs_embeddings(todo, cfg.finetune, base):
        return None
    from ..export import load_encoder

    enc = load_encoder(on.path, expect_modality=modality)
    data, bs = on.data, cfg.finetune.probe_batch_size
    feats = (M.embed(enc, data.dataset("train", np.arange(len(data.train_labels))), data.input_keys, accelerator, bs,
                     "the train split"),
             M.embed(enc, data.dataset("test", np.arange(len(data.test_labels))), data.input_keys, accelerator, bs,
                     f"the {cfg.finetune.evaluate_on} split"))
    del enc
    return feats


ALONE_EXAMPLE = ("base_finetune", "base_probe", "supervised")  # the rows the missing-encoder error suggests


def checkpoint_alone(cfg: Config, methods: list[str]) -> bool:
    """No encoder pretrained here yet, a starting checkpoint known and only baseline rows asked for: the grid scores
    the checkpoint (and `supervised`, `classic`) alone — what the user would otherwise get, measured before paying
    for pretraining. Its report goes to OUTPUT_DIR/baselines/, apart from the full one pretraining leads to."""
    pretrained = cfg.finetune.encoder is not None or (Path(cfg.output_dir) / "encoder").exists()
    return not pretrained and bool(base_encoder_ref(cfg)) and all(BY_NAME[m].role == "baseline" for m in methods)


def _check_modality(spec: dict, encoder_path: Path, task: str, want: str) -> None:
    if spec["modality"] != want:
        raise UserError(f"encoder {encoder_path} is a {spec['modality']} encoder but task={task} needs a {want} "
                        "encoder (set task to match, or point finetune.encoder at the right export)")


def methods_for(cfg: Config) -> list[str]:
    """The report's rows: finetune.methods, plus the base_* rows when a starting checkpoint is known and the
    user did not list the methods."""
    methods = list(cfg.finetune.methods)
    if base_encoder_ref(cfg) and not explicit(cfg, "finetune.methods"):
        methods += [m for m in BASE_METHODS if m not in methods]
    return methods


def per_subset(cache: dict, kind: str, idx, make):
    """What a labeled subset alone determines, made once and shared by the rows on it (`kind`: its converged probe,
    its classic model). Subsets change cell by cell in grid order: only the latest subset's are kept."""
    key = subset_digest(idx)
    if cache.get("subset") != key:
        cache.clear()
        cache["subset"] = key
    if kind not in cache:
        cache[kind] = make()
    return cache[kind]


def subset_probe(idx, data, features, ft, probes: dict) -> M.LinearProbe:
    """The converged linear probe of a labeled subset, shared by the probe row and every LP-FT head on it."""
    return per_subset(probes, "probe", idx, lambda: M.LinearProbe(features[0][idx], data.train_labels[idx],
                                                                  data.num_classes, ft.probe_c))


def fitted_classic(data, idx):
    """The classic model fitted on the train examples `idx`."""
    model = data.classic_model()
    fit_saying_once(model, data.classic_inputs("train", idx), data.train_labels[idx])
    return model


def subset_classic(idx, data, probes: dict):
    """The classic model fitted on a labeled subset, shared by the classic row and probe_classic."""
    return per_subset(probes, "classic", idx, lambda: fitted_classic(data, idx))


def probe_out_of_fold(idx, data, features, ft, fit, held):
    """The probe fitted on part of a labeled subset (`fit`, positions in `idx`): its log-probabilities of the rest."""
    p = M.LinearProbe(features[0][idx[fit]], data.train_labels[idx[fit]], data.num_classes, ft.probe_c)
    return p.clf.classes_, p.log_proba(features[0][idx[held]])


def classic_out_of_fold(idx, data, fit, held):
    model = fitted_classic(data, idx[fit])
    return model.classes_, model.predict_log_proba(data.classic_inputs("train", idx[held]))


def fit_saying_once(model, x, y) -> None:
    """model.fit, with scikit-learn's multi-line ConvergenceWarning (repeated for every cell of the grid, between
    the progress lines) said once, in one line; other warnings pass through."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            say_once("note: the classic baseline's logistic regression reached its iteration limit before converging "
                     "on some subsets (scikit-learn's ConvergenceWarning); it is scored as it stands")


def run_cell(method: str, idx: np.ndarray, data, features, cfg: Config, accelerator, encoder_path, seed: int,
             encoder_lr_scale: float, probes: dict | None = None, models: dict | None = None,
             runs: CellRuns | None = None):
    ft = cfg.finetune
    labels = data.train_labels[idx]
    test_idx = np.arange(len(data.test_labels))
    probes = {} if probes is None else probes
    models = {} if models is None else models

    def probe() -> M.LinearProbe:
        return subset_probe(idx, data, features, ft, probes)

    if method == "classic":
        return subset_classic(idx, data, probes).predict(data.classic_inputs("test", test_idx))
    if method == "probe_classic":
        weights = M.expert_weights(labels, [lambda fit, held: probe_out_of_fold(idx, data, features, ft, fit, held),
                                            lambda fit, held: classic_out_of_fold(idx, data, fit, held)], seed)
        return M.product_of_experts(probe(), features[1], subset_classic(idx, data, probes),
                                    data.classic_inputs("test", test_idx), weights)
    if method == "knn":
        return M.knn(features[0][idx], labels, features[1], ft.knn_k)
    if method == "linear_probe":
        if ft.head == "mlp":
            return M.mlp_probe(features[0][idx], labels, features[1], data.num_classes, ft, accelerator, seed)
        return probe().predict(features[1])
    if method == "fixmatch":
        trained = fixmatch_model(idx, data, cfg, accelerator, encoder_path, seed, probe, models, runs)
    else:
        trained = trained_classifier(method == "finetune", idx, data, cfg, accelerator, encoder_path, seed,
                                     encoder_lr_scale, probe)
    return M.predict(trained, data.dataset("test", test_idx), accelerator, ft.probe_batch_size)


def fixmatch_model(idx, data, cfg: Config, accelerator, encoder_path, seed: int, probe, models: dict,
                   runs: CellRuns | None = None):
    """The fixmatch model of a subset and seed, trained once for both its row and a distilled student's teacher
    (finetune.distill_teacher=fixmatch): the second use takes the first's model, as training it again from the same
    seed would give (minutes per cell). Resumed from its cell's checkpoints when `runs` has some (cell_runs.py)."""
    from .fixmatch import fixmatch

    key = ("fixmatch", subset_digest(idx), seed)
    if key not in models:
        models.clear()  # grid order: keep only the latest subset's
        run_dir = runs.directory("fixmatch", idx, seed, encoder_path, row_settings(cfg, "fixmatch")) if runs else None
        models[key] = fixmatch(initial_classifier(True, data, cfg, encoder_path, probe), data, idx, cfg.finetune,
                               accelerator, seed, run_dir)
    return models[key]


def initial_classifier(pretrained: bool, data, cfg: Config, encoder_path, probe) -> M.Classifier:
    """The SSL encoder with its head from the converged probe (LP-FT), or the architecture from random weights."""
    ft = cfg.finetune
    encoder = data.encoder(pretrained=pretrained, path=encoder_path)
    if pretrained and ft.head == "linear" and ft.head_init == "probe":
        head = probe().as_head()
    else:
        head = M.make_head(ft.head, encoder.embedding_dim, data.num_classes)
    return M.Classifier(encoder, head, data.input_keys)


def trained_classifier(pretrained: bool, idx, data, cfg: Config, accelerator, encoder_path, seed: int,
                       encoder_lr_scale: float, probe):
    """`finetune` (the SSL encoder, head from the converged probe) or `supervised` (random weights) on a subset."""
    model = initial_classifier(pretrained, data, cfg, encoder_path, probe)
    return M.train_classifier(model, data.dataset("train", idx), cfg.finetune, accelerator, seed,
                              transform=data.train_transform, encoder_lr_scale=encoder_lr_scale if pretrained else 1.0,
                              overlap=data.views_ahead)


def run_distill_cell(method: str, idx, data, features, cfg: Config, accelerator, encoder_path, seed: int,
                     encoder_lr_scale: float, probes: dict, models: dict | None = None,
                     runs: CellRuns | None = None) -> list[tuple[str, np.ndarray, dict]]:
    """Teacher = the `finetune` (or, finetune.distill_teacher=fixmatch, the `fixmatch`) model of the subset; student
    = the SSL encoder (distill) or finetune.student (distill_small: from scratch, or an exported encoder), distilled
    on the train pool; with finetune.quantize=int8 also the student in int8.
    -> [(row name, test predictions, row extras)]."""
    from . import distill as D

    ft = cfg.finetune

    def probe() -> M.LinearProbe:
        return subset_probe(idx, data, features, ft, probes)

    if ft.distill_teacher == "fixmatch":
        models = {} if models is None else models
        teacher = fixmatch_model(idx, data, cfg, accelerator, encoder_path, seed, probe, models, runs)
    else:
        teacher = trained_classifier(True, idx, data, cfg, accelerator, encoder_path, seed, encoder_lr_scale, probe)
    if method == "distill":
        model, pretrained_student = initial_classifier(True, data, cfg, encoder_path, probe), True
    else:
        encoder, pretrained_student = data.student_encoder(ft.student, encoder_path)
        model = M.Classifier(encoder, M.make_head(ft.head, encoder.embedding_dim, data.num_classes), data.input_keys)
    run_dir = runs.directory(method, idx, seed, encoder_path, row_settings(cfg, method)) if runs else None
    student = D.distill(teacher, model, data, idx, ft, accelerator, seed,
                        encoder_lr_scale if pretrained_student else 1.0,  # a pretrained encoder moves slowly
                        run_dir)
    test = data.dataset("test", np.arange(len(data.test_labels)))
    preds = M.predict(student, test, accelerator, ft.probe_batch_size)
    sample = test.__getitems__(list(range(min(256, len(test)))))
    teacher_params = sum(p.numel() for p in teacher.parameters())
    teacher_correct = M.predict(teacher, test, accelerator, ft.probe_batch_size) == data.test_labels
    about_teacher = {"teacher": ft.distill_teacher, "teacher_params": int(teacher_params),
                     "teacher_accuracy": float(np.mean(teacher_correct))}  # "within a point of its teacher?"
    stats = {**D.student_stats(student, sample), **about_teacher}
    out = [(method, preds, stats)]
    if ft.quantize == "int8":
        q = D.quantized_int8(student)
        q_stats = D.student_stats(q, sample, size_of=D.bytes_of)
        out.append((f"{method}_int8", D.predict_cpu(q, test, ft.probe_batch_size),
                    {**q_stats, **about_teacher}))
    return out
