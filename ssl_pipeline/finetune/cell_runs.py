"""Checkpoints inside a grid cell, for the cells that pass over the unlabeled pool.

Most cells train for seconds, but `fixmatch` and a distilled student train for epochs over the whole train pool:
10 to 36 minutes per fixmatch cell on Fashion-MNIST here, hours on large data. Those train with the engine's
checkpoints in `REPORT_DIR/cells/NAME/`, so a grid stopped by a crash, Ctrl-C or preemption resumes such a cell at
its last checkpoint (on CPU with the uninterrupted cell's result) instead of at its first step. A cell directory
records what it was made for (`cell.json`: the report's fingerprint — encoder and recipe —, the encoder, the
labeled subset, the seed, the number of processes and the row's settings); one made for anything else is cleared,
never resumed. Once the cell's rows are in the report its checkpoints go; its `metrics.jsonl` (the pass's loss and
FixMatch's `confident`) stays.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic import write_json
from .subsets import subset_digest


class CellRuns:
    """Hands out the checkpoint directory of a long cell (None when finetune.checkpoint_every = 0) and removes the
    checkpoints of the cells whose rows have been written."""

    def __init__(self, root: Path, fingerprint: str, accelerator, checkpoint_every: int):
        self.root, self.fingerprint, self.accelerator = root, fingerprint, accelerator
        self.every = checkpoint_every
        self.used: list[Path] = []

    def directory(self, kind: str, idx: np.ndarray, seed: int, encoder_path, settings: dict) -> Optional[Path]:
        if not self.every:
            return None
        path = self.root / f"{kind}_{len(idx)}labels_seed{seed}"
        identity = {"fingerprint": self.fingerprint, "encoder": str(encoder_path), "kind": kind, "seed": seed,
                    "processes": self.accelerator.num_processes,  # the steps and RNG states are per process
                    "subset_sha1": subset_digest(idx),
                    "settings": json.loads(json.dumps(settings))}
        if self.accelerator.is_main_process:
            marker = path / "cell.json"
            if path.exists() and (not marker.is_file() or json.loads(marker.read_text()) != identity):
                shutil.rmtree(path)  # made for another encoder, recipe, subset or settings: never resumed
            path.mkdir(parents=True, exist_ok=True)
            write_json(marker, identity)
        self.accelerator.wait_for_everyone()
        self.used.append(path)
        return path

    def written(self) -> None:
        """The current cell's rows are in the report: its checkpoints are no longer needed."""
        if self.accelerator.is_main_process:
            for path in self.used:
                shutil.rmtree(path / "checkpoints", ignore_errors=True)
        self.used.clear()
