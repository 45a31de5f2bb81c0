"""QLoRA: LoRA on a 4-bit frozen base (hone.model.quant), on the tiny random Llama.

CPU tests use the default CPU backend (bitsandbytes NF4); the HQQ one runs when hqq is
installed; the CUDA one is marked ``gpu``.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from hone.errors import ConfigError, ModelError
from tests._tiny import build_tiny_llama

pytest.importorskip("peft")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_llama(tmp_path_factory.mktemp("qlora") / "tiny"))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randint(4, 30, (4, 16), generator=g)


def _train(pm, steps=15, lr=1e-2):
    ids = _batch()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=lr)
    pm.train()
    losses = []
    for _ in range(steps):
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for p in pm.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    pm.eval()
    return losses


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _dequantized_base(tiny, pm):
    """The tiny Llama in fp32 with each targeted projection's weight set to the 4-bit model's, dequantized."""
    from bitsandbytes.functional import dequantize_4bit
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    qmods = dict(pm.named_modules())
    for n, m in base.named_modules():
        if n.split(".")[-1] in TARGETS:
            w = qmods[f"base_model.model.{n}"].base_layer.weight
            m.weight.data = dequantize_4bit(w.data, w.quant_state).float()
    return base


@pytest.fixture(scope="module")
def trained(tiny):
    """A bitsandbytes 4-bit tiny Llama with LoRA on every projection, trained 15 steps."""
    pytest.importorskip("bitsandbytes")
    from hone.model.quant import load_quantized_causal_lm, lora_on_quantized

    torch.manual_seed(0)
    model = load_quantized_causal_lm(tiny)
    before = {n: m.weight.data.clone() for n, m in model.named_modules() if n.endswith("q_proj")}
    pm = lora_on_quantized(model, r=8, alpha=16, dropout=0.0, target_modules=TARGETS)
    return pm, _train(pm), before


def test_resolve_auto_on_cpu():
    pytest.importorskip("bitsandbytes")
    from hone.model.quant import resolve_backend

    if not torch.cuda.is_available():
        assert resolve_backend("auto") == "bitsandbytes"
    assert resolve_backend("bnb") == "bitsandbytes"


def test_base_is_really_quantized(tiny):
    bnb = pytest.importorskip("bitsandbytes")
    from hone.model.quant import load_quantized_causal_lm

    model = load_quantized_causal_lm(tiny)
    assert model.hone_quantization == "bitsandbytes-4bit"
    linears = {n: m for n, m in model.named_modules() if n.split(".")[-1] in TARGETS}
    assert len(linears) == 14 and all(isinstance(m, bnb.nn.Linear4bit) for m in linears.values())
    q_bytes = fp32_bytes = 0
    for m in linears.values():
        w, qs = m.weight, m.weight.quant_state
        assert w.dtype == torch.uint8 and qs.quant_type == "nf4" and qs.nested  # NF4, double-quantized
        assert w.numel() * 2 == m.in_features * m.out_features  # two 4-bit codes per byte
        q_bytes += w.numel() + qs.absmax.numel() * qs.absmax.element_size()
        fp32_bytes += 4 * m.in_features * m.out_features
    assert q_bytes < fp32_bytes / 7  # 0.5 byte per weight + one uint8 scale per 64 weights
    # The output head (tied to the embeddings) stays fp32; nothing in the base trains.
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())


def test_lora_trains_on_the_quantized_base(trained):
    pm, losses, before = trained
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.2 and losses[-1] < min(losses[:5])
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(p.dtype == torch.float32 for n, p in pm.named_parameters() if p.requires_grad)
    after = {n.removeprefix("base_model.model."): m.base_layer.weight.data
             for n, m in pm.named_modules() if n.endswith("q_proj")}
    assert all(torch.equal(before[n], after[n]) for n in before)  # the 4-bit codes never change


def test_adapter_loads_on_the_unquantized_base(trained, tiny, tmp_path):
    """The saved adapter is a plain PEFT adapter.

    Tolerance: the adapter weights are identical on both sides, so the only difference is
    the base weights (NF4 vs fp32).  (1) On a base whose Linear weights are the *dequantized*
    NF4 weights the outputs must match to float rounding (1e-4).  (2) On the true fp32 base the
    gap is the base's quantization error, propagated through the adapted network: it must be
    of the order of the bare base's quantization error (RMS over the logits, measured here
    without the adapter).  The trained adapter scales the activations the errors flow through
    (gap/error was 1.1-2.1 over 8 seeds), so allow 3x.  The adapter's own effect was 15-24x that
    gap on an AVX2 host and 4.8x on an AVX512-BF16 one (seed 0; training there is exact against the
    dequantized base, see the next test), so requiring > 3x also proves the adapter was transferred.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    pm, _, _ = trained
    pm.save_pretrained(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    ids = _batch()[:2]
    quant_adapted = _logits(pm, ids)
    with pm.disable_adapter():
        quant_bare = _logits(pm, ids)

    fp_base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    fp_bare = _logits(fp_base, ids)
    fp_adapted = _logits(PeftModel.from_pretrained(fp_base, tmp_path / "adapter").eval(), ids)

    deq_base = _dequantized_base(tiny, pm)
    deq_adapted = _logits(PeftModel.from_pretrained(deq_base, tmp_path / "adapter").eval(), ids)

    assert (deq_adapted - quant_adapted).abs().max() < 1e-4
    def rms(x):
        return x.pow(2).mean().sqrt().item()

    quant_error, gap, effect = rms(quant_bare - fp_bare), rms(quant_adapted - fp_adapted), rms(fp_adapted - fp_bare)
    assert 0 < quant_error and gap <= 3 * quant_error
    assert effect > 3 * gap


def test_missing_backend_names_the_package(monkeypatch, tiny):
    from hone.model import quant

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    monkeypatch.setattr(quant, "_cuda", lambda: False)
    for call in (lambda: quant.resolve_backend("auto"), lambda: quant.load_quantized_causal_lm(tiny)):
        with pytest.raises(ModelError, match=r'bitsandbytes.*pip install "bitsandbytes>=0.47"'):
            call()


def test_backends_that_cannot_work_are_explained(monkeypatch):
    from hone.model import quant

    with pytest.raises(ModelError, match="int8 weights only"):
        quant.resolve_backend("torchao")
    with pytest.raises(ModelError, match="no LoRA layer for quanto"):
        quant.resolve_backend("optimum-quanto")
    with pytest.raises(ModelError, match="unknown quantization backend 'gguf'; known: auto, bitsandbytes, hqq"):
        quant.resolve_backend("gguf")
    if importlib.util.find_spec("bitsandbytes") and not torch.cuda.is_available():
        monkeypatch.setattr(sys.modules["bitsandbytes"], "__version__", "0.45.5")
        with pytest.raises(ModelError, match="0.45.5 has no CPU 4-bit backend"):
            quant.resolve_backend("auto")


def test_bad_bits_and_dtype(tiny):
    pytest.importorskip("bitsandbytes")
    from hone.model.quant import load_quantized_causal_lm

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="does not train on the CPU"):
            load_quantized_causal_lm(tiny, bits=8)
    with pytest.raises(ConfigError, match="compute_dtype"):
        load_quantized_causal_lm(tiny, compute_dtype="int8")


