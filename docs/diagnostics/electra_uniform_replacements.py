"""Diagnostic (docs/results.md): can ELECTRA's detector find *uniform random* replacements early in training?

Runs the ordinary `pretrain` stage with one change: the masked positions are filled with tokens drawn uniformly
from the vocabulary instead of the generator's samples (the generator still trains, its samples are unused). If
the detector learns these quickly but not the generator's, the generator's samples are the obstacle; if it learns
neither, the encoder's early plateau is. Not a method: a monkeypatch, kept out of the package.

    python docs/diagnostics/electra_uniform_replacements.py --config configs/text/electra_debian_descriptions.yaml \
        output_dir=runs/electra_uniform pretrain.max_steps=240 pretrain.eval_every=80
"""
import torch

from ssl_pipeline.cli import pretrain_main
from ssl_pipeline.data.text import SPECIAL_TOKENS
from ssl_pipeline.masking import IGNORE
from ssl_pipeline.models import text


def uniform_replacements(self, masked_ids, attention_mask, positions, labels, original_ids):
    gen_logits = self.generator(masked_ids, attention_mask, positions)
    with torch.no_grad():
        # the trained tokenizer's special tokens take the first ids; never drawn
        sampled = torch.randint(len(SPECIAL_TOKENS), gen_logits.shape[-1], (gen_logits.shape[0],), device=gen_logits.device)
        real = labels != IGNORE
        corrupted = original_ids.flatten().clone()
        corrupted[positions[real]] = sampled[real]
        corrupted = corrupted.view_as(original_ids)
    with text.attention_backend(original_ids.device):
        hidden = self.discriminator(input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
    return gen_logits, self.head(hidden), corrupted != original_ids


if __name__ == "__main__":
    text.ReplacedTokenDetection.forward = uniform_replacements
    pretrain_main()
