"""Output-directory policy: never silently overwrite a run; resume it or refuse with a way out."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UserError

PRETRAIN_MARKERS = ("checkpoints", "metrics.jsonl", "encoder")


def prepare_pretrain_dir(output_dir: Path, resume: str, overwrite: bool, is_main: bool) -> bool:
    """Returns True when an earlier run should be resumed. Raises before anything is written otherwise."""
    existing = [m for m in PRETRAIN_MARKERS if (output_dir / m).exists()]
    if not existing:
        return False
    if resume == "auto":
        return True
    if not overwrite:
        raise UserError(f"output_dir {output_dir} already holds a run ({', '.join(existing)}); "
                        "resume it with resume=auto, or replace it with resume=never overwrite=true")
    if is_main:
        for m in existing:
            target = output_dir / m
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return False
