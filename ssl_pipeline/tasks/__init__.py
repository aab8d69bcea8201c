"""Pretext tasks: each plugs a model, a batch transform + loss and an export into the shared engine."""
from __future__ import annotations

from ..config import Config


def build_task(cfg: Config, accelerator):
    if cfg.task == "simclr":
        from .simclr import SimCLRTask

        return SimCLRTask(cfg, accelerator)
    from .mlm import MLMTask

    return MLMTask(cfg, accelerator)
