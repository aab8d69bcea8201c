"""The pretext stage: config -> task -> shared engine -> exported encoder."""
from __future__ import annotations

from pathlib import Path

from .config import Config, flatten
from .engine import TrainPlan, make_accelerator, scaled_lr, start_trackers, train
from .run_dir import check_pretrain_dir, check_writable, clear_pretrain_dir, mark_complete


def run_pretrain(cfg: Config, step_hooks: tuple = ()) -> dict:
    import torch
    from accelerate.utils import set_seed

    from .atomic import write_json
    from .tasks import build_task

    output_dir = Path(cfg.output_dir)
    state = check_pretrain_dir(output_dir, cfg)  # before anything is loaded or written
    if state == "complete":
        print(f"pretraining in {output_dir} is already complete (encoder: {output_dir / 'encoder'}); nothing to do. "
              "Raise pretrain.max_steps / pretrain.epochs / pretrain.min_steps / pretrain.max_minutes to continue it "
              "(a run stopped early for memorising: pretrain.early_stopping_patience=0), "
              "or use another output_dir.", flush=True)
        return {}
    check_writable(output_dir)  # before the data is read: a run that cannot save fails in seconds, not at step 500
    resume = state == "resume"
    accelerator = make_accelerator(cfg, cfg.pretrain.gradient_accumulation_steps, output_dir, cfg.pretrain.log_with)
    set_seed(cfg.seed)
    task = build_task(cfg, accelerator)  # validates data and model before anything is written
    batch_size = fitted_batch_size(task, cfg, accelerator)
    task.dataloader(batch_size, torch.Generator())  # ... and the batch size against the data
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if cfg.overwrite and not resume:
            clear_pretrain_dir(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "config.json", cfg.to_dict())
    hparams = {k: v for k, v in flatten(cfg.to_dict(), sep="/").items() if isinstance(v, (int, float, str, bool))}
    start_trackers(accelerator, "pretrain", hparams)
    global_batch = batch_size * accelerator.num_processes * cfg.pretrain.gradient_accumulation_steps
    p = cfg.pretrain
    plan = TrainPlan(batch_size=batch_size, epochs=p.epochs, max_steps=p.max_steps, min_steps=p.min_steps,
                     learning_rate=scaled_lr(p.learning_rate, global_batch, p.lr_scaling), optimizer=p.optimizer,
                     weight_decay=p.weight_decay, warmup_fraction=p.warmup_fraction, log_every=p.log_every,
                     eval_every=p.eval_every, eval_every_passes=p.eval_every_passes, monitor_every=p.monitor_every, stop_on_collapse=p.stop_on_collapse,
                     overlap=p.overlap_views,
                     checkpoint_every=p.checkpoint_every, max_seconds=p.max_minutes * 60 if p.max_minutes else None,
                     keep_checkpoints=p.keep_checkpoints, restore_best=p.restore_best,
                     early_stopping_patience=p.early_stopping_patience, description=f"pretrain {cfg.task}")
    if p.compile:
        task.model = torch.compile(task.model)
    size = len(task.data) if hasattr(task.data, "__len__") else "a stream of"
    accelerator.print(f"pretraining {cfg.task} on {size} {_unit(task)}, "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, global batch {global_batch}, "
                      f"mixed precision {accelerator.mixed_precision}")
    row = train(task, plan, accelerator, cfg.seed, output_dir=output_dir, resume=resume, step_hooks=step_hooks)
    if accelerator.is_main_process:
        from .curves import plot_pretraining
        from .export import add_to_spec
        from .pretraining_record import advice, memorising, summarize

        plot_pretraining(output_dir, f"{cfg.task} on {cfg.data.name or cfg.data.source}")
        record = summarize(output_dir / "metrics.jsonl", len(task.data) if hasattr(task.data, "__len__") else None,
                           _unit(task), cfg.model.init_from)
        if p.max_minutes:
            record["max_minutes"] = p.max_minutes
        if "encoder_from" in row:
            record["encoder_from"] = row["encoder_from"]
        if memorising(record):  # said now, not only in a later report: the user may be about to pretrain longer
            kept = (f"; exported the encoder of step {record['encoder_from']['step']:,}, of the lowest held-out loss, "
                    "instead of the last" if "encoder_from" in record else "")
            print(f"note: the held-out MLM loss rose from {record['best_eval']['loss']:.2f} at step "
                  f"{record['best_eval']['step']:,} to {record['final']['eval_loss']:.2f}: the encoder is memorising "
                  f"this corpus{kept}. {advice(record, task.modality)}", flush=True)
        # what the run computed in (pretrain.mixed_precision may say `auto`, or leave it to `accelerate launch`)
        add_to_spec(output_dir / "encoder", "pretraining", {**record, "mixed_precision": accelerator.mixed_precision})
        mark_complete(output_dir, row.get("step", 0), cfg, stopped_early="stopped_memorising" in record)
    accelerator.end_training()
    accelerator.print(f"encoder exported to {output_dir / 'encoder'}")
    return row


def _unit(task) -> str:
    return "packed token blocks" if task.modality == "text" else "images"


def fitted_batch_size(task, cfg: Config, accelerator) -> int:
    """pretrain.batch_size, lowered to what the data holds when it has fewer examples than one batch per process:
    a small folder or corpus then pretrains on batches of all its examples instead of stopping on a setting that
    was chosen for a larger dataset. A stream (no length) keeps the setting."""
    from .errors import UserError

    asked, processes = cfg.pretrain.batch_size, accelerator.num_processes
    if getattr(task, "presharded", False) or not hasattr(task.data, "__len__") or not cfg.pretrain.drop_last:
        return asked
    n = len(task.data)
    if asked * processes <= n:
        return asked
    if n < 2 * processes:
        raise UserError(f"only {n} {_unit(task)} to pretrain on: at least 2 per process are needed")
    fitted = n // processes
    accelerator.print(f"pretrain.batch_size={asked} is more than the {n} {_unit(task)} hold: batches of {fitted} "
                      f"per process instead (set pretrain.batch_size to choose)")
    return fitted
