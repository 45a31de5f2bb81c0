"""hone.model.fused_bert: a BERT-family encoder layer as one autograd node under the CPU kernels."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from hone.model import cpu_kernels as ck
from hone.model import fused_bert
from hone.model.cpu_kernels import cpu_kernels
from hone.model.fast import first_token_only


def _classifier(kind: str = "bert", dropout: float = 0.0, layers: int = 3, attn: str = "sdpa", positions: int = 96):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    cls = {"bert": (BertConfig, BertForSequenceClassification),
           "roberta": (RobertaConfig, RobertaForSequenceClassification)}[kind]
    extra = {"pad_token_id": 1} if kind == "roberta" else {}
    torch.manual_seed(0)
    model = cls[1](cls[0](vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=positions, num_labels=5,
                          hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, attn_implementation=attn,
                          **extra))
    for m in model.modules():  # norms that are not the identity, so their gradients are tested too
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, 1.0, 0.2)
            nn.init.normal_(m.bias, 0.0, 0.2)
    return model


def _batch(t: int = 9):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, t), generator=g)
    mask = torch.ones_like(ids)
    mask[1, t - 3:] = 0
    mask[3, 3:] = 0
    ids[mask == 0] = 1
    return ids, mask, torch.tensor([0, 3, 4, 1])


def _run(model, batch, *, fused: bool, amp: bool = False, first: bool = False, seed: int = 3):
    """Logits and gradients (dense ones) of one forward / backward with the CPU kernels on; ``fused`` False keeps
    the BERT layers stock and the batch padded (every other kernel stays on, so dropout draws the same masks)."""
    ids, mask, labels = batch
    model.zero_grad(set_to_none=True)
    with contextlib.ExitStack() as stack:
        if not fused:  # (and not packed: a packed batch through stock layers draws its dropout masks by its rows)
            mp = stack.enter_context(pytest.MonkeyPatch.context())
            mp.setattr(fused_bert, "fusable", lambda m: False)
            mp.setattr(fused_bert, "PACK", False)
        counts = stack.enter_context(cpu_kernels(model))
        torch.manual_seed(seed)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            with first_token_only(model) if first else contextlib.nullcontext():
                logits = model(input_ids=ids, attention_mask=mask).logits
        nn.functional.cross_entropy(logits.float(), labels).backward()
    n_layers = model.config.num_hidden_layers
    assert counts["bert_layer"] == (n_layers if fused else 0)
    return logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("t", [9, 90])
def test_fused_layer_equals_the_stock_layer_in_fp32(kind, dropout, first, t, native_path):
    """In fp32 the fused layer gives the stock layers' logits and gradients to float rounding, with padding, with
    dropout (the same masks, drawn in the same order) and with the last layer on its first position, in short rows
    and in rows longer than a decoder's short attention takes; its add & norm steps by the native kernel (one pass
    each way, the mask drawn again in the backward) or by torch's ops.  With the native kernels the padded batch runs
    packed (its padding left out), and still draws the padded batch's masks."""
    model = _classifier(kind, dropout)
    model.train(dropout > 0)
    batch = _batch(t)
    ref_logits, ref = _run(model, batch, fused=False, first=first)
    modes, norms = [], []  # the ``first`` flag and packing of every fused node; whether each add & norm ran natively
    apply, add_norm = fused_bert._BertLayer.apply, fused_bert._add_norm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_bert._BertLayer, "apply",
                   lambda *a: modes.append((a[-1], isinstance(a[1], ck.Packing))) or apply(*a))
        mp.setattr(fused_bert, "_add_norm", lambda *a: norms.append(out := add_norm(*a)) or out)
        logits, got = _run(model, batch, fused=True, first=first)
    # the last layer on its first position too; the padded batch packed with the native kernels
    packed = native_path == "native"
    assert modes == [(False, packed), (False, packed), (first, packed)]
    assert [isinstance(n[-1], tuple) for n in norms] == [native_path == "native"] * 6
    assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert got.keys() == ref.keys()
    for name in ref:
        assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-4), name
        assert got[name].dtype == torch.float32
    # a different seed draws other masks: the comparison above could fail
    if dropout:
        other, _ = _run(model, batch, fused=True, first=first, seed=4)
        assert not torch.allclose(other, logits, atol=1e-3)


