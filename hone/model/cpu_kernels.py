"""CPU training kernels: cheaper dropout masks, a fused RMSNorm, a fused LoRA linear layer and a
batched-product attention for short rows.

Profiling a LoRA step of SmolLM2-135M on a 2-core CPU put ``bernoulli_`` (dropout masks) at 17%
of the step and the LoRA adapters' extra elementwise passes (dropout multiply, ``* scaling``,
``result + ...``) at another 5-6%: more than the weight-gradient GEMMs that LoRA saves.

* :func:`keep_mask` draws a dropout mask from 16-bit uniforms, four per 64-bit word of numpy's
  PCG64 (or of splitmix64 in hone's native kernel), seeded for each mask by one draw of torch's CPU
  generator: 6-10x faster than ``bernoulli_``, and fixed by ``torch.manual_seed`` like any torch op.  The drop
  probability is rounded to a multiple of 1/65536 and the kept values are scaled by the exact inverse of
  the resulting keep rate, so the layer stays unbiased.  The masks are a different random
  stream from torch's, so a run with these kernels is reproducible from its seed but not
  bit-identical to one without them.
* :class:`_RMSNorm` is one autograd node for the Llama-family RMSNorm (``w * x / rms(x)``): the
  stock module is five autograd nodes whose backward (the weight's gradient reduced over a
  broadcast, the input's through pow / mean / rsqrt) took 3.0 ms per call on a 16 x 26 x 576
  fp32 batch, the fused one 1.3 ms; 61 norms per step of SmolLM2-135M.  It saves the normalised
  input and the inverse rms instead of three tensors, and equals the module to float rounding.  With the native
  kernels it is one pass each way (``hone_rms_norm``), saving the input itself and the rows' scales: 1.047x per
  SmolLM2-135M LoRA SFT step, 1.037x per full one.
* :class:`_LoraLinear` is one autograd node for ``W x + b + s * B(A(dropout(x)))`` with
  ``W`` and ``b`` frozen: the adapter's product accumulates into the base output in place
  (``addmm_``), the scalings act on the rank-r activations, the backward adds the adapter's
  input gradient into the base's with one in-place product, and the mask is saved as bytes.
  Without dropout its outputs and gradients equal peft's to float rounding (tested).  With the native
  kernels the input's cast and its dropout are one pass (``hone_mask_cast``), the mask is drawn again in the
  backward rather than saved (``hone_masked_add`` sums the base's and the adapter's input gradients in fp32),
  and layers reading the same input (query / key / value, gate / up) share one cast of it.
* With the native kernels, Llama-family decoders (Llama, Mistral, Qwen2/3) also get :class:`_Rotary`
  (transformers' ``apply_rotary_pos_emb`` for queries and keys as one node: 1.06x per SmolLM2-135M LoRA SFT
  step, the same outputs bit for bit) and :class:`_SwiGLU` (the MLP's ``silu(gate) * up``, one pass each way).
* :func:`_short_attention_forward` stands in for transformers' ``sdpa`` attention function on
  rows of at most 64 tokens in decoders (512 by the native kernel, which then recomputes the probabilities in the
  backward instead of keeping them), 512 in encoders (causal, or bidirectional with a padding mask; dropout with
  :func:`keep_mask`), where SDPA's kernels are overhead-bound: one autograd node
  (:class:`_ShortAttention`).  Where a C compiler is found it runs hone's native kernel
  (:mod:`hone.model.native`, ``native.c``: one pass per batch row and key / value head, inputs read in
  place, dropout from a counter-based generator that the backward draws again); elsewhere two batched products
  with one layout copy per input and output, rows of scores padded to 16 keys for torch's softmax.

:func:`cpu_kernels` switches them on for a model within a ``with`` block (the training loop
does this on CPU, ``train.cpu_kernels``); outside it the model is untouched, and its state
dict never changes.  Anything the fused path does not cover (GPU tensors, DoRA and other LoRA
variants, several active adapters, quantized or trainable base layers, LoRA bias) runs peft's own
forward; a norm runs its own forward outside fp32 CPU tensors; attention runs transformers' own
``sdpa`` function for anything else (longer rows, float masks, GPU, fp16).

Under CPU autocast (``precision: bf16``, the default on a CPU with native bf16) the LoRA layer runs
its products in bf16 as autocast runs peft's (one cast of the input instead of two, the mask applied
in bf16), the norms stay fp32 as they do under autocast, and short attention computes in fp32 from
the bf16 projections (SDPA would run its flash kernel in bf16: on a 2-core Xeon with AMX its backward
alone took 13 ms per SmolLM2 layer), casting each input in the same copy that lays it out.
In-process A/B on that host, SmolLM2-135M shape, batch 16 x 26, loss on the last 4 tokens: a LoRA
step 1.55x and a full step 1.34x faster than with these kernels standing aside under autocast; the
gradients' error against fp32 is that of the stock modules under autocast (tested).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import threading
import types
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hone.model import frozen_casts, native, trained_casts

_LEVELS = 1 << 16
_MASK_CHUNK = 1 << 18  # mask elements drawn per numpy call: 64k 64-bit words


_M64 = (1 << 64) - 1
_PCG_INC = 0xDA3E39CB94B95BDB6C5F3F9A0F2F1E0B  # odd: PCG64's stream
_BITS = threading.local()  # one PCG64 per thread, reseeded for each mask


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _seeded_bits(seed: int) -> np.random.PCG64:
    """This thread's PCG64 with its 128-bit state set from ``seed`` (SplitMix64 of the seed and of the seed with
    its bits flipped).  Setting the state costs about 1 us; constructing a PCG64 from a seed runs numpy's
    SeedSequence hashing, 5 us alone and 26-34 us between a training step's products (cold code), for each
    of the step's masks."""
    bits = getattr(_BITS, "pcg", None)
    if bits is None:
        bits = _BITS.pcg = np.random.PCG64(0)
    state = (_splitmix64(seed) << 64) | _splitmix64(seed ^ _M64)
    bits.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": _PCG_INC}, "has_uint32": 0, "uinteger": 0}
    return bits


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool mask that keeps each element with probability ``1 - p`` (p rounded to 1/65536), and
    the inverse keep rate that makes ``x * mask * scale`` unbiased.

    The 16-bit uniforms come four per 64-bit word from numpy's PCG64, seeded for each mask by one
    draw of torch's CPU generator (:func:`_seeded_bits`; so ``torch.manual_seed`` and a resumed run's restored torch RNG
    state fix every mask).  On a 2-core CPU, PCG64 fills a 416 x 576 mask's 60k words in 0.16 ms
    against 0.40-0.45 ms for torch's mt19937 ``random_``, and numpy's int16 comparison takes 0.02
    ms against torch's 0.12 ms.  With hone's native kernels built (:mod:`hone.model.native`) the uniforms come from
    splitmix64 over a counter instead, in one C loop (a 32 x 16 x 384 mask in 8 µs on 2 cores, against 79 µs
    for PCG64): another random stream, seeded the same way."""
    seed, dropped, scale = _dropout_draw(p)
    n = math.prod(shape)
    mask = torch.empty(shape, dtype=torch.bool)
    lib = native.library()
    if lib is not None:  # the same uniforms from a counter-based generator, 6-10x faster (native.reference_keep_mask)
        lib.hone_keep_mask(mask.data_ptr(), n, seed, dropped)
        return mask, scale
    bits = _seeded_bits(seed)
    out = mask.view(-1).numpy()
    for s in range(0, n, _MASK_CHUNK):  # the mask is torch's memory; numpy only ever holds a 512 kB chunk
        m = min(n - s, _MASK_CHUNK)
        uniform16 = bits.random_raw((m + 3) // 4).view(np.uint16)[:m]  # uniform on [0, 65535]
        np.greater_equal(uniform16, dropped, out=out[s:s + m])
    return mask, scale


def _dropout_draw(p: float) -> tuple[int, int, float]:
    """A mask's seed (one draw of torch's generator), its drop threshold (``p`` rounded to 1/65536) and its keep
    scale (the exact inverse of the resulting keep rate)."""
    dropped = min(round(p * _LEVELS), _LEVELS - 1)
    return int(torch.randint(0, 1 << 62, ())), dropped, _LEVELS / (_LEVELS - dropped)


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The bool mask as 0 / 1 values of ``dtype``.  Converting a bool tensor (``mask.to(dtype)``, or
    multiplying by it) was 4-8x slower on a 2-core CPU than the uint8 conversion; the whole masked
    product is 2.6-2.9x cheaper this way (416 x 576 and 416 x 1536)."""
    return mask.view(torch.uint8).to(dtype)


