"""The one training engine shared by every pretext method and by fine-tuning.

A task (a `Task` subclass) supplies: `model`, `dataloader(batch_size, generator)`, `loss(model, batch,
accelerator) -> (loss, extra_metrics)`, `batch_items(batch) -> {"samples": n, ["tokens": n]}`, and where it needs
them `evaluate(model, accelerator)`, `after_optimizer_step(model, step, total_steps)` (EMA teachers) and
`export(model, path)`. The engine owns everything else, in the Accelerate idiom: device placement,
DDP, mixed precision, gradient accumulation, LARS/AdamW with warm-up + cosine, progress bar, metrics.jsonl
and TensorBoard, atomic checkpoints with exact resume (model, optimizer, scheduler, RNG, data position),
NaN detection and the final export.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import checkpoint as ckpt
from .errors import UserError
from .time_budget import Span, TimeBudget


class Task:
    """What the engine trains. Defaults cover what most tasks do not need; a method overrides the rest."""

    modality: str = ""  # "vision" | "text": which data and encoders the task works with
    held_out_loss: Optional[str] = None  # the key of `evaluate`'s held-out loss (lower is better), by which the
    # engine keeps the run's best encoder and stops a memorising run (best_encoder.py); None: the task has none
    presharded: bool = False  # True when the loader already gives each process its own shard (streaming)
    progress_keys: tuple[str, ...] = ()  # extra metrics from `loss` shown on the progress line at each log step
    model: nn.Module

    def dataloader(self, batch_size: int, generator: torch.Generator):
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, accelerator) -> tuple[torch.Tensor, dict]:
        """-> (loss, extra metrics as 0-d tensors or floats, averaged over the log window)."""
        raise NotImplementedError

    def batch_items(self, batch: dict) -> dict:
        return {"samples": len(next(iter(batch.values())))}

    def evaluate(self, model: nn.Module, accelerator) -> dict:
        return {}

    def prepare(self, batch: dict) -> dict:
        """Model-free work on a placed batch before `loss` (a vision method's views). The engine seeds the global
        RNG per batch for it (prefetch.batch_seed) and, with `TrainPlan.overlap`, runs it one batch ahead in a
        background thread: it must not touch the model, and `loss` must not draw from the global RNG."""
        return batch

    @property
    def prepares(self) -> bool:
        """Whether `prepare` does anything: when not, batches skip it (and its per-batch RNG fork, ~0.1 ms)."""
        return type(self).prepare is not Task.prepare

    def after_optimizer_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after every optimizer step with the unwrapped model (e.g. to update an EMA teacher)."""

    def monitor_inputs(self) -> Optional[tuple[dict, Optional[torch.Tensor]]]:
        """A fixed set of inputs (and their labels when the data has some) whose embeddings the engine checks
        every `monitor_every` steps (monitor.py); None: this task has none."""
        return None

    def embed(self, model: nn.Module, inputs: dict) -> torch.Tensor:
        """(B, D) encoder embeddings of a batch of `monitor_inputs` (the unwrapped model, in eval mode)."""
        raise NotImplementedError

    def export(self, model: nn.Module, path) -> None:
        """Writes the encoder to `path` at the end of a run (tasks without an export keep nothing)."""

    def state_dict(self) -> dict:
        """What a checkpoint must keep beyond model, optimizer, scheduler, RNG and data position for an exact
        resume (e.g. a moving average of the weights, per-example memory); {}: nothing. The main process's copy
        is saved, so it must be the same on every process."""
        return {}

    def load_state_dict(self, state: dict, batches_done: Optional[int]) -> None:
        """Restores `state_dict()` on resume; `batches_done`: the batches this process trained on before the
        checkpoint (None for a stream), for state that follows the data position."""


@dataclass
class TrainPlan:
    batch_size: int  # per process
    epochs: int
    max_steps: Optional[int]
    learning_rate: float  # already scaled for the global batch
    min_steps: int = 0  # floor on the steps `epochs` give (ignored when max_steps is set)
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    log_every: int = 10
    eval_every: Optional[int] = None
    eval_every_passes: int = 0  # ... and at least every this many passes over the data (0: steps alone)
    monitor_every: int = 0  # 0: no representation checks
    overlap: bool = False  # run task.prepare one batch ahead in a background thread (prefetch.Ahead)
    stop_on_collapse: bool = False
    checkpoint_every: Optional[int] = None  # None: no checkpoints (short fine-tune runs)
    max_seconds: Optional[float] = None  # a wall-clock budget that sets the step count (time_budget.py); wins over the rest
    keep_checkpoints: int = 2
    restore_best: bool = False  # export the encoder of the lowest held-out loss when the run ends memorising
    early_stopping_patience: int = 0  # stop after this many evaluations in a row memorising; 0: never early
    log_to_trackers: bool = True  # False: metrics.jsonl only (a grid cell's steps are not the grid's tracker steps)
    description: str = "train"
    show_progress: bool = True
    progress_after: float = 0.0  # seconds before the bar shows (a grid's short cells: never); such a bar sits under
    # the grid's, and a terminal clears it when done


def scaled_lr(base_lr: float, global_batch: int, rule: str) -> float:
    """SimCLR's rule: lr = base * global_batch / 256 (linear) or base * sqrt(global_batch) / 16 (sqrt)."""
    if rule == "linear":
        return base_lr * global_batch / 256
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch / 256)
    return base_lr


