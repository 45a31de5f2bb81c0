"""Out-of-scope handling: abstain (route to a human) when the classifier is not confident.

**Confidence** is the maximum softmax probability (MSP) of the classifier — the standard,
model-agnostic OOS/OOD signal: it needs no extra training and works for every method hone
trains.  A message is *abstained on* when its MSP is strictly below a threshold chosen on the
validation split (never on the test split, which only measures).

**The OOS label.**  When the user's data has an out-of-scope label (e.g. ``"oos"``), it stays
an ordinary class in training — the model learns what typical off-topic messages look like —
*and* the threshold adds abstention on top, for unseen kinds of off-topic text.  Both routes
end in the same prediction, ``oos_index``.  Without an OOS class (``oos_index=None``)
abstention is the only route, and an abstained prediction is ``-1``.  Keeping the OOS label
as a normal class keeps training code general (no special loss, no label filtering) and is
never worse than dropping it: the threshold can still catch what the class misses.

**Choosing the threshold** (:func:`choose_threshold`):

- validation examples labelled OOS exist (and ``target="f1"``): the threshold that maximises
  the F1 of *detecting OOS* (predicted OOS = argmax is the OOS class, or abstained), ties to
  the lower threshold (abstain less);
- otherwise (no OOS examples, or ``target="in_scope_accuracy"``): there is nothing to trade
  abstention against, so the threshold is a *budget*: the largest threshold that still keeps
  ``keep`` (95%) of the correctly answered in-scope validation messages — i.e. the 5th
  percentile of their MSP.  This is the usual "95% true-positive-rate" operating point of OOD
  detection; it costs a known, small share of correct answers and abstains on whatever is
  less confident than nearly all correct answers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NO_CLASS = -1  # the abstention prediction when there is no OOS class


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``(N, C) -> (N, C)``, numerically stable."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(scores: np.ndarray, true: np.ndarray | None = None) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"scores must be a (N, C) array, got shape {s.shape}")
    if true is not None and len(true) != len(s):
        raise ValueError(f"{len(s)} score rows but {len(true)} labels")
    return s


def _f1_threshold(conf: np.ndarray, pred: np.ndarray, is_oos: np.ndarray, oos_index: int) -> float:
    """The threshold maximising OOS-detection F1; candidates are 0 (abstain on nothing), every
    observed confidence above the smallest (abstain on everything strictly below it) and the
    value just above the largest (abstain on everything).  Ties go to the lower threshold."""
    order = np.argsort(conf, kind="stable")
    c, oos_sorted = conf[order], is_oos[order]
    flagged_by_argmax = pred[order] == oos_index
    extra = ~flagged_by_argmax  # abstaining on these adds a detection
    tp0, fp0 = int((flagged_by_argmax & oos_sorted).sum()), int((flagged_by_argmax & ~oos_sorted).sum())
    # cum_*[i]: detections added by abstaining on the i lowest-confidence examples
    cum_tp = np.concatenate([[0], np.cumsum(extra & oos_sorted)])
    cum_fp = np.concatenate([[0], np.cumsum(extra & ~oos_sorted)])
    uniq = np.unique(c)
    thresholds = np.concatenate([[0.0], uniq[1:], [np.nextafter(uniq[-1], np.inf)]])
    n_below = np.searchsorted(c, thresholds, side="left")  # examples with conf < t
    tp, fp = tp0 + cum_tp[n_below], fp0 + cum_fp[n_below]
    fn = int(is_oos.sum()) - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(thresholds[int(np.argmax(f1))])  # argmax: first (lowest) of equal maxima


def _keep_threshold(conf: np.ndarray, correct: np.ndarray, keep: float) -> float:
    """Largest observed confidence ``t`` with at most ``1 - keep`` of the correct examples
    strictly below it (0.0 when nothing was answered correctly)."""
    kept = np.sort(conf[correct])
    if not len(kept):
        return 0.0
    m = int(np.floor((1.0 - keep) * len(kept) + 1e-9))
    return float(kept[min(m, len(kept) - 1)])


def choose_threshold(val_scores: np.ndarray, val_true: np.ndarray, *, oos_index: int | None,
                     target: Literal["f1", "in_scope_accuracy"] = "f1", keep: float = 0.95) -> float:
    """Abstention threshold on max-softmax confidence, chosen on the validation split.

    ``val_scores``: ``(N, C)`` softmax probabilities; ``val_true``: ``(N,)`` label indices.
    See the module docstring for the rule and why.  Returns a threshold in ``[0, 1]``-ish
    (abstain when confidence ``< threshold``).
    """
    if target not in ("f1", "in_scope_accuracy"):
        raise ValueError(f"target must be 'f1' or 'in_scope_accuracy', got {target!r}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    s = _check(val_scores, val_true)
    y = np.asarray(val_true, dtype=np.int64)
    if not len(s):
        return 0.0
    conf, pred = s.max(axis=1), s.argmax(axis=1)
    is_oos = (y == oos_index) if oos_index is not None else np.zeros(len(y), dtype=bool)
    if target == "f1" and is_oos.any():
        return _f1_threshold(conf, pred, is_oos, int(oos_index))  # type: ignore[arg-type]
    return _keep_threshold(conf, (pred == y) & ~is_oos, keep)


def apply_threshold(scores: np.ndarray, threshold: float, *, oos_index: int | None) -> np.ndarray:
    """``(N,)`` predictions: argmax, or ``oos_index`` (``-1`` without an OOS class) where the
    max probability is below ``threshold``."""
    s = _check(scores)
    pred = s.argmax(axis=1).astype(np.int64)
    pred[s.max(axis=1) < threshold] = NO_CLASS if oos_index is None else oos_index
    return pred


def oos_report(scores: np.ndarray, true: np.ndarray, threshold: float, *, oos_index: int | None) -> dict:
    """What the threshold does on a split (normally test).

    - ``abstain_rate``: share of all messages routed away (abstained, or predicted as the OOS
      class) — the human workload;
    - ``in_scope_accuracy``: accuracy on truly in-scope messages, an abstention counting as
      wrong (what the customer experiences);
    - ``oos_recall`` / ``oos_precision`` / ``oos_f1``: detection of truly OOS messages, only
      when the split has some.
    """
    s = _check(scores, true)
    y = np.asarray(true, dtype=np.int64)
    pred = apply_threshold(s, threshold, oos_index=oos_index)
    routed = pred == (NO_CLASS if oos_index is None else oos_index)
    is_oos = (y == oos_index) if oos_index is not None else np.zeros(len(y), dtype=bool)
    in_scope = ~is_oos
    out: dict = {
        "threshold": float(threshold),
        "n": len(y),
        "n_oos": int(is_oos.sum()),
        "abstain_rate": float(routed.mean()) if len(y) else 0.0,
        "in_scope_accuracy": float((pred[in_scope] == y[in_scope]).mean()) if in_scope.any() else None,
    }
    if is_oos.any():
        tp = int((routed & is_oos).sum())
        recall, precision = tp / int(is_oos.sum()), (tp / int(routed.sum()) if routed.any() else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update(oos_recall=float(recall), oos_precision=float(precision), oos_f1=float(f1))
    return out
