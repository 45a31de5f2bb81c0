"""Sentence embeddings from any transformers encoder: mean pooling + L2 normalisation.

This is the intended way to embed with sentence-transformers models such as the embedded
all-MiniLM-L6-v2 (``"minilm"``): average the last hidden state over the real (non-padding)
tokens, then scale to unit length so a dot product is a cosine similarity.  hone uses it for
the embedding baselines (:mod:`hone.eval.baselines`) and the forgetting probe
(:mod:`hone.eval.forgetting`), so the same function must accept

- a bare ``AutoModel`` (``BertModel``),
- a task model (``AutoModelForSequenceClassification``): its encoder is ``model.base_model``
  (the classification head and the BERT pooler are not used — they are not part of the
  sentence embedding),
- a PEFT-wrapped model (``PeftModel``): ``get_base_model()`` returns the transformers model
  with the adapter layers still injected and active, so a LoRA-tuned encoder is embedded
  *with* its adapters.

Texts are tokenized once, sorted by token length and batched so each batch pads to nearly its
own length (far less wasted compute than padding to the longest text overall); the output
keeps the input order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def encoder_of(model: Any) -> Any:
    """The module whose output is the token-level last hidden state.

    ``PeftModel.get_base_model()`` unwraps the adapter wrapper (adapter layers stay inside);
    ``PreTrainedModel.base_model`` is the bare encoder of a task model and the model itself
    for a bare ``AutoModel``.
    """
    m = model
    if hasattr(m, "get_base_model"):
        m = m.get_base_model()
    base = getattr(m, "base_model", None)
    return base if base is not None else m


def _device_of(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Dropout off while embedding or scoring, then the caller's train/eval state restored."""
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _hidden_size(model: Any) -> int:
    cfg = getattr(encoder_of(model), "config", None) or getattr(model, "config", None)
    return int(getattr(cfg, "hidden_size", 0) or 0)


def _last_hidden(encoder: Any, input_ids: Any, attention_mask: Any) -> Any:
    """Last hidden state ``(B, T, H)``; falls back to ``hidden_states[-1]`` for models whose
    output has no ``last_hidden_state`` (e.g. a task model that is its own base)."""
    out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=False)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        out = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states[-1]
    return hidden


def _batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar token length (longest first, so a memory
    problem shows up on the first batch rather than the last)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def embed(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64, max_length: int = 128,
          normalize: bool = True, progress: bool = False) -> np.ndarray:
    """Embed ``texts`` as an ``(N, H)`` float32 array (rows in input order).

    Mean pooling over non-padding tokens of the encoder's last hidden state; rows are unit
    length when ``normalize`` (then ``a @ b.T`` is cosine similarity).  Texts longer than
    ``max_length`` tokens are truncated.  The model is put in eval mode for the call and its
    previous mode restored; no gradients are kept.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, _hidden_size(model)), dtype=np.float32)
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    ids, masks = enc["input_ids"], enc["attention_mask"]
    encoder, device = encoder_of(model), _device_of(model)
    out: np.ndarray | None = None
    batches = _batches(np.array([len(x) for x in ids]), batch_size)
    if progress:
        from rich.progress import track

        batches = track(batches, description=f"Embedding {len(texts)} texts")
    with eval_mode(model), torch.inference_mode():
        for idx in batches:
            padded = tokenizer.pad({"input_ids": [ids[i] for i in idx], "attention_mask": [masks[i] for i in idx]},
                                   return_tensors="pt")
            input_ids = padded["input_ids"].to(device)
            mask = padded["attention_mask"].to(device)
            hidden = _last_hidden(encoder, input_ids, mask).float()  # (B, T, H)
            m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, H)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled.cpu().numpy()
    assert out is not None
    return out
