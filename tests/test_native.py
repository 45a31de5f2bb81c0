"""The native short-row attention kernel (``hone/model/native.c``): its results against a float64
reference, its dropout stream, and how it is built, cached and switched off."""

from __future__ import annotations

import logging

import pytest
import torch

from hone.model import cpu_kernels as ck
from hone.model import native


def _reference(q, k, v, mask, causal, keep, keep_scale, scale, grad):
    """Attention in float64 with stock ops, and the inputs' gradients for the output gradient ``grad``."""
    q, k, v = (x.detach().double().requires_grad_() for x in (q, k, v))
    b, h, tq, _ = q.shape
    kv, t = k.shape[1], k.shape[2]
    kk, vv = k.repeat_interleave(h // kv, 1), v.repeat_interleave(h // kv, 1)
    allowed = torch.ones(b, h, tq, t, dtype=torch.bool)
    if mask is not None:
        allowed &= mask
    if causal:
        allowed &= torch.ones(tq, t, dtype=torch.bool).tril()
    probs = (q @ kk.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf")).softmax(-1)
    if keep is not None:
        probs = probs * keep.view(b, h, tq, t) * keep_scale
    out = (probs @ vv).transpose(1, 2)
    out.backward(grad.double())
    return out, q.grad, k.grad, v.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_attention_equals_the_reference(dtype):
    """Forward and backward, for grouped heads, fewer queries than keys, causal rows, padding, per-query and per-head
    masks, head sizes that are not a multiple of 16, the longest rows it takes, strided inputs and outputs, with and
    without dropout (the native masks' counter-based stream, checked element by element through the output); and
    without the probabilities kept, the backward recomputing them, to the bit the same."""
    if native.library() is None or native.library().vector_width < 8:
        pytest.skip("the native attention kernel is unavailable here")
    g = torch.Generator().manual_seed(0)
    cases = [  # batch, heads, kv heads, queries, keys, head dim, mask, causal, dropout
        (4, 12, 12, 16, 16, 32, "pad", False, 0.1), (4, 12, 12, 1, 16, 32, "pad", False, 0.1),
        (3, 9, 3, 26, 26, 64, None, True, 0.0), (3, 6, 2, 5, 7, 16, "head", False, 0.2),
        (2, 4, 4, 64, 64, 40, None, True, 0.3), (2, 2, 1, 3, 33, 128, "pad", False, 0.0),
        (4, 6, 3, 13, 13, 32, "rows", False, 0.1), (3, 4, 4, 9, 9, 16, "rows", True, 0.0),
        # an encoder's long rows, up to the longest (each thread's scratch on the heap)
        (2, 4, 4, 200, 200, 32, "pad", False, 0.1), (2, 2, 2, 1, 300, 128, "pad", False, 0.1),
        (1, 2, 2, 512, 512, 64, "pad", False, 0.0),
        # a decoder's long rows (the probabilities recomputed in the backward: checked below for every case)
        (1, 9, 3, 300, 300, 64, None, True, 0.0), (2, 3, 1, 512, 512, 64, "pad", True, 0.0),
        # causal rows in blocks of queries (native.c's CQ = 64) that end past the last query, with dropout and masks
        (1, 2, 2, 130, 130, 32, None, True, 0.2), (2, 4, 4, 100, 100, 16, "rows", True, 0.1)]
    torch.manual_seed(0)  # the dropout masks' seeds are drawn from torch's generator
    for b, h, kv, tq, t, d, mask_kind, causal, p in cases:
        # bf16 inputs and outputs: the output is rounded to 8 bits; fp32: sums of more terms in longer rows (the
        # worst over 40 seeds was 1.1e-6 at 64 keys, 2.3e-6 at 300)
        tol = 2e-6 * max(1.0, (t / 64) ** 0.5) if dtype == torch.float32 else 1e-2
        # (batch, tokens, heads, dim) storage seen as (batch, heads, tokens, dim), as projections give them
        q = torch.randn(b, tq, h, d, generator=g).to(dtype).transpose(1, 2)
        k, v = (torch.randn(b, t, kv, d, generator=g).to(dtype).transpose(1, 2) for _ in range(2))
        mask = None
        if mask_kind == "pad":
            keys = torch.ones(b, t, dtype=torch.bool)
            keys[::2, t - 3:] = False
            mask = keys[:, None, None, :].expand(b, 1, tq, t)
        elif mask_kind == "rows":  # one mask per batch row, its own for each query, laid out in full (as BERT's)
            mask = torch.rand(b, 1, tq, t, generator=g) < 0.7
            mask[..., 0] = True
        elif mask_kind == "head":
            mask = torch.rand(b, h, tq, t, generator=g) < 0.7
            mask[..., 0] = True
        rng = torch.get_rng_state()
        out, saved, meta = ck.attend(q, k, v, mask, causal, p, 0.17, dtype)
        assert meta[3] is native.library() and out.dtype == dtype and out.shape == (b, tq, h, d)
        seed, dropped, keep_scale = meta[2]
        keep = native.reference_keep_mask(seed, dropped, (b, h, tq, t)) if p else None
        grad = torch.randn(b, tq, h, d, generator=g).to(dtype)
        outs = tuple(torch.full((b, rows, n, d), float("nan"), dtype=dtype) for n, rows in ((h, tq), (kv, t), (kv, t)))
        got = (out, *(x.transpose(1, 2) for x in ck.attend_backward(saved, meta, grad, (True,) * 3, (dtype,) * 3,
                                                                    outs=outs)))
        want = _reference(q, k, v, mask, causal, keep, keep_scale, 0.17, grad)
        for name, x, y in zip(("out", "q", "k", "v"), got, want, strict=True):
            err = ((x.double() - y).abs().max() / y.abs().max()).item()
            assert err < tol, (b, h, kv, tq, t, d, mask_kind, causal, p, name, err)
        # no probabilities kept: the backward recomputes them, the same to the bit
        torch.set_rng_state(rng)
        lean, lean_saved, lean_meta = ck.attend(q, k, v, mask, causal, p, 0.17, dtype, keep_probs=False)
        assert lean_saved[3] is None and lean_meta[2] == meta[2] and torch.equal(lean, out)
        outs = tuple(torch.full_like(x, float("nan")) for x in outs)
        again = ck.attend_backward(lean_saved, lean_meta, grad, (True,) * 3, (dtype,) * 3, outs=outs)
        for name, x, y in zip(("q", "k", "v"), again, got[1:], strict=True):
            assert torch.equal(x.transpose(1, 2), y), (b, h, kv, tq, t, d, mask_kind, causal, p, name)


def test_native_dropout_mask_rate_seed_and_independence():
    """The counter-based mask keeps each element with probability 1 - p (p rounded to 1/65536), is fixed by its
    seed, differs between seeds and between neighbouring elements, and the kernel draws it from one draw of torch's
    generator (so ``torch.manual_seed`` fixes it)."""
    dropped = round(0.1 * 65536)
    mask = native.reference_keep_mask(12345, dropped, (1000, 1000))
    assert abs(mask.float().mean().item() - (65536 - dropped) / 65536) < 0.002  # sd of the mean is 0.0003
    assert torch.equal(mask, native.reference_keep_mask(12345, dropped, (1000, 1000)))
    other = native.reference_keep_mask(12346, dropped, (1000, 1000))
    assert 0.17 < (mask != other).float().mean().item() < 0.19  # independent masks disagree on 2 p (1 - p) = 0.18
    flat = mask.flatten().float()
    corr = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()
    assert abs(corr) < 0.005
    if native.library() is None or native.library().vector_width < 8:
        return
    q = k = torch.zeros(1, 1, 16, 16)
    v = torch.eye(16).view(1, 1, 16, 16)  # out = the kept probabilities: 1/16 * keep / (1 - p)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        out, _, meta = ck.attend(q, k, v, None, False, 0.1, 1.0, torch.float32)
        outs.append(out)
        assert torch.equal(out[0, :, 0] > 0, native.reference_keep_mask(meta[2][0], dropped, (16, 16)))
    assert torch.equal(outs[0], outs[1])


def test_native_library_is_built_once_per_cpu_and_falls_back_cleanly(tmp_path, monkeypatch, caplog):
    """The library is compiled into ``$HONE_HOME/cache/kernels/<key>/`` and reused from there; a compiler that
    fails, no compiler, or ``HONE_NATIVE_KERNELS=0`` leave it off, and attention then runs on torch's ops."""
    if native._compiler() is None or native._torch_libgomp() is None:
        pytest.skip("no C compiler or no libgomp here")
    monkeypatch.setitem(native._STATE, "why", native._STATE.get("why", ""))  # restored after the test
    monkeypatch.setenv("HONE_HOME", str(tmp_path))
    lib = native._load()
    assert lib is not None
    built = list((tmp_path / "cache" / "kernels").glob("*/native.so"))
    assert len(built) == 1 and [p.name for p in built[0].parent.iterdir()] == ["native.so"]
    stamp = built[0].stat().st_mtime_ns
    assert native._load() is not None and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    # a damaged file under another home (never over a loaded library: its mapping would fault): built again
    damaged = tmp_path / "damaged" / built[0].relative_to(tmp_path)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a shared library")
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "damaged"))
    assert native._load() is not None and damaged.stat().st_size > 1000
    monkeypatch.setenv("HONE_HOME", str(tmp_path))

    monkeypatch.setenv("CC", "false")  # a "compiler" that fails: a warning, no library, no file left behind
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "other"))
    with caplog.at_level(logging.WARNING, logger="hone.model.native"):
        assert native._load() is None
    assert "could not build" in caplog.text
    assert native._STATE["why"] == "off: the build with false failed"  # what `hone version` prints
    assert not list((tmp_path / "other" / "cache" / "kernels").glob("*/*"))
    monkeypatch.delenv("CC")
    monkeypatch.setenv("HONE_NATIVE_KERNELS", "0")
    assert native._load() is None and native._STATE["why"] == "off: HONE_NATIVE_KERNELS=0"

    q = k = v = torch.randn(1, 2, 5, 8)
    monkeypatch.setitem(native._STATE, "lib", lib)
    assert bool(ck.attend(q, k, v, None, False, 0.0, 0.3, torch.float32)[2][-1]) is (lib.vector_width >= 8)
    if lib.vector_width >= 8:  # switched off between forward and backward: the backward still runs on the library
        out, saved, meta = ck.attend(q, k, v, None, False, 0.2, 0.3, torch.float32)
        assert meta[3] is lib
        monkeypatch.setitem(native._STATE, "lib", None)
        grads = ck.attend_backward(saved, meta, torch.ones_like(out), (True,) * 3, (torch.float32,) * 3)
        assert all(g.shape == (1, 2, 5, 8) and torch.isfinite(g).all() for g in grads)
        monkeypatch.setitem(native._STATE, "lib", lib)
    monkeypatch.setattr(lib, "vector_width", 4)  # built for SSE / NEON: the batched products were faster there
    assert ck.attend(q, k, v, None, False, 0.0, 0.3, torch.float32)[2][-1] is False
    monkeypatch.setitem(native._STATE, "lib", None)  # as library() answers when it is off
    from hone.artifacts import library_versions

    assert library_versions()["hone_native_kernels"] == "off"  # recorded in every manifest
    out, _, meta = ck.attend(q, k, v, None, False, 0.0, 0.3, torch.float32)
    assert meta[3] is False and out.shape == (1, 5, 2, 8)


