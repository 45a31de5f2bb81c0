"""AdamW with decoupled weight decay (none on biases and norms) and a warm-up schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from hone.model.methods import _is_head

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_f.weight", "layernorm.weight")


def param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr: float | None) -> list[dict]:
    """Four groups: (body | head) x (decay | no decay); frozen parameters are left out."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or name.endswith(NO_DECAY))
        groups.setdefault((_is_head(name), decay), []).append(p)
    out = []
    for (is_head, decay), params in sorted(groups.items()):
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                    "lr": (head_lr or lr) if is_head else lr})
    return out


def all_param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr: float | None) -> list[dict]:
    """Like :func:`param_groups` but with frozen parameters too (progressive unfreezing opens them later)."""
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad = True
    try:
        return param_groups(model, weight_decay, lr, head_lr)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad = saved[n]


def make_optimizer(groups: list[dict]) -> torch.optim.Optimizer:
    # foreach: one fused multi-tensor kernel per group instead of a Python loop over tensors
    return torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=True)


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the base lr at optimizer step ``s`` (0-based): linear warm-up, then decay."""
    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)
    return f


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule, warmup, total))
