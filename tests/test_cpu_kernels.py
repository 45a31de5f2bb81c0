"""hone.model.cpu_kernels: dropout masks, the fused RMSNorm and the fused LoRA linear layer."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from hone.model import cpu_kernels as ck
from hone.model import native
from hone.model.cpu_kernels import (
    _LoraLinear,
    _RMSNorm,
    cpu_kernels,
    dropout,
    keep_mask,
)


def test_keep_mask_rate_scale_and_seed(native_path):
    if native_path == "native":  # the native generator's mask is its numpy reference, from one draw of torch's
        torch.manual_seed(0)
        mask, _ = keep_mask((37, 1001), 0.1)  # 37037 elements: a partial last word
        torch.manual_seed(0)
        want = native.reference_keep_mask(int(torch.randint(0, 1 << 62, ())), round(0.1 * 65536), (37, 1001))
        assert torch.equal(mask, want)
    torch.manual_seed(0)
    mask, scale = keep_mask((1000, 1000), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (1000, 1000)
    dropped = round(0.1 * 65536)
    assert scale == 65536 / (65536 - dropped)
    assert abs(mask.float().mean().item() - (65536 - dropped) / 65536) < 0.002  # sd of the mean is 0.0003
    # every one of the four 16-bit lanes of a 64-bit draw is uniform (the sign bit too)
    lanes = mask.flatten()[: 4 * 200_000].view(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.9).abs() < 0.005), lanes
    torch.manual_seed(0)
    again, _ = keep_mask((1000, 1000), 0.1)
    assert torch.equal(mask, again)
    assert abs(keep_mask((999, 7), 0.5)[0].float().mean().item() - 0.5) < 0.02  # odd sizes
    assert keep_mask((10,), 0.0)[0].all()


def test_dropout_forward_and_backward():
    torch.manual_seed(1)
    x = torch.full((300, 70), 2.0, requires_grad=True)
    y = dropout(x, 0.25)
    scale = 65536 / (65536 - round(0.25 * 65536))
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 2.0 * scale))
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.02
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() * scale)  # the same mask, the same scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_is_the_masked_product_scaled_once(dtype):
    """The mask and the scale in one pass give, bit for bit, the product with the mask then the scale
    (the scale rounds once either way), forward and backward."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(32, 9, 24, generator=g) * 3).to(dtype).requires_grad_()
    up = torch.randn(32, 9, 24, generator=g).to(dtype)
    torch.manual_seed(5)
    y = dropout(x, 0.1)
    y.backward(up)
    torch.manual_seed(5)
    mask, scale = keep_mask(x.shape, 0.1)
    assert torch.equal(y, x.detach().mul(mask.to(dtype)).mul_(scale))
    assert torch.equal(x.grad, up.mul(mask.to(dtype)).mul_(scale))


def test_cpu_kernels_switch_dropout_modules_in_training_only():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    x = torch.randn(64, 8)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    with cpu_kernels(model) as counts:
        assert counts == {"dropout": 1, "lora": 0, "rms_norm": 0, "frozen_linear": 0,  # both linears train
                          "bert_layer": 0, "short_attention": 0, "swiglu": 0, "rotary": 0,
                          "add_norm": 0, "packed_encoder": 0}  # no transformers model
        with torch.no_grad():
            assert torch.equal(model(x), ref)  # eval: identity
        model.train()
        h = model[0](x)
        out = model[1](h)
        zeros = (out == 0) & (h != 0)
        assert 0.3 < zeros.float().mean().item() < 0.7
        assert torch.allclose(out[~zeros], h[~zeros] * 2.0)
    assert "forward" not in vars(model[1])  # restored


