"""BERT dynamic masking on the training device: select ~p of the non-special tokens; of those 80 % become
[MASK], 10 % a random token, 10 % stay. Only the selected positions are predicted."""
from __future__ import annotations

import torch


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int, p: float,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (masked input_ids, selected (bool, same shape), labels = original ids at selected positions).

    `special` is a bool lookup table over the vocabulary (True for [PAD], [CLS], [SEP], ...).
    """
    device = input_ids.device
    probs = torch.rand(input_ids.shape, device=device, generator=generator)
    selected = (probs < p) & ~special[input_ids]
    action = torch.rand(input_ids.shape, device=device, generator=generator)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, input_ids.shape, device=device, generator=generator)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, selected, input_ids[selected]


def special_table(tokenizer, vocab_size: int, device=None) -> torch.Tensor:
    table = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    table[torch.as_tensor(tokenizer.all_special_ids, dtype=torch.long)] = True
    return table
