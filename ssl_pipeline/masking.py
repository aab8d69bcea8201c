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


class TokenMasker:
    """`mask_tokens` for one tokenizer: its special-token table (moved once to the device of the batches it
    masks), its [MASK] id and vocabulary size. Shared by the MLM-style pretext tasks and fixmatch's text view."""

    def __init__(self, tokenizer, vocab_size: int, mask_id: int):
        self.special = special_table(tokenizer, vocab_size)
        self.mask_id, self.vocab_size = mask_id, vocab_size

    def __call__(self, input_ids: torch.Tensor, p: float, generator: torch.Generator | None = None):
        if self.special.device != input_ids.device:
            self.special = self.special.to(input_ids.device)
        return mask_tokens(input_ids, self.special, self.mask_id, self.vocab_size, p, generator)


IGNORE = -100  # label of padding positions (cross_entropy's default ignore_index)


def bucketed_positions(selected: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the selected positions, padded up to a size bucket, and their labels (IGNORE on padding).

    The number of masked tokens changes every batch; tensors of ever-new sizes (the head's logits and their
    gradients, tens of MB each) fragment glibc's heap on CPU, and a long streaming run's memory then grows
    without bound (measured: +1.4 GB over 300 steps). Rounding the count up to one of ~8 sizes per octave (at
    most 12.5 % extra head rows) lets the allocator reuse blocks, and memory stays flat.
    """
    idx = selected.flatten().nonzero().squeeze(1)
    n = idx.numel()
    step = max(64, (1 << max(n.bit_length() - 1, 0)) // 8)
    pad = -n % step
    if pad:
        idx = torch.cat([idx, idx.new_zeros(pad)])
        labels = torch.cat([labels, labels.new_full((pad,), IGNORE)])
    return idx, labels


def token_frequency_loss(train_ids: torch.Tensor, held_out_ids: torch.Tensor, special: torch.Tensor) -> float:
    """Held-out cross-entropy (nats) of a predictor that knows only how often each token occurs in training
    (add-one smoothed), over the tokens masking may select: the "frequent tokens" plateau a masked LM sits on
    before it uses context. An MLM's held-out loss near this value means its encoder has learned little yet."""
    vocab = len(special)
    counts = torch.bincount(train_ids.flatten().long(), minlength=vocab)[:vocab].double() + 1.0
    counts[special] = 0.0
    log_p = torch.log(counts / counts.sum())
    held = held_out_ids.flatten().long()
    held = held[~special[held]]
    return float(-log_p[held].mean()) if len(held) else float("nan")
