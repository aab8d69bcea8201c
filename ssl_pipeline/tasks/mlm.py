"""Masked-token pretraining of a BERT-style encoder from scratch, with its tokenizer trained on the corpus."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..config import Config
from ..data.splits import collate_batch
from ..data.text import (PackedBlocks, StreamingBlocks, corpus_digest, extra_pretrain_texts, load_texts, load_tokenizer, stream_texts, tokenize_and_pack,
                         train_tokenizer)
from ..engine import Task
from ..errors import UserError
from ..masking import IGNORE, bucketed_positions, mask_tokens, special_table
from ..models.text import MaskedLM, masked_lm
from .registry import register

EVAL_BLOCKS = 256  # held-out blocks for perplexity (a fixed slice of the training split, never trained on)


class SyntheticTokenizer:
    """Stands in for a tokenizer with `data.source=synthetic` (random ids, benchmarks only)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = range(5)
        self.all_special_ids = [0, 1, 2, 3, 4]

    def __len__(self):
        return self.vocab_size


def cached_tokenizer(texts: list[str], vocab_size: int, cache: str, accelerator, digest: str):
    """The main process trains the tokenizer and saves it under the cache; the other processes (and resumed
    runs) load that copy instead of training their own. `digest` is `corpus_digest(texts)`."""
    from ..atomic import atomic_dir

    path = Path(cache) / f"tokenizer-{digest[:16]}-v{vocab_size}"
    with accelerator.main_process_first():
        if not (path / "tokenizer.json").is_file():
            tokenizer = train_tokenizer(texts, vocab_size)
            with atomic_dir(path) as tmp:
                tokenizer.save_pretrained(str(tmp))
            return tokenizer
    return load_tokenizer(str(path))


