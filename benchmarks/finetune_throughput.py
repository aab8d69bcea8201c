"""Images/s of the fine-tune stage's two training steps vs the recipes users would otherwise write, side by side.

`finetune` step (also the `supervised` row's): labeled batch -> weak view (crop + flip) -> forward -> cross-entropy.
`fixmatch` step: a pool batch and 1/mu as many labeled examples -> weak views, strong views (crop + flip,
RandAugment, cutout) -> pseudo-labels from the weak views -> one forward over labeled + strong -> FixMatch loss.

Project: the real `ClassifierTask` / `FixMatchTask`, `PoolWithLabeled` and the labeled data adapter's transforms:
uint8 batches from memory, views made by kornia on the whole batch (`task.prepare`) one batch ahead in a background
thread (the engine's default for images, `pretrain.overlap_views`) or inline, NHWC encoder, the weak views' forward
without gradient. Model-only: the same step with its views made outside the timing (the limit).
Peer: the usual PyTorch recipe (FixMatch as in its reference implementations, e.g. kekmodel/FixMatch-pytorch):
per-image torchvision transforms (`RandomResizedCrop`, `RandomHorizontalFlip`, `RandAugment(2, 10)`,
`RandomErasing`) in DataLoader workers over PIL images, one forward over labeled + weak + strong views.
Both: the same timm model (default `ssl_cnn6`, 28 px, one channel: the Fashion-MNIST recipe), batch, AdamW,
fp32 and bf16 autocast. Rounds interleave the recipes; each one's median round is reported.

`text` step (the `finetune` row on texts): project = `ClassifierTask` over the adapter's `TokenizedTexts` (each batch
cut to its longest text) -> BERT encoder -> mean over real tokens -> linear head; peer = transformers'
`BertForSequenceClassification` + `DataCollatorWithPadding` + `Trainer`. Same BERT size (default: the Debian
recipe's 256 hidden, 4 layers, vocabulary 8,192), batch 64, texts of random length (default 6-40 tokens, like
package one-liners). Text has no views: the project's step is its model-only step.

usage: python benchmarks/finetune_throughput.py [--backbone ssl_cnn6] [--image-size 28] [--channels 1]
                                                [--batch 256] [--mu 7] [--steps 8] [--rounds 3] [--workers 1]
                                                [--recipes finetune fixmatch text] [--text-batch 64]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from PIL import Image

from ssl_pipeline.precision import timed_precisions


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


class Acc:
    """What the tasks' `loss` asks of an Accelerator on one CPU process."""

    num_processes = 1

    def __init__(self, bf16: bool):
        self.bf16 = bf16

    def autocast(self):
        return autocast(self.bf16)


def random_images(args, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, args.channels, args.image_size, args.image_size), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=g)


def project_data(args):
    """The labeled-data adapter's own transform methods (VisionLabeled), on in-memory images."""
    from ssl_pipeline.augment import weak_augment
    from ssl_pipeline.config import Config
    from ssl_pipeline.finetune.labeled import VisionLabeled

    data = VisionLabeled.__new__(VisionLabeled)  # its transforms only: no dataset to load
    data.cfg, data.spec = Config(), {"image_size": args.image_size}
    data.augment = weak_augment(args.image_size)
    return data


def project_model(args):
    from ssl_pipeline.finetune.methods import Classifier
    from ssl_pipeline.models.vision import VisionEncoder, create_backbone

    backbone = create_backbone(args.backbone, args.channels, False)
    encoder = VisionEncoder(backbone, {"embedding_dim": int(backbone.num_features)}).use_channels_last()
    return Classifier(encoder, torch.nn.Linear(encoder.embedding_dim, 10), ("images",)).train()


def engine_optimizer(model, lr: float):
    """The optimizer the engine gives a fine-tune cell (fused AdamW, no decay on norms and biases)."""
    from ssl_pipeline.engine import TrainPlan, build_optimizer, param_groups

    return build_optimizer(param_groups(model, 1e-4), TrainPlan(batch_size=1, epochs=1, max_steps=1, learning_rate=lr,
                                                                optimizer="adamw", weight_decay=1e-4))