def test_fused_layer_under_bf16_autocast_is_as_accurate_as_the_stock_path(native_path):
    """Under CPU autocast the fused layer's products run in bf16 as autocast's do: logits and gradients are as
    close to the fp32 ones as the stock layers' under autocast are."""
    model = _classifier("bert", 0.0)
    batch = _batch(20)
    ref_logits, ref = _run(model, batch, fused=False)
    stock_logits, stock = _run(model, batch, fused=False, amp=True)
    logits, got = _run(model, batch, fused=True, amp=True)
    assert all(g.dtype == torch.float32 for g in got.values())
    assert _err(logits, ref_logits) <= max(1.5 * _err(stock_logits, ref_logits), 1e-3)
    skip = ("key.bias",)  # its true gradient is zero (softmax ignores a shift shared by a row): only rounding
    worst_stock = max(_err(stock[k], ref[k]) for k in ref if not k.endswith(skip))
    worst_fused = max(_err(got[k], ref[k]) for k in ref if not k.endswith(skip))
    assert 0 < worst_fused <= max(1.5 * worst_stock, 0.02), (worst_fused, worst_stock)


def test_fused_layer_with_frozen_layers_and_gradient_checkpointing():
    """Frozen layers get no gradients (and use the kept bf16 casts of their weights); the rest train as with the
    stock layers; under gradient checkpointing the layers checkpoint (their stock forward), with the stock gradients."""
    model = _classifier("bert", 0.0)
    for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[0].parameters()]:
        p.requires_grad_(False)
    batch = _batch()
    _, ref = _run(model, batch, fused=False, amp=True)
    _, got = _run(model, batch, fused=True, amp=True)
    assert got.keys() == ref.keys() and not any(".layer.0." in k or "embeddings" in k for k in got)
    for name in ref:
        if not name.endswith("key.bias"):  # its true gradient is zero: only rounding
            assert _err(got[name], ref[name]) < 0.02, name
    # under gradient checkpointing the layers run their class forward, which checkpoints (the fused node would keep
    # every activation): the same gradients as the stock layers'
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    checkpointed, fused_calls = [], []
    for layer in model.bert.encoder.layer:
        func = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=func, **k: checkpointed.append(1) or _f(*a, **k)
    apply = fused_bert._BertLayer.apply
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_bert._BertLayer, "apply", lambda *a: fused_calls.append(1) or apply(*a))
        _, ckpt = _run(model, batch, fused=True, amp=True)
    assert len(checkpointed) == 3 and fused_calls == []
    assert ckpt.keys() == ref.keys()
    for name in ref:
        assert torch.allclose(ckpt[name], ref[name], atol=1e-6, rtol=1e-4), name


def test_fused_layer_passes_what_it_does_not_take_to_the_stock_forward():
    """Rows longer than the encoder's attention takes, eager attention (a float mask) and hooks inside a layer (as
    transformers' recording of attention weights installs) run the stock layer; outside the kernels' block the
    layers are untouched."""
    batch = _batch(ck.ENCODER_ATTENTION_MAX + 1)
    model = _classifier("bert", 0.0, layers=2, positions=ck.ENCODER_ATTENTION_MAX + 8)
    ref_logits, ref = _run(model, batch, fused=False)
    logits, got = _run(model, batch, fused=True)
    assert torch.allclose(logits, ref_logits, atol=1e-6) and all(torch.equal(got[k], ref[k]) for k in ref)
    assert all("forward" not in layer.__dict__ for layer in model.bert.encoder.layer)

    eager = _classifier("bert", 0.0, layers=2, attn="eager")
    with cpu_kernels(eager) as counts:
        assert counts["bert_layer"] == 0  # its mask is additive floats

    model = _classifier("bert", 0.0, layers=2)
    seen = []
    model.bert.encoder.layer[0].attention.self.register_forward_hook(lambda m, i, o: seen.append(o[0].shape))
    ids, mask, _ = _batch()
    with torch.no_grad():
        stock = model(input_ids=ids, attention_mask=mask).logits
        with cpu_kernels(model):
            out = model(input_ids=ids, attention_mask=mask).logits
    assert len(seen) == 2  # the hooked layer ran its modules both times
    assert torch.allclose(out, stock, atol=1e-5)