def test_native_sum_squares_is_accurate_and_thread_independent():
    """The clipping norm's sum of squares: within 1e-6 relative of a float64 sum (fp32 lanes over 64k-element
    chunks, 5e-8 here; BLAS dots in fp32 were 9e-7 off on these arrays), the same bits on one thread or two, and the tail of arrays that are not a multiple of the
    vector or chunk size counted; ``clip_grad_norm`` uses it for fp32 gradients."""
    lib = native.library()
    if lib is None:
        pytest.skip("the native kernels are unavailable here")
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(n, generator=g) * s for n, s in [(589_824, 1.0), (65_536 * 3 + 5, 10.0), (7, 100.0),
                                                             (1, 3.0), (384, 0.01), (0, 1.0)]]
    want = sum(float(t.double().square().sum()) for t in tensors)
    got = native.sum_squares(lib, tensors)
    assert abs(got - want) / want < 1e-6
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.sum_squares(lib, tensors)
        torch.set_num_threads(2)
        two = native.sum_squares(lib, tensors)
    finally:
        torch.set_num_threads(threads)
    assert one == two == got
    assert native.sum_squares(lib, [torch.zeros(0)]) == 0.0

    from hone.train.optim import clip_grad_norm

    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
    for p, t in zip(params, tensors, strict=True):
        p.grad = t.clone()
    total = clip_grad_norm(params, 1.0)
    assert total.item() == pytest.approx(want ** 0.5, rel=1e-6)
    clipped = sum(float(p.grad.double().square().sum()) for p in params)
    assert clipped == pytest.approx(1.0, rel=1e-5)


