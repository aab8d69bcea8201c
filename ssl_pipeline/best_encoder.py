"""The encoder of a run's lowest held-out loss, for corpora small enough to be memorised.

A masked LM pretrained from scratch on a few thousand short texts overfits them: past some step its held-out loss
rises while the training loss falls, and its embeddings get worse with it (2,500 package one-liners: held-out loss
7.27 at step 200 → 9.99 at step 1,000, kNN accuracy 33.7 → 24.6 %). Hugging Face's Trainer answers with
`load_best_model_at_end` and an early-stopping callback; neither runs in this project's engine, so this is the same
idea for it, judged with the memorising margin of `pretraining_record`:

* each new lowest held-out loss exports its encoder to `OUTPUT_DIR/best_encoder` (the main process);
* the run stops once the loss has stayed OVERFIT_MARGIN (0.2) nats or more above that lowest for `patience`
  evaluations in a row;
* a run whose last held-out loss is that far above its lowest exports the kept encoder as `encoder/`. A run that
  ends within the margin exports its last weights, as before — the cosine schedule's end is usually its best.

What a resume needs (the lowest loss, its step, the count of evaluations above it) travels in the checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .pretraining_record import OVERFIT_MARGIN, risen

DIRECTORY = "best_encoder"


class BestEncoder:
    def __init__(self, task, output_dir: Path, patience: int, restore: bool, accelerator, state: Optional[dict] = None):
        self.task, self.patience, self.restore, self.accelerator = task, patience, restore, accelerator
        self.key = task.held_out_loss
        self.directory = output_dir / DIRECTORY
        # a checkpoint's record without its encoder on disk (deleted after a finished run that is now continued):
        # the continued run finds its own lowest
        kept = state if state and (not restore or self.directory.is_dir()) else {}
        self.step, self.loss = kept.get("step"), kept.get("loss")
        self.above, self.last = kept.get("above", 0), kept.get("last")

    def seen(self, step: int, metrics: dict, model) -> bool:
        """After an evaluation: keeps a new lowest; True when the run should stop (memorising for `patience`
        evaluations in a row). Every process decides alike: the main process's evaluation decides for all."""
        if self.key not in metrics:
            return False
        value = float(metrics[self.key])
        self.last = value
        if self.loss is None or value < self.loss:
            self.step, self.loss, self.above = step, value, 0
            if self.restore and self.accelerator.is_main_process:
                self.task.export(self.accelerator.unwrap_model(model), self.directory)
        elif risen(value, self.loss):
            self.above += 1
        else:
            self.above = 0
        stop = bool(self.patience) and self.above >= self.patience
        if self.accelerator.num_processes > 1:  # one decision for every process, or the others wait for ever
            from accelerate.utils import broadcast_object_list

            box = [stop]
            broadcast_object_list(box, from_process=0)
            stop = box[0]
        return stop

    def stop_line(self, step: int, total_steps: int) -> str:
        return (f"stopped at step {step:,} of {total_steps:,}: the held-out loss ({self.last:.2f}) has been "
                f"{OVERFIT_MARGIN} nats or more above its lowest ({self.loss:.2f}, step {self.step:,}) for {self.above} "
                "evaluations in a row — the model is memorising its training data "
                "(pretrain.early_stopping_patience=0 trains on)")

    def state(self) -> dict:
        return {"step": self.step, "loss": self.loss, "above": self.above, "last": self.last}

    @property
    def memorised(self) -> bool:
        """The last held-out loss ended OVERFIT_MARGIN (0.2) nats or more above the run's lowest."""
        return self.loss is not None and self.last is not None and risen(self.last, self.loss)

    def export(self, model, path: Path) -> Optional[dict]:
        """The run's encoder to `path`: the kept one when the run memorised, else `model`'s (the main process).
        -> {"step", "eval_loss"} of the kept encoder when it was the one exported, else None."""
        from .atomic import atomic_dir

        chosen = None
        if self.restore and self.memorised and self.directory.is_dir():
            with atomic_dir(path) as tmp:
                shutil.copytree(self.directory, tmp, dirs_exist_ok=True)
            chosen = {"step": self.step, "eval_loss": self.loss}
        else:
            self.task.export(model, path)
        shutil.rmtree(self.directory, ignore_errors=True)  # `encoder/` holds what is worth keeping
        return chosen
