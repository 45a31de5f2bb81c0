"""Out-of-scope thresholds (synthetic scores, exact thresholds) and the forgetting probe
(real MiniLM)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from hone.eval.forgetting import Probe, forgetting_check, load_probe, retrieval_scores
from hone.eval.oos import apply_threshold, choose_threshold, oos_report, softmax


def _two_class(conf: list[float]) -> np.ndarray:
    """Scores whose argmax is class 0 with max probability ``conf`` (all > 0.5)."""
    c = np.asarray(conf)
    return np.stack([c, 1 - c], axis=1)


# --------------------------------------------------------------------------------------------
# OOS threshold
# --------------------------------------------------------------------------------------------


def test_f1_threshold_with_oos_class_predicted_and_abstained():
    scores = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2],
                       [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    true = np.array([0, 1, 2, 2, 2, 0])  # class 2 is OOS; one OOS row is already argmax OOS
    # F1 by threshold: 0 -> 0.5, 0.5 -> 0.8, 0.6 -> 1.0 (both low-confidence OOS caught), 0.8 -> 6/7
    assert choose_threshold(scores, true, oos_index=2) == 0.6
    assert apply_threshold(scores, 0.6, oos_index=2).tolist() == [0, 1, 2, 2, 2, 0]
    rep = oos_report(scores, true, 0.6, oos_index=2)
    assert rep["oos_f1"] == 1.0 and rep["in_scope_accuracy"] == 1.0 and rep["abstain_rate"] == 0.5


def test_f1_ties_go_to_the_lower_threshold():
    # rows: OOS 0.55, in 0.60, in 0.65, OOS 0.70, in 0.90, in 0.95 (class 1 = OOS, never argmax)
    scores = _two_class([0.55, 0.6, 0.65, 0.7, 0.9, 0.95])
    true = np.array([1, 0, 0, 1, 0, 0])
    # t=0.6 catches one OOS (F1 2/3); t=0.9 catches both but two in-scope too (F1 4/6 = 2/3)
    assert choose_threshold(scores, true, oos_index=1) == 0.6


def test_abstain_everything_and_nothing_are_candidates():
    assert choose_threshold(_two_class([0.6, 0.7]), np.array([1, 1]), oos_index=1) == np.nextafter(0.7, 1)
    # OOS already caught by argmax: abstaining adds nothing -> threshold 0
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert choose_threshold(scores, np.array([0, 1]), oos_index=1) == 0.0


def test_without_oos_examples_keep_95_percent_of_correct_answers():
    conf = [0.51 + i / 100 for i in range(20)]  # 20 correct answers, 0.51 .. 0.70
    scores = _two_class(conf + [0.55, 0.99])
    true = np.array([0] * 20 + [1, 1])  # two wrong answers do not count
    assert choose_threshold(scores, true, oos_index=None) == pytest.approx(0.52)  # drops 1 of 20 = 5%
    assert choose_threshold(scores, true, oos_index=1, target="in_scope_accuracy") == pytest.approx(0.52)
    hundred = _two_class(list(np.linspace(0.6, 0.99, 100)))
    expected = np.linspace(0.6, 0.99, 100)[5]  # 5 of 100 below it
    assert choose_threshold(hundred, np.zeros(100, int), oos_index=None) == pytest.approx(expected)
    assert choose_threshold(_two_class([0.7]), np.array([1]), oos_index=None) == 0.0  # nothing correct


def test_apply_threshold_and_report_without_oos_class():
    scores = _two_class([0.55, 0.9, 0.6, 0.95])
    true = np.array([0, 0, 1, 0])
    pred = apply_threshold(scores, 0.6, oos_index=None)
    assert pred.tolist() == [-1, 0, 0, 0]
    rep = oos_report(scores, true, 0.6, oos_index=None)
    assert rep == {"threshold": 0.6, "n": 4, "n_oos": 0, "abstain_rate": 0.25, "in_scope_accuracy": 0.5}
    with pytest.raises(ValueError, match="target"):
        choose_threshold(scores, true, oos_index=None, target="nope")


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


# --------------------------------------------------------------------------------------------
# Forgetting probe
# --------------------------------------------------------------------------------------------


def test_probe_is_general_domain_and_well_formed():
    probe = load_probe()
    assert len(probe.pairs) >= 120 and len(probe.distractors) >= 60
    texts = probe.texts
    assert len(set(texts)) == len(texts)
    domain = re.compile(r"\b(bank|banking|account|refund|invoice|broadband|router|sim|telecom|tariff|roaming|"
                        r"customer|top.?up|direct debit|transfer)\b", re.IGNORECASE)
    assert not [t for t in texts if domain.search(t)]


def test_retrieval_scores_on_a_hand_made_matrix():
    # one pair (rows 0, 1) and two distractors (rows 2, 3)
    sims = np.array([[1, 0.9, 0.1, 0.95],  # distractor 3 beats the partner of 0 -> rank 2
                     [0.9, 1, 0.2, 0.1],  # partner of 1 is nearest -> rank 1
                     [0.1, 0.2, 1, 0.0],
                     [0.95, 0.1, 0.0, 1]])
    acc, mrr = retrieval_scores(sims, 1)
    assert acc == 0.5 and mrr == pytest.approx((0.5 + 1) / 2)


def test_retrieval_scores_nan_or_collapsed_embeddings_are_not_perfect():
    """NaN similarities (a diverged model) compared False with everything, and ties counted for the partner,
    so NaN or collapsed (all-equal) embeddings scored acc@1 = 1.0."""
    nan_acc, nan_mrr = retrieval_scores(np.full((6, 6), np.nan), 3)
    tie_acc, tie_mrr = retrieval_scores(np.ones((6, 6)), 3)
    assert nan_acc == tie_acc == 0.0 and nan_mrr == pytest.approx(0.2) and tie_mrr == pytest.approx(0.2)
    sims = np.eye(6) + 0.5 * np.kron(np.eye(3), [[0, 1], [1, 0]])  # each sentence nearest its partner
    assert retrieval_scores(sims, 3) == (1.0, 1.0)
    sims[0, 4] = np.nan  # one NaN candidate outranks the partner of sentence 0 only
    acc, _ = retrieval_scores(sims, 3)
    assert acc == pytest.approx(5 / 6)


@pytest.fixture(scope="module")
def minilm():
    from hone.model.load import load_encoder

    return load_encoder("minilm")


def test_forgetting_base_vs_itself_and_vs_damaged(minilm):
    import torch

    model, tok = minilm
    same = forgetting_check(model, model, tok)
    assert same["delta"] == 0.0 and not same["regressed"] and same["geometry_spearman"] == pytest.approx(1.0)
    assert 0.85 <= same["base"] < 1.0 and same["base_mrr"] > 0.9  # measured 0.896 / 0.947
    damaged = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in damaged.named_parameters():
            if "encoder.layer" in name and p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    probe = load_probe()
    part = Probe(probe.pairs[:40], probe.distractors[:20])  # smaller probe: the damage is gross
    bad = forgetting_check(model, damaged, tok, probe=part)
    assert bad["regressed"] and bad["delta"] < -0.4 and bad["geometry_spearman"] < 0.8
    assert bad["base"] > 0.8 and "paraphrase retrieval" in bad["proxy"] and bad["n_distractors"] == 20


def test_forgetting_probes_a_classifier_through_its_encoder(minilm):
    from transformers import AutoModelForSequenceClassification

    from hone.model.load import minilm_dir

    model, tok = minilm
    clf = AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=5)
    small = Probe(load_probe().pairs[:16])
    r = forgetting_check(model, clf, tok, probe=small)
    assert r["n_pairs"] == 16 and r["delta"] == 0.0 and not r["regressed"]
    with pytest.raises(ValueError, match="two paraphrase pairs"):
        forgetting_check(model, clf, tok, probe=Probe(small.pairs[:1]))