def test_torch_libgomp_is_told_apart_from_other_wheels_copies():
    """The kernels link against the libgomp torch loaded: its own copy, else the system's; never scikit-learn's
    renamed copy, and nothing when torch runs another OpenMP runtime."""
    from pathlib import Path

    torch_dir = Path("/site/torch")

    def maps(*files):
        return "".join(f"7f00-7f01 r-xp 00000000 08:01 42    {f}\n" for f in files)

    sklearn = "/site/scikit_learn.libs/libgomp-e985bcbb.so.1.0.0"
    assert native._pick_libgomp(maps("/site/torch/lib/libgomp.so.1", sklearn), torch_dir) == "/site/torch/lib/libgomp.so.1"
    assert native._pick_libgomp(maps("/site/torch.libs/libgomp-a34b3233.so.1", sklearn),
                                torch_dir) == "/site/torch.libs/libgomp-a34b3233.so.1"
    system = "/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0"
    assert native._pick_libgomp(maps(sklearn, system), torch_dir) == system
    assert native._pick_libgomp(maps(sklearn), torch_dir) is None
    assert native._pick_libgomp(maps("/site/torch/lib/libiomp5.so", sklearn), torch_dir) is None
    assert native._pick_libgomp(maps("/usr/lib/libc.so.6"), torch_dir) is None


