"""A BERT-family encoder layer as one autograd node, for short rows on a CPU.

transformers' ``BertLayer`` is a dozen modules; under CPU autocast every linear layer casts its input and its
weight, the three projections each cast the same input and each return a gradient that autograd casts back and
sums, and every op records its own node.  :class:`_BertLayer` computes the same layer with explicit casts and
a hand-written backward:

* the query, key and value projections as one product with the three weights laid side by side (one cast of the
  input, one product forward, two backward instead of three each);
* attention by :func:`hone.model.cpu_kernels.attend` (the short-row attention the CPU kernels use anyway), its
  gradients written straight into the fused projection's gradient;
* each "dropout, residual add" as one ``addcmul`` in fp32 (autocast adds the bf16 branch to the fp32 residual
  stream: the same sum, rounded once instead of twice) followed by ``native_layer_norm``;
* the weights' and biases' gradients from bf16 products and sums cast to the parameters' fp32, as autocast's
  ``ToCopyBackward`` gives them.

Dropout masks come from :func:`hone.model.cpu_kernels.keep_mask` in the stock layer's order (attention
probabilities, attention output, feed-forward output), so with the CPU kernels on, a run draws the same masks
with and without this node.  Outputs and gradients equal the stock layer's to float rounding (tested, fp32 and
under bf16 autocast, with and without dropout and padding).

In-process A/B on a 2-core Zen 5 (MiniLM-L6, batch 32, full fine-tuning under bf16 autocast, whole steps
alternating): 1.025x at 12 tokens, 1.04x at 16, 1.035x at 24, 1.05x at 32 (``bench/RESULTS.md``, session 17).

:func:`hone.model.cpu_kernels.cpu_kernels` switches it on for every qualifying layer (:func:`fusable`); a call
it cannot take (longer rows than the short attention takes, a float mask, GPU tensors, fp16, hooks on the
layer's modules, cross-attention or a cache) runs the stock forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hone.model import cpu_kernels as ck
from hone.model import frozen_casts

# transformers' copies of BertLayer (same modules, same forward)
LAYER_TYPES = ("BertLayer", "RobertaLayer", "XLMRobertaLayer", "CamembertLayer", "ElectraLayer")


def _gelu(module: nn.Module) -> bool:
    """transformers' exact GELU activation (``hidden_act: gelu``)."""
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu


def fusable(layer: nn.Module) -> bool:
    """Static checks: an encoder layer of :data:`LAYER_TYPES` built from plain modules, using ``sdpa`` attention."""
    if type(layer).__name__ not in LAYER_TYPES or getattr(layer, "is_decoder", True) \
            or getattr(layer, "add_cross_attention", True) or getattr(layer, "chunk_size_feed_forward", 1):
        return False
    try:
        sa, so, it, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
        linears = (sa.query, sa.key, sa.value, so.dense, it.dense, out.dense)
        norms, drops = (so.LayerNorm, out.LayerNorm), (sa.dropout, so.dropout, out.dropout)
        act, impl = it.intermediate_act_fn, sa.config._attn_implementation
    except AttributeError:
        return False
    if getattr(layer.attention, "is_cross_attention", False) or getattr(sa, "is_causal", False) or impl != "sdpa":
        return False
    return (all(type(m) is nn.Linear and m.bias is not None for m in linears)
            and all(type(m) is nn.LayerNorm and m.elementwise_affine and m.bias is not None for m in norms)
            and all(type(m) is nn.Dropout for m in drops) and _gelu(act))


