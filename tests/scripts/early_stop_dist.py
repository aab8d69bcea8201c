"""Run under 2 processes: an early stop is one decision for every process.

Each rank's held-out loss differs on purpose: rank 0's memorises (lowest at step 4, then three evaluations 0.2+
above it), rank 1's keeps falling. Rank 0 decides for both, so both stop at step 10 (a rank that trained on alone
would wait for ever in DDP's next all-reduce). Each rank writes its last step to argv[1].rank."""
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_pipeline.config import load_config
from ssl_pipeline.engine import Task, TrainPlan, make_accelerator, train


class Scripted(Task):
    held_out_loss = "eval_loss"

    def __init__(self, rank):
        x = torch.randn(256, 1, generator=torch.Generator().manual_seed(0))
        self.data, self.model, self.rank, self.step = TensorDataset(x, 3 * x), nn.Linear(1, 1), rank, 0

    def dataloader(self, batch_size, generator):
        return DataLoader(self.data, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True,
                          collate_fn=lambda items: {"x": torch.stack([a for a, _ in items]),
                                                    "y": torch.stack([b for _, b in items])})

    def loss(self, model, batch, accelerator):
        return ((model(batch["x"]) - batch["y"]) ** 2).mean(), {}

    def after_optimizer_step(self, model, step, total_steps):
        self.step = step

    def evaluate(self, model, accelerator):
        memorising = {2: 5.0, 4: 4.0, 6: 4.3, 8: 4.5, 10: 4.25, 12: 4.6}
        return {"eval_loss": memorising.get(self.step, 9.0) if self.rank == 0 else 6.0 - 0.1 * self.step}

    def export(self, model, path):
        path.mkdir(parents=True, exist_ok=True)


acc = make_accelerator(load_config(None, ["threads=1"]))
out = Path(sys.argv[1])
(out / "run").mkdir(parents=True, exist_ok=True)
plan = TrainPlan(batch_size=16, epochs=4, max_steps=None, learning_rate=0.1, optimizer="sgd", log_every=2, eval_every=2,
                 restore_best=True, early_stopping_patience=3, show_progress=False)  # 8 steps an epoch per rank: 32
row = train(Scripted(acc.process_index), plan, acc, seed=0, output_dir=out / "run")
(out / f"rank{acc.process_index}").write_text(str(row["step"]))
acc.wait_for_everyone()
torch.distributed.destroy_process_group()