def test_hone_version_says_whether_the_native_kernels_are_on(monkeypatch):
    """``hone version`` builds the kernels if needed and prints where they are, or why they are off."""
    from typer.testing import CliRunner

    from hone.cli import app

    def printed() -> str:
        out = CliRunner().invoke(app, ["version"])
        assert out.exit_code == 0
        return " ".join(out.output.split())  # rich wraps long lines

    text = printed()
    if native.library() is None:
        assert "native CPU kernels off: " in text
    else:
        assert "native CPU kernels on: " in text and "native.so" in text and "hone_native_kernels on" in text
    monkeypatch.setitem(native._STATE, "lib", None)
    monkeypatch.setitem(native._STATE, "why", "off: HONE_NATIVE_KERNELS=0")
    text = printed()
    assert "native CPU kernels off: HONE_NATIVE_KERNELS=0" in text and "hone_native_kernels off" in text


def _lib_or_skip():
    lib = native.library()
    if lib is None:
        pytest.skip("the native kernels are unavailable here (no C compiler, or HONE_NATIVE_KERNELS=0)")
    return lib


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("table_rows", [1, 3])
def test_native_rotary_equals_transformers(dtype, table_rows):
    """The fused rotary node gives transformers' ``apply_rotary_pos_emb`` outputs bit for bit (fp32, the tables'
    dtype, in the inputs' layout), and gradients at least as close to a float64 reference as torch's (equal in
    fp32), laid out as the projections' outputs are."""
    import transformers.models.llama.modeling_llama as llama

    lib = _lib_or_skip()
    g = torch.Generator().manual_seed(0)
    b, t, h, kv, d = 3, 7, 6, 2, 64
    q = torch.randn(b, t, h, d, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    k = torch.randn(b, t, kv, d, generator=g).to(dtype).transpose(1, 2).requires_grad_()
    angles = torch.randn(table_rows, t, d // 2, generator=g) * 3
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    want = llama.apply_rotary_pos_emb(q, k, cos, sin)
    got = ck._Rotary.apply(q, k, cos, sin, lib)
    for x, y in zip(got, want):
        assert x.dtype == y.dtype == torch.float32 and x.stride() == y.stride() and torch.equal(x, y)
    grads = [torch.randn(x.shape, generator=g) for x in want]
    torch_grads = torch.autograd.grad(want, (q, k), grads)
    ours = torch.autograd.grad(got, (q, k), grads)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    ref = torch.autograd.grad(llama.apply_rotary_pos_emb(q64, k64, cos.double(), sin.double()), (q64, k64),
                              [x.double() for x in grads])
    for x, y, r, inp in zip(ours, torch_grads, ref, (q, k)):
        assert x.dtype == dtype and x.shape == inp.shape and x.stride() == inp.stride()
        err, torch_err = (x.double() - r).abs().max().item(), (y.double() - r).abs().max().item()
        assert err <= torch_err * (1 + 1e-9) + 1e-12, (err, torch_err)
        if dtype == torch.float32:
            assert torch.equal(x, y)
    # only the keys need a gradient (the first layer of a model whose query projection is frozen)
    q2 = q.detach()
    (gk,) = torch.autograd.grad(ck._Rotary.apply(q2, k, cos, sin, lib)[1], k, grads[1])
    assert torch.equal(gk, ours[1])


def test_native_rotary_routing_covers_llama_attention_and_passes_the_rest_on(monkeypatch):
    """Within ``cpu_kernels`` the Llama module's ``apply_rotary_pos_emb`` is routed (and restored after); inputs it
    does not take (bf16 tables, another unsqueeze dimension) reach the original, unchanged."""
    import transformers.models.llama.modeling_llama as llama
    from transformers import LlamaConfig, LlamaForCausalLM

    lib = _lib_or_skip()
    original = llama.apply_rotary_pos_emb
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)
    model = LlamaForCausalLM(cfg)
    calls = []
    monkeypatch.setattr(ck._Rotary, "apply", lambda *a: calls.append(a[-1]) or original(*a[:4]))
    with ck.cpu_kernels(model) as counts:
        routed = llama.apply_rotary_pos_emb
        assert counts["rotary"] == 2 and routed is not original and routed.hone_original is original
        model(input_ids=torch.randint(0, 50, (2, 5)))
        assert calls == [lib, lib]
        q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
        cos, sin = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
        for args in ((q, k, cos.bfloat16(), sin.bfloat16()), (q.transpose(1, 2), k.transpose(1, 2), cos, sin, 2)):
            for x, y in zip(routed(*args), original(*args)):
                assert torch.equal(x, y)
        assert len(calls) == 2
    assert llama.apply_rotary_pos_emb is original


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_swiglu_is_as_accurate_as_torch(dtype):
    """``silu(g) * u`` and its gradients, computed in fp32 and rounded once: within torch's own error against a float64
    reference (torch rounds silu(g) first), for large arguments of either sign and a length that is not a multiple
    of the vector width."""
    lib = _lib_or_skip()
    gen = torch.Generator().manual_seed(1)
    g = (torch.randn(7, 1001, generator=gen) * 6).to(dtype)
    g[0, :4] = torch.tensor([-200.0, 200.0, 0.0, -0.0])
    u = torch.randn(7, 1001, generator=gen).to(dtype)
    go = torch.randn(7, 1001, generator=gen).to(dtype)
    g.requires_grad_()
    u.requires_grad_()
    ours = ck._SwiGLU.apply(g, u, lib)
    stock = torch.nn.functional.silu(g) * u
    g64, u64 = (x.detach().double().requires_grad_() for x in (g, u))
    ref = torch.nn.functional.silu(g64) * u64
    # bf16: rounded once, within half a bf16 ulp plus the fp32 arithmetic's error; fp32: a few ulps (exp, division)
    ulp = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -21
    assert ours.dtype == dtype and torch.isfinite(ours).all()
    assert ((ours.double() - ref).abs() <= ref.abs() * ulp + 1e-30).all()
    ours_grads = torch.autograd.grad(ours, (g, u), go)
    for x, y, r in zip(ours_grads, torch.autograd.grad(stock, (g, u), go),
                       torch.autograd.grad(ref, (g64, u64), go.double())):
        assert x.dtype == dtype
        scale = r.abs().max().item()
        assert (x.double() - r).abs().max().item() <= max((y.double() - r).abs().max().item(), 4 * ulp * scale)
    (du,) = torch.autograd.grad(ck._SwiGLU.apply(g.detach(), u, lib), u, go)  # only one input needs a gradient
    assert torch.equal(du, ours_grads[1])


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.bfloat16), (torch.float32, torch.float32),
                                    (torch.bfloat16, torch.bfloat16)])
