"""Evaluation metrics: point estimates, bootstrap confidence intervals, paired gains.

Pure functions over integer label ids (single-label) or 0/1 matrices (multi-label); no
models, no files. Point estimates agree with scikit-learn (the tests pin that). The
bootstrap is vectorised: one ``(B, N)`` index matrix per chunk and a few ``np.bincount``
calls give every resample's per-class counts at once, so 1,000 resamples of 3,000
examples cost tens of milliseconds instead of 1,000 scikit-learn calls.

Conventions, chosen to match scikit-learn with ``zero_division=0``:

* per-class precision / recall / F1 are 0 where their denominator is 0 (no warnings);
* macro averages run over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's
  default label set), so a class absent from the test set — or from one bootstrap
  resample — neither counts as a 0 nor inflates the average;
* weighted averages weight by true support; micro averages pool all counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Keep one resample chunk's index matrix under ~64 MB of int64.
_MAX_CHUNK_CELLS = 1 << 23


# ----------------------------------------------------------------------------- counting


def _as_ids(y: Sequence[int] | np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """Validate and convert label ids to an int64 vector; out-of-range ids are caller bugs."""
    arr = np.asarray(y, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name}: label ids must lie in [0, {n_classes}), got {arr.min()}..{arr.max()}")
    return arr


def _class_counts(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Per-resample true positives, true support and predicted counts, each ``(B, K)``.

    ``idx`` is ``(B, N)``: row b holds the example indices of resample b. Offsetting class ids
    by ``b * K`` lets one bincount fill every resample's histogram at once.
    """
    b = idx.shape[0]
    offset = (np.arange(b, dtype=np.int64) * k)[:, None]  # (B, 1)
    t = y_true[idx] + offset  # (B, N)
    p = y_pred[idx] + offset  # (B, N)
    correct = (y_true == y_pred)[idx]  # (B, N)
    size = b * k
    tp = np.bincount(t[correct], minlength=size).reshape(b, k)
    support = np.bincount(t.ravel(), minlength=size).reshape(b, k)
    predicted = np.bincount(p.ravel(), minlength=size).reshape(b, k)
    return tp, support, predicted


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's zero_division=0), no warnings."""
    num = num.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _prf(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-class precision, recall, F1 from counts (any leading shape, classes last)."""
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)  # = 2PR/(P+R), and 0 when tp == 0
    return precision, recall, f1


def _macro(values: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Mean over the classes present in y_true or y_pred (last axis)."""
    present = (support + predicted) > 0
    return _safe_div((values * present).sum(-1), present.sum(-1))


def _accuracy_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return _safe_div(tp.sum(-1), support.sum(-1))


def _macro_f1_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return _macro(_prf(tp, support, predicted)[2], support, predicted)


# Metrics that can be bootstrapped: name -> f(tp, support, predicted) -> score per resample.
RESAMPLE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy_from_counts,
    "macro_f1": _macro_f1_from_counts,
}


# ----------------------------------------------------------------------------- bootstrap


