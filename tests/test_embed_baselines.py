"""Sentence embeddings and the embedding baselines, with the real embedded MiniLM."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from hone.eval.baselines import (BaselineResult, _knn_scores, few_shot, humanize_label, label_descriptions,
                                 linear_probe, sample_per_class, zero_shot)
from hone.model.embed import embed

TEXTS = ["hi", "my roast chicken came out dry again, what temperature should I use next time?",
         "the bus was late", "", ("A much longer sentence about the weather: rain, wind, then sunshine in the "
                                 "afternoon and a cold clear night with frost on the cars by morning."),
         "ok thanks", "where is the station"]


@pytest.fixture(scope="module")
def minilm():
    from hone.model.load import load_encoder

    return load_encoder("minilm")


@pytest.fixture(scope="module")
def telecom(minilm):
    """A seeded 200-row test-like subset of the bundled telecom sample, the rest as train,
    with the test embeddings computed once for every baseline."""
    text = resources.files("hone.samples").joinpath("telecom_intents.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    labels = sorted({r["label"] for r in rows})
    index = {lab: i for i, lab in enumerate(labels)}
    perm = np.random.default_rng(0).permutation(len(rows))
    test, train = [rows[i] for i in perm[:200]], [rows[i] for i in perm[200:]]
    test_texts = [r["text"] for r in test]
    return {
        "labels": labels, "test_texts": test_texts, "test_y": np.array([index[r["label"]] for r in test]),
        "train_texts": [r["text"] for r in train], "train_y": [index[r["label"]] for r in train],
        "test_emb": embed(*minilm, test_texts),
    }


# --------------------------------------------------------------------------------------------
# embed()
# --------------------------------------------------------------------------------------------


def test_embeddings_unit_norm_order_and_batch_size_invariant(minilm):
    model, tok = minilm
    a = embed(model, tok, TEXTS, batch_size=64)
    assert a.shape == (len(TEXTS), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed(model, tok, TEXTS, batch_size=1), a, atol=1e-5)
    np.testing.assert_allclose(embed(model, tok, TEXTS[::-1], batch_size=3), a[::-1], atol=1e-5)
    # each row belongs to its own text: a single-text call gives the same vector
    np.testing.assert_allclose(embed(model, tok, [TEXTS[1]])[0], a[1], atol=1e-5)
    assert a[0] @ a[1] < 0.9  # different texts, different vectors


def test_unnormalized_is_mean_pooling_and_empty_input(minilm):
    model, tok = minilm
    raw = embed(model, tok, TEXTS[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), embed(model, tok, TEXTS[:3]),
                               atol=1e-5)
    assert embed(model, tok, []).shape == (0, 384)
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, tok, TEXTS, batch_size=0)


def test_classifier_and_peft_models_embed_with_their_encoder(minilm):
    from transformers import AutoModelForSequenceClassification

    from hone.model.load import minilm_dir

    model, tok = minilm
    ref = embed(model, tok, TEXTS)
    clf = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=3)
    clf.train()
    np.testing.assert_allclose(embed(clf, tok, TEXTS), ref, atol=1e-5)  # head and pooler unused
    assert clf.training  # the caller's mode is restored
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(clf, peft.LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    np.testing.assert_allclose(embed(wrapped, tok, TEXTS), ref, atol=1e-5)  # LoRA B starts at zero


# --------------------------------------------------------------------------------------------
# Label descriptions
# --------------------------------------------------------------------------------------------


def test_humanized_label_names():
    assert humanize_label("card_payment_fee_charged") == "card payment fee charged"
    assert humanize_label("5g_coverage") == "5G coverage"
    assert humanize_label("Refund_not_showing_up") == "refund not showing up"
    assert humanize_label("reverted_card_payment?") == "reverted card payment"
    assert humanize_label("sim_swap") == "SIM swap" and humanize_label("esim_activation") == "eSIM activation"
    assert humanize_label("CardArrival") == "card arrival" and humanize_label("router-problem") == "router problem"


def test_label_descriptions_defaults_and_overrides():
    d = label_descriptions(["atm_support", "age_limit"], {"age_limit": "how old do I need to be"})
    assert d == {"atm_support": "ATM support", "age_limit": "how old do I need to be"}
    with pytest.raises(ValueError, match="unknown labels: nope"):
        label_descriptions(["a"], {"nope": "x"})


# --------------------------------------------------------------------------------------------
# Baselines on the telecom sample (measured on this split: zero-shot 0.605, centroid k=8 0.81,
# kNN k=5 0.71; chance 1/26 = 0.04)
# --------------------------------------------------------------------------------------------


def _acc(r: BaselineResult, y: np.ndarray) -> float:
    return float((r.pred == y).mean())


def test_zero_shot_beats_chance_widely(minilm, telecom):
    r = zero_shot(*minilm, telecom["test_texts"], telecom["labels"], test_emb=telecom["test_emb"])
    assert r.scores.shape == (200, 26) and (r.scores.argmax(1) == r.pred).all()
    assert _acc(r, telecom["test_y"]) >= 0.52  # chance is 1/26 = 0.04
    with pytest.raises(ValueError, match="template"):
        zero_shot(*minilm, ["x"], ["a", "b"], template="no slot")


def test_few_shot_beats_zero_shot(minilm, telecom):
    t = telecom
    z = zero_shot(*minilm, t["test_texts"], t["labels"], test_emb=t["test_emb"])
    f = few_shot(*minilm, t["train_texts"], t["train_y"], t["test_texts"], 26, k=8, seed=0, test_emb=t["test_emb"])
    assert f.name == "few_shot_centroid_k8"
    assert _acc(f, t["test_y"]) >= _acc(z, t["test_y"]) + 0.12
    knn = few_shot(*minilm, t["train_texts"], t["train_y"], t["test_texts"], 26, k=5, method="knn", seed=0,
                   test_emb=t["test_emb"])
    assert knn.name == "few_shot_knn_k5" and (knn.scores.argmax(1) == knn.pred).all()
    assert _acc(knn, t["test_y"]) >= _acc(z, t["test_y"])


def test_sampling_is_deterministic_per_seed():
    y = [0] * 20 + [1] * 3 + [2] * 10
    a, b = sample_per_class(y, 4, k=5, seed=7), sample_per_class(y, 4, k=5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert np.bincount(np.asarray(y)[a], minlength=4).tolist() == [5, 3, 5, 0]  # all of a small class
    assert not np.array_equal(a, sample_per_class(y, 4, k=5, seed=8))


def test_knn_majority_then_most_similar_breaks_ties():
    emb = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]], dtype=np.float32)  # classes 0, 0, 1, 1
    y = np.array([0, 0, 1, 1])
    s = _knn_scores(emb, y, np.array([[0.6, 0.8]], dtype=np.float32), 3, k_neighbors=4)  # 2 votes each
    assert s.argmax() == 1 and s[0, 2] == 0  # class 1 holds the single nearest example
    np.testing.assert_allclose(s[0, :2], [0.5, 0.5], atol=1e-5)
    s = _knn_scores(emb, y, np.array([[1, 0]], dtype=np.float32), 3, k_neighbors=3)  # 2 votes vs 1
    assert s.argmax() == 0


def test_linear_probe_on_given_embeddings_fills_absent_classes():
    rng = np.random.default_rng(0)
    centers = np.eye(4, 8, dtype=np.float32) * 3
    y = np.repeat([0, 1, 3], 20)  # class 2 never seen in training
    x = centers[y] + rng.normal(0, 0.3, (len(y), 8)).astype(np.float32)
    test = centers[[0, 1, 3]]
    r = linear_probe(None, None, ["t"] * len(y), y, ["a", "b", "c"], n_labels=4, train_emb=x, test_emb=test)
    assert r.pred.tolist() == [0, 1, 3] and r.scores.shape == (3, 4)
    assert (r.scores[:, 2] == 0).all()
    np.testing.assert_allclose(r.scores.sum(1), 1.0, atol=1e-5)
