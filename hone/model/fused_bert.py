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
  stream: the same sum, rounded once instead of twice) followed by ``native_layer_norm``; with hone's native
  kernels the add, the norm and the bf16 copy of its output in one pass per row (``hone_add_layer_norm``: the mask
  drawn from its seed, the same mask, and drawn again in the backward instead of saved), and the norm's backward
  with the dropout branch's gradient in one more (1.025-1.027x per MiniLM step, ``bench/RESULTS.md`` session 19);
* the weights' and biases' gradients from bf16 products and sums cast to the parameters' fp32, as autocast's
  ``ToCopyBackward`` gives them.

Dropout masks come from :func:`hone.model.cpu_kernels.keep_mask` in the stock layer's order (attention
probabilities, attention output, feed-forward output), so with the CPU kernels on, a run draws the same masks
with and without this node.  Outputs and gradients equal the stock layer's to float rounding in fp32, and are as
close to fp32 under bf16 autocast as the stock layer's (tested, with and without dropout and padding, frozen
layers).  Under :func:`hone.model.fast.first_token_only` the classifier's last layer runs
through the same node for position 0 only (:func:`fused_first_token_forward`).

The node keeps fewer activations than the stock modules (one bf16 copy of the layer's input where autocast makes
three), but frees them only when its whole backward is done: peak RSS was 20-27 MB higher at 32 rows of 60
tokens on MiniLM (about 1.05 GB), and 50-90 MB higher over a BANKING77 epoch (1.53-1.60 GB against 1.47-1.50).

In-process A/Bs on a 2-core Zen 5 (MiniLM-L6, batch 32, full fine-tuning under bf16 autocast, whole steps
alternating): 1.025-1.045x at 12 tokens, 1.04x at 16, 1.03-1.035x at 24, 1.05x at 32, 1.04-1.05x over blocks
of ten padded batches of 10-40 tokens, and 1.03-1.07x in hone's own loop over a BANKING77 epoch with the node
switched on and off every 7-13 steps (``bench/RESULTS.md``, session 17).

With the native kernels, :func:`packed_encoder_forward` runs a right-padded batch through the whole encoder packed:
its real tokens laid end to end (:class:`hone.model.cpu_kernels.Packing`), every product, norm and activation on
those rows only, and the native attention reading each sequence's rows (``hone_attend`` with token offsets).  The
outputs on the real tokens are the padded batch's (the padding's are zeros), and the dropout masks are too: the
kernels number a packed row by its padded row.  Layers that keep their own modules (LoRA on their projections) run
packed too: transformers' attention hands the packing (the mask it is given) to the short attention, which runs the
packed kernel; their dropout then draws masks by the packed rows.  Rows are rounded up to blocks of
:data:`hone.model.cpu_kernels.ROW_ALIGN` (oneDNN builds a product per row count), and a batch with no whole block of
padding stays padded.  A MiniLM step at 13 tokens and 10% padding: 1.05-1.067x full fine-tuning, 1.02-1.03x LoRA
(in-process A/Bs, ``bench/RESULTS.md`` session 23).  Left padding, requested hidden states or attentions, a cache,
hooks on a layer, and any call a fused layer would not take run the padded layers.

A layer that does not fuse as a whole (LoRA on its projections) still gets its two output blocks' dropout, add and
LayerNorm as one node each with the native kernels (:class:`_AddNorm`, :func:`add_norm_forward`: 1.028x per MiniLM
LoRA step).