def test_first_token_block_restores_the_fused_forward():
    """``first_token_only`` inside the kernels' block puts the fused forward back on the last layer when it ends; the
    kernels' block inside ``first_token_only`` fuses the first-position forward and puts the stock one back."""
    model = _classifier("bert", 0.0, layers=2)
    last = model.bert.encoder.layer[-1]
    with cpu_kernels(model):
        fused = last.__dict__["forward"]
        with first_token_only(model):
            assert last.__dict__["forward"] is not fused
        assert last.__dict__["forward"] is fused
    assert "forward" not in last.__dict__
    # the first-token block entered first (as the training loop runs): the fused node takes the first position too,
    # and each block puts back what it found
    with first_token_only(model):
        stock_first = last.__dict__["forward"]
        with cpu_kernels(model):
            assert last.__dict__["forward"].__func__ is fused_bert.fused_first_token_forward
        assert last.__dict__["forward"] is stock_first
    assert "forward" not in last.__dict__
    # blocks ended out of order: the kernels' block restores the layer, and the first-token block leaves it so
    kernels, first = cpu_kernels(model), first_token_only(model)
    kernels.__enter__()
    first.__enter__()
    kernels.__exit__(None, None, None)
    first.__exit__(None, None, None)
    assert "forward" not in last.__dict__


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_output_blocks_of_lora_layers_take_the_native_add_and_norm(dropout, native_path):
    """With LoRA on the projections a BERT layer does not fuse as a whole; its output blocks' dropout, add and
    LayerNorm run as one node (native kernels only): the same logits and gradients as the stock blocks, with the same
    dropout masks."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_classifier("bert", dropout), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                    target_modules=["query", "value"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)
    model.train(dropout > 0)
    batch = _batch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_bert, "add_norm_output", lambda m: False)
        ref_logits, ref = _run(model, batch, fused=False)
    calls = []
    apply = fused_bert._AddNorm.apply
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_bert._AddNorm, "apply", lambda *a: calls.append(1) or apply(*a))
        logits, got = _run(model, batch, fused=False)
    blocks = 2 * model.base_model.model.config.num_hidden_layers  # two output blocks per layer
    assert len(calls) == (blocks if native_path == "native" else 0)
    assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert got.keys() == ref.keys() and any("lora_A" in k for k in got)
    for name in ref:
        assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-4), name


def _hidden(model, ids, mask, **kwargs):
    with cpu_kernels(model) as counts:
        assert counts["packed_encoder"] == 1
        return model.bert(input_ids=ids, attention_mask=mask, **kwargs)


def test_packed_encoder_leaves_the_padding_out_and_passes_the_rest_on(monkeypatch):
    """A right-padded batch runs packed: every layer on the real tokens only, the same hidden states there as the
    stock encoder's (zeros at the padding), the same gradients, under bf16 autocast as accurate as the padded fused
    path.  Left padding, a batch without padding, requested hidden states and hooks on a layer run the padded
    layers."""
    from hone.model import native

    if native.library() is None or native.library().vector_width < 8:
        pytest.skip("the native kernels are unavailable here")
    model = _classifier("bert", 0.0).eval()
    ids, mask, _ = _batch()
    rows = []
    apply = fused_bert._BertLayer.apply
    monkeypatch.setattr(fused_bert._BertLayer, "apply",
                        lambda *a: rows.append(a[0].shape[0] if isinstance(a[1], ck.Packing) else None)
                        or apply(*a))
    with torch.no_grad():
        stock = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        packed = _hidden(model, ids, mask).last_hidden_state
    real = int(mask.sum())  # rounded up to whole blocks of rows (a few oneDNN products, not one per batch)
    assert rows == [ck.aligned_rows(real)] * 3 and rows[0] > real
    keep = mask.bool()
    assert torch.allclose(packed[keep], stock[keep], atol=1e-5, rtol=1e-5)
    assert not packed[~keep].any()

    # gradients through every token's output (the loss reads the real tokens only), fp32 and bf16
    weights = torch.randn(stock.shape, generator=torch.Generator().manual_seed(2)) * keep[..., None]
    grads = {}
    for run in ("stock", "packed", "padded"):
        for amp in (False, True):
            model.zero_grad(set_to_none=True)
            monkeypatch.setattr(fused_bert, "PACK", run == "packed")
            with cpu_kernels(model) if run != "stock" else contextlib.nullcontext():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    out = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
                (out.float() * weights).sum().backward()
            grads[run, amp] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    ref = grads["stock", False]
    for name in ref:  # absolute slack scaled to the gradient: a sum over rows in another order (e.g. AMX's) cancels
        scale = max(1.0, float(ref[name].abs().max()))
        assert torch.allclose(grads["packed", False][name], ref[name], atol=1e-6 * scale, rtol=1e-4), name
    skip = ("key.bias", "pooler.dense.weight", "pooler.dense.bias")  # zero true gradients: rounding only
    worst = {run: max(_err(grads[run, True][k], ref[k]) for k in ref if not k.endswith(skip))
             for run in ("packed", "padded")}
    assert 0 < worst["packed"] <= max(1.5 * worst["padded"], 0.02), worst

    rows.clear()
    monkeypatch.setattr(fused_bert, "PACK", True)
    left = mask.flip(1)  # left padding: the padded layers
    with torch.no_grad():
        stock = model.bert(input_ids=ids.flip(1), attention_mask=left).last_hidden_state
        got = _hidden(model, ids.flip(1), left).last_hidden_state
        assert rows == [None] * 3 and torch.allclose(got, stock, atol=1e-5)
        rows.clear()
        _hidden(model, ids, torch.ones_like(mask))  # no padding
        assert rows == [None] * 3
        rows.clear()
        out = _hidden(model, ids, mask, output_hidden_states=True)
        want = model.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        assert all(r is None for r in rows) and len(out.hidden_states) == 4
        assert all(torch.allclose(x[keep], y[keep], atol=1e-5) for x, y in zip(out.hidden_states, want))
        rows.clear()
        # the capturing hooks transformers installed stay on the model: no packed call from now on
        got = _hidden(model, ids, mask).last_hidden_state
        assert all(r is None for r in rows) and torch.allclose(got, want[-1], atol=1e-5)

    # a hook of the user's on a fused layer itself: the layers run padded, through their calls, so the hook runs
    model = _classifier("bert", 0.0).eval()
    seen = []
    model.bert.encoder.layer[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    rows.clear()
    with torch.no_grad():
        _hidden(model, ids, mask)
    assert seen == [ids.shape + (32,)] and rows == [None] * 3


def test_packed_encoder_runs_layers_that_keep_their_modules(monkeypatch):
    """LoRA layers (their own modules, transformers' attention routed to the packed kernel), every position's output
    or the first only: packed, the same logits and gradients as the padded batch in fp32, as accurate under bf16
    autocast; with dropout, reproducible from the seed."""
    from peft import LoraConfig, get_peft_model

    from hone.model import native

    if native.library() is None or native.library().vector_width < 8:
        pytest.skip("the native kernels are unavailable here")

    def lora(dropout):
        model = get_peft_model(_classifier("bert", dropout), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                        target_modules=["query", "value"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:
                nn.init.normal_(p, std=0.1)
        return model.train()

    calls = []
    apply = ck._PackedAttention.apply
    monkeypatch.setattr(ck._PackedAttention, "apply", lambda *a: calls.append(a[4]) or apply(*a))

    def run(model, pack, first, amp=False, seed=3):
        monkeypatch.setattr(fused_bert, "PACK", pack)
        model.zero_grad(set_to_none=True)
        ids, mask, labels = _batch()
        with cpu_kernels(model) as counts:
            assert counts["packed_encoder"] == 1 and counts["bert_layer"] == 0
            torch.manual_seed(seed)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                with first_token_only(model) if first else contextlib.nullcontext():
                    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=False)
                    logits = out.logits
            nn.functional.cross_entropy(logits.float(), labels).backward()
        return logits.detach().float(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model = lora(0.0)
    for first in (False, True):
        calls.clear()
        ref_logits, ref = run(model, False, first)
        assert calls == []
        logits, got = run(model, True, first)
        assert calls == [True, True, not first]  # the queries packed, but the first position's alone
        assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
        assert got.keys() == ref.keys() and any("lora_A" in k for k in got)
        for name in ref:
            assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-4), (first, name)
        _, padded = run(model, False, first, amp=True)
        _, packed = run(model, True, first, amp=True)
        worst = [max(_err(g[k], ref[k]) for k in ref) for g in (padded, packed)]
        assert 0 < worst[1] <= max(1.5 * worst[0], 0.02), worst

    model = lora(0.2)
    a, _ = run(model, True, False)
    b, _ = run(model, True, False)
    c, _ = run(model, True, False, seed=4)
    assert torch.equal(a, b) and not torch.allclose(a, c, atol=1e-3)