def test_cpu_kernels_do_not_import_peft_for_a_model_without_it():
    """Importing peft takes seconds that every run's training time would count; a model can only hold peft's
    LoRA layers once peft is imported, so the switch looks it up instead of importing it."""
    code = ("import sys, torch\n"
            "from hone.model.cpu_kernels import cpu_kernels\n"
            "model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))\n"
            "with cpu_kernels(model) as counts:\n"
            "    assert counts['dropout'] == 1, counts\n"
            "assert 'peft' not in sys.modules, 'peft was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _lora_llama(dropout: float, **lora_kwargs):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                                            target_modules="all-linear", **lora_kwargs))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)  # peft starts B at zero, which would hide a wrong A gradient
    return model


def _loss_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_lora_equals_peft_without_dropout():
    model = _lora_llama(0.0)
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    loss, grads = _loss_and_grads(model, ids)
    with cpu_kernels(model) as counts:
        assert counts["lora"] == 14  # 7 projections x 2 layers
        fused_loss, fused_grads = _loss_and_grads(model, ids)
    assert torch.allclose(loss, fused_loss, atol=1e-6)
    assert grads.keys() == fused_grads.keys() and any("lora_A" in k for k in grads)
    for k in grads:
        assert torch.allclose(grads[k], fused_grads[k], atol=1e-6, rtol=1e-4), k
    assert all("forward" not in vars(m) for m in model.modules())


def test_short_attention_equals_sdpa_and_passes_the_rest_on(monkeypatch, native_path):
    """Within cpu_kernels transformers' sdpa attention runs as two batched products for fp32 rows up to
    SHORT_ATTENTION_MAX tokens in a decoder, ENCODER_ATTENTION_MAX in an encoder: causal and unmasked (grouped
    query heads included), or bidirectional, unmasked or with a boolean padding mask; the same output and gradients
    as SDPA, and with dropout the probabilities dropped by dropout()'s mask; also fewer queries than keys (not
    causal).  Float masks, a query with no key, longer rows, float64 or a causal query shorter than its keys reach
    the original function, which is restored on exit."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from hone.model import cpu_kernels as ck

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    calls = []
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._local_mapping, "sdpa",
                        lambda *a, **k: (calls.append(True), sdpa_attention_forward(*a, **k))[1])
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=6, num_key_value_heads=2))
    g = torch.Generator().manual_seed(5)
    padding = torch.ones(2, 7, dtype=torch.bool)
    padding[0, 5:] = False
    shared = padding[:, None, None, :].expand(2, 1, 7, 7)  # BERT's padding mask: every query sees the real keys
    per_head = torch.rand(2, 4, 7, 7, generator=g) < 0.6
    per_head[..., 0] = True
    with cpu_kernels(model) as counts:
        assert counts["short_attention"] == 1
        attend = ALL_ATTENTION_FUNCTIONS["sdpa"]
        assert attend is ck._short_attention_forward
        for heads, kv, t, causal, mask in [(6, 2, 9, True, None), (4, 4, 7, True, None),
                                           (3, 1, ck.SHORT_ATTENTION_MAX, True, None), (4, 4, 7, False, None),
                                           (4, 4, 7, False, shared), (4, 2, 7, False, per_head),
                                           (2, 2, 200, False, None)]:  # an encoder's (not causal) long rows
            q, k, v = (torch.randn(2, n, t, 8, generator=g, requires_grad=True) for n in (heads, kv, kv))
            module = types.SimpleNamespace(num_key_value_groups=heads // kv, is_causal=causal)
            out, _ = attend(module, q, k, v, mask, scaling=0.3)
            assert out.shape == (2, t, heads, 8) and out.is_contiguous() and not calls
            grads = torch.autograd.grad(out.square().sum(), (q, k, v))
            want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
            torch.testing.assert_close(out, want)
            for got, ref in zip(grads, torch.autograd.grad(want.square().sum(), (q, k, v)), strict=True):
                torch.testing.assert_close(got, ref)
        # fewer queries than keys (a first-token layer's [CLS] query over every key), with a padding mask or none
        for heads, kv, rows, mask in [(4, 4, 1, shared[:, :, :1]), (4, 2, 3, per_head[:, :, :3]), (4, 4, 1, None)]:
            q = torch.randn(2, heads, rows, 8, generator=g, requires_grad=True)
            k, v = (torch.randn(2, kv, 7, 8, generator=g, requires_grad=True) for _ in range(2))
            module = types.SimpleNamespace(num_key_value_groups=heads // kv, is_causal=False)
            out, _ = attend(module, q, k, v, mask, scaling=0.3, is_causal=False)
            want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3, is_causal=False)
            assert out.shape == (2, rows, heads, 8) and not calls
            torch.testing.assert_close(out, want)
            for got, ref in zip(torch.autograd.grad(out.square().sum(), (q, k, v)),
                                torch.autograd.grad(want.square().sum(), (q, k, v)), strict=True):
                torch.testing.assert_close(got, ref)
        # dropout: the probabilities times dropout()'s mask and scale, in rows padded for the softmax (7 keys)
        # and not (20); the gradients through the same mask
        module = types.SimpleNamespace(num_key_value_groups=1, is_causal=False)
        for t in (7, 20):
            q, k, v = (torch.randn(2, 4, t, 8, generator=g, requires_grad=True) for _ in range(3))
            pad = torch.ones(2, t, dtype=torch.bool)
            pad[0, t - 2:] = False
            mask = pad[:, None, None, :].expand(2, 1, t, t)
            torch.manual_seed(3)
            out, _ = attend(module, q, k, v, mask, dropout=0.4, scaling=0.3)
            torch.manual_seed(3)
            if native_path == "native":  # its own counter-based mask, seeded by one draw of torch's generator
                seed, dropped = int(torch.randint(0, 1 << 62, ())), round(0.4 * 65536)
                keep, scale = native.reference_keep_mask(seed, dropped, (8, t, t)), 65536 / (65536 - dropped)
            else:
                keep, scale = keep_mask((8, t, t), 0.4)
            probs = torch.softmax((q @ k.transpose(-1, -2) * 0.3).masked_fill(~mask, float("-inf")), -1)
            want = ((probs * keep.view(2, 4, t, t) * scale) @ v).transpose(1, 2)
            torch.testing.assert_close(out, want)
            for got, ref in zip(torch.autograd.grad(out.square().sum(), (q, k, v)),
                                torch.autograd.grad(want.square().sum(), (q, k, v)), strict=True):
                torch.testing.assert_close(got, ref)
        assert not calls
        q, k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(3))
        module = model.model.layers[0].self_attn
        module.num_key_value_groups = 1
        no_key = torch.ones(2, 1, 5, 5, dtype=torch.bool)
        no_key[1, 0, 3] = False
        # (a decoder's rows above SHORT_ATTENTION_MAX take the native kernel, without the probabilities kept)
        longest = ck.DECODER_ATTENTION_MAX if native_path == "native" else ck.SHORT_ATTENTION_MAX
        long = (torch.randn(1, 2, longest + 1, 8, generator=g),) * 3
        for args in [(q, k, v, torch.zeros(2, 1, 5, 5)), (q, k, v, no_key), (*long, None),
                     (q.double(), k.double(), v.double(), None), (q[:, :, :2], k, v, None)]:  # causal, 2 queries
            attend(module, *args)
        longer = (torch.randn(1, 2, ck.ENCODER_ATTENTION_MAX + 1, 8, generator=g),) * 3
        attend(types.SimpleNamespace(num_key_value_groups=1, is_causal=False), *longer, None)
        assert len(calls) == 6  # each passed on to the original
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not ck._short_attention_forward
    monkeypatch.undo()
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is original


def test_decoder_rows_above_64_tokens_take_the_native_kernel_without_kept_probabilities(monkeypatch):
    """A decoder's rows of SHORT_ATTENTION_MAX + 1 to DECODER_ATTENTION_MAX keys take the native kernel with no
    probabilities kept (the backward recomputes them): the same output and gradients as SDPA, causal without a mask,
    with a mask that is the causal mask and padding in one (passed on as causal, so the kernel skips the future),
    with a mask that is not causal, and with a packed batch's additive mask (as the boolean mask it is); an additive
    mask of other values goes to SDPA."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from hone.data.lm import _packed_positions_and_mask
    from hone.model import cpu_kernels as ck
    from hone.model import native

    if native.library() is None or native.library().vector_width < native.ATTENTION_MIN_LANES:
        pytest.skip("no native attention kernel here")
    seen = []
    real = ck.attend
    monkeypatch.setattr(ck, "attend", lambda *a, **k: (seen.append((a[4], a[8] if len(a) > 8 else k.get(
        "keep_probs", True))), real(*a, **k))[1])
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=6, num_key_value_heads=2))
    g = torch.Generator().manual_seed(6)
    t = 130
    keys = torch.ones(2, t, dtype=torch.bool)
    keys[0, 100:] = False
    causal_padded = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & keys[:, None, None, :]
    prefix = causal_padded.clone()
    prefix[:, :, :4, :4] = True  # a bidirectional prefix: not causal
    _, packed = _packed_positions_and_mask([[0, 50, 90], [0, 77]], [120, 100], t)  # additive, padding after 120 / 100
    with cpu_kernels(model):
        attend = ALL_ATTENTION_FUNCTIONS["sdpa"]
        for heads, kv, n, mask, causal in [(6, 2, 300, None, True), (3, 1, ck.DECODER_ATTENTION_MAX, None, True),
                                           (4, 2, t, causal_padded, True), (4, 2, t, prefix, False),
                                           (6, 2, ck.SHORT_ATTENTION_MAX + 1, None, True), (4, 2, t, packed, True)]:
            q, k, v = (torch.randn(2, m, n, 8, generator=g, requires_grad=True) for m in (heads, kv, kv))
            module = types.SimpleNamespace(num_key_value_groups=heads // kv, is_causal=True)
            seen.clear()
            out, _ = attend(module, q, k, v, mask, scaling=0.3)
            assert seen == [(causal, False)], (n, seen)
            want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
            # (fp32 sums over hundreds of keys: errors relative to the largest element, as test_native's)
            for got, ref in zip((out, *torch.autograd.grad(out.square().sum(), (q, k, v))),
                                (want, *torch.autograd.grad(want.square().sum(), (q, k, v))), strict=True):
                torch.testing.assert_close(got, ref, rtol=0, atol=1e-5 * float(ref.abs().max()))
        seen.clear()  # an additive mask with other values goes to SDPA
        q, k, v = (torch.randn(2, m, t, 8, generator=g) for m in (4, 2, 2))
        attend(types.SimpleNamespace(num_key_value_groups=2, is_causal=True), q, k, v, packed.clamp(min=-1.0),
               scaling=0.3)
        assert not seen


def test_short_attention_reuses_the_bias_of_the_same_mask_only():
    """The layers of one forward share their mask, and the scores' bias built for it; a mask changed in place,
    another mask or an inference tensor gets its own, and the block's exit drops the kept one."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from hone.model import cpu_kernels as ck

    g = torch.Generator().manual_seed(8)
    module = types.SimpleNamespace(num_key_value_groups=1, is_causal=False)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g) for _ in range(3))
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[1, 4:] = False
    mask = pad[:, None, None, :].expand(2, 1, 6, 6).clone()
    with ck._short_attention():
        first = ck._scores_bias(2, 3, 1, 6, 6, 16, mask, False)
        assert ck._scores_bias(2, 3, 1, 6, 6, 16, mask, False) is first  # the next layer's call
        assert ck._scores_bias(2, 3, 1, 6, 6, 16, mask.clone(), False) is not first
        for _ in range(2):  # each forward after the first reuses the bias: the output stays SDPA's
            out, _ = ck._short_attention_forward(module, q, k, v, mask, scaling=0.3)
            torch.testing.assert_close(out, sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)[0])
        mask[0, :, :, 2] = False  # changed in place: a new bias, and the output follows
        assert ck._scores_bias(2, 3, 1, 6, 6, 16, mask, False) is not first
        out, _ = ck._short_attention_forward(module, q, k, v, mask, scaling=0.3)
        torch.testing.assert_close(out, sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)[0])
        with torch.inference_mode():
            frozen = mask.clone()
            assert ck._scores_bias(2, 3, 1, 6, 6, 16, frozen, False) is not ck._scores_bias(2, 3, 1, 6, 6, 16, frozen, False)
    assert ck._LAST_BIAS == [None]


def test_short_attention_gradients_for_the_inputs_that_need_them(native_path):
    """The attention node computes only the gradients autograd asks for (a frozen key projection's
    output needs none); each one it returns equals SDPA's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from hone.model import cpu_kernels as ck

    g = torch.Generator().manual_seed(6)
    module = types.SimpleNamespace(num_key_value_groups=2, is_causal=True)
    for need in [(True, False, True), (False, True, False), (False, False, True), (True, True, False)]:
        q, k, v = (torch.randn(2, n, 9, 8, generator=g).requires_grad_(r) for n, r in zip((4, 2, 2), need))
        with ck._short_attention():
            out, _ = ck._short_attention_forward(module, q, k, v, None, scaling=0.3)
        want, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.3)
        torch.testing.assert_close(out, want)
        asked = [x for x in (q, k, v) if x.requires_grad]
        for got, ref in zip(torch.autograd.grad(out.square().sum(), asked),
                            torch.autograd.grad(want.square().sum(), asked), strict=True):
            torch.testing.assert_close(got, ref)


