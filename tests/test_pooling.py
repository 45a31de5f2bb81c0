"""model.pooling: mean — the mean-pooling BERT classifier, trained, saved and loaded three ways."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import hone
from _tiny import build_tiny_bert
from _util import clf_rows, write_jsonl
from hone.cli import app
from hone.errors import ModelError
from hone.model.fast import first_token_only
from hone.train.classify import build_classifier, sentence_pooling

runner = CliRunner()


def test_mean_pooling_logits_ignore_padding_and_differ_from_cls(tmp_path):
    tiny = build_tiny_bert(tmp_path / "bert")
    model, tok, _ = build_classifier(str(tiny), ["a", "b", "c"], multi_label=False, pooling="mean")
    model.eval()
    assert type(model).__name__ == "BertMeanPoolingForSequenceClassification"
    assert model.config.classifier_pooling == "mean"
    short = tok(["my bill is wrong"], return_tensors="pt")
    padded = tok(["my bill is wrong"], return_tensors="pt", padding="max_length", max_length=20)
    with torch.no_grad():
        a, b = model(**short).logits, model(**padded).logits
        hidden = model.bert(**short).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)  # the mean runs over real tokens only
    assert torch.allclose(a, model.classifier(hidden.mean(1)), atol=1e-5)
    with first_token_only(model) as patched:
        assert not patched  # the mean reads every position: no first-token shortcut
    cls_model, _, _ = build_classifier(str(tiny), ["a", "b", "c"], multi_label=False)
    assert type(cls_model).__name__ == "BertForSequenceClassification"
    assert cls_model.state_dict().keys() == model.state_dict().keys()  # same weights, same names


@pytest.mark.parametrize("pool_conf, expected", [
    ({"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}, "mean"),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
    ({"pooling_mode": "mean"}, "mean"),
    (None, None),
])
def test_auto_pooling_follows_the_sentence_transformers_pooling_config(tmp_path, pool_conf, expected):
    tiny = build_tiny_bert(tmp_path / "bert")
    if pool_conf is not None:
        (tiny / "1_Pooling").mkdir()
        (tiny / "1_Pooling" / "config.json").write_text(json.dumps(pool_conf))
    assert sentence_pooling(str(tiny)) == expected
    model, _, _ = build_classifier(str(tiny), ["a", "b"], multi_label=False, pooling="auto")
    want = "BertMeanPoolingForSequenceClassification" if expected == "mean" else "BertForSequenceClassification"
    assert type(model).__name__ == want


def test_auto_pooling_is_mean_for_the_embedded_encoder():
    from hone.model.load import minilm_dir

    assert sentence_pooling(str(minilm_dir())) == "mean"


def test_mean_pooling_refuses_non_bert_encoders(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)).save_pretrained(
        tmp_path / "d")
    build_tiny_bert(tmp_path / "tok")  # any tokenizer for the directory
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tmp_path / "tok" / f).exists():
            (tmp_path / "d" / f).write_bytes((tmp_path / "tok" / f).read_bytes())
    with pytest.raises(ModelError, match="pooling: mean is built for BERT"):
        build_classifier(str(tmp_path / "d"), ["a", "b"], multi_label=False, pooling="mean")


@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "lora", "r": 4, "alpha": 8}])
def test_mean_pooling_run_saves_an_artifact_plain_transformers_can_load(tmp_path, method):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tiny = build_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "tickets.jsonl", clf_rows(60))
    cfg = {"seed": 1, "data": {"path": str(data), "pii": {"enabled": False}},
           "model": {"name": str(tiny), "max_length": 32, "pooling": "mean"}, "method": method,
           "train": {"max_steps": 6, "batch_size": 8, "lr": 3e-3},
           "eval": {"baselines": [], "bootstrap": 20, "forgetting": False}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    art = tmp_path / "out" / "artifact"
    conf = json.loads((art / "config.json").read_text())
    assert conf["classifier_pooling"] == "mean"
    assert conf["auto_map"]["AutoModelForSequenceClassification"].endswith(
        ".BertMeanPoolingForSequenceClassification")
    assert (art / (conf["auto_map"]["AutoModelForSequenceClassification"].split(".")[0] + ".py")).is_file()
    clf = hone.load(str(art))
    texts = ["my bill is wrong", "no signal at all since this morning", "roaming abroad"]
    probs = clf.scores(texts)
    if method["name"] == "full":  # plain transformers, with the artifact's own modeling code
        plain = AutoModelForSequenceClassification.from_pretrained(str(art), trust_remote_code=True).eval()
    else:
        from peft import PeftModel
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        config = AutoConfig.from_pretrained(str(art))  # the adapter's head shape and label map
        cls = get_class_from_dynamic_module(conf["auto_map"]["AutoModelForSequenceClassification"], str(art))
        plain = PeftModel.from_pretrained(cls.from_pretrained(str(tiny), config=config), str(art)).eval()
    assert "MeanPooling" in type(plain.get_base_model() if method["name"] != "full" else plain).__name__
    enc = clf.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = torch.softmax(plain(**enc).logits, -1)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    assert torch.allclose(probs, ref, atol=1e-5), (probs, ref, order)