def _stack(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The tensors laid one after the other along the first dimension, in ``dtype`` (cast in the same copy)."""
    out = torch.empty(sum(p.shape[0] for p in parts), *parts[0].shape[1:], dtype=dtype)
    start = 0
    for p in parts:
        out[start:start + p.shape[0]].copy_(p)
        start += p.shape[0]
    return out


def _weights(linear: nn.Linear, amp: torch.dtype | None, ct: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer's weight and bias in the compute dtype (the kept cast of a frozen layer, if armed)."""
    w, b = frozen_casts.amp_weights(linear, amp)
    return w.to(ct), b.to(ct)


def _dropout_add(residual: torch.Tensor, x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``residual + dropout(x)`` in the residual's dtype, with the mask and its scale."""
    if not p:
        return residual + x, None, 1.0
    mask, scale = ck.keep_mask(x.shape, p)
    return torch.addcmul(residual, x, ck._as_float(mask, x.dtype), value=scale), mask, scale


def _dropout_grad(grad: torch.Tensor, mask: torch.Tensor | None, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``grad * mask * scale`` rounded once to ``dtype``."""
    out = torch.empty(grad.shape, dtype=dtype)
    if mask is None:
        return out.copy_(grad)
    return torch.addcmul(torch.zeros((), dtype=grad.dtype), grad, ck._as_float(mask, grad.dtype), value=scale, out=out)


def _weight_grads(grad: torch.Tensor, x: torch.Tensor, need_w: bool, need_b: bool):
    """``grad^T x`` and ``grad`` summed over rows (a linear layer's weight and bias gradients) in fp32: the
    products and sums in the compute dtype, then cast, as autocast's ``ToCopyBackward`` gives them."""
    return (torch.mm(grad.t(), x).float() if need_w else None,
            grad.sum(0).float() if need_b else None)


class _BertLayer(torch.autograd.Function):
    """One BERT layer: self-attention, output projection, dropout, residual, LayerNorm, GELU feed-forward,
    dropout, residual, LayerNorm; products in autocast's bf16 (or fp32 without autocast), norms and residuals
    in fp32.  The parameters are inputs (for their gradients); ``layer`` gives their casts and settings."""

    @staticmethod
    def forward(ctx, x, mask, wq, bq, wk, bk, wv, bv, wo, bo, g1, b1, wi, bi, wf, bf, g2, b2, layer, amp):
        sa, so, it, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
        ct = amp or torch.float32
        train = layer.training
        batch, t, hidden = x.shape
        heads = sa.num_attention_heads
        with torch.autocast("cpu", enabled=False):
            x2 = x.reshape(-1, hidden)
            xc = x2.to(ct)
            qkv = [frozen_casts.amp_weights(m, amp) for m in (sa.query, sa.key, sa.value)]
            w_qkv, b_qkv = _stack([w for w, _ in qkv], ct), _stack([b for _, b in qkv], ct)
            qkv = torch.addmm(b_qkv, xc, w_qkv.t()).view(batch, t, 3, heads, hidden // heads)
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
            att, att_saved, att_meta = ck.attend(q, k, v, mask, False, sa.dropout.p if train else 0.0, sa.scaling, ct)
            att = att.view(-1, hidden)
            wo_c, bo_c = _weights(so.dense, amp, ct)
            r1, m1, s1 = _dropout_add(x2, torch.addmm(bo_c, att, wo_c.t()), so.dropout.p if train else 0.0)
            h1, mean1, rstd1 = torch.native_layer_norm(r1, (hidden,), g1, b1, so.LayerNorm.eps)
            h1c = h1.to(ct)
            wi_c, bi_c = _weights(it.dense, amp, ct)
            pre = torch.addmm(bi_c, h1c, wi_c.t())
            act = F.gelu(pre)
            wf_c, bf_c = _weights(out.dense, amp, ct)
            r2, m2, s2 = _dropout_add(h1, torch.addmm(bf_c, act, wf_c.t()), out.dropout.p if train else 0.0)
            y, mean2, rstd2 = torch.native_layer_norm(r2, (hidden,), g2, b2, out.LayerNorm.eps)
        ctx.save_for_backward(xc, w_qkv, att, wo_c, m1, r1, mean1, rstd1, g1, b1, h1c, wi_c, pre, act, wf_c, m2,
                              r2, mean2, rstd2, g2, b2, *att_saved)
        ctx.att_meta, ctx.scales, ctx.heads, ctx.ct = att_meta, (s1, s2), heads, ct
        return y.view(batch, t, hidden)

    @staticmethod
    def backward(ctx, grad):
        (xc, w_qkv, att, wo_c, m1, r1, mean1, rstd1, g1, b1, h1c, wi_c, pre, act, wf_c, m2,
         r2, mean2, rstd2, g2, b2, *att_saved) = ctx.saved_tensors
        batch, t, hidden = grad.shape
        heads, ct, (s1, s2) = ctx.heads, ctx.ct, ctx.scales
        need = ctx.needs_input_grad
        ln_backward = torch.ops.aten.native_layer_norm_backward
        with torch.autocast("cpu", enabled=False):
            g = grad.reshape(-1, hidden).float()
            gr2, gg2, gb2 = ln_backward(g, r2, (hidden,), mean2, rstd2, g2, b2, (True, need[16], need[17]))
            # each gradient is dropped after its last use (``del``): the node's peak memory is one step of the chain
            gf = _dropout_grad(gr2, m2, s2, ct)
            gwf, gbf = _weight_grads(gf, act, need[14], need[15])
            gpre = torch.ops.aten.gelu_backward(torch.mm(gf, wf_c), pre)
            del gf
            gwi, gbi = _weight_grads(gpre, h1c, need[12], need[13])
            gh1 = gr2.add_(torch.mm(gpre, wi_c))  # the residual's gradient plus the feed-forward input's
            del gpre, gr2
            gr1, gg1, gb1 = ln_backward(gh1, r1, (hidden,), mean1, rstd1, g1, b1, (True, need[10], need[11]))
            del gh1
            go = _dropout_grad(gr1, m1, s1, ct)
            gwo, gbo = _weight_grads(go, att, need[8], need[9])
            g_att = torch.mm(go, wo_c).view(batch, t, heads, hidden // heads)
            del go
            g_qkv = torch.empty(batch, t, 3, heads, hidden // heads, dtype=ct)
            ck.attend_backward(tuple(att_saved), ctx.att_meta, g_att, (True, True, True), (ct,) * 3,
                               outs=tuple(g_qkv[:, :, i] for i in range(3)))
            del g_att
            g_qkv = g_qkv.view(-1, 3 * hidden)
            gw, gb = _weight_grads(g_qkv, xc, any(need[2:8:2]), any(need[3:8:2]))
            gx = gr1.add_(torch.mm(g_qkv, w_qkv)).view(batch, t, hidden) if need[0] else None

        def part(full: torch.Tensor | None, i: int) -> torch.Tensor | None:
            """The query's (0), key's (1) or value's (2) rows of a stacked gradient, if that input needs one."""
            return None if full is None or not need[2 + 2 * i + (full.dim() == 1)] else full[i * hidden:(i + 1) * hidden]

        return (gx, None, part(gw, 0), part(gb, 0), part(gw, 1), part(gb, 1), part(gw, 2), part(gb, 2),
                gwo, gbo, gg1, gb1, gwi, gbi, gwf, gbf, gg2, gb2, None, None)


def _hooked(layer: nn.Module) -> bool:
    """Does a module inside the layer have hooks, which the fused node would skip (transformers records
    attention weights with one on the self-attention, installed at the first ``output_attentions`` call)?  Hooks on
    the layer itself run as usual."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               for m in layer.modules() if m is not layer) \
        or bool(nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)


def fused_forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
    """``BertLayer.forward`` through :class:`_BertLayer` when the call qualifies, else the stock forward."""
    sa, so, it, out = self.attention.self, self.attention.output, self.intermediate, self.output
    amp = ck._autocast_dtype()
    x = hidden_states
    params = [t for m in (sa.query, sa.key, sa.value, so.dense, so.LayerNorm, it.dense, out.dense, out.LayerNorm)
              for t in (m.weight, m.bias)]
    heads = sa.num_attention_heads
    if (args or encoder_hidden_states is not None or kwargs.get("cache") is not None
            or kwargs.get("output_attentions") or amp not in (None, torch.bfloat16)
            or x.dim() != 3 or x.dtype != torch.float32 or not x.is_cpu or x.shape[2] % heads
            or any(p.dtype != torch.float32 or not p.is_cpu for p in params) or _hooked(self)
            or not ck._short_attention_ok((x.shape[0], heads, x.shape[1], x.shape[2] // heads), heads, x.shape[1],
                                          (amp or torch.float32,), True, attention_mask, amp)):
        return type(self).forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    return _BertLayer.apply(x, attention_mask, *params, self, amp)
