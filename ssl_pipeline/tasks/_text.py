"""What every text method shares: the corpus (files, hub, stream or synthetic ids), its tokenizer (trained on the
corpus once and cached, or taken from `model.tokenizer` / `model.init_from`), packed blocks with a fixed held-out
slice for evaluation, and the dataloader. A method adds its model, its loss and its export."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Config, check_stream_budget
from ..data.splits import collate_batch
from ..data.text import (PackedBlocks, StreamingBlocks, corpus_digest, extra_pretrain_texts, load_texts, load_tokenizer, stream_texts, tokenize_and_pack,
                         train_tokenizer)
from ..engine import Task
from ..errors import UserError
from ..masking import TokenMasker, bucketed_positions

EVAL_BLOCKS = 256  # held-out blocks for evaluation (a fixed slice of the training split, never trained on)


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


def guard_leakage(texts: list[str], d, accelerator) -> tuple[list[str], dict]:
    """Count pretraining texts that duplicate a test text; with data.dedupe drop them (before the tokenizer)."""
    from ..data.leakage import describe, leakage_record, test_split_or_reason, text_duplicates, text_split_fingerprint
    from ..engine import computed_once

    def check() -> tuple[dict, object]:
        if not d.leakage_check:
            return leakage_record(None, None, False, "data.leakage_check=false"), None
        test, why = test_split_or_reason(lambda: load_texts(d, "test"))
        if test is None:
            return leakage_record(None, None, False, why), None
        dups = text_duplicates(texts, test.texts)
        return leakage_record(dups, text_split_fingerprint(test.texts), d.dedupe), dups.pool_indices

    record, drop = computed_once(accelerator, check)
    if d.dedupe and drop is not None and len(drop):
        drop = set(drop.tolist())
        texts = [t for i, t in enumerate(texts) if i not in drop]
    accelerator.print(describe(record, "texts"))
    return texts, record


class TextTask(Task):
    """Sets `tokenizer`, `vocab_size`, `data`, `eval_data` (None when streaming) and `init_model` (the
    `model.init_from` checkpoint's masked-LM model, else None)."""

    modality = "text"

    def __init__(self, cfg: Config, accelerator):
        self.cfg, self.accelerator = cfg, accelerator
        d, L = cfg.data, cfg.data.max_length
        self.presharded = d.streaming  # each process streams its own shard: Accelerate must not re-shard
        self.init_model = None
        self.leakage = {"checked": False, "reason": "streamed corpus" if d.streaming else "synthetic data"}
        if d.streaming and d.source == "folder":
            raise UserError("data.streaming=true streams a hub dataset or text files; a folder of documents is read "
                            "as it is: set data.streaming=false")
        if d.streaming and d.source != "synthetic":
            check_stream_budget(cfg, "data.streaming=true")
        cache = d.cache_dir or str(Path(cfg.output_dir) / "cache")
        if d.source == "synthetic":
            self.tokenizer = SyntheticTokenizer(cfg.model.vocab_size)
            g = torch.Generator().manual_seed(d.split_seed)
            blocks = torch.randint(5, cfg.model.vocab_size, (d.num_samples, L), generator=g).tolist()
        else:
            if cfg.model.init_from:  # continued pretraining: tokenizer, sizes and (if any) MLM head from the checkpoint
                from ..models.init import text_init

                with accelerator.main_process_first():  # a hub download happens once
                    self.init_model, self.tokenizer = text_init(cfg)
            elif cfg.model.tokenizer:
                self.tokenizer = load_tokenizer(cfg.model.tokenizer)
            elif d.streaming:
                raise UserError("data.streaming=true needs model.tokenizer (a tokenizer cannot be trained on an "
                                "unbounded stream; train one with a non-streaming run first)")
            blocks = None
            if not d.streaming:
                texts, self.leakage = guard_leakage(load_texts(d, "pretrain").texts + extra_pretrain_texts(d), d,
                                                    accelerator)
                digest = corpus_digest(texts)
                if not hasattr(self, "tokenizer"):
                    self.tokenizer = cached_tokenizer(texts, cfg.model.vocab_size, cache, accelerator, digest)
                with accelerator.main_process_first():
                    blocks = tokenize_and_pack(texts, self.tokenizer, L, cache, digest)
        self.vocab_size = len(self.tokenizer)
        self.masker = TokenMasker(self.tokenizer, self.vocab_size, self.tokenizer.mask_token_id)
        if blocks is not None:
            n_eval = min(EVAL_BLOCKS, len(blocks) // 20)
            self.eval_data = PackedBlocks(blocks[:n_eval], L, self.tokenizer.pad_token_id) if n_eval else None
            self.data = PackedBlocks(blocks[n_eval:], L, self.tokenizer.pad_token_id)
            if len(self.data) == 0:
                raise UserError("the corpus is too small to form one training block")
        else:
            self.eval_data = None
            stream = stream_texts(d, accelerator.process_index, accelerator.num_processes)
            self.data = StreamingBlocks(stream, self.tokenizer, d.text_column, L, d.label_column)
        if self.init_model is not None and self.init_model.config.vocab_size < self.vocab_size:
            raise UserError(f"model.init_from {cfg.model.init_from}: its tokenizer has {self.vocab_size} tokens "
                            f"but the model only {self.init_model.config.vocab_size} embeddings")

    def encoder(self, model):
        """The transformer whose embeddings are exported (and checked by the engine's monitor)."""
        raise NotImplementedError

    def monitor_inputs(self):
        """A fixed, seeded sample of the labeled train texts (any corpus texts without labels), tokenized once."""
        d = self.cfg.data
        if d.source == "synthetic" or d.streaming:  # no texts / an unbounded stream: nothing fixed to check
            return None
        if not hasattr(self, "_monitor_set"):
            try:
                split = load_texts(d, "train")
            except UserError:  # an unlabeled corpus (or labels the fine-tune stage will refuse): no kNN labels
                split = load_texts(d, "pretrain")
            g = torch.Generator().manual_seed(d.split_seed)
            idx = torch.randperm(len(split), generator=g)[: self.cfg.pretrain.monitor_samples].tolist()
            enc = self.tokenizer([split.texts[i] for i in idx], padding="max_length", truncation=True,
                                 max_length=d.max_length, return_tensors="pt")
            # shortest first, so that `embed` can cut each slice's padding (the measures ignore order)
            order = enc["attention_mask"].sum(1).argsort()
            enc = {k: enc[k][order] for k in ("input_ids", "attention_mask")}
            labels = None if split.labels is None else torch.as_tensor(split.labels[idx], dtype=torch.long)[order]
            self._monitor_set = ({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, labels)
        return self._monitor_set

    def embed(self, model, inputs: dict) -> torch.Tensor:
        from ..models.text import attention_backend, mean_pool

        longest = int(inputs["attention_mask"].sum(1).max())
        inputs = {k: v[:, :longest] for k, v in inputs.items()}  # padding past the slice's longest text is waste
        with attention_backend(inputs["input_ids"].device):
            hidden = self.encoder(model)(**inputs).last_hidden_state
        return mean_pool(hidden, inputs["attention_mask"])

    def dataloader(self, batch_size: int, generator: torch.Generator) -> DataLoader:
        if self.presharded:
            return DataLoader(self.data, batch_size=batch_size, num_workers=0)
        if self.cfg.pretrain.drop_last and batch_size > len(self.data):
            raise UserError(f"pretrain.batch_size={batch_size} is larger than the {len(self.data)} packed blocks "
                            "(with pretrain.drop_last=true no batch would be formed)")
        return DataLoader(self.data, batch_size=batch_size, shuffle=True, drop_last=self.cfg.pretrain.drop_last,
                          collate_fn=collate_batch, generator=generator)

    @staticmethod
    def batch_items(batch: dict) -> dict:
        ids, att = batch["input_ids"], batch.get("attention_mask")
        # a padded batch's token count stays a device tensor: the engine reads it at log steps only (no sync)
        return {"samples": ids.shape[0], "tokens": ids.numel() if att is None else att.sum()}

    def mask(self, ids: torch.Tensor, probability: float, generator=None):
        """BERT's 80/10/10 corruption of `ids` -> (corrupted ids, flat positions of the selected tokens, their
        original ids), positions bucketed so the head's input shape repeats (`masking.bucketed_positions`)."""
        masked, selected, labels = self.masker(ids, probability, generator)
        return (masked, *bucketed_positions(selected, labels))

    def frequency_baseline(self) -> dict:
        """{'eval_token_frequency_loss': L} beside each held-out evaluation (computed once; {} without held-out
        blocks): the loss of knowing only token frequencies, the plateau the MLM loss has to leave."""
        if self.eval_data is None or isinstance(self.tokenizer, SyntheticTokenizer):
            return {}
        if not hasattr(self, "_frequency_loss"):
            from ..masking import token_frequency_loss

            self._frequency_loss = token_frequency_loss(self.data.ids, self.eval_data.ids, self.masker.special.cpu())
        return {"eval_token_frequency_loss": self._frequency_loss}

    def eval_batches(self, accelerator, size: int = 64):
        """The held-out blocks, in order, on the device."""
        for start in range(0, len(self.eval_data), size):
            batch = self.eval_data.__getitems__(list(range(start, min(start + size, len(self.eval_data)))))
            yield {k: v.to(accelerator.device) for k, v in batch.items()}
