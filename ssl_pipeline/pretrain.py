"""The pretext stage: config -> task -> shared engine -> exported encoder."""
from __future__ import annotations

from pathlib import Path

from .config import Config, flatten
from .engine import TrainPlan, make_accelerator, scaled_lr, start_trackers, train
from .run_dir import check_pretrain_dir, clear_pretrain_dir, mark_complete


def run_pretrain(cfg: Config, step_hooks: tuple = ()) -> dict:
    import torch
    from accelerate.utils import set_seed

    from .atomic import write_json
    from .tasks import build_task

    output_dir = Path(cfg.output_dir)
    state = check_pretrain_dir(output_dir, cfg)  # before anything is loaded or written
    if state == "complete":
        print(f"pretraining in {output_dir} is already complete (encoder: {output_dir / 'encoder'}); nothing to do. "
              "Raise pretrain.max_steps / pretrain.epochs to continue it, or use another output_dir.", flush=True)
        return {}
    resume = state == "resume"
    accelerator = make_accelerator(cfg, cfg.pretrain.gradient_accumulation_steps, output_dir, cfg.pretrain.log_with)
    set_seed(cfg.seed)
    task = build_task(cfg, accelerator)  # validates data and model before anything is written
    task.dataloader(cfg.pretrain.batch_size, torch.Generator())  # ... and the batch size against the data
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if cfg.overwrite and not resume:
            clear_pretrain_dir(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(output_dir / "config.json", cfg.to_dict())
    hparams = {k: v for k, v in flatten(cfg.to_dict(), sep="/").items() if isinstance(v, (int, float, str, bool))}
    start_trackers(accelerator, "pretrain", hparams)
    global_batch = cfg.pretrain.batch_size * accelerator.num_processes * cfg.pretrain.gradient_accumulation_steps
    p = cfg.pretrain
    plan = TrainPlan(batch_size=p.batch_size, epochs=p.epochs, max_steps=p.max_steps,
                     learning_rate=scaled_lr(p.learning_rate, global_batch, p.lr_scaling), optimizer=p.optimizer,
                     weight_decay=p.weight_decay, warmup_fraction=p.warmup_fraction, log_every=p.log_every,
                     eval_every=p.eval_every, monitor_every=p.monitor_every, stop_on_collapse=p.stop_on_collapse,
                     overlap=p.overlap_views,
                     checkpoint_every=p.checkpoint_every,
                     keep_checkpoints=p.keep_checkpoints, description=f"pretrain {cfg.task}")
    if p.compile:
        task.model = torch.compile(task.model)
    unit = "packed token blocks" if task.modality == "text" else "images"
    size = len(task.data) if hasattr(task.data, "__len__") else "a stream of"
    accelerator.print(f"pretraining {cfg.task} on {size} {unit}, "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, global batch {global_batch}, "
                      f"mixed precision {accelerator.mixed_precision}")
    row = train(task, plan, accelerator, cfg.seed, output_dir=output_dir, resume=resume, step_hooks=step_hooks)
    if accelerator.is_main_process:
        from .curves import plot_pretraining

        plot_pretraining(output_dir, f"{cfg.task} on {cfg.data.name or cfg.data.source}")
        mark_complete(output_dir, row.get("step", 0), cfg)
    accelerator.end_training()
    accelerator.print(f"encoder exported to {output_dir / 'encoder'}")
    return row
