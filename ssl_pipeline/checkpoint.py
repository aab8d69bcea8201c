"""Atomic Accelerate checkpoints: `checkpoints/step_NNNNNNN/` appears only once it is complete.

Every process writes its part (Accelerate saves per-process RNG states) into a temporary directory; the main
process then adds `trainer_state.json` (and the task's own state, `task_state.pt`) and renames it into place, so
a crash during a save leaves the previous checkpoint as the latest loadable one. Only the newest `keep` checkpoints
are kept.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from .atomic import space_checked, write_json

STATE_FILE = "trainer_state.json"
TASK_STATE_FILE = "task_state.pt"  # Task.state_dict(): what a task keeps beyond Accelerate's objects
PREFIX = "step_"


def complete(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(ckpt_dir: Path) -> Optional[Path]:
    done = complete(ckpt_dir)
    return done[-1] if done else None


def task_state(path: Path) -> Optional[dict]:
    """The task's own state saved with checkpoint `path` (None: the task kept none)."""
    f = path / TASK_STATE_FILE
    if not f.is_file():
        return None
    import torch

    return torch.load(f, map_location="cpu", weights_only=True)


def save(accelerator, ckpt_dir: Path, state: dict, keep: int, extra: Optional[dict] = None) -> Path:
    final = ckpt_dir / f"{PREFIX}{state['step']:07d}"
    tmp = ckpt_dir / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        with space_checked(ckpt_dir, f"checkpoint {final.name}"):
            accelerator.save_state(str(tmp), safe_serialization=False)  # tied MLM weights round-trip as-is
            accelerator.wait_for_everyone()
            if accelerator.is_main_process and extra:
                import torch

                torch.save(extra, tmp / TASK_STATE_FILE)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint: the space it holds is what the user lacks
        raise
    if accelerator.is_main_process:
        write_json(tmp / STATE_FILE, state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in complete(ckpt_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