class Memory(torch.utils.data.Dataset):
    """uint8 images in memory, fetched a batch at a time (what the fine-tune stage's datasets do)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitems__(self, idx):
        index = torch.as_tensor(idx)
        return {"images": self.images[index], "labels": self.labels[index]}


def endless(loader):
    while True:
        yield from loader


def project_step_fn(args, bf16: bool, recipe: str, mode: str):
    """mode: "overlap" (views of the next batch in a background thread), "inline" or "model" (views made once,
    outside the timing: the model-only step)."""
    from ssl_pipeline.finetune.fixmatch import FixMatchTask, PoolWithLabeled
    from ssl_pipeline.finetune.methods import ClassifierTask
    from ssl_pipeline.prefetch import Ahead, batch_seed, seeded

    data, model = project_data(args), project_model(args)
    images, labels = random_images(args, args.batch * 4, 0)
    if recipe == "finetune":
        task = ClassifierTask(model, Memory(images, labels), data.train_transform)
    else:
        pool = PoolWithLabeled(Memory(images, labels), Memory(*random_images(args, args.batch, 1)),
                               max(1, args.batch // args.mu), seed=0)
        task = FixMatchTask(model, pool, data, 1, threshold=0.95, unlabeled_weight=1.0)
    raw = endless(task.dataloader(args.batch, torch.Generator().manual_seed(0)))
    opt = engine_optimizer(model, 1e-3)
    acc = Acc(bf16)
    device = torch.device("cpu")
    if mode == "overlap":  # what the engine does (engine._Batches)
        batches = Ahead(task.prepare, device).run(raw, lambda i: batch_seed(0, 0, 0, i))
    elif mode == "inline":
        batches = (seeded(task.prepare, b, batch_seed(0, 0, 0, i), device) for i, b in enumerate(raw))
    else:
        fixed = [task.prepare(next(raw)) for _ in range(4)]
        batches = (fixed[i % 4] for i in range(10 ** 9))

    def step(i):
        loss, _ = task.loss(model, next(batches), acc)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def peer_step_fn(args, bf16: bool, recipe: str):
    import timm
    import torch.nn.functional as F
    from torchvision import transforms as T

    import ssl_pipeline.models.small_cnn  # noqa: F401  (registers ssl_cnn6 with timm)

    mode = "L" if args.channels == 1 else "RGB"
    images, labels = random_images(args, args.batch * 4, 0)
    pil = [Image.fromarray(im.numpy()[0] if args.channels == 1 else im.numpy().transpose(1, 2, 0), mode)
           for im in images]
    norm = T.Compose([T.ToTensor(), T.Normalize([0.5] * args.channels, [0.5] * args.channels)])
    weak = T.Compose([T.RandomResizedCrop(args.image_size, scale=(0.6, 1.0)), T.RandomHorizontalFlip(), norm])
    strong = T.Compose([T.RandomResizedCrop(args.image_size, scale=(0.6, 1.0)), T.RandomHorizontalFlip(),
                        T.RandAugment(num_ops=2, magnitude=10), norm,
                        T.RandomErasing(p=1.0, scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.0)])

    class Labeled(torch.utils.data.Dataset):
        def __len__(self):
            return 10 ** 9

        def __getitem__(self, i):
            return weak(pil[i % len(pil)]), labels[i % len(pil)]

    class Unlabeled(Labeled):
        def __getitem__(self, i):
            im = pil[i % len(pil)]
            return weak(im), strong(im)

    def loader(ds, batch):
        return iter(torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=args.workers, shuffle=False,
                                                drop_last=True, persistent_workers=args.workers > 0))

    model = timm.create_model(args.backbone, num_classes=10, in_chans=args.channels).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if recipe == "finetune":
        labeled = loader(Labeled(), args.batch)
    else:
        labeled, unlabeled = loader(Labeled(), max(1, args.batch // args.mu)), loader(Unlabeled(), args.batch)

    def step(i):
        x, y = next(labeled)
        if recipe == "finetune":
            with autocast(bf16):
                loss = F.cross_entropy(model(x).float(), y)
        else:
            u_weak, u_strong = next(unlabeled)
            with autocast(bf16):
                logits = model(torch.cat([x, u_weak, u_strong])).float()
            n, m = len(x), len(u_weak)
            confidence, pseudo = logits[n:n + m].detach().softmax(-1).max(-1)
            pseudo_loss = (F.cross_entropy(logits[n + m:], pseudo, reduction="none") * (confidence >= 0.95)).mean()
            loss = F.cross_entropy(logits[:n], y) + pseudo_loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def random_texts(args, n: int):
    """Token ids of `n` texts of random length (special tokens 0-4 left out), padded to the longest, + labels."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.text_min, args.text_max + 1, (n,), generator=g)
    ids = torch.randint(5, args.vocab, (n, args.text_max), generator=g)
    mask = (torch.arange(args.text_max)[None] < lengths[:, None]).long()
    return ids * mask, mask, torch.randint(0, 10, (n,), generator=g)


