"""Tokens/s of the project's MLM step vs Hugging Face's recipe, side by side in one process.

Project: packed blocks (no padding), masking on the device, prediction head + loss at masked positions only,
via the real MLMTask and engine pieces. Peer: `BertForMaskedLM` + `DataCollatorForLanguageModeling` +
`Trainer` (full-vocabulary logits at every position). Same model size, sequence length, batch, precision.

usage: python benchmarks/text_throughput.py [--hidden 256 --layers 4 --vocab 8192 --length 128 --batch 32 --steps 12]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from ssl_pipeline.precision import timed_precisions


def config(args, attention_dropout: float = 0.0):
    from ssl_pipeline.config import Config

    cfg = Config(task="mlm")
    cfg.data.source, cfg.data.max_length, cfg.data.num_samples = "synthetic", args.length, args.batch * 8
    cfg.model.vocab_size, cfg.model.hidden_size, cfg.model.num_layers = args.vocab, args.hidden, args.layers
    cfg.model.num_heads, cfg.model.intermediate_size, cfg.model.dropout = args.hidden // 64, args.hidden * 4, 0.1
    cfg.model.attention_dropout = attention_dropout
    return cfg


def project(args, bf16: bool, attention_dropout: float = 0.0, compile: bool = False) -> float:
    from ssl_pipeline.engine import TrainPlan, build_optimizer, param_groups
    from ssl_pipeline.tasks.mlm import MLMTask

    device = torch.device(args.device)

    class Acc:
        num_processes, process_index = 1, 0

        @staticmethod
        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

        @staticmethod
        def main_process_first():
            return contextlib.nullcontext()

    Acc.device = device
    task = MLMTask(config(args, attention_dropout), Acc())
    task.model = model = task.model.to(device).train()
    if compile:  # what pretrain.compile=true does; dynamic: the masked-position count changes per batch
        task.model = model = torch.compile(model, dynamic=True)
    opt = build_optimizer(param_groups(model, 0.01), TrainPlan(batch_size=args.batch, epochs=1, max_steps=1,
                                                               learning_rate=1e-4, optimizer="adamw"))

    def step(i):
        n = len(task.data)
        batch = task.data.__getitems__([(i * args.batch + j) % n for j in range(args.batch)])
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss, _ = task.loss(model, batch, Acc())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(i)
    sync(args.device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(args.device)
    return args.steps * args.batch * args.length / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hf_trainer(args, bf16: bool, tmp: str) -> float:
    import transformers
    from datasets import Dataset
    from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback,
                              TrainingArguments)

    from ssl_pipeline.tasks._text import SyntheticTokenizer

    transformers.logging.set_verbosity_error()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, args.vocab, (args.batch * (args.steps + args.warmup), args.length), generator=g)
    ds = Dataset.from_dict({"input_ids": ids.tolist()})

    class Tok(SyntheticTokenizer):  # what the collator needs from a tokenizer, for random ids
        mask_token = "[MASK]"
        pad_token = "[PAD]"

        def convert_tokens_to_ids(self, t):
            return self.mask_token_id

        def get_special_tokens_mask(self, ids, already_has_special_tokens=True):
            return [1 if i < 5 else 0 for i in ids]

        def pad(self, features, return_tensors="pt", **kw):
            return {"input_ids": torch.tensor([f["input_ids"] for f in features])}

        def __len__(self):
            return self.vocab_size

    c = config(args).model
    model = BertForMaskedLM(BertConfig(vocab_size=args.vocab, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                                       num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                                       attn_implementation="sdpa"))
    times = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            sync(args.device)
            times.append(time.perf_counter())

    targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch, max_steps=args.steps + args.warmup,
                              learning_rate=1e-4, bf16=bf16, use_cpu=args.device == "cpu", report_to=[], logging_strategy="no",
                              save_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(Tok(args.vocab), mlm_probability=0.15)
    Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator, callbacks=[Timer()]).train()
    dt = times[-1] - times[args.warmup - 1]
    return args.steps * args.batch * args.length / dt


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time the project step under torch.compile")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                    help="default: fp32, and bf16 where the hardware computes in it (ssl_pipeline.precision)")
    return ap


def measure(args) -> list[dict]:
    """One row per precision: tokens/s of the project's step (and with attention dropout 0.1) and of the Trainer."""
    import tempfile

    print(f"hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, length {args.length}, batch {args.batch}, "
          f"{args.device}, {torch.get_num_threads()} threads, {args.steps} timed steps")
    # the project's default has no attention dropout (fused SDPA); HF's BertConfig default has 0.1, so the
    # project is also timed with 0.1 to show what comes from the recipe and what from the implementation
    print(f"{'precision':<10} {'project tok/s':>14} {'(attn drop 0.1)':>16} {'Trainer tok/s':>14} {'ratio':>7} {'(same dropout)':>15}")
    rows = []
    for precision in args.precisions or timed_precisions(args.device):
        bf16 = precision == "bf16"
        ours = project(args, bf16)
        ours_same = project(args, bf16, attention_dropout=0.1)
        with tempfile.TemporaryDirectory() as tmp:
            peer = hf_trainer(args, bf16, tmp)
        print(f"{precision:<10} {ours:>14.0f} {ours_same:>16.0f} {peer:>14.0f} {ours / peer:>6.2f}x "
              f"{ours_same / peer:>14.2f}x", flush=True)
        row = {"hidden": args.hidden, "layers": args.layers, "length": args.length, "batch": args.batch,
               "precision": precision, "project": ours, "project_attention_dropout": ours_same, "trainer": peer,
               "ratio": ours / peer}
        if args.compile:
            compiled = project(args, bf16, compile=True)
            print(f"{'':<10} torch.compile: {compiled:.0f} tokens/s ({compiled / peer:.2f}x)", flush=True)
            row["project_compiled"] = compiled
        rows.append(row)
    return rows


def main() -> None:
    measure(parser().parse_args())


if __name__ == "__main__":
    main()