def test_fused_rms_norm_gradcheck():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: _RMSNorm.apply(x, w, 1e-5), (x, w))


def test_fused_rms_norm_trains_a_llama_like_the_stock_module(native_path):
    """Full fine-tuning of a Llama: every RMSNorm switched, the same loss and gradients (the norms'
    weights included), by the native kernel or by torch's ops; bf16 inputs run the stock forward."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    for name, p in model.named_parameters():
        if "norm" in name:
            nn.init.normal_(p, mean=1.0, std=0.2)  # ones would hide a wrong weight gradient
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    loss, grads = _loss_and_grads(model, ids)
    with cpu_kernels(model) as counts:
        assert counts["rms_norm"] == 5  # 2 per layer and the final norm
        fused_loss, fused_grads = _loss_and_grads(model, ids)
        norm = model.model.norm
        h = torch.randn(2, 4, 32)
        assert "forward" in vars(norm)
        torch.testing.assert_close(norm(h.bfloat16()), type(norm).forward(norm, h.bfloat16()), rtol=0, atol=0)
    torch.testing.assert_close(fused_loss, loss)
    for k in grads:
        torch.testing.assert_close(fused_grads[k], grads[k], atol=1e-6, rtol=1e-4, msg=k)
    assert all("forward" not in vars(m) for m in model.modules())


def test_cpu_kernels_survive_train_eval_switches_of_a_loaded_model(tmp_path):
    """A model from ``from_pretrained`` (which turns transformers' hub kernels on from 5.25): switching
    train / eval inside the block must not drop the fused norms, and the block restores the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path).train()
    hub_on = getattr(model, "use_kernels", False)
    with cpu_kernels(model) as counts:
        assert counts["rms_norm"] == 5
        model.eval()
        model.train()
        norm = model.model.norm
        assert vars(norm)["forward"].__func__.__name__ == "_rms_norm_forward"
    assert all("forward" not in vars(m) for m in model.modules())
    assert getattr(model, "use_kernels", False) == hub_on
    model.eval()  # re-kernelizes when the hub kernels are on: still the stock forward on a CPU
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 100)


