"""ELECTRA: replaced-token detection. A small generator (masked LM) proposes tokens at the masked positions; the
discriminator learns from every token, not only the 15 % masked ones, which is why it is more sample-efficient
than MLM at small compute. The discriminator is the exported encoder."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Config
from ..errors import UserError
from ..masking import IGNORE
from ..models.text import (ReplacedTokenDetection, SharedEmbeddingGenerator, base_encoder, masked_lm,
                           scaled_model_config)
from ._text import TextTask
from .registry import register


@dataclass
class ElectraConfig:
    mask_probability: float = 0.15  # fraction of tokens the generator fills in (80/10/10 rule)
    generator_width: float = 0.25  # generator width (hidden, heads, feed-forward) relative to the discriminator; depth is the same (ELECTRA: 1/4-1/2)
    discriminator_weight: float = 50.0  # lambda: weight of the replaced-token loss against the generator's MLM loss
    share_embeddings: bool = True  # generator reads and predicts through the discriminator's token embeddings (ELECTRA's tying); false = its own

    def __post_init__(self):
        if not 0.0 < self.mask_probability < 1.0:
            raise UserError(f"config key 'pretrain.electra.mask_probability' must be in (0, 1), got {self.mask_probability}")
        if not 0.0 < self.generator_width <= 1.0:
            raise UserError(f"config key 'pretrain.electra.generator_width' must be in (0, 1], got {self.generator_width}")
        if self.discriminator_weight <= 0:
            raise UserError(f"config key 'pretrain.electra.discriminator_weight' must be positive, "
                            f"got {self.discriminator_weight}")


@register("electra", config=ElectraConfig)
class ElectraTask(TextTask):
    """Generator MLM loss + discriminator_weight x binary cross-entropy over all real tokens."""

    # no `held_out_loss` (best_encoder.py): the discriminator's held-out loss rises whenever the generator gets
    # better (its replacements get harder), so a rise cannot tell memorising from learning

    def __init__(self, cfg: Config, accelerator):
        if cfg.model.init_from:
            raise UserError("task=electra trains its generator and discriminator from scratch; for continued "
                            "pretraining from model.init_from use task=mlm")
        super().__init__(cfg, accelerator)
        L, pad = cfg.data.max_length, self.tokenizer.pad_token_id
        s = cfg.pretrain.electra
        discriminator = base_encoder(cfg.model, self.vocab_size, L, pad)
        small = scaled_model_config(cfg.model, s.generator_width)
        if s.share_embeddings:
            generator = SharedEmbeddingGenerator(base_encoder(small, self.vocab_size, L, pad),
                                                 discriminator.get_input_embeddings())
        else:
            generator = masked_lm(small, self.vocab_size, L, pad)
        self.model = ReplacedTokenDetection(generator, discriminator)

    def _forward(self, model, batch, accelerator, generator=None):
        ids, att = batch["input_ids"], batch.get("attention_mask")  # no mask: full packed blocks
        s = self.cfg.pretrain.electra
        masked, positions, labels = self.mask(ids, s.mask_probability, generator)
        with accelerator.autocast():
            gen_logits, disc_logits, replaced = model(masked, att, positions, labels, ids)
        gen_loss = F.cross_entropy(gen_logits.float(), labels, ignore_index=IGNORE)
        disc_logits, target = disc_logits.float(), replaced.float()
        if att is None:
            disc_loss = F.binary_cross_entropy_with_logits(disc_logits, target)
        else:
            w = att.float()
            disc_loss = (F.binary_cross_entropy_with_logits(disc_logits, target, reduction="none") * w).sum() / w.sum()
        with torch.no_grad():
            right = ((disc_logits > 0) == replaced).float()
            disc_acc = right.mean() if att is None else (right * att).sum() / att.sum()
        return gen_loss + s.discriminator_weight * disc_loss, {"generator_loss": gen_loss.detach(),
                                                               "discriminator_loss": disc_loss.detach(),
                                                               "replaced_fraction": target.mean(),
                                                               "discriminator_accuracy": disc_acc}

    def loss(self, model, batch: dict, accelerator):
        return self._forward(model, batch, accelerator)

    @torch.no_grad()
    def evaluate(self, model, accelerator) -> dict:
        """Held-out generator perplexity and discriminator loss/accuracy with a fixed masking seed."""
        if self.eval_data is None:
            return {}
        g = torch.Generator(device=accelerator.device).manual_seed(1234)
        sums, n = {}, 0
        for batch in self.eval_batches(accelerator):
            _, parts = self._forward(model, batch, accelerator, g)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(batch["input_ids"])
            n += len(batch["input_ids"])
        out = {f"eval_{k}": v / n for k, v in sums.items()}
        out["eval_generator_perplexity"] = math.exp(min(out["eval_generator_loss"], 50.0))
        return {**out, **self.frequency_baseline()}

    def encoder(self, model):
        return model.discriminator

    def export(self, model, path) -> None:
        from ..export import save_text_encoder

        save_text_encoder(model.discriminator, self.tokenizer, path, self.cfg, extra={"leakage": self.leakage})