def _resample_chunks(n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """Seeded ``(b, N)`` index matrices covering ``n_boot`` resamples, chunked to bound memory.

    The chunk size depends only on ``n``, so a (seed, n, n_boot) triple always gives the
    same resamples; paired comparisons reuse the same matrices for both systems.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CHUNK_CELLS // max(n, 1))
    sizes = [min(chunk, n_boot - s) for s in range(0, n_boot, chunk)]
    return [rng.integers(0, n, size=(b, n), dtype=np.int64) for b in sizes]


def _bootstrap_scores(
    y_true: np.ndarray, preds: Sequence[np.ndarray], k: int, metrics: Sequence[str], n_boot: int, seed: int
) -> dict[str, list[np.ndarray]]:
    """Scores of every metric for every prediction vector on the same resamples.

    Returns ``{metric: [scores_for_preds[0], scores_for_preds[1], ...]}``, each ``(n_boot,)``.
    """
    out: dict[str, list[list[np.ndarray]]] = {m: [[] for _ in preds] for m in metrics}
    for idx in _resample_chunks(len(y_true), n_boot, seed):
        for j, y_pred in enumerate(preds):
            counts = _class_counts(y_true, y_pred, idx, k)
            for m in metrics:
                out[m][j].append(RESAMPLE_METRICS[m](*counts))
    return {m: [np.concatenate(parts) for parts in per_pred] for m, per_pred in out.items()}


def _percentile_ci(samples: np.ndarray, ci: float) -> list[float]:
    """Percentile bootstrap interval [lo, hi] at coverage ``ci``."""
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    tail = (1.0 - ci) / 2.0
    lo, hi = np.quantile(samples, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


# ----------------------------------------------------------------------------- public API


def _point_metrics(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy plus macro / micro / weighted P, R, F1 from one set of per-class counts."""
    precision, recall, f1 = _prf(tp, support, predicted)
    n = int(support.sum())
    out: dict[str, float] = {"accuracy": float(_safe_div(tp.sum(), np.asarray(n)))}
    micro = _prf(tp.sum(keepdims=True), support.sum(keepdims=True), predicted.sum(keepdims=True))
    weights = support / n if n else np.zeros_like(support, dtype=np.float64)
    for name, vals, micro_val in zip(("precision", "recall", "f1"), (precision, recall, f1), micro, strict=True):
        out[f"macro_{name}"] = float(_macro(vals, support, predicted))
        out[f"micro_{name}"] = float(micro_val[0])
        out[f"weighted_{name}"] = float((vals * weights).sum())
    return out


def classification_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    labels: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Single-label classification metrics with seeded percentile-bootstrap CIs.

    ``y_true`` / ``y_pred`` are ids into ``labels``. Returns::

        {"n", "accuracy", "macro_/micro_/weighted_" + "precision"/"recall"/"f1",
         "accuracy_ci": [lo, hi], "macro_f1_ci": [lo, hi], "n_boot", "ci",
         "per_class": {label: {"precision", "recall", "f1", "support"}},
         "confusion": {"labels": [...], "matrix": [[int]]}}   # rows = true, cols = predicted

    The CIs resample examples with replacement (``n_boot`` times), so they express how
    much the score would move on another test set of the same size and distribution.
    ``n_boot=0`` skips them (the CIs are ``None``: no interval was measured). ``per_class`` also
    holds ``predicted`` (how often the class was predicted), so a class with neither test examples
    nor predictions can be told apart from one scored 0.
    """
    k = len(labels)
    if k == 0:
        raise ValueError("labels must not be empty")
    t = _as_ids(y_true, k, "y_true")
    p = _as_ids(y_pred, k, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if t.size == 0:
        raise ValueError("cannot score an empty evaluation set")
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)  # (K_true, K_pred)
    tp, support, predicted = np.diag(confusion).copy(), confusion.sum(1), confusion.sum(0)
    out: dict[str, Any] = {"n": int(t.size), **_point_metrics(tp, support, predicted)}
    if n_boot > 0:
        boot = _bootstrap_scores(t, [p], k, ("accuracy", "macro_f1"), n_boot, seed)
        out["accuracy_ci"] = _percentile_ci(boot["accuracy"][0], ci)
        out["macro_f1_ci"] = _percentile_ci(boot["macro_f1"][0], ci)
    else:
        out["accuracy_ci"] = out["macro_f1_ci"] = None
    out["n_boot"], out["ci"] = int(n_boot), float(ci)
    precision, recall, f1 = _prf(tp, support, predicted)
    out["per_class"] = {
        str(lab): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i]), "predicted": int(predicted[i])}
        for i, lab in enumerate(labels)
    }
    out["confusion"] = {"labels": [str(x) for x in labels], "matrix": confusion.tolist()}
    return out


def paired_bootstrap_gain(
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    *,
    metric: str = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """Gain of system b over system a, scored on the *same* resamples of the same examples.

    Pairing cancels the test-set difficulty both systems share, so the interval on the
    difference is much tighter than comparing two independent CIs. Returns
    ``{"metric", "a", "b", "gain", "gain_ci": [lo, hi], "p_b_not_better", "n", "n_boot", "ci"}``
    where ``p_b_not_better`` is the share of resamples in which b does not beat a
    (a one-sided bootstrap p-value; ties count against b). ``n_classes`` defaults to
    ``max(id) + 1``; it only matters for the set of classes in macro averages.
    """
    if metric not in RESAMPLE_METRICS:
        raise ValueError(f"metric: unknown {metric!r}; choose one of {sorted(RESAMPLE_METRICS)}")
    if n_boot <= 0:
        raise ValueError("n_boot must be positive for a paired bootstrap")
    raw = [np.asarray(v, dtype=np.int64).reshape(-1) for v in (y_true, pred_a, pred_b)]
    if len({r.size for r in raw}) != 1 or raw[0].size == 0:
        raise ValueError(f"y_true, pred_a, pred_b must be non-empty and equally long: {[r.size for r in raw]}")
    k = n_classes if n_classes is not None else int(max(r.max() for r in raw)) + 1
    t, a, b = (_as_ids(r, k, name) for r, name in zip(raw, ("y_true", "pred_a", "pred_b"), strict=True))
    full = np.arange(t.size)[None, :]  # (1, N): the un-resampled data, for the point estimates
    score_a, score_b = (float(RESAMPLE_METRICS[metric](*_class_counts(t, x, full, k))[0]) for x in (a, b))
    boot = _bootstrap_scores(t, [a, b], k, (metric,), n_boot, seed)[metric]
    diff = boot[1] - boot[0]  # (n_boot,)
    return {
        "metric": metric, "a": score_a, "b": score_b, "gain": score_b - score_a,
        "gain_ci": _percentile_ci(diff, ci), "p_b_not_better": float(np.mean(diff <= 0.0)),
        "n": int(t.size), "n_boot": int(n_boot), "ci": float(ci),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Multi-label metrics for ``(N, C)`` 0/1 indicator matrices.

    Returns micro / macro / samples precision, recall and F1, ``subset_accuracy`` (every
    label of an example right), ``hamming_loss`` (share of wrong cells) and ``per_class``.
    Macro here averages over all C labels, as scikit-learn does for indicator input.
    """
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    t = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_pred).astype(np.int64)
    if t.ndim != 2 or t.shape != p.shape or t.shape[1] != len(labels):
        raise ValueError(f"expected two (N, {len(labels)}) arrays, got {t.shape} and {p.shape}")
    out: dict[str, Any] = {"n": int(t.shape[0])}
    for avg in ("micro", "macro", "samples"):
        pr, rc, f1, _ = precision_recall_fscore_support(t, p, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(pr), f"{avg}_recall": float(rc), f"{avg}_f1": float(f1)})
    out["subset_accuracy"] = float(accuracy_score(t, p))
    out["hamming_loss"] = float(hamming_loss(t, p))
    tp = (t & p).sum(0)
    precision, recall, f1 = _prf(tp, t.sum(0), p.sum(0))
    out["per_class"] = {
        str(lab): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(t[:, i].sum()), "predicted": int(p[:, i].sum())}
        for i, lab in enumerate(labels)
    }
    return out