def param_groups(model: nn.Module, weight_decay: float, lr_scales: Optional[dict] = None) -> list[dict]:
    """Weights get weight decay; biases and norm parameters (1-d) get none and, for LARS, no adaptation.

    `lr_scales` maps a parameter-name prefix to an lr multiplier (e.g. a smaller lr for a fine-tuned encoder).
    """
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        for prefix, s in (lr_scales or {}).items():
            if name.startswith(prefix):
                scale = s
        decay = weight_decay if p.ndim > 1 else 0.0
        groups.setdefault((decay, scale), []).append(p)
    return [{"params": ps, "weight_decay": d, "lr_scale": s} for (d, s), ps in groups.items()]


def build_optimizer(groups: list[dict], plan: TrainPlan) -> torch.optim.Optimizer:
    for g in groups:
        g["lr"] = plan.learning_rate * g["lr_scale"]
    if plan.optimizer == "lars":
        from .lars import LARS  # lightly's update rule without its per-parameter host syncs (lars.py says why)

        return LARS(groups, lr=plan.learning_rate, momentum=0.9)
    if plan.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=plan.learning_rate, momentum=0.9, nesterov=True)
    # fused AdamW: one kernel per step over all parameters (CPU and CUDA); fewer passes over memory than foreach
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=plan.learning_rate, fused=fused or None)


def warmup_cosine(span: Span):
    """The lr factor of each step; reads `span` at every step, so a time budget can move the cosine's end."""

    def factor(step: int) -> float:
        if step < span.warmup:
            return (step + 1) / (span.warmup + 1)
        progress = (step - span.warmup) / max(1, span.total - span.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class MetricsLog:
    """metrics.jsonl (one JSON row per logged step, appended) plus the Accelerate trackers (TensorBoard)."""

    def __init__(self, path: Optional[Path], accelerator, trackers: bool = True):
        self.path, self.accelerator, self.trackers = path, accelerator, trackers

    def truncate_after(self, step: int) -> None:
        if self.path.is_file():
            from .atomic import write_text

            keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            write_text(self.path, "".join(f"{line}\n" for line in keep))

    def write(self, row: dict, step: int) -> None:
        if self.path is not None and self.accelerator.is_main_process:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        if self.path is not None and self.trackers:
            self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}, step=step)


