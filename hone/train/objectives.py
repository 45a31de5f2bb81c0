"""Training objectives: the loss from a batch's logits (the model never computes its own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, class_weights: torch.Tensor | None,
                        label_smoothing: float, multi_label: bool) -> torch.Tensor:
    """Cross entropy (optionally class-weighted and label-smoothed), or BCE for multi-label.

    logits: (B, C); labels: (B,) class ids, or (B, C) multi-hot floats.
    """
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=None)
    return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing)