def test_lora_needs_a_quantized_model(tiny):
    from transformers import AutoModelForCausalLM

    from hone.model.quant import lora_on_quantized

    with pytest.raises(ModelError, match="load_quantized_causal_lm"):
        lora_on_quantized(AutoModelForCausalLM.from_pretrained(tiny), 4, 8, 0.0, ["q_proj"])


def test_hqq_backend_trains(tiny):
    pytest.importorskip("hqq")
    from hqq.core.quantize import HQQLinear

    from hone.model.quant import load_quantized_causal_lm, lora_on_quantized

    torch.manual_seed(0)
    model = load_quantized_causal_lm(tiny, backend="hqq")
    assert model.hone_quantization == "hqq-4bit"
    assert sum(isinstance(m, HQQLinear) for m in model.modules()) == 14
    losses = _train(lora_on_quantized(model, r=8, alpha=16, dropout=0.0, target_modules="all-linear"), steps=10)
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.gpu
def test_bitsandbytes_on_cuda(tiny):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    bnb = pytest.importorskip("bitsandbytes")
    from hone.model.quant import (
        load_quantized_causal_lm,
        lora_on_quantized,
        resolve_backend,
    )

    assert resolve_backend("auto") == "bitsandbytes"
    model = load_quantized_causal_lm(tiny)
    lin = model.model.layers[0].self_attn.q_proj
    assert isinstance(lin, bnb.nn.Linear4bit) and lin.weight.device.type == "cuda"
    assert lin.compute_dtype in (torch.bfloat16, torch.float16)
    pm = lora_on_quantized(model, r=8, alpha=16, dropout=0.05, target_modules=TARGETS)
    ids = _batch().cuda()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    pm.train()
    losses = []
    for _ in range(10):
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_lora_gradients_on_the_4bit_base_equal_the_dequantized_fp32_base(tiny):
    """Training on the 4-bit base is exactly training on its dequantized fp32 weights: the same loss
    and LoRA gradients (bitsandbytes' CPU forward and backward, whatever the CPU's kernels)."""
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model

    from hone.model.quant import load_quantized_causal_lm, lora_on_quantized

    torch.manual_seed(0)
    pm = lora_on_quantized(load_quantized_causal_lm(tiny), r=8, alpha=16, dropout=0.0, target_modules=TARGETS)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)  # peft starts B at zero, which would hide A's gradient
    dm = get_peft_model(_dequantized_base(tiny, pm), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    missing = dm.load_state_dict({k: v for k, v in pm.state_dict().items() if "lora_" in k}, strict=False)
    assert not [k for k in missing.missing_keys if "lora_" in k]
    ids = _batch()
    results = []
    for m in (pm, dm):
        m.train()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in m.named_parameters() if p.requires_grad}))
    (q_loss, q_grads), (d_loss, d_grads) = results
    torch.testing.assert_close(q_loss, d_loss, rtol=1e-5, atol=1e-6)
    assert q_grads.keys() == d_grads.keys() and len(q_grads) == 2 * 14
    for k in d_grads:
        torch.testing.assert_close(q_grads[k], d_grads[k], rtol=1e-4, atol=1e-6, msg=k)


