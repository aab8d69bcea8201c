"""Output-directory policy: never silently overwrite a run; resume it or refuse with a way out."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import UserError

PRETRAIN_MARKERS = ("checkpoints", "metrics.jsonl", "encoder")


def existing_run(output_dir: Path) -> list[str]:
    return [m for m in PRETRAIN_MARKERS if (output_dir / m).exists()]


def check_pretrain_dir(output_dir: Path, resume: str, overwrite: bool) -> bool:
    """True when an earlier run should be resumed; refuses a run that would silently replace another."""
    existing = existing_run(output_dir)
    if not existing:
        return False
    if resume == "auto":
        return True
    if not overwrite:
        raise UserError(f"output_dir {output_dir} already holds a run ({', '.join(existing)}); "
                        "resume it with resume=auto, or replace it with resume=never overwrite=true")
    return False


def clear_pretrain_dir(output_dir: Path) -> None:
    """overwrite=true: remove the earlier run, only once the new one has been validated."""
    for m in existing_run(output_dir):
        target = output_dir / m
        shutil.rmtree(target) if target.is_dir() else target.unlink()