:func:`hone.model.cpu_kernels.cpu_kernels` switches it on for every qualifying layer (:func:`fusable`); a call
it cannot take (rows over :data:`hone.model.cpu_kernels.ENCODER_ATTENTION_MAX` tokens, a float mask, GPU tensors,
fp16, hooks on the layer's modules, cross-attention or a cache) runs the stock forward, and so does a call
transformers would checkpoint (``gradient_checkpointing_enable``): the node, set on the instance, would otherwise skip
the checkpointing that transformers wraps around the class's forward, and keep every activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hone.model import cpu_kernels as ck
from hone.model import frozen_casts, native, trained_casts

# transformers' copies of BertLayer (same modules, same forward)
LAYER_TYPES = ("BertLayer", "RobertaLayer", "XLMRobertaLayer", "CamembertLayer", "ElectraLayer")


def _gelu(module: nn.Module) -> bool:
    """transformers' exact GELU activation (``hidden_act: gelu``)."""
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu


def encoder_layer(layer: nn.Module) -> bool:
    """Static checks: an encoder layer of :data:`LAYER_TYPES` (no decoder, cross-attention or chunked feed-forward)
    using ``sdpa`` attention."""
    if type(layer).__name__ not in LAYER_TYPES or getattr(layer, "is_decoder", True) \
            or getattr(layer, "add_cross_attention", True) or getattr(layer, "chunk_size_feed_forward", 1):
        return False
    try:
        sa = layer.attention.self
        impl = sa.config._attn_implementation
    except AttributeError:
        return False
    return not (getattr(layer.attention, "is_cross_attention", False) or getattr(sa, "is_causal", False)
                or impl != "sdpa")


def fusable(layer: nn.Module) -> bool:
    """Static checks: an :func:`encoder_layer` built from plain modules."""
    if not encoder_layer(layer):
        return False
    try:
        sa, so, it, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
        linears = (sa.query, sa.key, sa.value, so.dense, it.dense, out.dense)
        norms, drops = (so.LayerNorm, out.LayerNorm), (sa.dropout, so.dropout, out.dropout)
        act = it.intermediate_act_fn
    except AttributeError:
        return False
    return (all(type(m) is nn.Linear and m.bias is not None for m in linears)
            and all(type(m) is nn.LayerNorm and m.elementwise_affine and m.bias is not None for m in norms)
            and all(type(m) is nn.Dropout for m in drops) and _gelu(act))


def _stack(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The tensors concatenated along the first dimension, in ``dtype`` (cast in the same copy)."""
    return torch.cat(parts, out=torch.empty(sum(p.shape[0] for p in parts), *parts[0].shape[1:], dtype=dtype))


def _weights(linear: nn.Linear, amp: torch.dtype | None, ct: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer's weight and bias in the compute dtype (the kept cast of a frozen layer, if armed, or the
    optimizer's copy of a trained one: :mod:`hone.model.trained_casts`)."""
    w, b = frozen_casts.amp_weights(linear, amp)
    kept = trained_casts.stacked([w], amp)  # the optimizer's copy of a trained weight, if current
    return w.to(ct) if kept is None else kept, b.to(ct)


def _dropout_add(residual: torch.Tensor, x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``residual + dropout(x)`` in the residual's dtype, with the mask and its scale."""
    if not p:
        return residual + x, None, 1.0
    mask, scale = ck.keep_mask(x.shape, p)
    return torch.addcmul(residual, x, ck._as_float(mask, x.dtype), value=scale), mask, scale


def _dropout_grad(grad: torch.Tensor, mask: torch.Tensor | None, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``grad * mask * scale`` rounded once to ``dtype``."""
    out = torch.empty(grad.shape, dtype=dtype)
    return out.copy_(grad) if mask is None else ck._masked_scaled(grad, mask, scale, out=out)


def _add_norm(residual: torch.Tensor, x: torch.Tensor, p: float, norm: nn.LayerNorm, cast: torch.dtype | None,
              ids: torch.Tensor | None = None):
    """``LayerNorm(residual + dropout(x))``, and its input cast to ``cast`` if given (the next product's), with what the
    backward needs: ``(y, y_cast, (r, mean, rstd, mask), drop)``.  With the native kernels one pass per row
    (``hone_add_layer_norm``: the mask drawn from its seed, the same mask :func:`ck.keep_mask` would draw, and drawn
    again in the backward), ``drop`` then ``(seed, dropped, keep scale, library, ids)``; else torch's ops, ``drop`` the
    keep scale.  ``ids`` (int64, one per row) numbers the rows for the native mask: a packed batch's rows draw their
    padded batch's rows of it."""
    lib = native.library()
    rows, hidden = x.shape
    g, b = norm.weight, norm.bias
    if (lib is None or not ck.native_norm_width(hidden) or x.dtype not in (torch.float32, torch.bfloat16)
            or not x.is_contiguous() or residual.dtype != torch.float32 or residual.stride(-1) != 1
            or residual.shape != x.shape or not (g.is_contiguous() and b.is_contiguous())):
        r, mask, scale = _dropout_add(residual, x, p)
        y, mean, rstd = torch.native_layer_norm(r, (hidden,), g, b, norm.eps)
        return y, None if cast is None else y.to(cast), (r, mean, rstd, mask), scale
    seed, dropped, keep_scale = ck._dropout_draw(p) if p else (0, 0, 1.0)
    r, y, mean, rstd = (torch.empty(rows, hidden), torch.empty(rows, hidden), torch.empty(rows), torch.empty(rows))
    yc = torch.empty(rows, hidden, dtype=cast) if cast == torch.bfloat16 else None  # (it writes bf16 copies only)
    code = lib.hone_add_layer_norm(rows, hidden, residual.data_ptr(), residual.stride(0), x.data_ptr(),
                                   int(x.dtype == torch.bfloat16), seed, dropped, keep_scale, g.data_ptr(),
                                   b.data_ptr(), norm.eps, r.data_ptr(), y.data_ptr(),
                                   None if yc is None else yc.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
                                   None if ids is None else ids.data_ptr())
    if code:
        raise RuntimeError(f"native add & norm refused width {hidden}")
    if cast is not None and yc is None:
        yc = y.to(cast)
    return y, yc, (r, mean, rstd, None), (seed, dropped, keep_scale, lib, ids)


def _norm_backward(gy: torch.Tensor, saved: tuple, norm_params: tuple, need_params: tuple[bool, bool], drop,
                   dtype: torch.dtype):
    """The gradients of :func:`_add_norm` for the output gradient ``gy`` (fp32): the residual's (fp32), the dropout
    branch's in ``dtype``, the norm's weight's and bias's (None where not needed)."""
    r, mean, rstd, mask = saved
    g, b = norm_params
    hidden = r.shape[-1]
    if not isinstance(drop, tuple):
        gr, gg, gb = torch.ops.aten.native_layer_norm_backward(gy, r, (hidden,), mean, rstd, g, b,
                                                               (True, *need_params))
        return gr, _dropout_grad(gr, mask, drop, dtype), gg, gb
    seed, dropped, keep_scale, lib, ids = drop
    gy = gy.contiguous()
    gr, gx = torch.empty(r.shape), torch.empty(r.shape, dtype=dtype)
    gg, gb = (torch.empty(hidden), torch.empty(hidden)) if any(need_params) else (None, None)
    code = lib.hone_layer_norm_backward(r.shape[0], hidden, gy.data_ptr(), r.data_ptr(), mean.data_ptr(),
                                        rstd.data_ptr(), g.data_ptr(), seed, dropped, keep_scale, gr.data_ptr(),
                                        gx.data_ptr(), int(dtype == torch.bfloat16),
                                        None if gg is None else gg.data_ptr(), None if gb is None else gb.data_ptr(),
                                        None if ids is None else ids.data_ptr())
    if code:
        raise MemoryError("native add & norm backward could not allocate its partial sums") if code == 2 else \
            RuntimeError(f"native add & norm backward refused width {hidden}")
    return gr, gx, gg if need_params[0] else None, gb if need_params[1] else None


def _weight_grads(grad: torch.Tensor, x: torch.Tensor, need_w: bool, need_b: bool):
    """``grad^T x`` and ``grad`` summed over rows (a linear layer's weight and bias gradients) in fp32: the
    products and sums in the compute dtype, then cast, as autocast's ``ToCopyBackward`` gives them."""
    return (torch.mm(grad.t(), x).float() if need_w else None,
            grad.sum(0).float() if need_b else None)


class _BertLayer(torch.autograd.Function):
    """One BERT layer: self-attention, output projection, dropout, residual, LayerNorm, GELU feed-forward,
    dropout, residual, LayerNorm; products in autocast's bf16 (or fp32 without autocast), norms and residuals
    in fp32.  The parameters are inputs (for their gradients); ``layer`` gives their casts and settings.

    With ``first`` the layer is computed for the first position only, as :func:`hone.model.fast.first_token_only`
    does (keys and values for every position, everything else for position 0): the output is (batch, 1, hidden).

    With a :class:`hone.model.cpu_kernels.Packing` in place of the mask, ``x`` is a packed batch's (rows, hidden) and
    so is the output (without ``first``): every product, norm and activation runs on the real tokens only."""

    @staticmethod
    def forward(ctx, x, mask, wq, bq, wk, bk, wv, bv, wo, bo, g1, b1, wi, bi, wf, bf, g2, b2, layer, amp, first):
        sa, so, it, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
        ct = amp or torch.float32
        train = layer.training
        packing = mask if isinstance(mask, ck.Packing) else None
        batch, t, hidden = (x.shape if packing is None else (packing.batch, packing.width, x.shape[-1]))
        heads, d = sa.num_attention_heads, hidden // sa.num_attention_heads
        with torch.autocast("cpu", enabled=False):
            x2 = x.reshape(-1, hidden)
            xc = x2.to(ct)
            projections = (sa.key, sa.value) if first else (sa.query, sa.key, sa.value)
            casts = [frozen_casts.amp_weights(m, amp) for m in projections]
            w_in = trained_casts.stacked([w for w, _ in casts], amp)
            w_in = _stack([w for w, _ in casts], ct) if w_in is None else w_in
            b_in = _stack([b for _, b in casts], ct)
            proj = torch.addmm(b_in, xc, w_in.t())
            proj = proj.view(batch, t, len(projections), heads, d) if packing is None else \
                proj.view(1, packing.padded_rows, len(projections), heads, d)
            k, v = proj[:, :, -2].transpose(1, 2), proj[:, :, -1].transpose(1, 2)
            if first:  # the query of position 0 only; its residual stream and mask row
                wq_c, bq_c = _weights(sa.query, amp, ct)
                xq = xc.view(batch, t, hidden)[:, 0] if packing is None else xc.index_select(0, packing.firsts)
                q = torch.addmm(bq_c, xq, wq_c.t()).view(batch, 1, heads, d).transpose(1, 2)
                residual = x[:, 0] if packing is None else x2.index_select(0, packing.firsts)
                # (``mask``, if any, is already the first query's row: see _fused)
            else:
                wq_c, q, residual = None, proj[:, :, 0].transpose(1, 2), x2
            p_att = sa.dropout.p if train else 0.0
            if packing is None:
                att, att_saved, att_meta = ck.attend(q, k, v, mask, False, p_att, sa.scaling, ct)
            else:
                att, att_saved, att_meta = ck.attend_packed(q, k, v, packing, not first, p_att, sa.scaling, ct)
            att = att.view(-1, hidden)
            ids = None if packing is None or first else packing.row_ids  # the padded rows' dropout masks
            wo_c, bo_c = _weights(so.dense, amp, ct)
            h1, h1c, (r1, mean1, rstd1, m1), d1 = _add_norm(residual, torch.addmm(bo_c, att, wo_c.t()),
                                                            so.dropout.p if train else 0.0, so.LayerNorm, ct, ids)
            wi_c, bi_c = _weights(it.dense, amp, ct)
            pre = torch.addmm(bi_c, h1c, wi_c.t())
            act = F.gelu(pre)
            wf_c, bf_c = _weights(out.dense, amp, ct)
            y, _, (r2, mean2, rstd2, m2), d2 = _add_norm(h1, torch.addmm(bf_c, act, wf_c.t()),
                                                         out.dropout.p if train else 0.0, out.LayerNorm, None, ids)
        ctx.save_for_backward(xc, w_in, wq_c, att, wo_c, m1, r1, mean1, rstd1, g1, b1, h1c, wi_c, pre, act, wf_c, m2,
                              r2, mean2, rstd2, g2, b2, *att_saved)
        ctx.att_meta, ctx.drops, ctx.heads, ctx.ct, ctx.first = att_meta, (d1, d2), heads, ct, first
        ctx.shape, ctx.packing = (batch, t, hidden), packing
        if first:
            return y.view(batch, 1, hidden)
        return y.view(batch, t, hidden) if packing is None else y

    @staticmethod
    def backward(ctx, grad):
        (xc, w_in, wq_c, att, wo_c, m1, r1, mean1, rstd1, g1, b1, h1c, wi_c, pre, act, wf_c, m2,
         r2, mean2, rstd2, g2, b2, *att_saved) = ctx.saved_tensors
        (batch, t, hidden), packing = ctx.shape, ctx.packing
        heads, ct, (d1, d2), first = ctx.heads, ctx.ct, ctx.drops, ctx.first
        d = hidden // heads
        need = ctx.needs_input_grad
        with torch.autocast("cpu", enabled=False):
            g = grad.reshape(-1, hidden).float()
            gr2, gf, gg2, gb2 = _norm_backward(g, (r2, mean2, rstd2, m2), (g2, b2), (need[16], need[17]), d2, ct)
            # each gradient is dropped after its last use (``del``): the node's peak memory is one step of the chain
            gwf, gbf = _weight_grads(gf, act, need[14], need[15])
            gpre = torch.ops.aten.gelu_backward(torch.mm(gf, wf_c), pre)
            del gf
            gwi, gbi = _weight_grads(gpre, h1c, need[12], need[13])
            gh1 = gr2.add_(torch.mm(gpre, wi_c))  # the residual's gradient plus the feed-forward input's
            del gpre, gr2
            gr1, go, gg1, gb1 = _norm_backward(gh1, (r1, mean1, rstd1, m1), (g1, b1), (need[10], need[11]), d1, ct)
            del gh1
            gwo, gbo = _weight_grads(go, att, need[8], need[9])
            # (batch, query rows, heads, dim); a packed batch's as one row of all its tokens
            g_att = torch.mm(go, wo_c).view(1 if packing is not None and not first else batch, -1, heads, d)
            del go
            n_in = w_in.shape[0] // hidden  # 3 projections stacked (q, k, v), or 2 (k, v) with ``first``
            g_in = torch.empty(batch, t, n_in, heads, d, dtype=ct) if packing is None else \
                torch.empty(1, packing.padded_rows, n_in, heads, d, dtype=ct)
            if packing is not None:
                g_in[:, packing.rows:].zero_()  # (rows attention does not write)
            g_q = torch.empty(batch, 1, heads, d, dtype=ct) if first else g_in[:, :, 0]
            ck.attend_backward(tuple(att_saved), ctx.att_meta, g_att, (True, True, True), (ct,) * 3,
                               outs=(g_q, g_in[:, :, -2], g_in[:, :, -1]))
            del g_att
            g_in = g_in.view(-1, n_in * hidden)
            gw, gb = _weight_grads(g_in, xc, any(need[2:8:2]), any(need[3:8:2]))
            gx = None
            if first:
                g_q = g_q.view(batch, hidden)
                xq = xc.view(batch, t, hidden)[:, 0] if packing is None else xc.index_select(0, packing.firsts)
                gwq, gbq = _weight_grads(g_q, xq, need[2], need[3])
                if need[0]:  # every position's from the keys and values; position 0's also from the query and residual
                    gx = torch.mm(g_in, w_in).float()
                    if packing is None:
                        gx = gx.view(batch, t, hidden)
                        gx[:, 0].add_(gr1).add_(torch.mm(g_q, wq_c))
                    else:
                        gx.index_add_(0, packing.firsts, gr1.add_(torch.mm(g_q, wq_c)))
            elif need[0]:
                gx = gr1.add_(torch.mm(g_in, w_in))
                gx = gx.view(batch, t, hidden) if packing is None else gx

        def part(full: torch.Tensor | None, i: int, index: int) -> torch.Tensor | None:
            """Rows ``i`` of a stacked gradient, if input ``index`` needs one."""
            return None if full is None or not need[index] else full[i * hidden:(i + 1) * hidden]

        k0 = n_in - 2  # the key's block in the stacked projections
        q_grads = (gwq if need[2] else None, gbq if need[3] else None) if first else (part(gw, 0, 2), part(gb, 0, 3))
        return (gx, None, *q_grads, part(gw, k0, 4), part(gb, k0, 5), part(gw, k0 + 1, 6), part(gb, k0 + 1, 7),
                gwo, gbo, gg1, gb1, gwi, gbi, gwf, gbf, gg2, gb2, None, None, None)


# the layers' "dense, dropout, add, LayerNorm" output blocks (BertSelfOutput, BertOutput and their copies)
OUTPUT_TYPES = tuple(f"{m}{o}" for m in ("Bert", "Roberta", "XLMRoberta", "Camembert", "Electra")
                     for o in ("SelfOutput", "Output"))


def add_norm_output(module: nn.Module) -> bool:
    """Static checks: an output block of :data:`OUTPUT_TYPES` with a plain dropout and an affine LayerNorm (its
    ``dense`` may be anything: a LoRA layer keeps its own node)."""
    norm = getattr(module, "LayerNorm", None)
    return (type(module).__name__ in OUTPUT_TYPES and hasattr(module, "dense")
            and type(getattr(module, "dropout", None)) is nn.Dropout and type(norm) is nn.LayerNorm
            and norm.elementwise_affine and norm.bias is not None)


class _AddNorm(torch.autograd.Function):
    """``LayerNorm(residual + dropout(x))`` as one node (:func:`_add_norm`, the fused layer's step): the output blocks
    of BERT layers that do not fuse as a whole (LoRA on their projections)."""

    @staticmethod
    def forward(ctx, residual, x, weight, bias, p, norm):
        shape = x.shape
        with torch.autocast("cpu", enabled=False):
            y, _, saved, drop = _add_norm(residual.reshape(-1, shape[-1]), x.reshape(-1, shape[-1]), p, norm, None)
        ctx.save_for_backward(*saved, weight, bias)  # (the mask is None on the native path)
        ctx.drop, ctx.dtypes = drop, (residual.dtype, x.dtype)
        return y.view(shape)

    @staticmethod
    def backward(ctx, grad):
        *saved, weight, bias = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            gr, gx, gw, gb = _norm_backward(grad.reshape(-1, grad.shape[-1]).float(), saved, (weight, bias),
                                            ctx.needs_input_grad[2:4], ctx.drop, ctx.dtypes[1])
        return gr.to(ctx.dtypes[0]).view(grad.shape), gx.view(grad.shape), gw, gb, None, None


def add_norm_forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
    """An output block's forward with its dropout, add and LayerNorm as :class:`_AddNorm` (CPU tensors, an fp32
    residual stream, no hooks on the dropout or the norm), else as the stock block computes them."""
    x = self.dense(hidden_states)
    norm = self.LayerNorm
    if (native.library() is None or not (x.is_cpu and input_tensor.is_cpu) or input_tensor.dtype != torch.float32
            or x.dtype not in (torch.float32, torch.bfloat16) or x.shape != input_tensor.shape
            or norm.weight.dtype != torch.float32 or any(m._forward_hooks or m._forward_pre_hooks
                                                          for m in (self.dropout, norm))):
        return norm(self.dropout(x) + input_tensor)
    return _AddNorm.apply(input_tensor, x, norm.weight, norm.bias, self.dropout.p if self.dropout.training else 0.0,
                          norm)


def _hooked(layer: nn.Module) -> bool:
    """Does a module inside the layer have hooks, which the fused node would skip (transformers records
    attention weights with one on the self-attention, installed at the first ``output_attentions`` call)?  Hooks on
    the layer itself run as usual."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               for m in layer.modules() if m is not layer) \
        or bool(nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)


def _params(layer) -> list[torch.Tensor]:
    sa, so, it, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
    return [t for m in (sa.query, sa.key, sa.value, so.dense, so.LayerNorm, it.dense, out.dense, out.LayerNorm)
            for t in (m.weight, m.bias)]


def _checkpointed(layer: nn.Module) -> bool:
    """Would transformers checkpoint this call of the layer (``gradient_checkpointing_enable``)?  Its class forward
    does; the fused node, set on the instance, would keep every activation instead, so such calls run the stock
    forward."""
    return bool(getattr(layer, "gradient_checkpointing", False)) and layer.training and torch.is_grad_enabled()


def _takes(layer, x, encoder_hidden_states, args, kwargs, amp, params: list[torch.Tensor]) -> bool:
    """The call's checks that do not depend on the mask: no cross-attention, cache, recorded attentions, hooks or
    gradient checkpointing, an fp32 CPU input and parameters (``params``, the layer's), fp32 or bf16 autocast."""
    return not (args or encoder_hidden_states is not None or kwargs.get("cache") is not None or _checkpointed(layer)
                or kwargs.get("output_attentions") or amp not in (None, torch.bfloat16)
                or x.dim() != 3 or x.dtype != torch.float32 or not x.is_cpu
                or x.shape[2] % layer.attention.self.num_attention_heads
                or any(p.dtype != torch.float32 or not p.is_cpu for p in params) or _hooked(layer))


def _fused(layer, x, mask, encoder_hidden_states, args, kwargs, first: bool) -> torch.Tensor | None:
    """The layer's output through :class:`_BertLayer`, or None when the call does not qualify."""
    amp = ck._autocast_dtype()
    params = _params(layer)
    if not _takes(layer, x, encoder_hidden_states, args, kwargs, amp, params):
        return None
    batch, t, hidden = x.shape
    heads = layer.attention.self.num_attention_heads
    if first and mask is not None and mask.dim() == 4:
        mask = mask[:, :, :1]  # the first query's row of the mask
    if not ck._short_attention_ok((batch, heads, 1 if first else t, hidden // heads), heads, t,
                                  (amp or torch.float32,), True, mask, amp, max_keys=ck.ENCODER_ATTENTION_MAX):
        return None
    return _BertLayer.apply(x, mask, *params, layer, amp, first)


def fused_forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
    """``BertLayer.forward`` through :class:`_BertLayer` when the call qualifies, else the stock forward."""
    y = _fused(self, hidden_states, attention_mask, encoder_hidden_states, args, kwargs, first=False)
    if y is None:
        return type(self).forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    return y


def fused_first_token_forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
    """:func:`hone.model.fast.first_token_only`'s forward of the last layer (its output at position 0 only)
    through :class:`_BertLayer` when the call qualifies, else that module's own."""
    y = _fused(self, hidden_states, attention_mask, encoder_hidden_states, args, kwargs, first=True)
    if y is None:
        from hone.model.fast import _first_token_forward  # (hone.model.fast imports this module)

        return _first_token_forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
    return y


# transformers' encoders of those layers (a ``layer`` list run in order, the same forward)
ENCODER_TYPES = tuple(f"{m}Encoder" for m in ("Bert", "Roberta", "XLMRoberta", "Camembert", "Electra"))
# the keyword arguments transformers' models pass their encoder that the packed forward takes (when empty or off)
_PACKED_KWARGS = frozenset({"encoder_hidden_states", "encoder_attention_mask", "cache", "use_cache", "position_ids",
                            "output_attentions", "output_hidden_states", "return_dict"})
PACK = True  # the switch for A/B measurements


def packable(encoder: nn.Module) -> bool:
    """Static checks: an encoder of :data:`ENCODER_TYPES` of :func:`encoder_layer` layers."""
    layers = getattr(encoder, "layer", None)
    return (type(encoder).__name__ in ENCODER_TYPES and isinstance(layers, nn.ModuleList) and len(layers) > 0
            and all(encoder_layer(m) for m in layers))


def _layer_kinds(layers: list[nn.Module]) -> list[str] | None:
    """How each layer runs packed: ``fused`` (:class:`_BertLayer`), ``stock`` (its own modules, transformers'
    attention routed to the packed kernel), ``fused_first`` / ``stock_first`` (the last layer on its first position,
    :func:`hone.model.fast.first_token_only`); None when a layer has another forward."""
    from hone.model import fast  # (it imports this module)

    kinds = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        f = getattr(layer.__dict__.get("forward"), "__func__", None)
        if f is fused_forward:
            kinds.append("fused")
        elif last and f is fused_first_token_forward:
            kinds.append("fused_first")
        elif "forward" not in layer.__dict__:
            kinds.append("stock")
        elif last and f is fast._first_token_forward:
            kinds.append("stock_first")
        else:
            return None
    return kinds


def _first_token_packed(layer: nn.Module, y: torch.Tensor, packing: ck.Packing) -> torch.Tensor:
    """:func:`hone.model.fast._first_token_forward` of a layer that keeps its own modules, for a packed batch's
    (rows, hidden): (batch, 1, hidden)."""
    sa = layer.attention.self
    heads, d = sa.num_attention_heads, sa.attention_head_size
    first = y.index_select(0, packing.firsts)[:, None]
    q = sa.query(first).view(packing.batch, 1, heads, d).transpose(1, 2)
    k = sa.key(y[None]).view(1, -1, heads, d).transpose(1, 2)
    v = sa.value(y[None]).view(1, -1, heads, d).transpose(1, 2)
    out = ck._PackedAttention.apply(q, k, v, packing, False, sa.dropout.p if sa.training else 0.0, sa.scaling,
                                    ck._autocast_dtype() or q.dtype)
    attn = layer.attention.output(out.reshape(packing.batch, 1, -1).contiguous(), first)
    return layer.output(layer.intermediate(attn), attn)


def _key_padding(mask: torch.Tensor | None, batch: int, t: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (batch, t) key mask of a 4-d boolean attention mask that only hides right padding (the same row for every
    query and head, each sequence's tokens first, at least one), and the sequences' lengths, when some sequence is
    padded; else None."""
    if mask is None or mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[0] != batch \
            or mask.shape[1] != 1 or mask.shape[2] not in (1, t) or mask.shape[3] != t:
        return None
    keys = mask[:, 0, 0]
    if mask.shape[2] > 1 and mask.stride(2) != 0 and not torch.equal(mask[:, 0], keys[:, None].expand(batch, t, t)):
        return None
    lengths = keys.sum(1)
    if int(lengths.min()) < 1 or int(lengths.min()) == t \
            or not torch.equal(keys, torch.arange(t) < lengths[:, None]):
        return None
    return keys, lengths


def _packs(layers: list[nn.Module], hidden: int) -> bool:
    """The checks of :func:`_packed` that do not depend on the call: the native attention (vectors of 8 floats or
    more), heads of at most ``_NATIVE_MAX_DIM`` dimensions, a hidden width the native norms take."""
    lib = native.library()
    return (lib is not None and lib.vector_width >= native.ATTENTION_MIN_LANES
            and layers[0].attention.self.attention_head_size <= ck._NATIVE_MAX_DIM and ck.native_norm_width(hidden))


def packs_padded_batches(model: nn.Module) -> bool:
    """Will :func:`packed_encoder_forward` leave the padding out of this model's right-padded training batches?  True
    when :func:`hone.model.cpu_kernels.cpu_kernels` gave an encoder of the model that forward and the checks that do not
    depend on the call pass (its layers' forwards, the native kernels, the widths, no hooks, no gradient
    checkpointing).  The training loop then does not sort batches by length (``train.bucket: auto``): a packed batch
    costs its real tokens, so bucketing would not make it faster, only gather the longest rows into the same batches
    and raise the peak memory (``bench/RESULTS.md``, session 25)."""
    for module in model.modules():
        if getattr(module.__dict__.get("forward"), "__func__", None) is not packed_encoder_forward:
            continue
        layers = list(module.layer)
        if (_layer_kinds(layers) is not None and _packs(layers, module.config.hidden_size)
                and not any(_hooked(layer) or layer._forward_hooks or layer._forward_pre_hooks
                            or getattr(layer, "gradient_checkpointing", False) for layer in layers)):
            return True
    return False


def _packed(encoder, x, mask, args, kwargs):
    """The encoder's output for a right-padded batch run packed (every layer on the real tokens only: fused layers
    through :class:`_BertLayer`, the others with their own modules and the packed attention), or None when the call
    does not qualify."""
    layers = list(encoder.layer)
    if not PACK or args or any(k not in _PACKED_KWARGS for k in kwargs) or kwargs.get("use_cache") \
            or kwargs.get("output_hidden_states") or kwargs.get("output_attentions") or any(
                kwargs.get(k) is not None for k in ("encoder_hidden_states", "encoder_attention_mask", "cache")):
        return None  # (a cache: prefix tuning's keys and values, which a packed batch would not line up with)
    kinds = _layer_kinds(layers)
    amp = ck._autocast_dtype()
    if kinds is None or x.dim() != 3 or not _packs(layers, x.shape[-1]) or not 1 < x.shape[1] <= ck.ENCODER_ATTENTION_MAX:
        return None
    if any(k.startswith("stock") for k in kinds) and not (ck._ORIGINAL_SDPA and amp in (None, torch.bfloat16)
                                                         and x.dtype == torch.float32 and x.is_cpu):
        return None  # (transformers' attention must reach the short attention, which takes the packed batch)
    if any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers):
        return None  # (the packed forward calls the fused nodes directly, past the layers' hooks)
    params = [_params(layer) if k.startswith("fused") else None for layer, k in zip(layers, kinds)]
    if any((_hooked(layer) or _checkpointed(layer)) if ps is None
           else not _takes(layer, x, kwargs.get("encoder_hidden_states"), (), kwargs, amp, ps)
           for layer, ps in zip(layers, params)):
        return None
    batch, t, hidden = x.shape
    padding = _key_padding(mask, batch, t)
    if padding is None or ck.aligned_rows(int(padding[1].sum())) >= batch * t:
        return None  # (no block of rows to leave out)
    keys, lengths = padding
    packing = ck.Packing(lengths, keys)
    y = F.pad(x.reshape(batch * t, hidden).index_select(0, packing.ids), (0, 0, 0, packing.padded_rows - packing.rows))
    for layer, kind, ps in zip(layers, kinds, params):
        if kind == "stock":
            y = layer(y[None], packing)[0]
        elif kind == "stock_first":
            y = _first_token_packed(layer, y, packing)
        else:
            y = _BertLayer.apply(y, packing, *ps, layer, amp, kind == "fused_first")
    if not kinds[-1].endswith("first"):  # back to the padded layout (zeros at the padding)
        y = y.new_zeros(batch * t, hidden).index_copy(0, packing.ids, y[:packing.rows]).view(batch, t, hidden)
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=y)


def packed_encoder_forward(self, hidden_states, attention_mask=None, *args, **kwargs):
    """The encoder's forward for a right-padded batch with its padding left out (:func:`_packed`); any other call
    runs the stock forward (its layers then fuse one by one, padded)."""
    out = _packed(self, hidden_states, attention_mask, args, kwargs)
    return type(self).forward(self, hidden_states, attention_mask, *args, **kwargs) if out is None else out
