"""Pretext methods: each is a registered `Task` (model, batch transform + loss, hooks, export) for the engine."""
from __future__ import annotations

from ..config import Config
from .registry import available, method, register  # noqa: F401


def build_task(cfg: Config, accelerator):
    return method(cfg.task)(cfg, accelerator)


def modality_of(name: str) -> str:
    return method(name).modality
