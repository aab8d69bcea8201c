"""LARS (You et al. 2017) with the update rule of lightly's `lightly.utils.lars.LARS`, computed without host syncs.

Why not lightly's class itself: it decides per parameter in Python whether to adapt (`if p_norm != 0 and g_norm !=
0`), which on a GPU is two device-to-host syncs per adapted weight and step (44 for SimCLR on a ResNet-18) that keep
the CPU from queueing the next forward; on CPU its per-tensor Python loop costs time as well. torch ships no LARS.
Here the same rule runs on whole parameter lists with torch's `_foreach` kernels (what `torch.optim.SGD` uses), the
skip rule becomes a `torch.where`, and the state (`momentum_buffer`) and hyper-parameters keep lightly's names, so
optimizer states saved by either class load into the other (checkpoints of older runs resume).

Per parameter p with gradient g (groups with weight_decay 0 — biases and norm layers — are not adapted):
    trust = trust_coefficient * |p| / (|g| + weight_decay * |p| + eps)   if |p| > 0 and |g| > 0
    d = trust * (g + weight_decay * p)                                    (else d = g)
    buf = momentum * buf + (1 - dampening) * d      (buf = d on the first step)
    p -= lr * (d + momentum * buf if nesterov else buf)
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, trust_coefficient: float = 0.001, eps: float = 1e-8):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if momentum < 0.0 or weight_decay < 0.0:
            raise ValueError(f"invalid momentum {momentum} or weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, trust_coefficient=trust_coefficient, eps=eps))

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        wd, momentum = group["weight_decay"], group["momentum"]
        if wd != 0:
            p_norm = torch.stack(torch._foreach_norm(params))
            g_norm = torch.stack(torch._foreach_norm(grads))
            adapt = (p_norm > 0) & (g_norm > 0)
            trust = group["trust_coefficient"] * p_norm / (g_norm + p_norm * wd + group["eps"])
            trust = torch.where(adapt, trust, torch.ones_like(trust))  # not adapted: d = g, no weight decay
            decay = torch.where(adapt, trust * wd, torch.zeros_like(trust))
            d_p = torch._foreach_mul(grads, list(trust.unbind()))  # 0-d factors: no host sync, dtypes kept
            torch._foreach_addcmul_(d_p, params, list(decay.unbind()))
        else:
            d_p = grads
        if momentum != 0:
            bufs, old, old_d = [], [], []
            for p, d in zip(params, d_p):
                state = self.state[p]
                if "momentum_buffer" not in state:  # first step: the buffer starts as the update itself
                    state["momentum_buffer"] = torch.clone(d).detach()
                else:
                    old.append(state["momentum_buffer"])
                    old_d.append(d)
                bufs.append(state["momentum_buffer"])
            if old:
                torch._foreach_mul_(old, momentum)
                torch._foreach_add_(old, old_d, alpha=1 - group["dampening"])
            d_p = torch._foreach_add(d_p, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, d_p, alpha=-group["lr"])
