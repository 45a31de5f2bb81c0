"""hone.export: merged transformers checkpoints, GGUF and ONNX files, each checked by a round trip."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from _tiny import CHAT_TEMPLATE, CORPUS, build_tiny_llama

from hone import export as hexport
from hone.errors import ArtifactError

HAS_ONNX = all(importlib.util.find_spec(p) is not None for p in ("onnx", "onnxscript", "onnxruntime"))


def _bpe_llama(path: Path) -> Path:
    """A tiny Llama whose tokenizer is byte-level BPE (what GGUF's "gpt2" tokenizer model holds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(1)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _artifact(base: Path, art: Path, *, peft_cfg=None, quantized: str | None = None, seed: int = 0) -> Path:
    """A LoRA (r=4, q/v) artifact whose B matrices are random, so the adapter really changes outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = peft_cfg or LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    peft = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    peft.save_pretrained(art)
    tok.save_pretrained(art)
    manifest = {"kind": "generator", "format": "peft", "architecture": "causal", "base_model": "tiny-llama",
                "base_model_path": str(base), "method": "lora" if peft_cfg is None else "prompt_tuning",
                "quantized": quantized, "generation": {"max_new_tokens": 16, "eos_token_ids": [tok.eos_token_id]}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    return art


def _peft_model(art: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    man = json.loads((art / "manifest.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(man["base_model_path"], dtype=torch.float32)
    return PeftModel.from_pretrained(base, art).eval()


def _ids(art: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(art)
    return torch.tensor([tok(" ".join(CORPUS[:3]))["input_ids"]])


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    return _artifact(build_tiny_llama(root / "base"), root / "artifact")


@pytest.fixture(scope="module")
def bpe_lora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export_bpe")
    return _artifact(_bpe_llama(root / "base"), root / "artifact", seed=1)


def test_merge_round_trips_and_matches_peft_logits(lora, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, logs = tmp_path / "merged", []
    report = hexport.export(lora, out, log=logs.append)
    assert report["transformers"]["round_trip"].startswith("ok")
    assert report["transformers"]["tokens_compared"] > 0 and report["transformers"]["path"] == str(out)
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    base = AutoModelForCausalLM.from_pretrained(json.loads((lora / "manifest.json").read_text())["base_model_path"])
    ids = _ids(lora)
    with torch.no_grad():
        want, got = _peft_model(lora)(input_ids=ids).logits, merged(input_ids=ids).logits
        plain = base(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-5)
    assert not torch.allclose(want, plain, atol=1e-3)  # the adapter matters
    man = json.loads((out / "manifest.json").read_text())
    assert man["format"] == "transformers" and man["merged_from"]["format"] == "peft"
    assert AutoTokenizer.from_pretrained(out).chat_template == CHAT_TEMPLATE
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    assert json.loads((out / "export_report.json").read_text())["formats"]["transformers"]["round_trip"]
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no staging leftovers


def test_gguf_round_trip(bpe_lora, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    report = hexport.export(bpe_lora, out, formats=("transformers", "gguf"))
    assert report["gguf"]["round_trip"].startswith("ok") and report["gguf"]["tokens_compared"] > 0
    solo = tmp_path / "solo"  # the GGUF on its own, as llama.cpp users get it
    solo.mkdir()
    shutil.copy(out / "model.gguf", solo)
    g = AutoModelForCausalLM.from_pretrained(solo, gguf_file="model.gguf", dtype=torch.float32)
    ids = _ids(bpe_lora)
    with torch.no_grad():
        assert torch.allclose(_peft_model(bpe_lora)(input_ids=ids).logits, g(input_ids=ids).logits, atol=1e-4)
    gtok, tok = AutoTokenizer.from_pretrained(solo, gguf_file="model.gguf"), AutoTokenizer.from_pretrained(out)
    text = "the router keeps restarting!"
    assert gtok(text)["input_ids"] == tok(text)["input_ids"] and gtok.chat_template == CHAT_TEMPLATE


def test_gguf_export_to_a_relative_path(bpe_lora, tmp_path, monkeypatch):
    """-o given relative: the round trip's link to the GGUF file dangled and the export failed after writing it."""
    monkeypatch.chdir(tmp_path)
    report = hexport.export(bpe_lora, "exports/rel", formats=("gguf",))
    assert report["gguf"]["round_trip"].startswith("ok") and (tmp_path / "exports" / "rel" / "model.gguf").is_file()


def test_gguf_f16_round_trip(bpe_lora, tmp_path):
    report = hexport.export(bpe_lora, tmp_path / "f16", formats=("gguf",), gguf_dtype="f16")
    assert report["gguf"]["round_trip"].startswith("ok")
    assert not (tmp_path / "f16" / "config.json").exists()  # only the GGUF was asked for
    assert not (tmp_path / "f16" / ".merged").exists()


def test_gguf_refuses_a_word_level_tokenizer(lora, tmp_path):
    with pytest.raises(ArtifactError, match="byte-level BPE.*convert_hf_to_gguf.py"):
        hexport.export(lora, tmp_path / "x", formats=("gguf",))
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not HAS_ONNX, reason="needs hone[export]: onnx, onnxscript, onnxruntime")
def test_onnx_round_trip(lora, tmp_path):
    out = tmp_path / "onnx"
    report = hexport.export(lora, out, formats=("onnx",), prompts=["please cancel my contract today"])
    assert report["onnx"]["round_trip"].startswith("ok") and report["onnx"]["tokens_compared"] > 0
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "tokenizer_config.json").is_file()


