"""Exact speed-ups: skip work whose result the loss never reads.  Same outputs, same gradients.

:func:`first_token_only` — a BERT-family sequence classifier reads only the first ([CLS])
position of the last encoder layer (the pooler or the classification head takes
``hidden[:, 0]``).  In that layer every other position's query projection, attention row,
output projection and feed-forward block is computed and thrown away: 10 of the layer's 12
weight-matrix products per token, 14% of a 6-layer model's linear FLOPs.  While the context
is active the last layer computes its keys and values for every position (the [CLS] query
attends to all of them) and everything else for the first position only.

:func:`kept_positions_only` — a causal LM trained on completions (SFT, DPO) reads the last hidden
state only at the positions that predict a trained token.  Its last decoder layer needs keys and
values at every position (those positions attend to all earlier ones), but its queries, attention
rows, output projection and MLP only there: 94% of the layer's weight-matrix products per skipped
position.  For SmolLM2-135M (30 layers) on SFT batches with 64 of 416 positions trained, 2.6% of
the step's linear FLOPs; more for shallower models and longer prompts.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from hone.model import fused_bert

# Encoders whose layers are transformers' BERT layer (attention.self.{query,key,value} ->
# attention.output -> intermediate -> output) and whose classification head reads position 0.
FIRST_TOKEN_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


def _last_layer(model: nn.Module) -> nn.Module | None:
    base = model.get_base_model() if hasattr(model, "peft_config") else model
    if getattr(base.config, "model_type", None) not in FIRST_TOKEN_TYPES:
        return None
    if not type(base).__name__.endswith("ForSequenceClassification"):
        return None
    if getattr(base.config, "classifier_pooling", "cls") != "cls":
        return None  # a mean-pooling head (hone.model.pooling) reads every position
    if getattr(base.config, "is_decoder", False) or getattr(base.config, "add_cross_attention", False):
        return None
    if hasattr(model, "peft_config") and model.peft_config[model.active_adapter].is_prompt_learning:
        return None  # virtual tokens are prepended: position 0 is no longer [CLS]
    encoder = getattr(getattr(base, base.base_model_prefix, None), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not layers:
        return None
    last = layers[-1]
    ok = all(hasattr(last, a) for a in ("attention", "intermediate", "output")) and all(
        hasattr(last.attention.self, a) for a in ("query", "key", "value", "attention_head_size", "scaling"))
    return last if ok else None


def _first_token_forward(self, hidden_states, attention_mask=None, *args, **kwargs):
    """BertLayer.forward computed for the first position only (keys / values for all)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sa = self.attention.self
    batch = hidden_states.shape[0]
    first = hidden_states[:, :1]
    shape = (batch, -1, sa.num_attention_heads, sa.attention_head_size)
    q = sa.query(first).view(*shape).transpose(1, 2)
    k = sa.key(hidden_states).view(*shape).transpose(1, 2)
    v = sa.value(hidden_states).view(*shape).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # the first query's row
    eager = sys.modules[type(sa).__module__].eager_attention_forward
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(sa.config._attn_implementation, eager)
    out, _ = attend(sa, q, k, v, attention_mask, dropout=sa.dropout.p if sa.training else 0.0,
                    scaling=sa.scaling, is_causal=False)
    attn = self.attention.output(out.reshape(batch, 1, -1).contiguous(), first)
    return self.output(self.intermediate(attn), attn)


@contextmanager
def first_token_only(model: nn.Module) -> Iterator[bool]:
    """Within the block the classifier's last layer runs for the first position only; yields
    whether the model qualified.  Outside it the model is untouched (its state dict never is)."""
    last = _last_layer(model)
    if last is None:
        yield False
        return
    previous = last.__dict__.get("forward")  # a forward set on the instance (the CPU kernels' fused layer)
    fused = getattr(previous, "__func__", None) is fused_bert.fused_forward
    ours = types.MethodType(fused_bert.fused_first_token_forward if fused else _first_token_forward, last)
    last.forward = ours
    try:
        yield True
    finally:
        if last.__dict__.get("forward") is ours:  # (unless a block around it has already restored the layer)
            if previous is None:
                last.__dict__.pop("forward", None)
            else:
                last.forward = previous


# Decoder layers computed as Llama's: input_layernorm -> self_attn (q / k / v / o_proj, rotary embeddings
# given by the model; Qwen3 adds per-head q_norm / k_norm) -> residual -> post_attention_layernorm -> mlp ->
# residual.  Named exactly, so that a subclass with other extras never takes the path.
KEPT_POSITION_LAYERS = {"LlamaDecoderLayer": "LlamaAttention", "MistralDecoderLayer": "MistralAttention",
                        "Qwen2DecoderLayer": "Qwen2Attention", "Qwen3DecoderLayer": "Qwen3Attention"}
# above this share of kept positions (continued pre-training trains them all) the full layer runs
MAX_KEPT_SHARE = 0.5