def train(task: Task, plan: TrainPlan, accelerator, seed: int, output_dir: Optional[Path] = None,
          resume: bool = False, groups: Optional[list[dict]] = None, step_hooks: tuple = ()) -> dict:
    """Runs the loop to `plan`'s end; returns the last logged metrics. Exports when `output_dir` is set.

    With checkpoints on, SIGINT/SIGTERM save a checkpoint at the current step and raise `Interrupted`.
    `step_hooks`: callables (step, loss, accelerator) -> loss run on every micro-batch's loss before it is
    accumulated (tests inject faults with them)."""
    from .interrupt import StopFlag
    from .progress import progress

    generator = torch.Generator().manual_seed(seed)
    loader = task.dataloader(plan.batch_size, generator)
    model = task.model
    optimizer = build_optimizer(groups or param_groups(model, plan.weight_decay), plan)
    presharded = task.presharded  # streaming: each process already reads its own shard
    if presharded:
        model, optimizer = accelerator.prepare(model, optimizer)
        batches_per_epoch = None
        if not plan.max_steps and not plan.max_seconds:
            raise UserError("a streaming corpus needs pretrain.max_steps or pretrain.max_minutes")
        steps_per_epoch = None
        total_steps = plan.max_steps or 1  # (a time budget sets it)
    else:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        batches_per_epoch = len(loader)
        if batches_per_epoch == 0:
            raise UserError("the training set gives no full batch: lower the batch size or set drop_last=false")
        steps_per_epoch = math.ceil(batches_per_epoch / accelerator.gradient_accumulation_steps)
        total_steps = plan.max_steps or plan.epochs * steps_per_epoch
        if not plan.max_steps and not plan.max_seconds and total_steps < plan.min_steps:
            total_steps = plan.min_steps
            accelerator.print(f"{plan.epochs} epochs of {steps_per_epoch} steps are fewer than pretrain.min_steps={plan.min_steps}: "
                              f"training {total_steps} steps ({total_steps / steps_per_epoch:.0f} passes over the data) "
                              "so the model learns on data this small (pretrain.min_steps=0: the epochs alone)")
    if task.held_out_loss:  # the lowest of it is looked for (best_encoder.py)
        plan = _evaluated_often_enough(plan, steps_per_epoch, accelerator)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    ckpt_dir = output_dir / "checkpoints" if output_dir is not None and plan.checkpoint_every else None
    last = ckpt.latest(ckpt_dir) if resume and ckpt_dir is not None else None
    if last is not None:
        state = json.loads((last / ckpt.STATE_FILE).read_text())
    batches = _Batches(task, plan, accelerator, seed, presharded)
    span, budget = Span(total_steps, int(total_steps * plan.warmup_fraction)), None
    if plan.max_seconds:  # before the scheduler exists: its first lr comes from the planned span
        # re-measured over windows that hold each periodic check, evaluation and checkpoint at least once
        every = max(plan.checkpoint_every or 0, plan.monitor_every or 0, plan.eval_every or 0) or 200
        budget = TimeBudget(plan.max_seconds, plan.warmup_fraction, every, accelerator, plan.min_steps)
        with _Passes(task, model, plan, accelerator, seed, batches) as measure:
            span = budget.plan(span, state["step"], state.get("time_budget"), measure, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                                                  warmup_cosine(span))
    accelerator.register_for_checkpointing(scheduler)
    if last is not None:
        accelerator.load_state(str(last))
        extra = ckpt.task_state(last)
        if extra is not None:
            done = None if batches_per_epoch is None else state["epoch"] * batches_per_epoch + state["batch_in_epoch"]
            task.load_state_dict(extra, done)
        accelerator.print(f"resumed from {last} (step {state['step']} of {span.total})")
    best = None
    if output_dir is not None and task.held_out_loss and plan.eval_every and (plan.restore_best or plan.early_stopping_patience):
        from .best_encoder import BestEncoder

        best = BestEncoder(task, output_dir, plan.early_stopping_patience, plan.restore_best, accelerator,
                           state.get("best_encoder"))
    metrics = MetricsLog(output_dir / "metrics.jsonl" if output_dir is not None else None, accelerator,
                         plan.log_to_trackers)
    if resume and metrics.path is not None and accelerator.is_main_process:
        metrics.truncate_after(state["step"])  # rows logged after the checkpoint are re-logged by this run

    bar = progress(span.total, state["step"], plan.description, delay=plan.progress_after,
                   leave=not plan.progress_after,
                   disable=not (plan.show_progress and accelerator.is_local_main_process))
    stop = StopFlag(accelerator.num_processes) if ckpt_dir is not None else None
    try:
        with stop or contextlib.nullcontext():
            last_row = _loop(task, plan, accelerator, model, optimizer, scheduler, loader, batches, span, budget,
                             batches_per_epoch, state, metrics, bar, ckpt_dir, stop, step_hooks, best)
    finally:
        batches.close()
        # Accelerate has no public way to unregister: a stage that trains many models on one accelerator (the
        # fine-tune grid) would otherwise keep every cell's scheduler, and through it its optimizer and model, alive
        # and in every later checkpoint
        if scheduler in accelerator._custom_objects:
            accelerator._custom_objects.remove(scheduler)
    bar.close()
    last_row = last_row or {"step": state["step"]}  # resumed at or past its end: nothing trained, the step it has
    if budget is not None:
        accelerator.print(budget.summary(last_row["step"]))
    if output_dir is not None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if best is None:
                task.export(accelerator.unwrap_model(model), output_dir / "encoder")
            else:
                kept = best.export(accelerator.unwrap_model(model), output_dir / "encoder")
                if kept is not None:
                    last_row["encoder_from"] = kept  # the stage says which encoder it exported, and why
        accelerator.wait_for_everyone()
    task.model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # a plain module again: no autocast
    # left in its forward (an int8 copy of a bf16-trained student failed on bf16 activations)
    return last_row