def test_fused_lora_gradcheck():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w, b = torch.randn(4, 5, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)
    a = torch.randn(2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    bb = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, bb: _LoraLinear.apply(x, w, b, a, bb, 0.7, 0.0), (x, a, bb))


def test_fused_lora_with_dropout_matches_the_reference_with_the_same_mask(native_path):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 8, generator=g, requires_grad=True)
    w, b = torch.randn(5, 8, generator=g), torch.randn(5, generator=g)
    a = torch.randn(3, 8, generator=g, requires_grad=True)
    bb = torch.randn(5, 3, generator=g, requires_grad=True)
    up = torch.randn(4, 6, 5, generator=g)
    torch.manual_seed(7)
    y = _LoraLinear.apply(x, w, b, a, bb, 2.0, 0.3)
    (y * up).sum().backward()
    fused = (y.detach(), x.grad.clone(), a.grad.clone(), bb.grad.clone())
    x.grad = a.grad = bb.grad = None
    torch.manual_seed(7)
    mask, scale = keep_mask((24, 8), 0.3)  # the mask the fused node drew
    ref = x @ w.T + b + 2.0 * ((x * mask.view(4, 6, 8) * scale) @ a.T) @ bb.T
    (ref * up).sum().backward()
    for got, want in zip(fused, (ref.detach(), x.grad, a.grad, bb.grad)):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert 0.2 < 1 - mask.float().mean().item() < 0.4


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_lora_layers_reading_one_input_share_its_cast(native_path, p):
    """Under autocast, LoRA layers that read the same input (query / key / value, gate / up) cast it once; a new
    tensor, or the same one changed in place, is cast afresh."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 6, 8, generator=g)
    w1, w2 = torch.randn(5, 8, generator=g), torch.randn(3, 8, generator=g)
    a = torch.randn(2, 8, generator=g, requires_grad=True)
    b1, b2 = torch.randn(5, 2, generator=g), torch.randn(3, 2, generator=g)
    bf16 = torch.bfloat16

    def run(inp, w, b, seed=0):
        torch.manual_seed(seed)
        return _LoraLinear.apply(inp, w.to(bf16), None, a, b, 2.0, p, bf16)

    run(x, w1, b1)
    cast = ck._cached_cast(x, bf16)
    assert cast is not None and torch.equal(cast, x.reshape(-1, 8).to(bf16))
    y2 = run(x, w2, b2, seed=1)
    assert ck._cached_cast(x, bf16) is cast  # the second layer reused it
    assert torch.equal(y2, run(x.clone(), w2, b2, seed=1))  # as if cast afresh
    assert ck._cached_cast(x, torch.float16) is None
    x.add_(1.0)
    assert ck._cached_cast(x, bf16) is None
    assert torch.equal(run(x, w2, b2, seed=2), run(x.clone(), w2, b2, seed=2))
    with torch.inference_mode():  # inference tensors have no version counter: not cached (evaluation in a run)
        xi = torch.randn(4, 6, 8)
        assert torch.equal(run(xi, w1, b1), run(xi.clone(), w1, b1)) and ck._cached_cast(xi, bf16) is None


def test_fused_lora_falls_back_to_peft_where_it_does_not_apply():
    ids = torch.randint(0, 100, (2, 5), generator=torch.Generator().manual_seed(4))
    dora = _lora_llama(0.0, use_dora=True)
    loss, grads = _loss_and_grads(dora, ids)
    with cpu_kernels(dora):
        fused_loss, fused_grads = _loss_and_grads(dora, ids)  # DoRA: peft's own forward
    assert torch.equal(loss, fused_loss)
    for k in grads:  # the LoRA layers are peft's; only the fused RMSNorms' rounding differs
        torch.testing.assert_close(fused_grads[k], grads[k], atol=1e-6, rtol=1e-4, msg=k)
    model = _lora_llama(0.1)
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with cpu_kernels(model):
            assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-6)  # eval: no dropout
            with model.disable_adapter():
                base = model(input_ids=ids).logits
        assert not torch.allclose(base, ref)
        model.merge_adapter()
        with cpu_kernels(model):
            assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-5)  # merged: the base layer alone
    trainable_base = _lora_llama(0.0)
    for m in trainable_base.modules():
        if hasattr(m, "base_layer"):
            m.base_layer.weight.requires_grad_(True)
    with cpu_kernels(trainable_base) as counts:
        assert counts["lora"] == 0


class _Rows:
    """Token rows, every position trained (the shape hone's SFT batches have)."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.rows = [torch.randint(0, 100, (int(n),), generator=g) for n in torch.randint(4, 9, (16,), generator=g)]
        self.lengths = [len(r) for r in self.rows]

    def __len__(self):
        return len(self.rows)

    def batch(self, idx):
        n = max(self.lengths[i] for i in idx)
        ids = torch.zeros(len(idx), n, dtype=torch.long)
        labels = torch.full((len(idx), n), -100)
        for j, i in enumerate(idx):
            ids[j, : self.lengths[i]] = labels[j, : self.lengths[i]] = self.rows[i]
        return {"input_ids": ids, "attention_mask": (labels != -100).long(), "labels": labels,
                "num_tokens": int((labels != -100).sum())}


def test_training_loop_with_and_without_cpu_kernels(tmp_path):
    from hone.config import TrainConfig
    from hone.train.loop import train
    from hone.train.objectives import CausalLMObjective

    trained = {}
    for kernels in (True, False):
        model = _lora_llama(0.0)
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        res = train(model, _Rows(5), None, TrainConfig(max_steps=3, batch_size=8, lr=1e-2, cpu_kernels=kernels,
                                                       precision="fp32"),
                    objective=CausalLMObjective(), run_dir=tmp_path / str(kernels), seed=0, progress=False)
        assert res.steps == 3
        assert all("forward" not in vars(m) for m in model.modules())  # the context restored the model
        trained[kernels] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        assert all(not torch.equal(trained[kernels][n], before[n]) for n in before)
    for n, p in trained[True].items():  # no dropout: like peft's to float rounding (3 Adam steps, lr 1e-2)
        assert torch.allclose(p, trained[False][n], atol=1e-4), (n, (p - trained[False][n]).abs().max().item())


def test_kernels_under_bf16_autocast_are_as_accurate_as_the_stock_path(native_path):
    """Under CPU autocast (``precision: bf16``) the fused LoRA layers compute in bf16 like autocast runs peft's,
    the norms stay fp32 and short attention runs in fp32 from the bf16 projections: the loss and every
    gradient are as close to the fp32 ones as the stock modules' under autocast are, and the gradients
    come back fp32."""
    model = _lora_llama(0.0)
    for m in model.modules():
        if type(m).__name__ == "LlamaRMSNorm":
            nn.init.normal_(m.weight, mean=1.0, std=0.2)
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    ref_loss, ref = _loss_and_grads(model, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        stock_loss, stock = _loss_and_grads(model, ids)
        with cpu_kernels(model) as counts:
            native_layers = 2 if native_path == "native" else 0  # SwiGLU and rotary: native kernels only
            assert counts == {"dropout": 0, "lora": 14, "rms_norm": 5, "frozen_linear": 15, "bert_layer": 0,
                              "short_attention": 1, "swiglu": native_layers, "rotary": native_layers, "add_norm": 0,
                              "packed_encoder": 0}
            fused_loss, fused = _loss_and_grads(model, ids)
            layer = model.base_model.model.model.layers[0].self_attn.q_proj
            assert layer(torch.randn(2, 3, 32)).dtype == torch.bfloat16  # as autocast's linear gives

    def err(got, want):
        return ((got - want).norm() / want.norm()).item()

    assert abs(fused_loss - ref_loss) <= max(2 * abs(stock_loss - ref_loss), 1e-3)
    assert all(g.dtype == torch.float32 for g in fused.values())
    worst_stock, worst_fused = max(err(stock[k], ref[k]) for k in ref), max(err(fused[k], ref[k]) for k in ref)
    assert 0 < worst_fused <= max(1.5 * worst_stock, 0.02)  # bf16: ~1-2% (0.021 stock, 0.016 fused measured)


def test_short_attention_under_autocast_runs_in_fp32(native_path):
    """Under CPU autocast SDPA would run in bf16; the short attention computes in fp32 from the bf16
    projections and returns bf16, as SDPA does there: closer to the fp32 result than SDPA in bf16."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from hone.model import cpu_kernels as ck

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, n, 12, 16, generator=g).bfloat16().requires_grad_() for n in (6, 2, 2))
    module = types.SimpleNamespace(num_key_value_groups=3, is_causal=True)
    want, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), None, scaling=0.25)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sdpa_bf16, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.25)
        with ck._short_attention():
            out, _ = ck._short_attention_forward(module, q, k, v, None, scaling=0.25)
    assert out.dtype == sdpa_bf16.dtype == torch.bfloat16 and out.shape == want.shape
    assert (out.float() - want).abs().max() <= (sdpa_bf16.float() - want).abs().max()
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    assert all(gr.dtype == torch.bfloat16 and torch.isfinite(gr).all() for gr in grads)
