"""Frozen text features (the fine-tune stage's linear probe / kNN pass, and the scored split's predictions): batches
taken in row order, as before, against shortest first (`finetune.methods.shortest_first`), same encoder, same
texts, same batch size, interleaved rounds in one process.

A text batch is cut to its longest text, so in row order one long text widens the whole batch; sorted, batches of
short texts stay short. The encoder is one 5-step pretraining of the recipe on the corpus (its speed is that of a
trained one: same shapes).

usage: python benchmarks/text_embedding_order.py [--config configs/text/mlm_embedded.yaml] [--texts 4096]
       [--rounds 2] [override ...]
  e.g. python benchmarks/text_embedding_order.py --config configs/text/mlm_files.yaml "data.files=[data/wordnet_nouns.jsonl]"
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


class RowOrder(torch.utils.data.Dataset):
    """The dataset without its lengths: embedded in row order, as before."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitems__(self, idx):
        return self.base.__getitems__(idx)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "configs/text/mlm_embedded.yaml"))
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from accelerate import Accelerator

    from ssl_pipeline.cli import pretrain_main
    from ssl_pipeline.config import load_config
    from ssl_pipeline.export import load_encoder, read_spec
    from ssl_pipeline.finetune import methods as M
    from ssl_pipeline.finetune.labeled import labeled_data

    with tempfile.TemporaryDirectory() as out:
        overrides = [*args.overrides, f"output_dir={out}"]
        pretrain_main(["--config", args.config, *overrides, "pretrain.max_steps=5", "pretrain.min_steps=0"])
        cfg = load_config(args.config, overrides)
        path = Path(out) / "encoder"
        data = labeled_data(cfg, read_spec(path), path)
        encoder = load_encoder(path, expect_modality="text")
        n = min(args.texts, len(data.train_labels))
        texts = data.dataset("train", np.arange(n))
        lengths = texts.lengths()
        accelerator = Accelerator(cpu=True)
        bs = cfg.finetune.probe_batch_size
        speed = {"row order": [], "shortest first": []}
        for _ in range(args.rounds):
            for name, dataset in (("row order", RowOrder(texts)), ("shortest first", texts)):
                start = time.perf_counter()
                M.embed(encoder, dataset, data.input_keys, accelerator, bs)
                speed[name].append(n / (time.perf_counter() - start))
    print(f"{n:,} texts of {cfg.data.files or cfg.data.source} (tokens: median {int(np.median(lengths))}, "
          f"max {int(lengths.max())}), batch {bs}, {torch.get_num_threads()} threads")
    for name, rates in speed.items():
        print(f"{name}: {statistics.median(rates):,.0f} texts/s (rounds: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"ratio: {statistics.median(speed['shortest first']) / statistics.median(speed['row order']):.2f}x")


if __name__ == "__main__":
    main()
