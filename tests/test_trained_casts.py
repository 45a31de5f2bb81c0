"""hone.model.trained_casts: trained weights' bf16 copies written by the native AdamW, used by the next bf16 forward."""

from __future__ import annotations

import ctypes

import pytest
import torch
from torch import nn

from hone.model import native, trained_casts
from hone.model.cpu_kernels import cpu_kernels
from hone.train.optim import AdamW, make_optimizer, param_groups
from test_fused_bert import _batch, _classifier


def _lib():
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler: hone's native kernels are not built")
    return lib


def test_native_adamw_writes_torchs_bf16_cast_of_the_new_weights():
    """Every number the same bits as ``p.to(torch.bfloat16)``, in a tensor's vector body and its tail, subnormals
    kept (AVX512-BF16's one-instruction rounding flushes them); a NaN stays a NaN; a NULL entry writes nothing."""
    lib = _lib()
    gen = torch.Generator().manual_seed(0)
    sizes = [1536 * 48 + 7, 37, 65536 * 2 + 3]
    ps = [torch.randn(n, generator=gen) for n in sizes]
    gs = [torch.randn(n, generator=gen) for n in sizes]
    ms, vs = [torch.zeros(n) for n in sizes], [torch.zeros(n) for n in sizes]
    ps[1][:5] = torch.tensor([1e-39, -3e-40, 2e-45, 0.0, -0.0])  # subnormals: no gradient, no decay, so unchanged
    gs[1][:5] = 0.0
    gs[1][5] = float("nan")
    outs = [torch.full((n,), 7, dtype=torch.bfloat16) for n in sizes]
    outs[2] = None
    n = len(sizes)

    def ptrs(ts):
        return (ctypes.c_void_p * n)(*(None if t is None else t.data_ptr() for t in ts))

    assert lib.hone_adamw(n, ptrs(ps), ptrs(gs), ptrs(ms), ptrs(vs), ptrs(outs), (ctypes.c_int64 * n)(*sizes), None,
                          1e-3, 0.9, 0.999, 0.0, 1e-8, 0.1, 0.0316, 0.0) == 0
    assert ps[1][:5].abs().max() > 0 and torch.isnan(ps[1][5])
    for p, out in zip(ps[:2], outs[:2]):
        want = p.to(torch.bfloat16)
        nan = torch.isnan(p)
        assert torch.equal(torch.isnan(out), nan)
        assert torch.equal(out[~nan].view(torch.int16), want[~nan].view(torch.int16))


def _train(model, steps: int, *, kept: bool, monkeypatch) -> tuple[dict[str, torch.Tensor], int]:
    """``steps`` optimizer steps of full fine-tuning under bf16 autocast with the CPU kernels; the weights after, and
    how many times a forward took the optimizer's copy (``kept`` False: never asked for)."""
    used = [0]
    real = trained_casts.stacked

    def counted(weights, dtype):
        got = real(weights, dtype) if kept else None
        used[0] += got is not None
        return got

    monkeypatch.setattr(trained_casts, "stacked", counted)
    opt = make_optimizer(param_groups(model, 0.01, 1e-3, None))
    ids, mask, labels = _batch()
    torch.manual_seed(3)
    with cpu_kernels(model):
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(input_ids=ids, attention_mask=mask).logits
            nn.functional.cross_entropy(logits.float(), labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    monkeypatch.undo()
    return {k: v.clone() for k, v in model.state_dict().items()}, used[0]


def test_training_with_the_optimizers_copies_is_bit_identical(monkeypatch):
    _lib()
    stock, never = _train(_classifier(dropout=0.1), 4, kept=False, monkeypatch=monkeypatch)
    ours, used = _train(_classifier(dropout=0.1), 4, kept=True, monkeypatch=monkeypatch)
    # 3 layers x (q k v stacked, output, intermediate, output dense) in each forward after the first step
    assert never == 0 and used == 3 * 4 * 3
    for k in stock:
        assert torch.equal(ours[k], stock[k]), k


def test_a_copy_is_used_only_while_its_weights_are_as_the_step_left_them(monkeypatch):
    lib = _lib()
    model = _classifier()
    layer = model.bert.encoder.layer[0]
    dense = layer.intermediate.dense.weight
    qkv = [layer.attention.self.query.weight, layer.attention.self.key.weight, layer.attention.self.value.weight]
    opt = make_optimizer(param_groups(model, 0.01, 1e-3, None))
    ids, mask, labels = _batch()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        nn.functional.cross_entropy(logits.float(), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with cpu_kernels(model):
        assert trained_casts.stacked([dense], torch.bfloat16) is None  # nothing written before a step
        step()
        copy = trained_casts.stacked([dense], torch.bfloat16)
        assert copy is not None and torch.equal(copy, dense.detach().to(torch.bfloat16))
        both = trained_casts.stacked(qkv, torch.bfloat16)
        assert torch.equal(both, torch.cat([w.detach() for w in qkv]).to(torch.bfloat16))
        assert trained_casts.stacked([dense], torch.float16) is None  # bf16 only
        with torch.no_grad():
            dense.add_(1.0)  # an in-place change (a user's edit, a restore)
        assert trained_casts.stacked([dense], torch.bfloat16) is None
        step()  # the next native step writes it again
        assert trained_casts.stacked([dense], torch.bfloat16) is not None
        model.load_state_dict(model.state_dict())  # a checkpoint loaded: copied in place
        assert trained_casts.stacked([dense], torch.bfloat16) is None
        assert trained_casts.stacked(qkv, torch.bfloat16) is None
        step()
        with monkeypatch.context() as m:  # a step on torch's path writes no copy: the old one is stale
            m.setitem(native._STATE, "lib", None)
            step()
        assert trained_casts.stacked([dense], torch.bfloat16) is None
        step()
        assert trained_casts.stacked([dense], torch.bfloat16) is not None
        dense.requires_grad_(False)  # frozen now: the frozen layers' casts take over
        assert trained_casts.stacked([dense], torch.bfloat16) is None
        dense.requires_grad_(True)
    assert lib is not None and not any(trained_casts._request(w) for w in model.parameters())  # dropped at exit


def test_the_optimizer_writes_only_copies_a_forward_asked_for():
    _lib()
    w, other = nn.Parameter(torch.randn(8, 16)), nn.Parameter(torch.randn(4, 16))
    opt = AdamW([w, other], fused=True)
    trained_casts.stacked([w, other], torch.bfloat16)  # asked for as one matrix
    for p in (w, other):
        p.grad = torch.randn_like(p)
    opt.step()
    got = trained_casts.stacked([w, other], torch.bfloat16)
    assert got.shape == (12, 16) and torch.equal(got, torch.cat([w.detach(), other.detach()]).to(torch.bfloat16))
    assert trained_casts.stacked([w], torch.bfloat16) is None  # regrouped: a new request, written at the next step
    assert trained_casts.stacked([w, other], torch.bfloat16) is None  # and the old grouping is gone
    w.grad = torch.randn_like(w)  # only one of a group's weights stepped: that group is not written
    other.grad = None
    trained_casts.stacked([w, other], torch.bfloat16)
    opt.step()
    assert trained_casts.stacked([w, other], torch.bfloat16) is None
    trained_casts.forget([w, other])
    assert trained_casts._request(w) is None and trained_casts._request(other) is None
