"""Frozen ``nn.Linear`` weights cast to CPU autocast's dtype once, instead of at every forward.

CPU autocast caches its fp32 -> bf16 casts only for leaf tensors that require grad, and only within one
forward.  A frozen weight (the base of LoRA, IA3 or a frozen layer) is therefore cast afresh on every call:
for LoRA on MiniLM that is 10.8M weights read in fp32 and written in bf16 at every step, for a result that
never changes.  Keeping the cast made a MiniLM LoRA step 1.028x and a SmolLM2-135M LoRA SFT step 1.036x
faster on a 2-core Zen 5 CPU (in-process A/Bs, ``bench/RESULTS.md``, session 15).

:func:`amp_weights` keeps one bf16 copy per frozen layer (the same rounding as autocast's cast, so every
output and gradient is bit-identical to the stock path) and makes it again when the weight or bias is
changed in place (``_version``) or replaced.  :func:`hone.model.cpu_kernels.cpu_kernels` arms every frozen
plain ``nn.Linear`` for the duration of its block and gives it a forward that uses the copy; the fused
LoRA layer and the fused LM head (``hone.train.objectives``) take their frozen weights from the same
copies.  The copies go when the block ends.  Outside CPU autocast, or once a weight trains (progressive
unfreezing), a layer runs its own forward.
"""

from __future__ import annotations

import torch
from torch import nn

_SLOT = "_hone_frozen_cast"  # instance attribute holding (source, weight, bias) while the kernels are on


def frozen(layer: nn.Module) -> bool:
    """A plain ``nn.Linear`` whose fp32 weight and bias (if any) do not train."""
    if type(layer) is not nn.Linear or layer.weight.requires_grad or layer.weight.dtype != torch.float32:
        return False
    return layer.bias is None or not layer.bias.requires_grad


def arm(layer: nn.Module) -> None:
    """Let ``layer`` keep a cast of its weights (until :func:`disarm`)."""
    layer.__dict__[_SLOT] = None


def disarm(layer: nn.Module) -> None:
    layer.__dict__.pop(_SLOT, None)


def amp_weights(layer: nn.Module, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``layer``'s weight and bias in ``dtype`` (autocast's, or None outside autocast) when it is an armed
    frozen layer: cast once and reused while they are unchanged; otherwise its own weight and bias (for the
    caller's usual casts).

    The copies are normal tensors even when first made under ``inference_mode`` (an evaluation inside the
    training loop), so a later training forward can save them for backward."""
    w, b = layer.weight, layer.bias
    if dtype is None or _SLOT not in layer.__dict__ or not frozen(layer):
        return w, b
    # the source tensors themselves (kept alive by the slot, so identity cannot be confused with a new tensor at
    # a freed address), their version counters (in-place changes) and the dtype
    source = (w, b, w._version, None if b is None else b._version, dtype)
    slot = layer.__dict__[_SLOT]
    if slot is None or slot[0][0] is not w or slot[0][1] is not b or slot[0][2:] != source[2:]:
        with torch.inference_mode(False), torch.no_grad():
            slot = (source, w.to(dtype), None if b is None else b.to(dtype))
        layer.__dict__[_SLOT] = slot
    return slot[1], slot[2]