def test_native_mask_cast_and_masked_add_draw_the_keep_mask(dtypes):
    """The LoRA input's dropout in its cast, and the matching gradient sum, use exactly the mask ``hone_keep_mask``
    draws for the seed (so the backward draws it again instead of saving it)."""
    lib = _lib_or_skip()
    src, out = dtypes
    n, seed, dropped = 64 * 37 + 11, 12345, 9000
    x = torch.randn(n, generator=torch.Generator().manual_seed(2)).to(src)
    keep = native.reference_keep_mask(seed, dropped, (n,))
    cast, masked = torch.empty(n, dtype=out), torch.empty(n, dtype=out)
    lib.hone_mask_cast(n, x.data_ptr(), int(src == torch.bfloat16), cast.data_ptr(), masked.data_ptr(),
                       int(out == torch.bfloat16), seed, dropped)
    assert torch.equal(cast, x.to(out)) and torch.equal(masked, x.to(out) * keep)
    a, b = torch.randn(n).to(src), torch.randn(n).to(src)
    lib.hone_masked_add(n, a.data_ptr(), b.data_ptr(), int(src == torch.bfloat16), masked.data_ptr(),
                        int(out == torch.bfloat16), seed, dropped)
    assert torch.equal(masked, (a.float() + b.float() * keep).to(out))


