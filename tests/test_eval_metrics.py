"""Metrics agree with scikit-learn; bootstrap CIs and paired gains behave as statistics should."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from hone.eval.metrics import (
    _resample_chunks,
    classification_metrics,
    multilabel_ci,
    multilabel_metrics,
    paired_bootstrap_gain,
    paired_multilabel_gain,
)

LABELS = [f"c{i}" for i in range(7)]


def _noisy(rng: np.random.Generator, y: np.ndarray, k: int, acc: float) -> np.ndarray:
    return np.where(rng.random(y.size) < acc, y, rng.integers(0, k, y.size))


@pytest.fixture()
def sample() -> tuple[np.ndarray, np.ndarray]:
    """7 labels: class 5 is never true (only predicted), class 6 never true nor predicted."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 400)
    p = _noisy(rng, y, 5, 0.7)
    p[:9] = 5
    return y, p


def test_point_metrics_equal_sklearn(sample) -> None:
    y, p = sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero-division cases must not warn
        m = classification_metrics(y, p, LABELS, n_boot=50)
    assert m["n"] == 400
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    for avg in ("macro", "micro", "weighted"):
        ref = precision_recall_fscore_support(y, p, average=avg, zero_division=0)[:3]
        got = [m[f"{avg}_{k}"] for k in ("precision", "recall", "f1")]
        assert got == pytest.approx(list(ref)), avg
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=range(7), zero_division=0)
    for i, lab in enumerate(LABELS):
        pc = m["per_class"][lab]
        assert [pc["precision"], pc["recall"], pc["f1"]] == pytest.approx([prec[i], rec[i], f1[i]])
        assert pc["support"] == sup[i]
    assert m["confusion"]["matrix"] == confusion_matrix(y, p, labels=range(7)).tolist()
    assert m["confusion"]["labels"] == LABELS


def test_missing_classes_are_zero_and_excluded_from_macro(sample) -> None:
    y, p = sample
    m = classification_metrics(y, p, LABELS, n_boot=0)
    assert m["per_class"]["c5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 9}
    assert m["per_class"]["c6"]["support"] == m["per_class"]["c6"]["predicted"] == 0
    # c6 (absent everywhere) does not drag the macro average down; c5 (wrongly predicted) does
    assert m["macro_f1"] == pytest.approx(np.mean([m["per_class"][f"c{i}"]["f1"] for i in range(6)]))
    assert m["accuracy_ci"] is None and m["macro_f1_ci"] is None  # n_boot=0: no interval (was [score, score])


def test_confusion_orientation_rows_true_cols_predicted() -> None:
    m = classification_metrics([0, 0, 0, 1], [1, 1, 0, 1], ["a", "b"], n_boot=0)
    assert m["confusion"]["matrix"] == [[1, 2], [0, 1]]
    assert m["per_class"]["a"]["recall"] == pytest.approx(1 / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(1 / 3)


def test_bootstrap_resamples_match_sklearn_per_resample(sample) -> None:
    """The bincount trick gives, per resample, exactly what scikit-learn computes on it."""
    y, p = sample
    m = classification_metrics(y, p, LABELS, n_boot=40, seed=5)
    idx = np.concatenate(_resample_chunks(y.size, 40, 5))
    accs = [accuracy_score(y[r], p[r]) for r in idx]
    f1s = [f1_score(y[r], p[r], average="macro", zero_division=0) for r in idx]
    assert m["accuracy_ci"] == pytest.approx(list(np.quantile(accs, [0.025, 0.975])))
    assert m["macro_f1_ci"] == pytest.approx(list(np.quantile(f1s, [0.025, 0.975])))


def test_bootstrap_ci_contains_point_is_seeded_and_narrows() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 3000):
        y = rng.integers(0, 5, n)
        p = _noisy(rng, y, 5, 0.8)
        m = classification_metrics(y, p, LABELS[:5], seed=1)
        for key in ("accuracy", "macro_f1"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi and lo < hi
        assert classification_metrics(y, p, LABELS[:5], seed=1) == m
        assert classification_metrics(y, p, LABELS[:5], seed=2)["accuracy_ci"] != m["accuracy_ci"]
        widths.append(m["accuracy_ci"][1] - m["accuracy_ci"][0])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(30) ≈ 0.18 of the width


def test_bootstrap_is_fast() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 77, 3000)
    p = _noisy(rng, y, 77, 0.85)
    t0 = time.perf_counter()
    classification_metrics(y, p, [str(i) for i in range(77)], n_boot=1000)
    assert time.perf_counter() - t0 < 3.0  # ~0.06 s on 2 CPU cores; generous for busy CI


def test_paired_gain_detects_a_better_system() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 500)
    weak, strong = _noisy(rng, y, 5, 0.5), _noisy(rng, y, 5, 0.9)
    g = paired_bootstrap_gain(y, weak, strong, seed=0)
    assert g["metric"] == "accuracy"
    assert g["a"] == pytest.approx(accuracy_score(y, weak)) and g["b"] == pytest.approx(accuracy_score(y, strong))
    assert g["gain"] == pytest.approx(g["b"] - g["a"]) and g["gain"] > 0
    assert 0 < g["gain_ci"][0] <= g["gain"] <= g["gain_ci"][1]
    assert g["p_b_not_better"] < 0.01
    assert paired_bootstrap_gain(y, weak, strong, seed=0) == g
    back = paired_bootstrap_gain(y, strong, weak, seed=0)
    assert back["gain"] == pytest.approx(-g["gain"]) and back["gain_ci"][1] < 0 and back["p_b_not_better"] > 0.99
    f = paired_bootstrap_gain(y, weak, strong, metric="macro_f1", n_classes=5)
    ref = f1_score(y, strong, average="macro") - f1_score(y, weak, average="macro")
    assert f["gain"] == pytest.approx(ref) and f["gain_ci"][0] > 0