@register("mlm")
class MLMTask(Task):
    """BERT-style masked-token pretraining; the head and loss run at the masked positions only."""

    modality = "text"

    def __init__(self, cfg: Config, accelerator):
        self.cfg, self.accelerator = cfg, accelerator
        d, L = cfg.data, cfg.data.max_length
        self.presharded = d.streaming  # each process streams its own shard: Accelerate must not re-shard
        cache = d.cache_dir or str(Path(cfg.output_dir) / "cache")
        if d.source == "synthetic":
            self.tokenizer = SyntheticTokenizer(cfg.model.vocab_size)
            g = torch.Generator().manual_seed(d.split_seed)
            ids = torch.randint(5, cfg.model.vocab_size, (d.num_samples, L), generator=g)
            blocks = ids.tolist()
        elif cfg.model.init_from:  # continued pretraining: tokenizer, sizes and (if any) MLM head from the checkpoint
            from ..models.init import text_init

            with accelerator.main_process_first():  # a hub download happens once
                init_model, self.tokenizer = text_init(cfg)
            blocks = None
        elif d.streaming:
            if cfg.pretrain.max_steps is None:
                raise UserError("data.streaming=true needs pretrain.max_steps (a stream has no epoch length)")
            if not cfg.model.tokenizer:
                raise UserError("data.streaming=true needs model.tokenizer (a tokenizer cannot be trained on an "
                                "unbounded stream; train one with a non-streaming run first)")
            self.tokenizer = load_tokenizer(cfg.model.tokenizer)
            blocks = None
        else:
            texts = load_texts(d, "pretrain").texts + extra_pretrain_texts(d)
            digest = corpus_digest(texts)
            if cfg.model.tokenizer:
                self.tokenizer = load_tokenizer(cfg.model.tokenizer)
            else:
                self.tokenizer = cached_tokenizer(texts, cfg.model.vocab_size, cache, accelerator, digest)
            with accelerator.main_process_first():
                blocks = tokenize_and_pack(texts, self.tokenizer, L, cache, digest)
        if cfg.model.init_from and d.source != "synthetic":
            if d.streaming:
                if cfg.pretrain.max_steps is None:
                    raise UserError("data.streaming=true needs pretrain.max_steps (a stream has no epoch length)")
            else:
                texts = load_texts(d, "pretrain").texts + extra_pretrain_texts(d)
                with accelerator.main_process_first():
                    blocks = tokenize_and_pack(texts, self.tokenizer, L, cache, corpus_digest(texts))
        self.vocab_size = len(self.tokenizer)
        if blocks is not None:
            n_eval = min(EVAL_BLOCKS, len(blocks) // 20)
            self.eval_data = PackedBlocks(blocks[:n_eval], L, self.tokenizer.pad_token_id) if n_eval else None
            self.data = PackedBlocks(blocks[n_eval:], L, self.tokenizer.pad_token_id)
            if len(self.data) == 0:
                raise UserError("the corpus is too small to form one training block")
        else:
            self.eval_data = None
            stream = stream_texts(d, accelerator.process_index, accelerator.num_processes)
            self.data = StreamingBlocks(stream, self.tokenizer, d.text_column, L)
        if cfg.model.init_from and d.source != "synthetic":
            if init_model.config.vocab_size < self.vocab_size:
                raise UserError(f"model.init_from {cfg.model.init_from}: its tokenizer has {self.vocab_size} tokens "
                                f"but the model only {init_model.config.vocab_size} embeddings")
            self.model = MaskedLM(init_model)
        else:
            self.model = masked_lm(cfg.model, self.vocab_size, L, self.tokenizer.pad_token_id)
        self.special = special_table(self.tokenizer, self.vocab_size)
        self.mask_id = self.tokenizer.mask_token_id

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        if self.presharded:
            return DataLoader(self.data, batch_size=batch_size, num_workers=0)
        if self.cfg.pretrain.drop_last and batch_size > len(self.data):
            raise UserError(f"pretrain.batch_size={batch_size} is larger than the {len(self.data)} packed blocks "
                            "(with pretrain.drop_last=true no batch would be formed)")
        return DataLoader(self.data, batch_size=batch_size, shuffle=True, drop_last=self.cfg.pretrain.drop_last,
                          collate_fn=collate_batch, generator=generator)

    def _forward(self, model, batch, accelerator, generator=None):
        ids, att = batch["input_ids"], batch.get("attention_mask")  # no mask: a batch of full packed blocks
        if self.special.device != ids.device:
            self.special = self.special.to(ids.device)
        masked, selected, labels = mask_tokens(ids, self.special, self.mask_id, self.vocab_size,
                                               self.cfg.pretrain.mask_probability, generator)
        positions, labels = bucketed_positions(selected, labels)
        with accelerator.autocast():
            logits = model(masked, att, positions)
        logits = logits.float()  # loss in fp32; argmax for the accuracy is also much faster in fp32 on CPU
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        return loss, logits, labels

    def loss(self, model, batch: dict, accelerator):
        loss, logits, labels = self._forward(model, batch, accelerator)
        real = labels != IGNORE
        with torch.no_grad():
            acc = (logits.argmax(-1) == labels)[real].float().mean() if real.any() else torch.zeros(())
        return loss, {"masked_accuracy": acc}  # a device tensor: read at log steps only

    @staticmethod
    def batch_items(batch: dict) -> dict:
        ids, att = batch["input_ids"], batch.get("attention_mask")
        return {"samples": ids.shape[0], "tokens": ids.numel() if att is None else int(att.sum())}

    @torch.no_grad()
    def evaluate(self, model, accelerator) -> dict:
        """Held-out perplexity with a fixed masking seed, so values are comparable across steps."""
        if self.eval_data is None:
            return {}
        g = torch.Generator(device=accelerator.device).manual_seed(1234)
        total, count = 0.0, 0
        for start in range(0, len(self.eval_data), 64):
            batch = self.eval_data.__getitems__(list(range(start, min(start + 64, len(self.eval_data)))))
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            loss, _, labels = self._forward(model, batch, accelerator, g)
            n = int((labels != IGNORE).sum())
            total += loss.item() * n
            count += n
        mean = total / max(count, 1)
        return {"eval_loss": mean, "eval_perplexity": math.exp(min(mean, 50.0))}

    def export(self, model, path) -> None:
        from ..export import save_text_encoder

        save_text_encoder(model.mlm, self.tokenizer, path, self.cfg)