def _evaluated_often_enough(plan: TrainPlan, steps_per_epoch: Optional[int], accelerator) -> TrainPlan:
    """`plan` with its held-out evaluation at least every `eval_every_passes` passes over the data. On a corpus so
    small that a pass is a few steps, 200 steps are 100 passes, and the lowest held-out loss of a memorising run was
    missed by that much: 2,500 one-liners (2 steps a pass), evaluated every 20 steps instead of 200, kept an encoder
    of held-out loss 6.88 (step 140) instead of 7.28 (step 200), 38.2 % instead of 30.8 % at 10 % labels, and
    stopped at step 300 instead of 800."""
    import dataclasses

    if not (plan.eval_every and plan.eval_every_passes and steps_per_epoch):
        return plan
    every = max(1, plan.eval_every_passes * steps_per_epoch)
    if every >= plan.eval_every:
        return plan
    accelerator.print(f"a pass over the data is {steps_per_epoch} step(s): evaluating every {every} steps "
                      f"({plan.eval_every_passes} passes) instead of {plan.eval_every}, so the lowest held-out loss is "
                      "not missed (pretrain.eval_every_passes=0: the steps alone)")
    return dataclasses.replace(plan, eval_every=every)


NO_BATCH = "the training data gave no batch: the stream is empty, or smaller than one batch"