def test_native_adamw_steps_like_torchs_fused_adamw(monkeypatch):
    """hone's AdamW on the native kernel gives torch's fused AdamW's weights and moments, with decay and without,
    with a deferred clipping scale (to the last bit on the Zen 5 host it was written on, except in a tensor's last
    elements; asserted to float rounding, as torch's compiled code may round otherwise on another CPU); it leaves the
    gradients unscaled, keeps torch's state format (a resumed torch optimizer continues it), and leaves to torch what
    it does not take (a bf16 parameter)."""
    from hone.train.optim import AdamW

    _lib_or_skip()
    gen = torch.Generator().manual_seed(5)
    shapes = [(1536, 48), (37, 50), (7,), (65536 + 5,)]
    init = [torch.randn(s, generator=gen) for s in shapes]

    def params():
        ps = [torch.nn.Parameter(x.clone()) for x in init] + [torch.nn.Parameter(torch.ones(9, dtype=torch.bfloat16))]
        return [{"params": ps[:2], "weight_decay": 0.1, "lr": 3e-3}, {"params": ps[2:], "weight_decay": 0.0,
                                                                       "lr": 1e-3}]

    ours, ref = params(), params()
    opt = AdamW(ours, betas=(0.9, 0.999), eps=1e-8, fused=True)
    with monkeypatch.context() as m:
        m.setitem(native._STATE, "lib", None)
        opt_ref = AdamW(ref, betas=(0.9, 0.999), eps=1e-8, fused=True)
    calls = []
    real_step = AdamW._native_step
    monkeypatch.setattr(AdamW, "_native_step",
                        lambda self, lib, scale: calls.append(lib) or real_step(self, lib, scale))
    flat = [p for g in ours for p in g["params"]]
    flat_ref = [p for g in ref for p in g["params"]]
    for step in range(4):
        for p, q in zip(flat, flat_ref):
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype) * 10 ** step
            q.grad = p.grad.clone()
        if step % 2:
            coef = torch.tensor(0.3)
            assert opt.scale_next_step(coef) and opt_ref.scale_next_step(coef)
        kept = [p.grad.clone() for p in flat]
        versions = [p._version for p in flat]
        opt.step()
        with monkeypatch.context() as m:
            m.setitem(native._STATE, "lib", None)
            opt_ref.step()
        assert all(torch.equal(p.grad, k) for p, k in zip(flat[:4], kept))  # never scaled in place (torch does)
        assert all(p._version > v for p, v in zip(flat[:4], versions))  # written in place: autograd is told
        for p, q in zip(flat, flat_ref):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-9)
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(opt.state[p][key], opt_ref.state[q][key], rtol=1e-6, atol=1e-12)
            assert opt.state[p]["step"].dtype == opt_ref.state[q]["step"].dtype
            assert float(opt.state[p]["step"]) == step + 1
    assert len(calls) == 4 and all(c is native.library() for c in calls)
    # a parameter that starts training later (progressive unfreezing) keeps its own step count
    late, late_ref = torch.nn.Parameter(init[1].clone()), torch.nn.Parameter(init[1].clone())
    opt.add_param_group({"params": [late], "weight_decay": 0.1, "lr": 3e-3})
    opt_ref.add_param_group({"params": [late_ref], "weight_decay": 0.1, "lr": 3e-3})
    for p, q in zip(flat + [late], flat_ref + [late_ref]):
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        q.grad = p.grad.clone()
    opt.step()
    with monkeypatch.context() as m:
        m.setitem(native._STATE, "lib", None)
        opt_ref.step()
    assert float(opt.state[late]["step"]) == 1 and float(opt.state[flat[0]]["step"]) == 5
    for p, q in zip(flat + [late], flat_ref + [late_ref]):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-9)
    # torch's path continues the native one's state (a checkpoint resumed on a machine without a compiler)
    resumed = AdamW(params(), betas=(0.9, 0.999), eps=1e-8, fused=True)
    resumed.add_param_group({"params": [torch.nn.Parameter(init[1].clone())], "weight_decay": 0.1, "lr": 3e-3})
    resumed.load_state_dict(opt.state_dict())
    assert sorted(float(s["step"]) for s in resumed.state.values()) == [1.0] + [5.0] * 5


