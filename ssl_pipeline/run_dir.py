"""Output-directory policy: never silently overwrite or mix runs; resume one, say it is complete, or refuse.

A run directory belongs to one recipe: re-running into it with a different model, data or pretext setting would
resume its checkpoint under the wrong config (or fail deep inside `load_state`), so that is a one-line error
naming the keys that differ. Keys that do not change what is trained (how long, how often to log or save, where
to cache, thread counts, the fine-tune stage) may change: raising `pretrain.max_steps` (or `pretrain.max_minutes`)
extends a finished run.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import UserError

PRETRAIN_MARKERS = ("checkpoints", "metrics.jsonl", "encoder", "best_encoder", "pretrain_done.json")
DONE_FILE = "pretrain_done.json"
# keys (or key prefixes ending in '.') that may differ between the runs that write one output_dir
FREE_KEYS = ("output_dir", "resume", "overwrite", "threads", "finetune.", "pretrain.max_steps", "pretrain.epochs",
             "pretrain.min_steps", "pretrain.max_minutes", "pretrain.log_every", "pretrain.eval_every", "pretrain.eval_every_passes", "pretrain.monitor_every",
             "pretrain.monitor_samples", "pretrain.stop_on_collapse", "pretrain.restore_best", "pretrain.early_stopping_patience", "pretrain.checkpoint_every", "pretrain.keep_checkpoints",
             "pretrain.compile", "pretrain.mixed_precision", "data.num_workers", "data.in_memory_gb", "data.cache_dir", "data.download", "data.leakage_check",
             "data.validation_files")


def existing_run(output_dir: Path) -> list[str]:
    return [m for m in PRETRAIN_MARKERS if (output_dir / m).exists()]


def changed_keys(stored: dict, current: dict, defaults: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(key, value there, value now) for each key of `current` that `stored` holds otherwise. A key `stored` lacks
    (added to the schema after it was written) counts at its default, the value that behaves as before it existed;
    one without a default either is not compared. How every refusal to mix runs, reports or rows decides."""
    missing = object()
    made = {**defaults, **stored}
    return [(f"{prefix}{k}", made[k], v) for k, v in current.items() if made.get(k, missing) not in (missing, v)]


def recipe_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """(key, value there, value now) for every key that decides what is trained and differs.

    Runs written before a key moved into its method's section are read with the key in its new place; the sections
    of methods other than the run's own do not decide what is trained."""
    import copy

    from .config import Config, flatten, migrate_legacy_keys
    from .tasks import available

    unused = tuple(f"pretrain.{m}." for m in available() if m != new.get("task"))
    current = {k: v for k, v in sorted(flatten(new).items())
               if not (any(k == f or (f.endswith(".") and k.startswith(f)) for f in FREE_KEYS) or k.startswith(unused))}
    return changed_keys(flatten(migrate_legacy_keys(copy.deepcopy(old))), current, flatten(Config().to_dict()))


def listed_changes(changes: list[tuple[str, object, object]], limit: int = 5) -> str:
    """`key (value there, value now)` for the first `limit` changes: how every refusal to mix runs names them."""
    listed = "; ".join(f"{k} ({v_old!r} there, {v_new!r} now)" for k, v_old, v_new in changes[:limit])
    return listed + (f" and {len(changes) - limit} more" if len(changes) > limit else "")


def check_writable(output_dir: Path) -> None:
    """A one-line error, before any data is read, when `output_dir` cannot be made or written: a file where a folder
    should be (`output_dir=runs/x` with a file `runs`), a read-only disk, a folder of someone else's. It was a
    `NotADirectoryError` traceback from the first mkdir (or, on a resumed run, from the first checkpoint)."""
    import os

    from .atomic import nearest_existing

    path = nearest_existing(output_dir)  # output_dir itself, or the folder it would be created in
    if not path.is_dir():
        raise UserError(f"output_dir {output_dir} cannot be made: {path} is a file, not a folder; set output_dir "
                        "to a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        why = "on a read-only disk" if os.statvfs(path).f_flag & os.ST_RDONLY else "not writable by this user"
        raise UserError(f"output_dir {output_dir} cannot be written: {path} is {why}; set output_dir to a folder you "
                        "can write")


def check_pretrain_dir(output_dir: Path, cfg) -> str:
    """'fresh', 'resume' or 'complete' for this output_dir; refuses runs that would replace or mix with another."""
    existing = existing_run(output_dir)
    if not existing:
        return "fresh"
    if cfg.resume == "never":
        if not cfg.overwrite:
            raise UserError(f"output_dir {output_dir} already holds a run ({', '.join(existing)}); "
                            "resume it with resume=auto, or replace it with resume=never overwrite=true")
        return "fresh"
    saved = output_dir / "config.json"
    if saved.is_file():
        changes = recipe_changes(json.loads(saved.read_text()), cfg.to_dict())
        if changes:
            raise UserError(f"output_dir {output_dir} holds a run with a different recipe: {listed_changes(changes)}; "
                            "use another output_dir, or replace that run with resume=never overwrite=true")
    done = output_dir / DONE_FILE
    if done.is_file() and (output_dir / "encoder").is_dir():
        state = json.loads(done.read_text())
        asked = _budget(cfg)
        # a run finished before min_steps existed trained on its epochs alone (0); if it falls short of the floor
        # now, resuming trains it up to it, and one already past it ends at once
        # a run that stopped early (memorising) is complete for the patience that stopped it; 0 trains it on
        patience = cfg.pretrain.early_stopping_patience
        if ({k: state.get(k, 0 if k == "min_steps" else None) for k in asked} == asked
                and state.get("early_stopping_patience", patience) == patience):
            return "complete"
    return "resume"


def mark_complete(output_dir: Path, step: int, cfg, stopped_early: bool = False) -> None:
    from .atomic import write_json

    stop = {"early_stopping_patience": cfg.pretrain.early_stopping_patience} if stopped_early else {}
    write_json(output_dir / DONE_FILE, {"step": step, **_budget(cfg), **stop})


def _budget(cfg) -> dict:
    """The keys that decide how long a run trains: a finished run is complete for these values only."""
    p = cfg.pretrain
    return {"max_steps": p.max_steps, "epochs": p.epochs, "min_steps": p.min_steps, "max_minutes": p.max_minutes}


def clear_pretrain_dir(output_dir: Path) -> None:
    """overwrite=true: remove the earlier run, only once the new one has been validated."""
    for m in existing_run(output_dir):
        target = output_dir / m
        shutil.rmtree(target) if target.is_dir() else target.unlink()