def _on_device(batch: dict, device) -> dict:
    """A batch from a loader Accelerate did not prepare (a stream's, or the time budget's measuring one)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class _Batches:
    """The loader's batches on the device with `task.prepare` applied, seeded per batch; with `plan.overlap`
    prepared one batch ahead in a background thread (same results, measured faster: prefetch.py)."""

    def __init__(self, task: Task, plan: TrainPlan, accelerator, seed: int, presharded: bool):
        from .prefetch import Ahead

        self.task, self.accelerator, self.seed, self.presharded = task, accelerator, seed, presharded
        self.prepares = task.prepares
        self.ahead = Ahead(task.prepare, accelerator.device) if self.prepares and plan.overlap else None

    def _placed(self, batches):
        for batch in batches:
            if self.presharded:  # a streaming loader is not prepared by Accelerate
                batch = _on_device(batch, self.accelerator.device)
            yield batch

    def epoch(self, loader, epoch: int, first: int):
        """The batches of one epoch, from batch index `first` on (after a resume)."""
        from .prefetch import batch_seed, seeded

        def seed_of(i: int) -> int:
            return batch_seed(self.seed, self.accelerator.process_index, epoch, first + i)

        batches = self._placed(loader)
        if not self.prepares:
            return batches
        if self.ahead is not None:
            return self.ahead.run(batches, seed_of)
        return (seeded(self.task.prepare, b, seed_of(i), self.accelerator.device) for i, b in enumerate(batches))

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()


class _Passes:
    """`measure(untimed, timed)` for the time budget: forward/backward passes on real batches that leave the model
    as it was — no optimizer step, gradients dropped, buffers (BatchNorm statistics, a DINO centre) put back."""

    def __init__(self, task: Task, model, plan: TrainPlan, accelerator, seed: int, batches: "_Batches"):
        self.task, self.model, self.accelerator, self.batch_size, self.seed = task, model, accelerator, plan.batch_size, seed
        self.micro = accelerator.gradient_accumulation_steps
        self.stream = self._placed()  # a generator: no loader is made unless something is measured (not on a resume)
        self.source = batches.epoch(self.stream, 0, 0)

    def _placed(self):
        raw = self.task.dataloader(self.batch_size, torch.Generator().manual_seed(self.seed))  # not sharded: timing only
        while True:
            empty = True
            for batch in raw:
                empty = False
                yield _on_device(batch, self.accelerator.device)
            if empty:
                raise UserError(NO_BATCH)

    def __call__(self, untimed: int, timed: int) -> None:
        net = self.accelerator.unwrap_model(self.model)
        kept = [b.detach().clone() for b in net.buffers()]
        for _ in range((untimed + timed) * self.micro):
            loss, _ = self.task.loss(self.model, next(self.source), self.accelerator)
            self.accelerator.backward(loss)
        with torch.no_grad():
            for b, k in zip(net.buffers(), kept):
                b.copy_(k)
        self.model.zero_grad(set_to_none=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.source.close()
        self.stream.close()


def _loop(task, plan, accelerator, model, optimizer, scheduler, loader, batches, span, budget, batches_per_epoch,
          state, metrics, bar, ckpt_dir, stop, step_hooks, best) -> dict:
    from .interrupt import Interrupted
    from .progress import set_total

    model.train()
    step, epoch, skip, last_row = state["step"], state["epoch"], state["batch_in_epoch"], {}
    shown: dict = {}  # the last representation check, kept on the progress bar
    logged: dict = {}  # ... and the last log row's loss, lr and the task's own figures
    window = _Window(accelerator.device)
    while step < span.total:
        if not batches.presharded:
            loader.set_epoch(epoch)  # the sampler's order is a function of (seed, epoch): resumable exactly
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        batch_index, skip, first = skip, 0, skip
        for batch in batches.epoch(epoch_loader, epoch, batch_index):
            batch_index += 1
            with accelerator.accumulate(model):
                loss, extra = task.loss(model, batch, accelerator)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    optimizer.step()
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss = loss.detach()
            for hook in step_hooks:
                loss = hook(step + 1, loss, accelerator)
            window.add(loss, extra, task.batch_items(batch), step + 1)  # on the device: no sync per step
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            total_steps = span.total
            task.after_optimizer_step(accelerator.unwrap_model(model), step, total_steps)
            log_now = step % plan.log_every == 0 or step == total_steps
            save_now = ckpt_dir is not None and step % plan.checkpoint_every == 0
            if log_now or save_now:
                window.check_finite()  # before a log row or a checkpoint: a diverged run never saves
            if log_now:
                last_row = window.row(step, epoch + batch_index / (batches_per_epoch or batch_index), scheduler, accelerator)
                logged = {"loss": f"{last_row['loss']:.4f}", "lr": f"{last_row['lr']:.2e}",
                          **{k: f"{last_row[k]:.3g}" for k in task.progress_keys if k in last_row}}
                bar.set_postfix(**logged, **shown)
                metrics.write(last_row, step)
            if plan.monitor_every and (step % plan.monitor_every == 0 or step == total_steps):
                health = _monitor(task, model, accelerator)
                if health:
                    metrics.write({"step": step, "epoch": epoch, **health}, step)
                    shown.update(_short(health))
                    bar.set_postfix(**logged, **shown)  # the last log row's figures stay beside the check's
                    _alarm(health, step, total_steps, plan, accelerator, bar)
            if plan.eval_every and (step % plan.eval_every == 0 or step == total_steps):
                model.eval()
                ev = task.evaluate(model, accelerator)
                model.train()
                if ev:
                    last_row.update(ev)
                    metrics.write({"step": step, "epoch": epoch, **ev}, step)
                if best is not None and best.seen(step, ev, model) and step < total_steps:
                    metrics.write({"step": step, "stopped_memorising": True}, step)
                    if accelerator.is_main_process:
                        bar.write(best.stop_line(step, total_steps))
                    span.total = total_steps = step  # the end of the run: its checkpoint, then out of the loop
                    set_total(bar, step)
            signum = stop.requested() if stop is not None and step < total_steps else 0
            if signum and not save_now:
                window.check_finite()
            if ckpt_dir is not None and (save_now or step == total_steps or signum):
                done_epoch = batches_per_epoch is not None and batch_index >= batches_per_epoch
                position = {"step": step, "epoch": epoch + int(done_epoch), "batch_in_epoch": 0 if done_epoch else batch_index}
                if budget is not None:
                    position["time_budget"] = budget.state(span)
                if best is not None:
                    position["best_encoder"] = best.state()
                ckpt.save(accelerator, ckpt_dir, position, plan.keep_checkpoints, task.state_dict())
            if signum:
                bar.close()
                raise Interrupted(step, signum)
            if step >= total_steps:
                break
            if budget is not None and budget.after_step(step, span):  # the step's checks and saves included
                set_total(bar, span.total)
        if batch_index == first:  # a stream that ends without a single batch would loop here for ever
            raise UserError(NO_BATCH)
        epoch += 1
    return last_row


def _monitor(task: Task, model: nn.Module, accelerator, batch: int = 256) -> dict:
    """Embeds the task's fixed check set and measures it; every process does the same work on the same inputs
    (so a stop on collapse is the same decision everywhere), the main process writes it."""
    from .monitor import measure

    data = task.monitor_inputs()
    if data is None:
        return {}
    inputs, labels = data
    net = accelerator.unwrap_model(model)
    net.eval()
    chunks = []
    with torch.no_grad(), accelerator.autocast():
        n = len(next(iter(inputs.values())))
        for i in range(0, n, batch):
            part = {k: v[i: i + batch].to(accelerator.device) for k, v in inputs.items()}
            chunks.append(task.embed(net, part).float().cpu())
    net.train()
    return measure(torch.cat(chunks), labels)


def _short(health: dict) -> dict:
    out = {"rank": f"{health['rankme']:.0f}", "std": f"{health['embedding_std']:.2f}"}
    if "knn_accuracy" in health:
        out["knn"] = f"{100 * health['knn_accuracy']:.1f}%"
    return out


def _alarm(health: dict, step: int, total_steps: int, plan: TrainPlan, accelerator, bar) -> None:
    """A collapse warning (or stop), once `monitor.collapse_claim_due` says it is one."""
    from .monitor import COLLAPSE_THRESHOLD, collapse_claim_due

    if not collapse_claim_due(health, step, plan.warmup_fraction * total_steps):
        return
    what = (f"embeddings collapsed at step {step}: embedding_std {health['embedding_std']:.3f} < "
            f"{COLLAPSE_THRESHOLD} (RankMe {health['rankme']:.1f})")
    if plan.stop_on_collapse:
        bar.close()
        raise UserError(f"{what}; stopped (pretrain.stop_on_collapse=true): try a lower learning rate, a larger "
                        "batch or stronger augmentation; checkpoints so far are kept")
    if accelerator.is_main_process:
        bar.write(f"warning: {what} (pretrain.stop_on_collapse=true stops such a run)")


def computed_once(accelerator, fn):
    """`fn()` on the main process only, its (picklable) result sent to every process: for start-up work whose
    answer is the same everywhere (the leakage guard's pass over the test split), done once, not once per process."""
    if getattr(accelerator, "num_processes", 1) <= 1:
        return fn()
    from accelerate.utils import broadcast_object_list

    box = [fn() if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def make_accelerator(cfg, gradient_accumulation_steps: int = 1, log_dir: Path | None = None,
                     log_with: tuple = ("tensorboard",), stage: str = "pretrain"):
    """One Accelerator per stage; `pretrain.mixed_precision` (when set) wins over `accelerate launch` flags
    (`auto`: bf16 where the hardware computes in it, precision.py).
    With `log_dir`, the trackers in `log_with` (Accelerate's) log there.

    Also sets the CPU thread count (see threads.py) and says it, since it decides CPU speed."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    from .precision import emulation_warning, resolve

    kwargs = {}
    precision, precision_why = resolve(cfg.pretrain.mixed_precision)
    if precision is not None:
        kwargs["mixed_precision"] = precision
    if log_dir is not None and log_with:
        _check_trackers(log_with, stage)
        if "mlflow" in log_with and not os.environ.get("MLFLOW_TRACKING_URI"):
            # a local file store, as the docs promise; MLflow 3 keeps it working but asks for an explicit opt-in
            os.environ["MLFLOW_TRACKING_URI"] = (Path(log_dir).resolve() / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        kwargs |= {"log_with": list(log_with),
                   "project_config": ProjectConfiguration(project_dir=str(log_dir), logging_dir=str(log_dir / "tensorboard"))}
    from .threads import configure_threads

    threads, why = configure_threads(cfg.threads)
    # Without a GPU, Accelerate only sets up gloo multi-process training when told it runs on the CPU.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), gradient_accumulation_steps=gradient_accumulation_steps,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
                              **kwargs)
    accelerator.print(f"CPU threads per process: {threads} ({why})")
    if precision_why:
        accelerator.print(f"mixed precision: {precision} ({precision_why})")
    if warning := emulation_warning(accelerator.mixed_precision, accelerator.device.type):
        accelerator.print(warning)
    return accelerator


def _check_trackers(log_with, stage: str) -> None:
    """Accelerate silently drops a tracker whose package is missing; say so instead."""
    import importlib.util

    for name in log_with:
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise UserError(f"{stage}.log_with={name} needs the {TRACKER_PACKAGES[name]} package: "
                            f"pip install {TRACKER_PACKAGES[name]} (or ssl_pipeline[trackers])")


def start_trackers(accelerator, project: str, config: dict) -> None:
    """`init_trackers` with a one-line error when a tracker cannot start (no login, bad URI, offline hub)."""
    try:
        accelerator.init_trackers(project, config=config)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"a tracker in log_with could not start: {first}") from None


class _Window:
    """Sums of the losses and metrics since the last log row, kept on the device so that a step needs no host
    sync; they are read (one sync) at log and checkpoint steps. Remembers the first non-finite loss and its step."""

    def __init__(self, device):
        self.device = device
        self.reset()
        self.bad_step = torch.zeros((), dtype=torch.long, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float32, device=device)

    def reset(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.n, self.samples, self.tokens, self.extra = 0, 0, 0, {}
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, extra: dict, items: dict, step: int) -> None:
        loss = loss.float()
        bad = ~torch.isfinite(loss) & (self.bad_step == 0)
        self.bad_step = torch.where(bad, torch.full_like(self.bad_step, step), self.bad_step)
        self.bad_value = torch.where(bad, loss, self.bad_value)
        self.loss += loss
        self.n += 1
        self.samples += items["samples"]
        self.tokens += items.get("tokens", 0)
        for k, v in extra.items():
            v = v.detach().double() if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64)
            self.extra[k] = self.extra.get(k, 0.0) + v.to(self.device)

    def check_finite(self) -> None:
        step = int(self.bad_step)
        if step:
            raise UserError(f"loss is {float(self.bad_value)} at step {step}: training diverged "
                            f"(lower the learning rate); the last good checkpoint is kept")

    def row(self, step: int, epoch: float, scheduler, accelerator) -> dict:
        """Averages the window over all processes and turns counts into global throughput."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        vals = torch.stack([self.loss.double(), torch.tensor(float(self.n), dtype=torch.float64, device=self.device),
                            torch.tensor(float(self.samples), dtype=torch.float64, device=self.device),
                            torch.tensor(float(self.tokens), dtype=torch.float64, device=self.device),
                            *[torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in self.extra.values()]])
        vals = accelerator.reduce(vals, reduction="sum") if accelerator.num_processes > 1 else vals
        vals = vals.tolist()
        n = max(vals[1], 1)
        row = {"step": step, "epoch": round(epoch, 4),
               "loss": vals[0] / n, "lr": scheduler.get_last_lr()[0], "samples_per_sec": vals[2] / dt}
        if vals[3]:
            row["tokens_per_sec"] = vals[3] / dt
        for k, v in zip(self.extra.keys(), vals[4:]):
            row[k] = v / n
        keys = list(self.extra)
        self.reset()
        self.extra = {k: 0.0 for k in keys}
        return row