def test_native_adamw_rechecks_what_changed_between_steps(monkeypatch):
    """The native step keeps what it checked (the parameters, their state and step counts) between steps; each of
    these changes between two steps is seen and stepped as torch's fused AdamW steps it: a step on torch's path, a
    parameter without a gradient in one step, a loaded state, replaced moments, a parameter's data replaced, a new
    param group.  The native path is taken at every step but the torch one (counted)."""
    from hone.train.optim import AdamW

    _lib_or_skip()
    gen = torch.Generator().manual_seed(9)
    init = [torch.randn(s, generator=gen) for s in [(48, 40), (40,), (33, 7)]]

    def make():
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        return ps, AdamW([{"params": ps[:2], "weight_decay": 0.1, "lr": 3e-3}, {"params": ps[2:], "lr": 1e-3}],
                         betas=(0.9, 0.999), eps=1e-8, fused=True)

    ours, opt = make()
    ref, opt_ref = make()
    taken = []
    real = AdamW._native_step
    def counted(self, lib, scale):
        done = real(self, lib, scale)
        taken.append(len(done))
        return done

    monkeypatch.setattr(AdamW, "_native_step", counted)

    def step(skip=(), torch_path=False):
        for i, (p, q) in enumerate(zip(ours, ref)):
            g = None if i in skip else torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g, None if g is None else g.clone()
        with monkeypatch.context() as m:
            m.setitem(native._STATE, "lib", None)
            opt_ref.step()
            if torch_path:
                opt.step()
        if not torch_path:
            opt.step()
        for p, q in zip(ours, ref):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-9)
            for key in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(opt.state[p][key], opt_ref.state[q][key], rtol=1e-6, atol=1e-12)

    step()
    step()
    step(torch_path=True)  # torch's path moves the step counts on: the native step reads them again
    step()
    step(skip={1})  # the bias has no gradient this time: it is not stepped, its count stays behind
    step()
    opt.load_state_dict(opt.state_dict())  # a resumed checkpoint: new state tensors
    step()
    for p in ours[:1]:  # moments replaced by hand
        opt.state[p]["exp_avg"] = opt.state[p]["exp_avg"].clone()
    step()
    with torch.no_grad():
        ours[2].data = ours[2].data.clone()  # the parameter's storage replaced
    step()
    extra, extra_ref = torch.nn.Parameter(init[0].clone()), torch.nn.Parameter(init[0].clone())
    opt.add_param_group({"params": [extra], "lr": 2e-3})
    opt_ref.add_param_group({"params": [extra_ref], "lr": 2e-3})
    ours.append(extra)
    ref.append(extra_ref)
    step()
    assert float(opt.state[ours[1]]["step"]) == 9 and float(opt.state[ours[0]]["step"]) == 10
    assert float(opt.state[extra]["step"]) == 1
    assert taken == [3] * 3 + [2] + [3] * 4 + [4]


@pytest.mark.parametrize("p", [0.0, 0.2])
def test_native_add_and_norm_against_float64(p):
    """The BERT layer's add & norm (residual + dropout, LayerNorm, and the bf16 copy of the output) and its backward
    against float64 with the mask ``hone_keep_mask`` draws for the seed; a strided residual (the first-token layer's);
    the norm's parameter gradients the same bits on 1 or 2 threads."""
    from hone.model import fused_bert

    _lib_or_skip()
    gen = torch.Generator().manual_seed(6)
    rows, hidden = 70, 384
    norm = torch.nn.LayerNorm(hidden)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.2, generator=gen)
        norm.bias.normal_(0.0, 0.2, generator=gen)
    residual = torch.randn(rows, 3, hidden, generator=gen)[:, 1]  # rows 3 * hidden apart
    x = torch.randn(rows, hidden, generator=gen).bfloat16()
    torch.manual_seed(11)
    y, yc, saved, drop = fused_bert._add_norm(residual, x, p, norm, torch.bfloat16)
    assert isinstance(drop, tuple)
    torch.manual_seed(11)
    seed, dropped, scale = ck._dropout_draw(p) if p else (0, 0, 1.0)
    keep = native.reference_keep_mask(seed, dropped, (rows, hidden)).double() * scale if p else 1.0
    r64 = (residual.double() + x.double() * keep).requires_grad_()
    y64 = torch.nn.functional.layer_norm(r64, (hidden,), norm.weight.double(), norm.bias.double(), norm.eps)
    assert (y.double() - y64).abs().max().item() < 2e-5 and torch.equal(yc, y.bfloat16())
    gy = torch.randn(rows, hidden, generator=gen)
    gr, gx, gg, gb = fused_bert._norm_backward(gy, saved, (norm.weight, norm.bias), (True, True), drop, torch.bfloat16)
    w64, b64 = norm.weight.double().requires_grad_(), norm.bias.double().requires_grad_()
    r_ref = r64.detach().requires_grad_()
    want = torch.autograd.grad(torch.nn.functional.layer_norm(r_ref, (hidden,), w64, b64, norm.eps), (r_ref, w64, b64),
                               gy.double())
    assert (gr.double() - want[0]).abs().max().item() < 2e-5
    assert ((gx.double() - (want[0] * keep)).abs() <= (want[0] * keep).abs() * 2 ** -8 + 1e-5).all()  # bf16
    assert (gg.double() - want[1]).abs().max().item() < 1e-3 and (gb.double() - want[2]).abs().max().item() < 1e-3
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused_bert._norm_backward(gy, saved, (norm.weight, norm.bias), (True, True), drop, torch.bfloat16)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, (gr, gx, gg, gb)))