def test_prompt_tuning_cannot_be_merged(tmp_path):
    from peft import PromptTuningConfig, TaskType

    base = build_tiny_llama(tmp_path / "base")
    art = _artifact(base, tmp_path / "pt", peft_cfg=PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                                       num_virtual_tokens=2))
    with pytest.raises(ArtifactError, match="PROMPT_TUNING.*cannot be merged"):
        hexport.export(art, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupted_export_fails_the_round_trip_and_leaves_nothing(lora, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    real = hexport._write_transformers

    def corrupt(model, tok, dest):
        real(model, tok, dest)
        weights = load_file(dest / "model.safetensors")
        weights["model.norm.weight"] = -weights["model.norm.weight"]  # negated logits: greedy picks the worst
        save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})

    monkeypatch.setattr(hexport, "_write_transformers", corrupt)
    with pytest.raises(ArtifactError, match="does not round-trip: prompt 1.*original: .*exported: "):
        hexport.export(lora, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_quantized_base_is_dequantized_or_refused(tmp_path):
    base = build_tiny_llama(tmp_path / "base")
    art = _artifact(base, tmp_path / "q", quantized="4bit-nf4")
    logs: list[str] = []
    report = hexport.export(art, tmp_path / "out", log=logs.append)
    assert report["transformers"]["round_trip"].startswith("ok")
    assert any("dequantiz" in m and "unquantized float32 base" in m for m in logs)
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["quantized"] is None and man["dequantized_from"] == "4bit-nf4"
    man = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps({**man, "base_model_path": str(tmp_path / "gone")}))
    with pytest.raises(ArtifactError, match="unquantized base is needed"):
        hexport.export(art, tmp_path / "out2")


def test_no_merge_keeps_the_adapter_and_bad_requests_are_refused(lora, tmp_path):
    report = hexport.export(lora, tmp_path / "adapter", merge=False)
    assert report["transformers"]["round_trip"].startswith("ok")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "adapter" / "manifest.json").read_text())["format"] == "peft"
    with pytest.raises(ArtifactError, match="need the adapter merged"):
        hexport.export(lora, tmp_path / "y", merge=False, formats=("gguf",))
    with pytest.raises(ArtifactError, match="unknown export format"):
        hexport.export(lora, tmp_path / "y", formats=("tflite",))
    with pytest.raises(ArtifactError, match="already exists"):
        hexport.export(lora, tmp_path / "adapter")


def test_near_ties_pass_and_real_differences_fail():
    class Tok:
        @staticmethod
        def decode(ids):
            return " ".join(map(str, ids))

    tie, far = torch.tensor([0.0, 1.0, 1.0 + 5e-5]), torch.tensor([0.0, 1.0, 2.0])
    ref = [hexport._Gen([7], [2, 2], [tie, tie])]
    assert hexport._compare("gguf", ref, [hexport._Gen([7], [1, 1], [tie, tie])], Tok, 1e-4) == \
        ("ok (tie at prompt 1 position 0)", 0)
    assert hexport._compare("gguf", ref, [hexport._Gen([7], [2, 2], [tie, tie])], Tok, 1e-4) == ("ok", 2)
    with pytest.raises(ArtifactError, match="position 0; original: \\[2\\] '2'.*exported: \\[1\\] '1'"):
        hexport._compare("onnx", [hexport._Gen([7], [2], [far])], [hexport._Gen([7], [1], [far])], Tok, 1e-4)
    with pytest.raises(ArtifactError, match="stopped with EOS: True.*stopped with EOS: False"):
        hexport._compare("onnx", [hexport._Gen([7], [2], [far], True)], [hexport._Gen([7], [2], [far])], Tok, 1e-4)
    with pytest.raises(ArtifactError, match="tokenizer renders prompt 1"):
        hexport._compare("onnx", ref, [hexport._Gen([8], [2, 2], [tie, tie])], Tok, 1e-4)


def test_missing_onnx_packages_name_the_extra(lora, tmp_path, monkeypatch):
    monkeypatch.setattr(hexport, "_ONNX_PACKAGES", ("onnx", "no_such_package_for_hone_tests"))
    with pytest.raises(ArtifactError, match=r"pip install 'hone\[export\]'"):
        hexport.export(lora, tmp_path / "x", formats=("onnx",))
    assert not (tmp_path / "x").exists()
