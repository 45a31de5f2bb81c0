"""model.dropout: one knob for every dropout probability of the base model."""

from __future__ import annotations

import json

import torch
import yaml
from typer.testing import CliRunner

from _tiny import build_tiny_bert, build_tiny_llama
from _util import clf_rows, write_jsonl
from hone.cli import app
from hone.model.load import set_dropout
from hone.train.classify import build_classifier

runner = CliRunner()


def test_set_dropout_makes_training_forward_deterministic(tmp_path):
    tiny = build_tiny_bert(tmp_path / "bert")
    model, tok, _ = build_classifier(str(tiny), ["a", "b"], multi_label=False)
    model.train()
    batch = tok(["my bill is wrong", "no signal"], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(model(**batch).logits, model(**batch).logits)  # dropout 0.1 is on
    changed = set_dropout(model, 0.0)
    assert "config.hidden_dropout_prob" in changed and "config.attention_probs_dropout_prob" in changed
    assert "dropout" in changed  # the classifier head's own module
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, model(**batch).logits)
    assert set_dropout(model, 0.0) == []  # nothing left to change


def test_set_dropout_reaches_attribute_dropout_of_llama(tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(build_tiny_llama(tmp_path / "llama")))
    changed = set_dropout(model, 0.2)
    assert model.config.attention_dropout == 0.2
    assert all(layer.self_attn.attention_dropout == 0.2 for layer in model.model.layers)
    assert any(c.endswith("self_attn.attention_dropout") for c in changed)


def test_lora_dropout_is_not_the_base_models(tmp_path):
    from hone.config import LoraMethod
    from hone.model.methods import apply_method

    model, _, _ = build_classifier(str(build_tiny_bert(tmp_path / "bert")), ["a", "b"], multi_label=False)
    set_dropout(model, 0.0)
    model = apply_method(model, LoraMethod(r=4, alpha=8, dropout=0.3))
    lora = [m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" in n]
    base = [m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in n]
    assert lora and set(lora) == {0.3}
    assert base and set(base) == {0.0}


def test_run_with_model_dropout_records_it_in_the_artifact(tmp_path):
    tiny = build_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "tickets.jsonl", clf_rows(60))
    cfg = {"seed": 1, "data": {"path": str(data), "pii": {"enabled": False}},
           "model": {"name": str(tiny), "max_length": 32, "dropout": 0.0}, "method": {"name": "full"},
           "train": {"max_steps": 4, "batch_size": 8, "lr": 3e-3},
           "eval": {"baselines": [], "bootstrap": 20, "forgetting": False}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "dropout set to 0" in r.output
    art = tmp_path / "out" / "artifact"
    conf = json.loads((art / "config.json").read_text())
    assert conf["hidden_dropout_prob"] == 0.0 and conf["attention_probs_dropout_prob"] == 0.0
    assert yaml.safe_load((art / "config.yaml").read_text())["model"]["dropout"] == 0.0