def bert_config(args):
    from transformers import BertConfig

    return BertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=args.hidden // 64, intermediate_size=4 * args.hidden,
                      max_position_embeddings=max(128, args.text_max), num_labels=10)


def text_project_step_fn(args, bf16: bool):
    from transformers import AutoModel

    from ssl_pipeline.finetune.labeled import TokenizedTexts
    from ssl_pipeline.finetune.methods import Classifier, ClassifierTask
    from ssl_pipeline.models.text import TextEncoder

    bert = AutoModel.from_config(bert_config(args), add_pooling_layer=False, attn_implementation="sdpa")
    encoder = TextEncoder(bert, None, {"max_length": args.text_max})
    model = Classifier(encoder, torch.nn.Linear(encoder.embedding_dim, 10), ("input_ids", "attention_mask")).train()
    task = ClassifierTask(model, TokenizedTexts(*random_texts(args, args.text_batch * 8)))
    batches = endless(task.dataloader(args.text_batch, torch.Generator().manual_seed(0)))
    opt = engine_optimizer(model, 1e-4)
    acc = Acc(bf16)

    def step(i):
        loss, _ = task.loss(model, next(batches), acc)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def text_peer_rate_fn(args, bf16: bool):
    """transformers' Trainer: each call runs `warmup + steps` of its own loop and returns the timed steps' texts/s
    (step ends read by a callback, as benchmarks/text_throughput.py does)."""
    import tempfile

    import transformers
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import (BertForSequenceClassification, DataCollatorWithPadding, PreTrainedTokenizerFast,
                              PrinterCallback, Trainer, TrainerCallback, TrainingArguments)

    transformers.logging.set_verbosity_error()
    vocab = {f"t{i}": i for i in range(args.vocab)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t1")),
                                        pad_token="t0", unk_token="t1")
    ids, mask, labels = random_texts(args, args.text_batch * 8)
    rows = Dataset.from_list([{"input_ids": i[:int(m.sum())].tolist(), "labels": int(y)}
                              for i, m, y in zip(ids, mask, labels)] * 100)
    model = BertForSequenceClassification._from_config(bert_config(args), attn_implementation="sdpa")
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter())

    def rate(steps: int, warmup: int) -> float:
        times.clear()
        targs = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.text_batch,
                                  max_steps=steps + max(1, warmup), learning_rate=1e-4, bf16=bf16, use_cpu=True,
                                  report_to=[], logging_strategy="no", save_strategy="no", dataloader_num_workers=0,
                                  disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer),
                          callbacks=[Timer()])
        trainer.remove_callback(PrinterCallback)  # its end-of-run metrics line would interleave with the table
        trainer.train()
        return steps * args.text_batch / (times[-1] - times[-1 - steps])

    return rate


