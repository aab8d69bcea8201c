"""Masked-token pretraining of a BERT-style encoder from scratch, with its tokenizer trained on the corpus."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Config
from ..errors import UserError
from ..masking import IGNORE
from ..models.text import MaskedLM, masked_lm
from ._text import TextTask
from .registry import register


@dataclass
class MLMConfig:
    mask_probability: float = 0.15  # fraction of tokens selected for prediction (80/10/10 rule)

    def __post_init__(self):
        if not 0.0 < self.mask_probability < 1.0:
            raise UserError(f"config key 'pretrain.mlm.mask_probability' must be in (0, 1), got {self.mask_probability}")


@register("mlm", config=MLMConfig)
class MLMTask(TextTask):
    """BERT-style masked-token pretraining; the head and loss run at the masked positions only."""

    held_out_loss = "eval_loss"  # the engine keeps the encoder of its lowest (best_encoder.py)

    def __init__(self, cfg: Config, accelerator):
        super().__init__(cfg, accelerator)
        if self.init_model is not None:
            self.model = MaskedLM(self.init_model)
        else:
            self.model = masked_lm(cfg.model, self.vocab_size, cfg.data.max_length, self.tokenizer.pad_token_id)

    def _forward(self, model, batch, accelerator, generator=None):
        ids, att = batch["input_ids"], batch.get("attention_mask")  # no mask: a batch of full packed blocks
        masked, positions, labels = self.mask(ids, self.cfg.pretrain.mlm.mask_probability, generator)
        with accelerator.autocast():
            logits = model(masked, att, positions)
        logits = logits.float()  # loss in fp32; argmax for the accuracy is also much faster in fp32 on CPU
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
        return loss, logits, labels

    def loss(self, model, batch: dict, accelerator):
        loss, logits, labels = self._forward(model, batch, accelerator)
        real = labels != IGNORE
        with torch.no_grad():
            # no boolean indexing or `if real.any()`: either would read back to the host (a GPU sync) every step
            acc = ((logits.argmax(-1) == labels) & real).sum() / real.sum().clamp(min=1)
        return loss, {"masked_accuracy": acc}  # a device tensor: read at log steps only

    @torch.no_grad()
    def evaluate(self, model, accelerator) -> dict:
        """Held-out perplexity with a fixed masking seed, so values are comparable across steps."""
        if self.eval_data is None:
            return {}
        g = torch.Generator(device=accelerator.device).manual_seed(1234)
        total, count = 0.0, 0
        for batch in self.eval_batches(accelerator):
            loss, _, labels = self._forward(model, batch, accelerator, g)
            n = int((labels != IGNORE).sum())
            total += loss.item() * n
            count += n
        mean = total / max(count, 1)
        return {"eval_loss": mean, "eval_perplexity": math.exp(min(mean, 50.0)), **self.frequency_baseline()}

    def encoder(self, model):
        return model.mlm.base_model

    def export(self, model, path) -> None:
        from ..export import save_text_encoder

        save_text_encoder(model.mlm, self.tokenizer, path, self.cfg, extra={"leakage": self.leakage})