# Multi-label metrics that can be bootstrapped: name -> (per-example statistics (N, D), reduce(summed (B, D)) -> (B,)).
# Summing per-example statistics over a resample gives its corpus-level score (micro-F1 pools the counts).
def _micro_f1_stats(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.stack([(t & p).sum(1), t.sum(1) + p.sum(1)], axis=1)  # (N, 2): true positives, true + predicted


def _subset_accuracy_stats(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.stack([(t == p).all(1), np.ones(len(t))], axis=1)  # (N, 2): every label right, 1


MULTILABEL_RESAMPLE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "micro_f1": _micro_f1_stats, "subset_accuracy": _subset_accuracy_stats}


def _multilabel_boot(y_true: np.ndarray, preds: Sequence[np.ndarray], metric: str, n_boot: int,
                     seed: int) -> tuple[list[float], list[np.ndarray]]:
    """Point scores and the ``(n_boot,)`` resampled scores of each ``(N, C)`` prediction matrix, same resamples."""
    if metric not in MULTILABEL_RESAMPLE_METRICS:
        raise ValueError(f"metric: unknown {metric!r}; choose one of {sorted(MULTILABEL_RESAMPLE_METRICS)}")
    t = np.asarray(y_true).astype(np.int64)
    stats = [MULTILABEL_RESAMPLE_METRICS[metric](t, np.asarray(p).astype(np.int64)).astype(np.float64)
             for p in preds]

    def reduce(sums: np.ndarray) -> np.ndarray:  # (B, 2) -> (B,); 2*tp / (true + predicted) or right / n
        scale = 2.0 if metric == "micro_f1" else 1.0
        return _safe_div(scale * sums[:, 0], sums[:, 1])

    points = [float(reduce(x.sum(0, keepdims=True))[0]) for x in stats]
    boots: list[list[np.ndarray]] = [[] for _ in preds]
    for idx in _resample_chunks(len(t), n_boot, seed):  # (b, N)
        b, n = idx.shape
        weights = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        for j, x in enumerate(stats):
            boots[j].append(reduce(weights @ x))
    return points, [np.concatenate(parts) for parts in boots]


def multilabel_ci(y_true: np.ndarray, y_pred: np.ndarray, *, metric: str = "micro_f1", n_boot: int = 1000,
                  seed: int = 0, ci: float = 0.95) -> list[float] | None:
    """Percentile-bootstrap interval of a multi-label metric (``None`` with ``n_boot=0``)."""
    if n_boot <= 0:
        return None
    return _percentile_ci(_multilabel_boot(y_true, [y_pred], metric, n_boot, seed)[1][0], ci)


def paired_multilabel_gain(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, *, metric: str = "micro_f1",
                           n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """:func:`paired_bootstrap_gain` for ``(N, C)`` 0/1 matrices on ``micro_f1`` or ``subset_accuracy``;
    the same keys (gain of b over a, ``p_b_not_better``)."""
    if n_boot <= 0:
        raise ValueError("n_boot must be positive for a paired bootstrap")
    (score_a, score_b), (boot_a, boot_b) = _multilabel_boot(y_true, [pred_a, pred_b], metric, n_boot, seed)
    diff = boot_b - boot_a
    return {"metric": metric, "a": score_a, "b": score_b, "gain": score_b - score_a,
            "gain_ci": _percentile_ci(diff, ci), "p_b_not_better": float(np.mean(diff <= 0.0)),
            "n": int(np.asarray(y_true).shape[0]), "n_boot": int(n_boot), "ci": float(ci)}