def examples_per_step(args, recipe: str) -> int:
    if recipe == "text":
        return args.text_batch
    return args.batch if recipe == "finetune" else args.batch + max(1, args.batch // args.mu)


def timed(step, steps: int) -> float:
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - t0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="ssl_cnn6")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="labeled batch (finetune) / pool batch (fixmatch)")
    ap.add_argument("--mu", type=int, default=7, help="fixmatch: pool examples per labeled example")
    ap.add_argument("--text-batch", type=int, default=64)
    ap.add_argument("--text-min", type=int, default=6, help="text: shortest text, tokens")
    ap.add_argument("--text-max", type=int, default=40, help="text: longest text, tokens")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers per loader of the peer recipe")
    ap.add_argument("--recipes", nargs="+", default=["finetune", "fixmatch", "text"],
                    choices=["finetune", "fixmatch", "text"])
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                    help="default: fp32, and bf16 where the hardware computes in it (ssl_pipeline.precision)")
    return ap


def rates(args, bf16: bool, recipe: str) -> dict:
    """Per way of running the step, a function (steps, warmup) -> examples/s."""
    def of_step(step):
        def rate(steps: int, warmup: int) -> float:
            timed(step, warmup)
            return steps * examples_per_step(args, recipe) / timed(step, steps)
        return rate

    if recipe == "text":  # no views: the project's step is its model-only step
        project = of_step(text_project_step_fn(args, bf16))
        return {"model": project, "inline": project, "overlap": project, "peer": text_peer_rate_fn(args, bf16)}
    out = {mode: of_step(project_step_fn(args, bf16, recipe, mode)) for mode in ("model", "inline", "overlap")}
    out["peer"] = of_step(peer_step_fn(args, bf16, recipe))
    return out


def measure(args) -> list[dict]:
    torch.manual_seed(0)
    print(f"images: {args.backbone}, {args.image_size} px x {args.channels} channel(s), batch {args.batch} (fixmatch: "
          f"+ 1/{args.mu} labeled), peer workers {args.workers}; text: BERT {args.hidden} hidden x {args.layers} "
          f"layers, vocabulary {args.vocab}, batch {args.text_batch}, {args.text_min}-{args.text_max} tokens; "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'step':<9} {'precision':<10} {'model-only':>11} {'inline':>8} {'overlap':>8} {'peer':>8} "
          f"{'overlap/model':>14} {'overlap/peer':>13}   (examples/s)")
    rows = []
    for recipe in args.recipes:
        for precision in args.precisions or timed_precisions(args.device):
            ways = rates(args, precision == "bf16", recipe)
            measured = {k: ways[k] for k in ("model", "inline", "overlap", "peer")
                        if recipe != "text" or k in ("model", "peer")}
            for rate in measured.values():
                rate(1, args.warmup)
            # rounds interleave the recipes, so a drift in the (shared, virtual) machine's speed hits all alike
            speeds = {k: [] for k in measured}
            for _ in range(args.rounds):
                for k, rate in measured.items():
                    speeds[k].append(rate(args.steps, 1))
            med = {k: statistics.median(v) for k, v in speeds.items()}
            model_only, peer = med["model"], med["peer"]
            inline, overlap = med.get("inline", model_only), med.get("overlap", model_only)
            print(f"{recipe:<9} {precision:<10} {model_only:>11.1f} {inline:>8.1f} {overlap:>8.1f} {peer:>8.1f} "
                  f"{overlap / model_only:>14.2f} {overlap / peer:>12.2f}x", flush=True)
            rows.append({"recipe": recipe, "precision": precision, "model_only": model_only, "inline": inline,
                         "overlap": overlap, "peer": peer, "overlap_over_model_only": overlap / model_only,
                         "overlap_over_peer": overlap / peer})
    return rows


def main() -> None:
    measure(parser().parse_args())


if __name__ == "__main__":
    main()