_HUB_PROBE = r"""
import sys
import kernels as fake  # the real package, its Hub call replaced by a recorder
calls = []
fake.get_kernel = lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(RuntimeError("the Hub was asked"))
if sys.argv[1] == "hone":
    from hone.model.methods import import_peft
    import_peft()
else:
    import peft
import bitsandbytes.functional as F
print(len(calls), sys.modules.get("kernels") is fake, "peft" in sys.modules, bool(F.has_avx512bf16()))
"""


def test_import_peft_keeps_bitsandbytes_off_the_hub():
    """peft imports bitsandbytes, which on an AVX512-BF16 CPU asks the Hub for a 4-bit kernel at import (and
    warns offline).  Through ``import_peft`` it never asks, prints nothing, and ``kernels`` is back afterwards."""
    import subprocess

    if importlib.util.find_spec("bitsandbytes") is None or importlib.util.find_spec("kernels") is None:
        pytest.skip("bitsandbytes or kernels is not installed")

    def probe(mode):
        out = subprocess.run([sys.executable, "-c", _HUB_PROBE, mode], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-4:], out.stderr

    (calls, restored, imported, bf16), err = probe("hone")
    assert (calls, restored, imported) == ("0", "True", "True")
    assert "Hub was asked" not in err and "kernels-community" not in err
    if bf16 == "True":  # where bitsandbytes asks the Hub, plain peft does: the probe can tell the two apart
        (calls, _, _, _), err = probe("plain")
        assert calls == "1" and "Hub was asked" in err
