"""hone.model.frozen_casts: frozen linear weights cast to CPU autocast's dtype once, bit-identical to autocast."""

from __future__ import annotations

import copy

import torch
from torch import nn

from hone.model import frozen_casts
from hone.model.cpu_kernels import cpu_kernels
from test_cpu_kernels import _lora_llama


def _frozen_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
    model[0].requires_grad_(False)  # the first layer frozen, the second trained
    return model


def _autocast_pass(model, x):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    return y.detach(), grads


def test_frozen_linear_reuses_one_cast_and_matches_autocast_bit_for_bit():
    model, x = _frozen_mlp(), torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    ref_y, ref_grads = _autocast_pass(model, x)
    with cpu_kernels(model) as counts:
        assert counts["frozen_linear"] == 1  # the trained layer keeps autocast's own (per-forward) cast
        y, grads = _autocast_pass(model, x)
        w16, b16 = frozen_casts.amp_weights(model[0], torch.bfloat16)
        assert w16.dtype == torch.bfloat16 and not w16.requires_grad
        _autocast_pass(model, x)
        assert frozen_casts.amp_weights(model[0], torch.bfloat16)[0] is w16  # cast once, then reused
        with torch.no_grad():
            model[0].weight.add_(1.0)  # an in-place change (a merge, a restore) makes a new cast
        assert frozen_casts.amp_weights(model[0], torch.bfloat16)[0] is not w16
        with torch.no_grad():
            model[0].weight.sub_(1.0)
        again = frozen_casts.amp_weights(model[0], torch.bfloat16)[0]
        model[0].weight = nn.Parameter(model[0].weight.detach().clone(), requires_grad=False)  # replaced
        assert frozen_casts.amp_weights(model[0], torch.bfloat16)[0] is not again
    assert torch.equal(y, ref_y) and y.dtype == torch.bfloat16
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.equal(got, want)
    assert all("forward" not in vars(m) and frozen_casts._SLOT not in vars(m) for m in model.modules())
    assert frozen_casts.amp_weights(model[0], torch.bfloat16)[0] is model[0].weight  # disarmed: no cache


def test_frozen_linear_outside_autocast_and_after_unfreezing_runs_its_own_forward():
    model, x = _frozen_mlp(), torch.randn(5, 16)
    unfrozen = copy.deepcopy(model).requires_grad_(True)
    ref_y, ref_grads = _autocast_pass(unfrozen, x)
    with cpu_kernels(model):
        assert model(x).dtype == torch.float32  # fp32 training: the layer's own forward
        assert vars(model[0])[frozen_casts._SLOT] is None  # nothing cast
        model[0].requires_grad_(True)  # progressive unfreezing: autocast's own cast, and a gradient
        y, grads = _autocast_pass(model, x)
        assert vars(model[0])[frozen_casts._SLOT] is None
    assert len(grads) == 5  # x and four trained tensors
    assert torch.equal(y, ref_y)
    assert all(torch.equal(g, r) for g, r in zip(grads, ref_grads, strict=True))


def test_a_cast_made_under_inference_mode_can_be_saved_for_backward():
    """An evaluation inside the training loop runs under inference_mode and may make the cast first."""
    model, x = _frozen_mlp(), torch.randn(5, 16)
    ref_y, ref_grads = _autocast_pass(model, x)
    with cpu_kernels(model):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
        assert not frozen_casts.amp_weights(model[0], torch.bfloat16)[0].is_inference()
        y, grads = _autocast_pass(model, x)
    assert torch.equal(y, ref_y)
    assert all(torch.equal(g, r) for g, r in zip(grads, ref_grads, strict=True))


def test_lora_and_its_frozen_head_use_the_casts_with_the_same_loss_and_gradients():
    """The fused LoRA layers and the fused LM head (a frozen, tied head under LoRA) take the cached casts:
    the loss and every gradient equal those of the same kernels casting at every forward."""
    from hone.train.objectives import CausalLMObjective

    model = _lora_llama(0.0)
    ids = torch.randint(0, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    def loss_and_grads():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = CausalLMObjective().loss(model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    real = frozen_casts.amp_weights
    with cpu_kernels(model) as counts:
        assert counts["lora"] == 14 and counts["frozen_linear"] == 15  # 14 LoRA bases and the LM head
        loss, grads = loss_and_grads()
        head = model.get_base_model().lm_head
        assert vars(head)[frozen_casts._SLOT] is not None  # the fused head made (and keeps) its cast
        frozen_casts.amp_weights = lambda layer, dtype: (layer.weight, layer.bias)  # cast at every call
        try:
            ref_loss, ref_grads = loss_and_grads()
        finally:
            frozen_casts.amp_weights = real
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        assert torch.equal(grads[k], ref_grads[k]), k