def test_paired_gain_identical_and_near_identical_systems() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    p = _noisy(rng, y, 4, 0.7)
    same = paired_bootstrap_gain(y, p, p)
    assert same["gain"] == 0 and same["gain_ci"] == [0.0, 0.0] and same["p_b_not_better"] == 1.0
    q = p.copy()
    fix, brk = np.flatnonzero(q != y)[:4], np.flatnonzero(q == y)[:3]
    q[fix] = y[fix]  # b fixes 4 errors and breaks 3 right answers: no real difference
    q[brk] = (y[brk] + 1) % 4
    close = paired_bootstrap_gain(y, p, q)
    assert close["gain"] == pytest.approx(1 / 300)
    assert close["gain_ci"][0] < 0 < close["gain_ci"][1] and 0.2 < close["p_b_not_better"] < 0.9


def test_paired_ci_is_tighter_than_unpaired() -> None:
    """Pairing cancels shared difficulty: the gain CI is narrower than the CIs of either system."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 800)
    a = _noisy(rng, y, 5, 0.7)
    b = a.copy()
    fix = np.flatnonzero(b != y)[:60]
    b[fix] = y[fix]
    g = paired_bootstrap_gain(y, a, b)
    widths = [np.diff(classification_metrics(y, x, LABELS[:5])["accuracy_ci"])[0] for x in (a, b)]
    # an unpaired difference would be ~sqrt(2) times wider than either system's own CI
    assert g["gain_ci"][1] - g["gain_ci"][0] < 0.75 * min(widths)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: classification_metrics([0, 3], [0, 1], ["a", "b"]), "label ids"),
        (lambda: classification_metrics([0, 1], [0], ["a", "b"]), "differ in length"),
        (lambda: classification_metrics([], [], ["a"]), "empty"),
        (lambda: classification_metrics([0], [0], []), "labels"),
        (lambda: paired_bootstrap_gain([0, 1], [0, 1], [1, 1], metric="bleu"), "unknown"),
        (lambda: paired_bootstrap_gain([0, 1], [0, 1], [1]), "equally long"),
        (lambda: classification_metrics([0], [0], ["a"], ci=1.5), "ci"),
    ],
)
def test_bad_input_is_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_multilabel_equals_sklearn() -> None:
    rng = np.random.default_rng(7)
    t = (rng.random((60, 4)) < 0.3).astype(int)
    p = np.where(rng.random((60, 4)) < 0.8, t, 1 - t)
    t[:, 3] = 0  # a label never true
    m = multilabel_metrics(t, p, ["a", "b", "c", "d"])
    for avg in ("micro", "macro", "samples"):
        assert m[f"{avg}_f1"] == pytest.approx(f1_score(t, p, average=avg, zero_division=0))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(t, p))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(t, p))
    assert m["per_class"]["d"]["support"] == 0 and m["per_class"]["d"]["recall"] == 0.0
    assert m["per_class"]["a"]["f1"] == pytest.approx(f1_score(t[:, 0], p[:, 0]))
    with pytest.raises(ValueError, match="expected two"):
        multilabel_metrics(t, p[:, :3], ["a", "b", "c", "d"])


def test_paired_multilabel_gain_and_ci_equal_sklearn_on_the_same_resamples() -> None:
    """Multi-label gains (against baselines) are on micro-F1 / subset accuracy of every label, not the first one."""
    rng = np.random.default_rng(5)
    t = (rng.random((40, 4)) < 0.4).astype(int)
    a = (rng.random((40, 4)) < 0.4).astype(int)
    b = np.where(rng.random((40, 4)) < 0.85, t, 1 - t)
    idx = _resample_chunks(40, 30, 2)[0]
    for metric, score in (("micro_f1", lambda x, y: f1_score(x, y, average="micro", zero_division=0)),
                          ("subset_accuracy", accuracy_score)):
        g = paired_multilabel_gain(t, a, b, metric=metric, n_boot=30, seed=2)
        assert g["a"] == pytest.approx(score(t, a)) and g["b"] == pytest.approx(score(t, b))
        assert g["gain"] == pytest.approx(g["b"] - g["a"]) and g["n"] == 40 and g["metric"] == metric
        diff = np.array([score(t[i], b[i]) - score(t[i], a[i]) for i in idx])
        assert g["gain_ci"] == pytest.approx(list(np.quantile(diff, [0.025, 0.975])))
        assert g["p_b_not_better"] == pytest.approx(np.mean(diff <= 0))
        boots = [score(t[i], b[i]) for i in idx]
        assert multilabel_ci(t, b, metric=metric, n_boot=30, seed=2) == pytest.approx(
            list(np.quantile(boots, [0.025, 0.975])))
    assert multilabel_ci(t, b, n_boot=0) is None
    assert multilabel_metrics(t, b, list("abcd"))["per_class"]["a"]["predicted"] == int(b[:, 0].sum())