def _kept_layer(decoder: nn.Module, seq_len: int) -> nn.Module | None:
    layers = getattr(decoder, "layers", None)
    n = getattr(getattr(decoder, "config", None), "num_hidden_layers", None)
    if not layers or not n or len(layers) < n:
        return None
    last = layers[n - 1]  # the decoder runs layers[:num_hidden_layers]
    attn = getattr(last, "self_attn", None)
    if KEPT_POSITION_LAYERS.get(type(last).__name__) != type(attn).__name__:
        return None
    if attn.training and getattr(attn, "attention_dropout", 0.0):
        return None
    window = getattr(attn, "sliding_window", None)
    if window is None and type(last).__name__ == "MistralDecoderLayer":
        window = getattr(decoder.config, "sliding_window", None)
    if window is not None and seq_len > window:
        return None  # a sliding window would hide early keys from late queries
    return last


def _kept_positions_forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                            use_cache=False, position_embeddings=None, **kwargs):
    """The decoder layer's output at ``self._hone_keep``'s positions (zeros elsewhere), for a batch that
    attends causally with default positions: keys and values from every position, the rest from the kept."""
    attn = self.self_attn
    b, t, _ = hidden_states.shape
    rows, pos = self._hone_keep.nonzero(as_tuple=True)
    d = attn.head_dim
    h = self.input_layernorm(hidden_states)
    q = attn.q_proj(h[rows, pos]).view(rows.numel(), -1, d)  # (N, heads, d)
    k = attn.k_proj(h).view(b, t, -1, d)  # (B, T, kv heads, d)
    v = attn.v_proj(h).view(b, t, -1, d)
    if hasattr(attn, "q_norm"):  # Qwen3
        q, k = attn.q_norm(q), attn.k_norm(k)
    rotate_half = sys.modules[type(attn).__module__].rotate_half
    cos, sin = position_embeddings  # (B or 1, T, d)
    cq, sq = cos.expand(b, t, -1)[rows, pos][:, None], sin.expand(b, t, -1)[rows, pos][:, None]
    q = (q * cq) + (rotate_half(q) * sq)
    k = (k * cos[:, :, None]) + (rotate_half(k) * sin[:, :, None])
    # the kept queries of each row in slots 0..m-1, grouped by the key / value head they share
    kv = k.shape[2]
    g = q.shape[1] // kv
    slot = self._hone_keep.long().cumsum(1).sub_(1)[rows, pos]
    m = int(slot.max()) + 1
    qp = q.new_zeros(b, m, q.shape[1], d).index_put((rows, slot), q)
    qp = qp.view(b, m, kv, g, d).permute(0, 2, 3, 1, 4).reshape(b * kv, g * m, d)
    scores = torch.bmm(qp, k.permute(0, 2, 3, 1).reshape(b * kv, d, t)).mul_(attn.scaling)
    qpos = torch.zeros(b, m, dtype=torch.long, device=pos.device).index_put_((rows, slot), pos)
    future = torch.arange(t, device=pos.device)[None, None, :] > qpos[:, :, None]  # (B, m, T); empty slots see key 0
    scores.view(b, kv, g, m, t).masked_fill_(future[:, None, None], float("-inf"))
    probs = torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype)
    out = torch.bmm(probs, v.transpose(1, 2).reshape(b * kv, t, d))  # (B*kv, g*m, d)
    out = out.view(b, kv, g, m, d).permute(0, 3, 1, 2, 4).reshape(b, m, -1)[rows, slot]  # (N, heads*d)
    x = hidden_states[rows, pos] + attn.o_proj(out)
    x = x + self.mlp(self.post_attention_layernorm(x))
    return x.new_zeros(hidden_states.shape).index_put((rows, pos), x)  # x's dtype, as the full layer's residual sum


@contextmanager
def kept_positions_only(decoder: nn.Module, keep: torch.Tensor | None) -> Iterator[bool]:
    """Within the block the decoder's last layer runs for the ``keep`` positions (a (B, T) bool mask) only,
    when its architecture qualifies and at most :data:`MAX_KEPT_SHARE` of the positions are kept; its
    output is zero elsewhere, so only the kept positions of the last hidden state may be read.  The caller
    guarantees causal attention with default positions (no padding mask, no ``position_ids``, no cache).
    Yields whether the path is on.  Outside the block the model is untouched.  Under gradient
    checkpointing the patched layer is not checkpointed (transformers wraps the class's ``forward``): its
    activations at the kept positions are kept instead, and gradients are unchanged (tested)."""
    last = None
    if keep is not None and keep.dim() == 2 and bool(keep.any()) and keep.float().mean() <= MAX_KEPT_SHARE:
        last = _kept_layer(decoder, keep.shape[1])
    if last is None:
        yield False
        return
    last.forward = types.MethodType(_kept_positions_forward, last)
    last._hone_keep = keep
    try:
        yield True
    finally:
        last.__dict__.pop("forward", None)
        del last._hone_keep
