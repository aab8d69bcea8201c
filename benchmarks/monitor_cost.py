"""Cost of the representation monitor (embedding std, RankMe, kNN on the labeled train carve) relative to
pretraining: one check ÷ (monitor_every × one optimizer step), measured with the real task, engine pieces and
shipped recipes, in one process.

  vision: configs/vision/simclr_fashion_mnist.yaml (data/FashionMNIST), else configs/vision/simclr_digits.yaml
  text:   configs/text/mlm_debian_descriptions.yaml (data/debian.jsonl), else configs/text/mlm_embedded.yaml

usage: python benchmarks/monitor_cost.py [--steps 20] [--checks 3] [--threads 2] [--out results.json]
Goal (issue 15): <= 5 % of pretraining time at the default pretrain.monitor_every.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _config(modality: str, threads: int):
    from ssl_pipeline.config import load_config

    if modality == "vision":
        if (ROOT / "data/FashionMNIST/raw").is_dir():
            return load_config(ROOT / "configs/vision/simclr_fashion_mnist.yaml", [f"data.root={ROOT / 'data'}",
                                                                                   f"threads={threads}"])
        return load_config(ROOT / "configs/vision/simclr_digits.yaml", [f"threads={threads}"])
    if (ROOT / "data/debian.jsonl").is_file():
        return load_config(ROOT / "configs/text/mlm_debian_descriptions.yaml",
                           [f"data.files=[{ROOT / 'data/debian.jsonl'}]", f"threads={threads}",
                            "output_dir=/tmp/ssl_monitor_cost"])
    return load_config(ROOT / "configs/text/mlm_embedded.yaml", [f"threads={threads}", "output_dir=/tmp/ssl_monitor_cost"])


def measure(modality: str, steps: int, checks: int, threads: int) -> dict:
    from ssl_pipeline.engine import _monitor, build_optimizer, make_accelerator, param_groups, TrainPlan
    from ssl_pipeline.tasks import build_task

    cfg = _config(modality, threads)
    accelerator = make_accelerator(cfg)
    task = build_task(cfg, accelerator)
    model = task.model.to(accelerator.device).train()
    p = cfg.pretrain
    opt = build_optimizer(param_groups(model, p.weight_decay), TrainPlan(batch_size=p.batch_size, epochs=1,
                                                                         max_steps=1, learning_rate=p.learning_rate,
                                                                         optimizer=p.optimizer))
    loader = iter(task.dataloader(p.batch_size, torch.Generator().manual_seed(0)))

    def step():
        batch = {k: v.to(accelerator.device) for k, v in next(loader).items()}
        loss, _ = task.loss(model, batch, accelerator)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    task.monitor_inputs()  # the check set is built once per run (loading and sampling): timed apart
    t = time.perf_counter()
    health = _monitor(task, model, accelerator)
    first = time.perf_counter() - t
    check = []
    for _ in range(checks):
        t = time.perf_counter()
        health = _monitor(task, model, accelerator)
        check.append(time.perf_counter() - t)
    step_s, check_s = statistics.median(times), statistics.median(check)
    every = p.monitor_every
    return {"modality": modality, "recipe": cfg.data.name or cfg.data.source, "batch": p.batch_size,
            "mixed_precision": p.mixed_precision, "monitor_samples": p.monitor_samples, "monitor_every": every,
            "step_seconds": step_s, "check_seconds": check_s, "first_check_seconds": first,
            "overhead_fraction": check_s / (every * step_s), "last_check": health}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--checks", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = [measure(m, args.steps, args.checks, args.threads) for m in ("vision", "text")]
    for r in results:
        print(f"{r['modality']:6s} {r['recipe']}: step {r['step_seconds']:.3f} s, check {r['check_seconds']:.2f} s "
              f"({r['monitor_samples']} examples) -> {100 * r['overhead_fraction']:.2f} % of pretraining at "
              f"monitor_every={r['monitor_every']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