def test_native_rms_norm_against_float64():
    """The Llama-family RMSNorm node on the native kernel: output and gradients against float64, the weight's gradient
    the same bits on 1 or 2 threads, and the input saved instead of a normalised copy."""
    lib = _lib_or_skip()
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(5, 37, 576, generator=gen) * 3).requires_grad_()
    w = (torch.randn(576, generator=gen) * 0.2 + 1).requires_grad_()
    y = ck._RMSNorm.apply(x, w, 1e-5)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = w64 * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5))
    assert (y.double() - ref).abs().max().item() < 1e-5
    g = torch.randn(y.shape, generator=gen)
    gx, gw = torch.autograd.grad(y, (x, w), g, retain_graph=True)
    rx, rw = torch.autograd.grad(ref, (x64, w64), g.double())
    assert (gx.double() - rx).abs().max().item() < 1e-5 and (gw.double() - rw).abs().max().item() < 1e-3
    assert y.grad_fn.saved_tensors[0].data_ptr() == x.data_ptr()  # the input itself, no normalised copy
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        gx1, gw1 = torch.autograd.grad(y, (x, w), g)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(gx1, gx) and torch.equal(gw1, gw)
    assert lib is native.library()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_packed_attention_equals_the_padded_kernel_on_the_real_tokens(dtype):
    """A right-padded batch laid end to end (``Packing``) gives the padded kernel's outputs and gradients on the real
    tokens, every query or the first only, grouped heads, with dropout (the padded batch's mask, drawn from the same
    seed)."""
    if native.library() is None or native.library().vector_width < 8:
        pytest.skip("the native attention kernel is unavailable here")
    g = torch.Generator().manual_seed(0)
    for b, h, kv, t, d, p, first in [(5, 4, 4, 13, 32, 0.2, False), (5, 4, 4, 13, 32, 0.2, True),
                                     (3, 6, 2, 20, 16, 0.0, False), (4, 2, 2, 64, 40, 0.1, False),
                                     (3, 4, 4, 300, 32, 0.1, False), (3, 4, 4, 300, 32, 0.1, True)]:
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        lengths[0] = t
        keys = torch.arange(t) < lengths[:, None]
        packing = ck.Packing(lengths, keys)
        tq = 1 if first else t
        q = torch.randn(b, tq, h, d, generator=g).to(dtype)
        k, v = (torch.randn(b, t, kv, d, generator=g).to(dtype) for _ in range(2))
        grad = torch.randn(b, tq, h, d, generator=g).to(dtype)
        if not first:  # no gradient reaches the padding's outputs (nothing real depends on them)
            grad[~keys] = 0
        mask = keys[:, None, None, :].expand(b, 1, tq, t)

        def real(x):  # (batch, tokens, heads, dim) -> the real tokens, (1, rows, heads, dim)
            return x.reshape(b * t, *x.shape[2:])[packing.ids][None]

        torch.manual_seed(5)
        out, saved, meta = ck.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, False, p, 0.3,
                                     dtype)
        padded = (out, *ck.attend_backward(saved, meta, grad, (True,) * 3, (dtype,) * 3,
                                           outs=tuple(torch.empty(b, n, heads, d, dtype=dtype)
                                                      for n, heads in ((tq, h), (t, kv), (t, kv)))))
        torch.manual_seed(5)
        pq = q.transpose(1, 2) if first else real(q).transpose(1, 2)
        out, saved, meta = ck.attend_packed(pq, real(k).transpose(1, 2), real(v).transpose(1, 2), packing,
                                            not first, p, 0.3, dtype)
        assert out.shape == ((b, 1, h, d) if first else (1, packing.rows, h, d))
        outs = (torch.full((b, 1, h, d) if first else (1, packing.rows, h, d), float("nan"), dtype=dtype),
                *(torch.full((1, packing.rows, kv, d), float("nan"), dtype=dtype) for _ in range(2)))
        packed = (out, *ck.attend_backward(saved, meta, grad if first else real(grad), (True,) * 3, (dtype,) * 3,
                                           outs=outs))
        for name, x, y, q_side in zip(("out", "q", "k", "v"), packed, padded, (True, True, False, False)):
            want = y if first and q_side else real(y)
            assert torch.allclose(x.float(), want.float(), atol=1e-6, rtol=1e-5), (b, t, first, p, name)