def _masked_scaled(x: torch.Tensor, mask: torch.Tensor, scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x * mask * scale`` in one pass (``addcmul`` onto a broadcast zero), equal bit for bit to ``x.mul(mask)``
    followed by ``mul_(scale)``: the mask's product is exact and either way the scale rounds once.  On a
    2-core CPU 17 against 27 us for a 32 x 16 x 384 bf16 tensor."""
    return torch.addcmul(torch.zeros((), dtype=x.dtype), x, _as_float(mask, x.dtype), value=scale, out=out)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        mask, scale = keep_mask(x.shape, p)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return _masked_scaled(x, mask, scale)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return _masked_scaled(grad, mask, ctx.scale), None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of a CPU tensor with :func:`keep_mask`'s masks."""
    return _Dropout.apply(x, p)


def _dropout_forward(self: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    if not self.training or self.p == 0 or self.inplace or not x.is_cpu or not x.is_floating_point():
        return type(self).forward(self, x)
    return dropout(x, self.p)


def _autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype when autocast is on (bf16 on a CPU with native bf16: ``train.precision``), else None."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


_CAST = threading.local()  # the last input cast by a LoRA layer under autocast, for the next layer reading it


def _cached_cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """The 2-D ``dtype`` cast of ``x`` that the previous LoRA layer made, if it read this very tensor unchanged
    (the query, key and value projections read one input, as do the MLP's gate and up projections), else None."""
    last = getattr(_CAST, "last", None)
    if last is None or x.is_inference():  # (inference tensors keep no version counter: never cached)
        return None
    ref, version, cast = last
    return cast if ref() is x and x._version == version and cast.dtype == dtype else None


def _remember_cast(x: torch.Tensor, cast: torch.Tensor) -> None:
    if not x.is_inference():
        _CAST.last = (weakref.ref(x), x._version, cast)


def _amp_cast(x: torch.Tensor, x2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x2`` (``x`` as 2-D) in ``dtype``, shared with the layers reading the same input."""
    if x2.dtype == dtype:
        return x2
    cast = _cached_cast(x, dtype)
    if cast is None:
        cast = x2.to(dtype)
        _remember_cast(x, cast)
    return cast


class _LoraLinear(torch.autograd.Function):
    """``x W^T + b + scale * (dropout(x) A^T) B^T``; ``W`` and ``b`` frozen, ``A`` / ``B`` trained.

    With ``amp`` (CPU autocast's dtype, bf16) every product runs in that dtype, as autocast runs peft's
    layer: the input is cast once (peft casts it for the base layer and again, after dropout, for
    ``lora_A``), the output is in ``amp``, and the gradients come back in the parameters' and the
    input's own dtypes."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale, p, amp=None):
        shape, dtypes = x.shape, (x.dtype, lora_a.dtype, lora_b.dtype)
        x2 = x.reshape(-1, shape[-1])
        dtype = amp or x.dtype
        if amp is not None:
            weight, lora_a, lora_b = (t.to(amp) for t in (weight, lora_a, lora_b))
            bias = None if bias is None else bias.to(amp)
        mask = drop = None
        lib = native.library() if p > 0 else None
        if lib is not None and x2.is_contiguous() and {x2.dtype, dtype} <= {torch.float32, torch.bfloat16}:
            # native: the cast and the dropout in one pass, the mask drawn again in the backward instead of saved
            seed, dropped, keep_scale = _dropout_draw(p)
            cast = x2 if x2.dtype == dtype else _cached_cast(x, dtype)
            fresh = cast is None  # then the kernel writes the cast too
            if fresh:
                cast = torch.empty(x2.shape, dtype=dtype)
            xd = torch.empty(x2.shape, dtype=dtype)
            lib.hone_mask_cast(x2.numel(), x2.data_ptr(), int(x2.dtype == torch.bfloat16),
                               cast.data_ptr() if fresh else None, xd.data_ptr(), int(dtype == torch.bfloat16),
                               seed, dropped)
            if fresh:
                _remember_cast(x, cast)
            x2, drop, scale = cast, (seed, dropped, lib), scale * keep_scale
        else:
            x2 = _amp_cast(x, x2, dtype)
            if p > 0:
                mask, keep_scale = keep_mask(x2.shape, p)
                xd = x2.mul(_as_float(mask, x2.dtype))
                scale = scale * keep_scale
            else:
                xd = x2
        h = torch.mm(xd, lora_a.t()).mul_(scale)  # rank-r activations, scaled once
        y = F.linear(x2, weight, bias)
        y.addmm_(h, lora_b.t())
        ctx.save_for_backward(weight, lora_a, lora_b, xd, h, mask)
        ctx.scale, ctx.in_shape, ctx.dtypes, ctx.drop = scale, shape, dtypes, drop
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        weight, lora_a, lora_b, xd, h, mask = ctx.saved_tensors
        x_dtype, a_dtype, b_dtype = ctx.dtypes
        g2 = grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
        dh = torch.mm(g2, lora_b).mul_(ctx.scale)
        grad_a = torch.mm(dh.t(), xd).to(a_dtype) if ctx.needs_input_grad[3] else None
        grad_b = torch.mm(g2.t(), h).to(b_dtype) if ctx.needs_input_grad[4] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(g2, weight)
            if ctx.drop is not None:  # base + adapter through the mask drawn again, summed in fp32 in x's dtype
                seed, dropped, lib = ctx.drop
                adapter, out = torch.mm(dh, lora_a), torch.empty(grad_x.shape, dtype=x_dtype)
                lib.hone_masked_add(out.numel(), grad_x.data_ptr(), adapter.data_ptr(),
                                    int(grad_x.dtype == torch.bfloat16), out.data_ptr(), int(x_dtype == torch.bfloat16),
                                    seed, dropped)
                grad_x = out
            elif mask is None:
                grad_x.addmm_(dh, lora_a)
            else:
                grad_x.addcmul_(torch.mm(dh, lora_a), _as_float(mask, grad_x.dtype))
            grad_x = grad_x.to(x_dtype).view(ctx.in_shape)
        return grad_x, None, None, grad_a, grad_b, None, None, None


class _RMSNorm(torch.autograd.Function):
    """``w * x * rsqrt(mean(x^2) + eps)`` over the last dimension, fp32.  With the native kernels one pass each way
    (``hone_rms_norm``), saving the input itself and the rows' scales instead of the normalised input."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        x2 = x.reshape(-1, x.shape[-1])
        rows, width = x2.shape
        lib = native.library()
        ctx.lib = lib if (lib is not None and native_norm_width(width) and x2.is_contiguous()
                          and weight.is_contiguous() and x2.dtype == weight.dtype == torch.float32) else None
        if ctx.lib is not None:
            y, rstd = torch.empty_like(x2), torch.empty(rows)
            if lib.hone_rms_norm(rows, width, x2.data_ptr(), weight.data_ptr(), eps, y.data_ptr(), rstd.data_ptr()):
                raise RuntimeError(f"native RMSNorm refused width {width}")
            ctx.save_for_backward(x2, rstd, weight)
            return y.view(x.shape)
        rstd = x2.pow(2).mean(-1, keepdim=True).add_(eps).rsqrt_()
        xhat = x2 * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return (xhat * weight).view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if ctx.lib is not None:
            x2, rstd, weight = ctx.saved_tensors
            g2 = grad.reshape(-1, x2.shape[1]).contiguous()
            gx = torch.empty_like(x2)
            gw = torch.empty(x2.shape[1]) if ctx.needs_input_grad[1] else None
            code = ctx.lib.hone_rms_norm_backward(x2.shape[0], x2.shape[1], g2.data_ptr(), x2.data_ptr(),
                                                  rstd.data_ptr(), weight.data_ptr(), gx.data_ptr(),
                                                  None if gw is None else gw.data_ptr())
            if code:
                raise MemoryError("native RMSNorm backward could not allocate its partial sums") if code == 2 else \
                    RuntimeError(f"native RMSNorm backward refused width {x2.shape[1]}")
            return gx.view(grad.shape) if ctx.needs_input_grad[0] else None, gw, None
        xhat, rstd, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        grad_w = (g2 * xhat).sum(0) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            gw = g2 * weight
            dot = (gw * xhat).sum(-1, keepdim=True).div_(xhat.shape[-1])
            grad_x = gw.sub_(xhat * dot).mul_(rstd).view(grad.shape)
        return grad_x, grad_w, None


def native_norm_width(width: int) -> bool:
    """Do the native norms (RMSNorm, the BERT layer's add & norm) take rows this wide?  Whole 16-float vectors, at most
    ``MAX_NORM_H`` (4096) in ``native.c``."""
    return width % 16 == 0 and width <= 4096


# transformers' RMSNorm classes that compute exactly ``weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)``
# (Gemma's scales by 1 + weight and is not among them)
RMS_NORM_TYPES = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "Phi3RMSNorm")


def _rms_norm_forward(self, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if not x.is_cpu or x.dtype != torch.float32 or w.dtype != torch.float32 or w.shape != x.shape[-1:]:
        return type(self).forward(self, x)  # (autocast leaves the norm's own ops in fp32 too: the same result)
    return _RMSNorm.apply(x, w, float(self.variance_epsilon))


class _SwiGLU(torch.autograd.Function):
    """``silu(g) * u`` (the Llama family's MLP activation) by the native kernel: one pass forward, one backward,
    computed in fp32 and rounded once; saves ``g`` and ``u`` (torch's two nodes keep ``silu(g)`` as well)."""

    @staticmethod
    def forward(ctx, g, u, lib):
        out = torch.empty_like(g)
        lib.hone_swiglu(g.numel(), g.data_ptr(), u.data_ptr(), out.data_ptr(), int(g.dtype == torch.bfloat16))
        ctx.save_for_backward(g, u)
        ctx.lib = lib
        return out

    @staticmethod
    def backward(ctx, grad):
        g, u = ctx.saved_tensors
        grad = grad.to(g.dtype).contiguous()
        dg = torch.empty_like(g) if ctx.needs_input_grad[0] else None
        du = torch.empty_like(u) if ctx.needs_input_grad[1] else None
        ctx.lib.hone_swiglu_backward(g.numel(), grad.data_ptr(), g.data_ptr(), u.data_ptr(),
                                     None if dg is None else dg.data_ptr(), None if du is None else du.data_ptr(),
                                     int(g.dtype == torch.bfloat16))
        return dg, du, None


# transformers' MLPs computing ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``; taken when act_fn is SiLU
SWIGLU_MLP_TYPES = ("LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP")


def _swiglu_mlp(module: nn.Module) -> bool:
    return (type(module).__name__ in SWIGLU_MLP_TYPES and type(getattr(module, "act_fn", None)).__name__
            in ("SiLU", "SiLUActivation") and all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj")))


def _swiglu_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    g, u = self.gate_proj(x), self.up_proj(x)
    lib = native.library()
    if (lib is None or not (g.is_cpu and u.is_cpu) or g.dtype not in (torch.float32, torch.bfloat16)
            or u.dtype != g.dtype or u.shape != g.shape or not (g.is_contiguous() and u.is_contiguous())):
        return self.down_proj(self.act_fn(g) * u)
    return self.down_proj(_SwiGLU.apply(g, u, lib))


class _Rotary(torch.autograd.Function):
    """transformers' ``apply_rotary_pos_emb`` (Llama family) for the queries and keys at once, by the native kernel:
    one pass forward and one backward, where torch runs two products, a negation, a ``cat`` and a sum for each, and
    their backwards.  The outputs are fp32 (torch's promotion with the fp32 tables) in the inputs' layouts, equal bit
    for bit to torch's; the gradients are computed in fp32 and rounded once to the inputs' dtypes."""

    @staticmethod
    def forward(ctx, q, k, cos, sin, lib):
        oq, ok = torch.empty_like(q, dtype=torch.float32), torch.empty_like(k, dtype=torch.float32)
        _rotate(lib, 0, q, k, oq, ok, cos, sin)
        ctx.save_for_backward(cos, sin)
        ctx.lib, ctx.layouts = lib, ((q.dtype, oq.stride()), (k.dtype, ok.stride()))
        return oq, ok

    @staticmethod
    def backward(ctx, gq, gk):
        cos, sin = ctx.saved_tensors
        outs = [torch.empty_strided(g.shape, stride, dtype=dtype) if need else None
                for g, (dtype, stride), need in zip((gq, gk), ctx.layouts, ctx.needs_input_grad[:2])]
        grads = [None if o is None else _last_contiguous(g.float()) for g, o in zip((gq, gk), outs)]
        _rotate(ctx.lib, 1, *grads, *outs, cos, sin)
        return outs[0], outs[1], None, None, None


def _rotate(lib, backward: int, q, k, oq, ok, cos, sin) -> None:
    """``hone_rotary`` on (B, heads, T, D) tensors (None skips one)."""
    x = q if q is not None else k
    b, t, d = x.shape[0], x.shape[2], x.shape[3]
    none = native.View(None, 0, 0, 0, 0)
    vq, vk, voq, vok = (none if y is None else native.view(y) for y in (q, k, oq, ok))
    code = lib.hone_rotary(backward, b, 0 if q is None else q.shape[1], 0 if k is None else k.shape[1], t, d,
                           cos.shape[0], cos.data_ptr(), sin.data_ptr(), vq, vk, voq, vok)
    if code:
        raise RuntimeError(f"native rotary embedding refused head size {d}")


# attention classes whose module's ``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)`` is the standard rotation
ROTARY_ATTENTION_TYPES = ("LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention")
_MAX_ROPE_DIM = 256  # MAX_ROPE_D in native.c


def _rotary_ok(q, k, cos, sin, unsqueeze_dim) -> bool:
    if unsqueeze_dim != 1 or q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or sin.shape != cos.shape:
        return False
    b, _, t, d = q.shape
    return (k.shape[0] == b and k.shape[2:] == (t, d) and cos.shape[1:] == (t, d) and cos.shape[0] in (1, b)
            and d % 2 == 0 and d <= _MAX_ROPE_DIM and q.stride(-1) == 1 and k.stride(-1) == 1
            and all(x.is_cpu for x in (q, k, cos, sin)) and q.dtype in (torch.float32, torch.bfloat16)
            and k.dtype in (torch.float32, torch.bfloat16) and cos.dtype == sin.dtype == torch.float32
            and cos.is_contiguous() and sin.is_contiguous() and not (cos.requires_grad or sin.requires_grad))


def _native_rotary(original):
    def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
        lib = native.library()
        if lib is None or not _rotary_ok(q, k, cos, sin, unsqueeze_dim):
            return original(q, k, cos, sin, unsqueeze_dim)
        return _Rotary.apply(q, k, cos, sin, lib)

    apply_rotary_pos_emb.hone_original = original
    return apply_rotary_pos_emb


@contextmanager
def _native_rotary_routed(model: nn.Module) -> Iterator[int]:
    """Within the block, the ``apply_rotary_pos_emb`` of the modules defining the model's Llama-family attention
    layers runs :class:`_Rotary` (process-wide, as transformers looks the function up in its module; it passes
    anything else to the original); yields how many attention layers that covers."""
    layers = [m for m in model.modules() if type(m).__name__ in ROTARY_ATTENTION_TYPES]
    routed = []
    for name in sorted({type(m).__module__ for m in layers}):
        module = sys.modules.get(name)
        current = getattr(module, "apply_rotary_pos_emb", None)
        if current is None or hasattr(current, "hone_original"):  # (already routed: a nested block)
            continue
        module.apply_rotary_pos_emb = _native_rotary(current)
        routed.append((module, current))
    try:
        yield sum(hasattr(getattr(sys.modules.get(type(m).__module__), "apply_rotary_pos_emb", None), "hone_original")
                  for m in layers)
    finally:
        for module, original in routed:
            module.apply_rotary_pos_emb = original


def _fusable(layer: nn.Module) -> bool:
    """Static checks: a plain frozen nn.Linear base with one vanilla LoRA adapter."""
    base = layer.get_base_layer()
    if type(base) is not nn.Linear or base.weight.requires_grad:
        return False
    if base.bias is not None and base.bias.requires_grad:
        return False
    return not getattr(layer, "fan_in_fan_out", False)


def _lora_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapters = self.active_adapters
    name = adapters[0] if len(adapters) == 1 else None
    if (args or kwargs or name is None or self.disable_adapters or self.merged or name not in self.lora_A
            or name in getattr(self, "lora_variant", {}) or self.lora_B[name].bias is not None
            or not x.is_cpu or not _fusable(self)):
        return type(self).forward(self, x, *args, **kwargs)
    base, a, b = self.get_base_layer(), self.lora_A[name].weight, self.lora_B[name].weight
    amp = _autocast_dtype()
    if not (x.dtype == base.weight.dtype == a.dtype == b.dtype or amp is not None and x.dtype in (torch.float32, amp)
            and base.weight.dtype == a.dtype == b.dtype == torch.float32):
        return type(self).forward(self, x, *args, **kwargs)
    drop = self.lora_dropout[name]
    p = drop.p if isinstance(drop, nn.Dropout) and drop.training else 0.0
    weight, bias = frozen_casts.amp_weights(base, amp)
    return _LoraLinear.apply(x, weight, bias, a, b, float(self.scaling[name]), p, amp)


def _frozen_linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``; under CPU autocast with the frozen weights' kept cast (:mod:`frozen_casts`), which
    autocast would otherwise make afresh at every call."""
    amp = _autocast_dtype()
    if amp is None or not x.is_cpu:
        return type(self).forward(self, x)
    return F.linear(x, *frozen_casts.amp_weights(self, amp))  # autocast casts x as it would


# Longest sequence the short attention takes in a decoder with its probabilities kept for the backward (the torch
# path's limit, and the native kernel's below DECODER_ATTENTION_MAX's recomputing).  On 2 cores it was 1.3-1.6x
# faster than SDPA's flash kernel (forward + backward, causal) at 26-128 tokens; but kept (T, T) probabilities per
# head, where the flash kernel keeps one value per row: in LoRA SFT of SmolLM2-135M with rows of up to 102 tokens, a
# 128-token limit raised peak RSS by 150 MB (5%).  At 64 tokens they are under 5% of a SmolLM2 layer's activations.
SHORT_ATTENTION_MAX = 64
# Longest sequence it takes in a bidirectional encoder (BERT's 512 positions).  There SDPA, with dropout on the
# probabilities, runs its math kernel, which keeps more than the probabilities: MiniLM full fine-tuning at batch 32
# with the fused layers (hone.model.fused_bert) took 0.58x the stock step's time and 0.72x its peak RSS at 128
# tokens, 0.45x and 0.50x at 256, 0.37x and 0.39x at 512 (bench/RESULTS.md, session 24).
ENCODER_ATTENTION_MAX = 512
# Longest sequence it takes in a decoder by the native kernel with no probabilities kept (:func:`attend`'s
# ``keep_probs=False``, above :data:`SHORT_ATTENTION_MAX`): the backward recomputes them, so a layer holds for its
# backward its inputs only (SDPA's flash kernel also keeps its output and a log-sum-exp per row), and causal rows run
# in blocks of 64 queries over the keys up to each block's last (``native.c``).  SmolLM2-135M-shaped LoRA steps
# against SDPA: 1.24-1.28x at 128 tokens, 1.07-1.11x at 256, 1.03-1.06x at 512, peak RSS within 1%; LoRA SFT on
# DialogSum (rows up to 512 tokens) 1.15x, packed 1.17x (bench/RESULTS.md, session 25).  On a CPU with AMX tiles,
# where SDPA's flash kernel has bf16 products on AMX while this kernel runs AVX512-BF16 dot products, the same steps
# ran 1.25x at 128, 1.07x at 256, 1.03x at 384 and 448, but 0.95x at 512 (paired, quartiles 0.92-0.97; session 26):
# there it stops at 448.
DECODER_ATTENTION_MAX = 448 if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() else 512
_ORIGINAL_SDPA: list = []  # transformers' sdpa function while it is routed through the short attention


def _short_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                             is_causal=None, **kwargs):
    """transformers' ``sdpa`` attention function, computed in fp32 as two batched products and a softmax for
    CPU rows (fp32, or autocast's dtype under CPU autocast) of at most :data:`SHORT_ATTENTION_MAX` tokens in a
    decoder (a module whose ``is_causal`` is true; :data:`DECODER_ATTENTION_MAX` by the native kernel, which then
    recomputes the probabilities in the backward), :data:`ENCODER_ATTENTION_MAX` in an encoder,
    causal or not, unmasked or with a boolean mask in which every query has a key (in a decoder's longer rows also an
    additive mask of 0 and -inf / the lowest value, as packed batches have); anything else goes to
    the original function.

    At short rows SDPA is overhead-bound: its flash kernel took 3.5-4.1 ms forward + backward for the
    causal rows of SmolLM2's SFT (16 rows x 26 tokens x 9 heads, 3 key / value heads) on 2 cores, where
    these products take 2.2-2.6 ms; with dropout (BERT-family encoders in training) it takes its math
    path and draws the mask with ``bernoulli_``, here :func:`dropout`'s cheaper mask.  Query heads
    are grouped by the key / value head they share (as ``enable_gqa`` does), so keys and values are
    never repeated.  Without dropout, equal to SDPA up to float rounding.

    As one autograd node (:class:`_ShortAttention`) rather than stock ops: on a 2-core Xeon with AMX,
    a MiniLM layer's attention (32 rows x 12 heads, bf16 projections under autocast, dropout 0.1)
    took 3.5 ms forward + backward against 5.6 ms at 14 tokens and 6.6 against 9.0 ms at 29;
    in-process A/Bs of whole training steps: MiniLM LoRA 1.01-1.14x, full 1.01x, SmolLM2 LoRA 0.92-0.99x
    (this host's noise is about 5%)."""
    original = _ORIGINAL_SDPA[0]
    mask = attention_mask
    if isinstance(mask, Packing):  # a packed batch (hone.model.fused_bert._packed checked what it takes)
        scale = scaling if scaling is not None else 1 / math.sqrt(query.shape[-1])
        return _PackedAttention.apply(query, key, value, mask, True, dropout, scale,
                                      _autocast_dtype() or query.dtype), None
    causal = mask is None and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
    amp = _autocast_dtype()
    decoder = getattr(module, "is_causal", True)
    max_keys, keep = SHORT_ATTENTION_MAX if decoder else ENCODER_ATTENTION_MAX, True
    if decoder and key.shape[2] > SHORT_ATTENTION_MAX and _native_attention(query, key, value) is not None:
        max_keys, keep = DECODER_ATTENTION_MAX, False  # (the backward recomputes the probabilities)
        if mask is not None:  # (told that the mask hides the future, the kernel skips it)
            mask, hides_future = _decoder_mask(mask)
            causal = causal or hides_future
    if (not _short_attention_ok(query.shape, key.shape[1], key.shape[2], (query.dtype, key.dtype, value.dtype),
                                query.is_cpu and key.is_cpu and value.is_cpu, mask, amp, causal, max_keys)
            or any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "cache"))
            or kwargs.get("output_attentions")):
        return original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                        is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else 1 / math.sqrt(query.shape[-1])
    return _ShortAttention.apply(query, key, value, mask, causal, dropout, scale, amp or query.dtype, keep), None


# torch's CPU softmax is about 10x slower on rows shorter than one AVX-512 vector of floats (1.2 ms against
# 0.11 ms for 384 x 14 x 14 scores on 2 cores): shorter rows of scores are padded to this many columns.
_MIN_SOFTMAX_ROW = 16


# the last mask read by _decoder_mask, as (mask, version, result); emptied with _LAST_BIAS
_LAST_DECODER_MASK: list = [None]


def _decoder_mask(mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A decoder's 4-d mask for the native kernel, and whether it hides every key after its query (a padded or packed
    batch's: the causal mask and more).  A packed batch's additive float mask (``hone.data.lm``), all 0 (attend) or
    -inf / the dtype's lowest value (not), becomes the boolean mask it is (True = attend): the same attention wherever
    a query sees some key, the lowest value's exponential being an exact 0 (a query that sees none fails the kernel's
    check and goes to SDPA); any other float mask is returned as it is.  Read once per mask: the layers of a forward
    share it, and a change in place shows in its version."""
    version = None if mask.is_inference() else mask._version
    last = _LAST_DECODER_MASK[0]
    if version is not None and last is not None and last[0] is mask and last[1] == version:
        return last[2]
    out = mask
    if mask.is_floating_point() and mask.dim() == 4:
        attend = mask == 0
        if bool((attend | (mask <= torch.finfo(mask.dtype).min)).all()):
            out = attend
    hides_future = (out.dtype == torch.bool and out.dim() == 4 and out.shape[-1] == out.shape[-2]
                    and not bool(out.triu(1).any()))
    if version is not None:
        _LAST_DECODER_MASK[0] = (mask, version, (out, hides_future))
    return out, hides_future


# the last bias built, as (mask, key, bias): the layers of one forward share their mask, so only the first builds it
# (on MiniLM's padded 32 x 12-token batches 0.1 ms per layer); emptied when the short attention is switched off
_LAST_BIAS: list = [None]


def _scores_bias(b: int, kv: int, g: int, tq: int, t: int, p: int, mask: torch.Tensor | None,
                 causal: bool) -> torch.Tensor | None:
    """The scores' additive bias, 0 where a query attends and -inf elsewhere (padding columns, the future,
    masked keys), broadcastable to the (b*kv, g*tq, p) scores of ``tq`` queries and ``t`` keys padded to ``p``;
    None when every position attends.  The bias is read, never written, so the one for the same mask (the same
    tensor, unchanged since) is reused."""
    if mask is None and not causal and p == t:
        return None
    if mask is not None and mask.is_inference():  # no version counter to tell an in-place change: built afresh
        return _build_scores_bias(b, kv, g, tq, t, p, mask, causal)
    key = (b, kv, g, tq, t, p, causal, None if mask is None else mask._version)
    last = _LAST_BIAS[0]  # one read: another thread may replace the entry, never half of it
    if last is not None and last[0] is mask and last[1] == key:
        return last[2]
    bias = _build_scores_bias(b, kv, g, tq, t, p, mask, causal)
    _LAST_BIAS[0] = (mask, key, bias)
    return bias


def _build_scores_bias(b: int, kv: int, g: int, tq: int, t: int, p: int, mask: torch.Tensor | None,
                       causal: bool) -> torch.Tensor:
    allowed = torch.ones(tq, p, dtype=torch.bool)
    allowed[:, t:] = False
    if causal:
        allowed[:, :t].tril_()
    if mask is None:
        rows = allowed.repeat(g, 1)  # (g*tq, p), the same for every batch row and key / value head
    else:  # True = attend; per head or shared by all heads
        m = mask.reshape(mask.shape[0], 1, 1, tq, t) if mask.shape[1] == 1 else mask.reshape(mask.shape[0], kv, g, tq, t)
        rows = allowed.expand(b, kv, g, tq, p).clone()
        rows[..., :t] &= m
        rows = rows.view(b * kv, g * tq, p)
    return torch.zeros(rows.shape).masked_fill_(~rows, float("-inf"))


def _short_attention_ok(shape: tuple[int, ...], kv: int, t_keys: int, dtypes: tuple[torch.dtype, ...], cpu: bool,
                        mask: torch.Tensor | None, amp: torch.dtype | None, causal: bool = False,
                        max_keys: int = SHORT_ATTENTION_MAX) -> bool:
    """Can :func:`attend` take a query of (batch, heads, tokens, dim) ``shape`` with ``kv`` key / value heads of
    ``t_keys`` tokens: CPU rows of 2 to ``max_keys`` keys (:data:`SHORT_ATTENTION_MAX` in decoders,
    :data:`ENCODER_ATTENTION_MAX` in encoders) in fp32 or autocast's dtype, at most as many queries as keys (as many
    when causal), query heads a multiple of key / value heads, no mask or a 4-d boolean one (shared by the heads or
    per head) in which every query has a key."""
    h, t = shape[1], shape[2]
    return (1 < t_keys <= max_keys and 0 < t <= t_keys and (t == t_keys or not causal) and h % kv == 0
            and cpu and all(dt in (torch.float32, amp) for dt in dtypes)
            and (mask is None or (mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[1] in (1, h)
                                  and mask.shape[2:] == (t, t_keys) and bool(mask.any(-1).all()))))


def attend(query, key, value, mask, causal, dropout, scale, out_dtype,
           keep_probs: bool = True) -> tuple[torch.Tensor, tuple, tuple]:
    """``softmax(q k^T * scale + bias) v`` with dropout on the probabilities, computed in fp32 from (batch, heads,
    tokens, dim) inputs of any float dtype (bf16 projections under autocast; strided views are fine); the query
    may have fewer tokens than the keys (not when ``causal``; the mask's rows are then the queries').  Returns the
    output as (batch, query tokens, heads, dim) in ``out_dtype``, and the tensors and values
    :func:`attend_backward` needs.  No autograd: :class:`_ShortAttention` and the fused BERT layer
    (:mod:`hone.model.fused_bert`) call it inside their own nodes.

    With the native kernels built (:mod:`hone.model.native`) it runs ``native.c``, which reads the
    inputs where they are and writes the output in place, with the scores held transposed so that the softmax runs
    down the columns (per MiniLM layer at 16 tokens in a training step, forward and backward 0.65 ms against 1.0 ms
    here, 1.034-1.043x per MiniLM step, with row-wise scores; at 13 tokens the transposed layout takes 0.22 ms
    against the row-wise 0.51 ms, another 1.015-1.024x per step, ``bench/RESULTS.md`` session 21): the same results to
    float rounding, and the native masks' dropout stream (:func:`hone.model.native.reference_keep_mask`), seeded as
    :func:`keep_mask` is.  There, ``keep_probs=False`` keeps no probabilities for the backward, which recomputes them
    (the same to the bit) from the query, keys and mask: one more product and softmax per head, against (tokens,
    tokens) floats per head held from the forward to the backward.  What follows is the torch path, which keeps them.

    Each input is cast and laid out for the batched products in one copy, and the output and the gradients
    go back to transformers' (batch, tokens, heads, dim) layout in one copy each: through SDPA or stock ops
    a (batch, heads, tokens, dim) view costs a cast, then a layout copy, each way.  Rows of fewer than
    :data:`_MIN_SOFTMAX_ROW` keys are padded to that many columns (zero keys and values, -inf scores)."""
    lib = _native_attention(query, key, value)
    if lib is not None:
        return _attend_native(lib, query, key, value, mask, causal, dropout, scale, out_dtype, keep_probs)
    b, h, tq, d = query.shape
    kv, t = key.shape[1], key.shape[2]
    g, p = h // kv, max(t, _MIN_SOFTMAX_ROW)
    with torch.autocast("cpu", enabled=False):
        q = torch.empty(b, h, tq, d)
        q.copy_(query)
        k, v = (torch.zeros if p > t else torch.empty)(2, b, kv, p, d)
        k[:, :, :t].copy_(key)
        v[:, :, :t].copy_(value)
        q, k, v = q.view(b * kv, g * tq, d), k.view(b * kv, p, d), v.view(b * kv, p, d)
        bias = _scores_bias(b, kv, g, tq, t, p, mask, causal)
        if bias is None:
            scores = torch.bmm(q, k.transpose(1, 2)).mul_(scale)
        else:
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)
        probs = torch.softmax(scores, -1)
        keep, kept, keep_scale = None, probs, 1.0
        if dropout:
            keep, keep_scale = keep_mask((b * kv, g * tq, t), dropout)
            kept = torch.zeros_like(probs) if p > t else torch.empty_like(probs)  # padding columns: 0 as in probs
            _masked_scaled(probs[..., :t], keep, keep_scale, out=kept[..., :t])
        out = torch.bmm(kept, v)  # (b*kv, g*tq, d)
        result = torch.empty(b, tq, h, d, dtype=out_dtype)
        result.copy_(out.view(b, h, tq, d).transpose(1, 2))
    return result, (q, k, v, probs, kept, keep), ((b, h, kv, tq, t, d), scale, keep_scale, False)


def _native_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
    """The native kernels' library if it can take these inputs (fp32 or bf16, heads of at most
    :data:`_NATIVE_MAX_DIM` dimensions) and was built for vectors of 8 floats or more (AVX2, AVX-512), else None."""
    if (query.shape[-1] > _NATIVE_MAX_DIM or max(query.shape[2], key.shape[2]) > _NATIVE_MAX_TOKENS
            or any(x.dtype not in (torch.float32, torch.bfloat16) for x in (query, key, value))):
        return None
    lib = native.library()
    return lib if lib is not None and lib.vector_width >= native.ATTENTION_MIN_LANES else None


_NATIVE_MAX_DIM, _NATIVE_MAX_TOKENS = 128, 512  # MAX_D and MAX_T in native.c


def _last_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _attention_checked(code: int, what: str, shape: tuple[int, ...]) -> None:
    """Raise for a native attention call's return code: 2 when a thread's scratch could not be allocated, 1 when the
    kernel does not take the shape (the callers check what it takes first, so neither is expected)."""
    if code == 2:
        raise MemoryError(f"native attention{what} could not allocate its scratch for shape {shape}")
    if code:
        raise RuntimeError(f"native attention{what} refused shape {shape}")


def _attend_native(lib, query, key, value, mask, causal, dropout, scale, out_dtype, keep_probs=True):
    """:func:`attend` by the native kernel (``native.c``): the inputs are read where they are, in their
    dtype, and the output written in place; it saves the inputs (not fp32 copies) and the probabilities, or without
    ``keep_probs`` the mask instead."""
    b, h, tq, d = query.shape
    kv, t = key.shape[1], key.shape[2]
    query, key, value = (_last_contiguous(x) for x in (query, key, value))
    # transposed: the kernel's layout (native.c)
    probs = torch.empty(b, h, t, tq, dtype=torch.float32) if keep_probs else None
    seed, dropped, keep_scale = _dropout_draw(dropout) if dropout else (0, 0, 1.0)  # as keep_mask draws a mask
    result = torch.empty(b, tq, h, d, dtype=out_dtype)
    strides = None
    if mask is not None:
        mask = mask.view(torch.uint8)
        strides = (ctypes.c_int64 * 4)(mask.stride(0), mask.stride(1) if mask.shape[1] == h else 0,
                                       mask.stride(2), mask.stride(3))
    code = lib.hone_attend(b, h, kv, tq, t, d, native.view(query), native.view(key), native.view(value),
                           None if mask is None else mask.data_ptr(), strides, int(causal), scale, seed, dropped,
                           keep_scale, None if probs is None else probs.data_ptr(), native.view(result, token_dim=1),
                           None, 0)
    _attention_checked(code, "", (b, h, kv, tq, t, d))
    # the library itself is in meta: the backward runs on it even if the kernels are switched off in between
    # (the mask only where the backward recomputes the probabilities; the causal flag always: its blocks)
    return result, (query, key, value, probs, mask if probs is None else None), (
        (b, h, kv, tq, t, d), scale, (seed, dropped, keep_scale), lib, None, (strides, int(causal)))


# packed rows are rounded up to a multiple of this: oneDNN builds (and keeps) a product for every new row count, which
# took 350 us and 0.7 MB each; with every batch's own count, a BANKING77 epoch ran slower and 500 MB larger.  Its
# epoch at batch 32: 3.98% of the padded rows are padding; packed in blocks of 32 rows, 2.66% fewer rows in 37 row
# counts (5 not among the padded batches' 39); in blocks of 16, 3.33% fewer in 59 (33 new); of 1, 149 (135 new)
ROW_ALIGN = 32


def aligned_rows(rows: int) -> int:
    """``rows`` rounded up to a multiple of :data:`ROW_ALIGN`."""
    return -(-rows // ROW_ALIGN) * ROW_ALIGN


class Packing:
    """A right-padded batch's real tokens laid end to end (:func:`hone.model.fused_bert.packed_encoder_forward`):
    ``batch`` sequences padded to ``width``, ``rows`` real tokens; ``starts`` (batch + 1, int64) each sequence's first
    row and the end, ``firsts`` the first rows alone, ``ids`` (rows, int64) each real token's row in the padded
    (batch * width) layout.

    The packed tensors have ``padded_rows`` rows (``rows`` rounded up to :data:`ROW_ALIGN`): the extra rows start as
    zeros, attention neither reads nor writes them (their outputs are zeros), every other step treats rows apart, and
    nothing depends on them, so their gradients are zeros.  ``row_ids`` numbers every packed row for the dropout masks:
    ``ids``, then rows past the padded batch's."""

    __slots__ = ("batch", "width", "rows", "padded_rows", "starts", "firsts", "ids", "row_ids")

    def __init__(self, lengths: torch.Tensor, mask: torch.Tensor):
        self.batch, self.width = mask.shape
        self.starts = torch.zeros(self.batch + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=self.starts[1:])
        self.firsts = self.starts[:-1]
        self.ids = mask.reshape(-1).nonzero().squeeze(1)
        self.rows = int(self.ids.shape[0])
        self.padded_rows = aligned_rows(self.rows)
        extra = torch.arange(mask.numel(), mask.numel() + self.padded_rows - self.rows)
        self.row_ids = torch.cat([self.ids, extra]) if len(extra) else self.ids


def attend_packed(query, key, value, packing: Packing, q_packed: bool, dropout, scale, out_dtype):
    """:func:`attend` by the native kernel for a packed batch (:class:`Packing`: sequences laid end to end, no
    padding): key and value are (1, heads, rows, dim) views; with ``q_packed`` the query is one too (every token's
    output, as (1, rows, heads, dim), zeros in the rows past the last sequence), else (batch, heads, tq, dim) (that
    many queries per sequence, the output (batch, tq, heads, dim)).  Each sequence attends to its own tokens only, and
    dropout draws the padded batch's mask, so the results are the padded batch's on its real tokens."""
    lib = native.library()
    b, t, d = packing.batch, packing.width, query.shape[-1]
    h, kv = query.shape[1], key.shape[1]
    tq = t if q_packed else query.shape[2]
    query, key, value = (_last_contiguous(x) for x in (query, key, value))
    probs = torch.empty(b, h, t, tq, dtype=torch.float32)  # each sequence's (n, n) in its (t, tq) block
    seed, dropped, keep_scale = _dropout_draw(dropout) if dropout else (0, 0, 1.0)
    result = torch.empty((1, query.shape[2], h, d) if q_packed else (b, tq, h, d), dtype=out_dtype)
    if q_packed:
        result[:, packing.rows:].zero_()  # rows past the sequences' (:class:`Packing`)
    code = lib.hone_attend(b, h, kv, tq, t, d, native.view(query), native.view(key), native.view(value), None, None,
                           0, scale, seed, dropped, keep_scale, probs.data_ptr(), native.view(result, token_dim=1),
                           packing.starts.data_ptr(), int(q_packed))
    _attention_checked(code, " (packed)", (b, h, kv, tq, t, d))
    return result, (query, key, value, probs, None), ((b, h, kv, tq, t, d), scale, (seed, dropped, keep_scale), lib,
                                                      (packing.starts, int(q_packed)), (None, 0))


def _attend_backward_native(saved, meta, grad, dtypes, outs):
    query, key, value, probs, mask = saved
    (b, h, kv, tq, t, d), scale, (seed, dropped, keep_scale), lib, packed, (strides, causal) = meta
    starts, q_packed = packed or (None, 0)
    grad = _last_contiguous(grad)
    made = []
    for i, (n, rows) in enumerate(((h, tq), (kv, t), (kv, t))):
        out = outs[i] if outs else None
        made.append(out if out is not None else torch.empty(b, rows, n, d, dtype=dtypes[i]))
    code = lib.hone_attend_backward(b, h, kv, tq, t, d, native.view(grad, token_dim=1), native.view(query),
                                    native.view(key), native.view(value),
                                    None if probs is None else probs.data_ptr(),
                                    None if mask is None else mask.data_ptr(), strides, causal, seed, dropped,
                                    keep_scale, scale,
                                    *(native.view(x, token_dim=1) for x in made),
                                    None if starts is None else starts.data_ptr(), q_packed)
    _attention_checked(code, " backward", (b, h, kv, tq, t, d))
    return tuple(made) if outs else tuple(x.transpose(1, 2) for x in made)


def attend_backward(saved: tuple, meta: tuple, grad: torch.Tensor, needs: tuple[bool, bool, bool],
                    dtypes: tuple[torch.dtype, ...], outs: tuple | None = None) -> tuple:
    """The gradients of :func:`attend`'s query, key and value (None where ``needs`` says not needed) for the
    gradient ``grad`` of its (batch, query tokens, heads, dim) output, each in its ``dtypes`` entry, as (batch, heads,
    tokens, dim) views of (batch, tokens, heads, dim) tensors; or written into ``outs`` (three tensors laid out as
    (batch, tokens, heads, dim)), which are returned."""
    if meta[3]:  # the native kernel's library
        return _attend_backward_native(saved, meta, grad, dtypes, outs)
    q, k, v, probs, kept, keep = saved
    (b, h, kv, tq, t, d), scale, keep_scale, _ = meta
    g = h // kv
    with torch.autocast("cpu", enabled=False):
        go = torch.empty(b, h, tq, d)
        go.copy_(grad.transpose(1, 2))
        go = go.view(b * kv, g * tq, d)
        need_q, need_k, need_v = needs
        grad_q = grad_k = grad_v = None
        if need_v:
            grad_v = torch.bmm(kept.transpose(1, 2), go)  # (b*kv, p, d)
        if need_q or need_k:
            grad_kept = torch.bmm(go, v.transpose(1, 2))  # (b*kv, g*t, p)
            if keep is not None:
                # the padding columns meet probabilities of 0 in the softmax's backward: left unscaled
                _masked_scaled(grad_kept[..., :t], keep, keep_scale, out=grad_kept[..., :t])
            grad_scores = torch._softmax_backward_data(grad_kept, probs, -1, probs.dtype).mul_(scale)
            grad_q = torch.bmm(grad_scores, k) if need_q else None
            grad_k = torch.bmm(grad_scores.transpose(1, 2), q) if need_k else None

        def back(x: torch.Tensor | None, n: int, rows: int, dtype: torch.dtype, out: torch.Tensor | None):
            """(b*n, padded rows, d) -> (b, n, rows, d) laid out as (b, rows, n, d), as the projections' views are."""
            if x is None:
                return None
            if out is not None:
                out.copy_(x.view(b, n, -1, d)[:, :, :rows].transpose(1, 2))
                return out
            out = torch.empty(b, rows, n, d, dtype=dtype)
            out.copy_(x.view(b, n, -1, d)[:, :, :rows].transpose(1, 2))
            return out.transpose(1, 2)

        oq, ok, ov = outs or (None, None, None)
        return (back(grad_q, h, tq, dtypes[0], oq), back(grad_k, kv, t, dtypes[1], ok),
                back(grad_v, kv, t, dtypes[2], ov))


class _ShortAttention(torch.autograd.Function):
    """:func:`attend` as one autograd node."""

    @staticmethod
    def forward(ctx, query, key, value, mask, causal, dropout, scale, out_dtype, keep_probs=True):
        result, saved, ctx.meta = attend(query, key, value, mask, causal, dropout, scale, out_dtype, keep_probs)
        ctx.save_for_backward(*saved)
        ctx.dtypes = (query.dtype, key.dtype, value.dtype)
        return result

    @staticmethod
    def backward(ctx, grad):
        grads = attend_backward(ctx.saved_tensors, ctx.meta, grad, ctx.needs_input_grad[:3], ctx.dtypes)
        return (*grads, None, None, None, None, None, None)


class _PackedAttention(torch.autograd.Function):
    """:func:`attend_packed` as one autograd node (a packed batch through a layer that keeps its own modules:
    transformers' attention calls :func:`_short_attention_forward` with the :class:`Packing` as its mask)."""

    @staticmethod
    def forward(ctx, query, key, value, packing, q_packed, dropout, scale, out_dtype):
        result, saved, ctx.meta = attend_packed(query, key, value, packing, q_packed, dropout, scale, out_dtype)
        ctx.save_for_backward(*saved)
        ctx.rows, ctx.q_packed = packing.rows, q_packed
        ctx.shapes, ctx.dtypes = (query.shape, key.shape, value.shape), (query.dtype, key.dtype, value.dtype)
        return result

    @staticmethod
    def backward(ctx, grad):
        # laid out as (batch, tokens, heads, dim); the rows past the sequences' get zeros (the kernel skips them)
        outs = tuple(torch.empty(s[0], s[2], s[1], s[3], dtype=dt) for s, dt in zip(ctx.shapes, ctx.dtypes))
        for i, x in enumerate(outs):
            if i or ctx.q_packed:
                x[:, ctx.rows:].zero_()
        attend_backward(ctx.saved_tensors, ctx.meta, grad, (True, True, True), ctx.dtypes, outs=outs)
        return (*(x.transpose(1, 2) for x in outs), None, None, None, None, None)


@contextmanager
def _short_attention() -> Iterator[bool]:
    """Route transformers' ``sdpa`` attention through :func:`_short_attention_forward` within the block
    (process-wide: the function is exact and passes everything else on); yields whether it could."""
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    except ImportError:  # transformers is a dependency; this only guards odd installs
        yield False
        return
    if _ORIGINAL_SDPA or "sdpa" not in ALL_ATTENTION_FUNCTIONS:  # already routed (nested blocks)
        yield bool(_ORIGINAL_SDPA)
        return
    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, previous = "sdpa" in local, local.get("sdpa")
    _ORIGINAL_SDPA.append(ALL_ATTENTION_FUNCTIONS["sdpa"])
    ALL_ATTENTION_FUNCTIONS["sdpa"] = _short_attention_forward
    try:
        yield True
    finally:
        if had:
            local["sdpa"] = previous
        else:
            local.pop("sdpa", None)
        _ORIGINAL_SDPA.clear()
        _LAST_BIAS[0] = _LAST_DECODER_MASK[0] = None


def _lora_linear_type():
    """peft's LoRA ``Linear`` class, or None when peft's LoRA layers were never imported: then no model
    holds one, and importing peft here (1.7 s after torch and transformers on a 2-core CPU, counted in
    every run's training time) would buy nothing."""
    layer = sys.modules.get("peft.tuners.lora.layer")
    return getattr(layer, "Linear", None)


def _hub_kernels_off(model: nn.Module) -> list[nn.Module]:
    """Switch off transformers' hub kernels (``from_pretrained`` turns them on from 5.25) in the model's
    ``PreTrainedModel`` parts, and return those parts.  While they are on, every ``train()`` / ``eval()``
    re-kernelizes and drops the forwards this module sets on instances; the hub maps no CPU kernels for
    these layers, so on a CPU nothing else changes."""
    parts = [m for m in model.modules() if getattr(m, "use_kernels", False) is True and hasattr(m, "set_use_kernels")]
    for m in parts:
        m.use_kernels = False
    return parts


@contextmanager
def cpu_kernels(model: nn.Module) -> Iterator[dict[str, int]]:
    """Within the block, the model's dropout modules, Llama-family RMSNorms and peft LoRA linear layers
    use this module's CPU kernels (each falls back to its own forward on GPU tensors or unsupported
    set-ups), BERT-family encoder layers run as one node (:mod:`hone.model.fused_bert`), frozen plain linear
    layers keep their autocast cast (:mod:`hone.model.frozen_casts`; trained weights' copies written by the optimizer,
    :mod:`hone.model.trained_casts`, are dropped when the block ends), and if it uses transformers' ``sdpa``
    attention, short rows take :func:`_short_attention_forward`.  Yields how many modules of each kind were
    switched (and ``short_attention``: 1 when attention was routed)."""
    from hone.model import fast, fused_bert  # they build on this module

    lora_type = _lora_linear_type()
    hub = _hub_kernels_off(model)
    patched: list[nn.Module] = []
    kept: dict[nn.Module, object] = {}  # forwards set on instances before the block (first_token_only's), put back
    counts = {"dropout": 0, "lora": 0, "rms_norm": 0, "frozen_linear": 0, "bert_layer": 0, "swiglu": 0,
              "add_norm": 0, "packed_encoder": 0}
    lib = native.library()
    for module in model.modules():
        if fused_bert.fusable(module):
            previous = module.__dict__.get("forward")
            # a classifier's last layer already on its first position (first_token_only entered first, as the
            # training loop does): the fused node computes it for that position too
            first = getattr(previous, "__func__", None) is fast._first_token_forward
            if previous is not None:
                kept[module] = previous
            module.forward = types.MethodType(
                fused_bert.fused_first_token_forward if first else fused_bert.fused_forward, module)
            counts["bert_layer"] += 1
        elif lib is not None and fused_bert.packable(module):
            module.forward = types.MethodType(fused_bert.packed_encoder_forward, module)
            counts["packed_encoder"] += 1
        elif type(module) is nn.Dropout:
            module.forward = types.MethodType(_dropout_forward, module)
            counts["dropout"] += 1
        elif type(module).__name__ in RMS_NORM_TYPES and isinstance(getattr(module, "weight", None), torch.Tensor) \
                and isinstance(getattr(module, "variance_epsilon", None), float):
            module.forward = types.MethodType(_rms_norm_forward, module)
            counts["rms_norm"] += 1
        elif lora_type is not None and type(module) is lora_type and _fusable(module):
            module.forward = types.MethodType(_lora_forward, module)
            counts["lora"] += 1
        elif lib is not None and fused_bert.add_norm_output(module):
            module.forward = types.MethodType(fused_bert.add_norm_forward, module)
            counts["add_norm"] += 1
        elif lib is not None and _swiglu_mlp(module):
            module.forward = types.MethodType(_swiglu_mlp_forward, module)
            counts["swiglu"] += 1
        elif frozen_casts.frozen(module):
            frozen_casts.arm(module)
            module.forward = types.MethodType(_frozen_linear_forward, module)
            counts["frozen_linear"] += 1
        else:
            continue
        patched.append(module)
    uses_sdpa = any(getattr(getattr(m, "config", None), "_attn_implementation", None) == "sdpa"
                    for m in model.modules())
    try:
        with (_short_attention() if uses_sdpa else contextlib.nullcontext(False)) as routed, \
                (_native_rotary_routed(model) if lib is not None else contextlib.nullcontext(0)) as rotary:
            counts["short_attention"] = int(routed)
            counts["rotary"] = rotary
            yield counts
    finally:
        _CAST.last = None
        trained_casts.forget(model.parameters())
        for module in patched:
            module.__dict__.pop("forward", None)
            if module in kept:
                module.forward = kept[module]
            frozen_casts.disarm(module)
        for module in hub:
            module.use_kernels = True
