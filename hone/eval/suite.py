"""Evaluation of a fine-tuned classifier against baselines computed by hone on the same test split.

Baselines use the *base* encoder: zero-shot (query vs label-description embeddings), few-shot
(nearest centroid of k examples per class) and optionally a linear probe.  Every system gets
the same metrics with bootstrap CIs; the fine-tuned model's gain over each baseline is a
paired bootstrap on the same examples (none with ``eval.bootstrap: 0``: then no CIs and no paired
test, only point differences).  A multi-label model is compared on every label (micro-F1; a
baseline predicts one label per example).  Out-of-scope thresholds are chosen on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hone.config import EvalConfig
from hone.errors import ConfigError


def _ids(labels: Sequence[Any], label2id: dict[str, int]) -> np.ndarray:
    return np.array([label2id[lab[0] if isinstance(lab, list) else lab] for lab in labels])


def evaluate_classifier(clf, test_texts: list[str], test_labels: list[Any], *, cfg: EvalConfig, seed: int,
                        base_model: str, revision: str | None = None, train: tuple[list[str], list[Any]] | None = None,
                        val: tuple[list[str], list[Any]] | None = None, log=lambda _: None) -> dict[str, Any]:
    """The report dict (see hone.eval.report) for ``clf`` on the test texts."""
    from hone.eval import baselines as B
    from hone.eval.metrics import classification_metrics, paired_bootstrap_gain, paired_multilabel_gain

    labels = clf.labels
    l2i = {lab: i for i, lab in enumerate(labels)}
    y = _ids(test_labels, l2i)
    probs = clf.scores(test_texts).numpy()
    tuned = probs.argmax(-1)
    metrics = lambda pred: classification_metrics(y, pred, labels, n_boot=cfg.bootstrap, seed=seed)  # noqa: E731
    systems: dict[str, Any] = {"fine_tuned": {**metrics(tuned), "kind": "fine-tuned",
                                              "description": f"{base_model} fine-tuned ({clf.manifest.get('method')})"}}
    gains: dict[str, Any] = {}
    report: dict[str, Any] = {"task": "classification", "labels": labels, "systems": systems, "gains": gains,
                              "primary": "fine_tuned"}
    # multi-label: the metrics above score each example's first label against the top one (kept as a single-label
    # view); every system is also scored on every label (fine-tuned: each label at 0.5, a baseline: its one label),
    # and those scores are the headline and the gains' metric
    ml = _MultiLabel(test_labels, l2i, cfg.bootstrap, seed) if clf.multi_label else None
    if ml is not None:
        tuned_ml = (probs >= 0.5).astype(np.int64)
        systems["fine_tuned"]["multi_label"] = ml.scores(tuned_ml, labels)
        report["multi_label"] = {"threshold": 0.5, **systems["fine_tuned"]["multi_label"]}
        m = report["multi_label"]
        log(f"multi-label (every label at 0.5): micro-F1 {m['micro_f1']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
            f"subset accuracy {m['subset_accuracy']:.3f}")
    if cfg.baselines or cfg.forgetting:
        from hone.model.load import load_encoder

        from hone.model.embed import embed

        enc, tok = load_encoder(base_model, revision=revision)  # the base the model was trained from
        test_emb = embed(enc, tok, test_texts) if cfg.baselines else None  # shared by every baseline
        preds: dict[str, Any] = {}
        if "zero_shot" in cfg.baselines:
            try:
                preds["zero_shot"] = B.zero_shot(enc, tok, test_texts, labels, test_emb=test_emb,
                                                 descriptions=cfg.label_descriptions or None)
            except ValueError as e:
                raise ConfigError(f"eval.label_descriptions: {e}") from None
        if train is not None and "few_shot" in cfg.baselines:
            preds["few_shot"] = B.few_shot(enc, tok, train[0], list(_ids(train[1], l2i)), test_texts, len(labels),
                                           k=cfg.few_shot_k or 8, seed=seed, test_emb=test_emb)
        if train is not None and "linear_probe" in cfg.baselines:
            preds["linear_probe"] = B.linear_probe(enc, tok, train[0], list(_ids(train[1], l2i)), test_texts,
                                                   seed=seed, n_labels=len(labels), test_emb=test_emb)
        for name, r in preds.items():
            systems[name] = {**metrics(r.pred), "kind": "baseline", "description": r.description}
            if ml is not None:
                one_hot = np.eye(len(labels), dtype=np.int64)[r.pred]  # (N, C): a baseline predicts one label
                systems[name]["multi_label"] = ml.scores(one_hot, labels)
                if cfg.bootstrap > 0:
                    gains[name] = paired_multilabel_gain(ml.truth, one_hot, tuned_ml, metric="micro_f1",
                                                         n_boot=cfg.bootstrap, seed=seed)
                log(f"{name}: micro-F1 {systems[name]['multi_label']['micro_f1']:.3f} "
                    f"(fine-tuned {systems['fine_tuned']['multi_label']['micro_f1']:.3f})")
                continue
            if cfg.bootstrap > 0:  # eval.bootstrap=0: no paired test; the report gives the point differences
                gains[name] = paired_bootstrap_gain(y, r.pred, tuned, metric="accuracy", n_boot=cfg.bootstrap,
                                                    seed=seed)
            log(f"{name}: accuracy {systems[name]['accuracy']:.3f} (fine-tuned {systems['fine_tuned']['accuracy']:.3f})")
        if cfg.forgetting:
            from hone.eval.forgetting import forgetting_check

            report["forgetting"] = forgetting_check(enc, clf.model, tok, threshold=cfg.forgetting_threshold)
    if cfg.oos_label is not None:
        on_val = bool(val and val[0])  # the caller passes no val when it scores the validation split itself
        report["oos"] = _oos(clf, probs, y, l2i, cfg.oos_label, val if on_val else train,
                             "validation" if on_val else "train")
    report["examples"] = _examples(test_texts, y, tuned, probs, labels)
    return report


class _MultiLabel:
    """The test labels as a ``(N, C)`` 0/1 matrix, and every system's multi-label scores against it."""

    def __init__(self, test_labels: Sequence[Any], l2i: dict[str, int], n_boot: int, seed: int) -> None:
        self.truth = np.zeros((len(test_labels), len(l2i)), dtype=np.int64)
        for i, row in enumerate(test_labels):
            for lab in (row if isinstance(row, list) else [row]):
                self.truth[i, l2i[lab]] = 1
        self.n_boot, self.seed = n_boot, seed

    def scores(self, pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
        """multilabel_metrics plus ``micro_f1_ci`` (None with eval.bootstrap=0)."""
        from hone.eval.metrics import multilabel_ci, multilabel_metrics

        return {**multilabel_metrics(self.truth, pred, labels),
                "micro_f1_ci": multilabel_ci(self.truth, pred, n_boot=self.n_boot, seed=self.seed)}


def _oos(clf, probs: np.ndarray, y: np.ndarray, l2i: dict[str, int], oos_label: str,
         held_out: tuple[list[str], list[Any]] | None, held_out_name: str = "validation") -> dict[str, Any]:
    """Threshold chosen on validation (or, without one, on train: never on the test split it is scored on); with
    neither (``hone eval`` on a file), the artifact's own threshold, the one ``predict`` applies."""
    from hone.eval.oos import choose_threshold, oos_report

    idx = l2i.get(oos_label)
    if held_out is None or not held_out[0]:
        if clf.threshold is None:
            raise ConfigError("eval.oos_label: choosing an out-of-scope threshold needs a validation split "
                              "(this artifact has none of its own)")
        return {"label": oos_label, **oos_report(probs, y, clf.threshold, oos_index=idx),
                "threshold_chosen_on": "artifact"}
    threshold = choose_threshold(clf.scores(held_out[0]).numpy(), _ids(held_out[1], l2i), oos_index=idx)
    return {"label": oos_label, **oos_report(probs, y, threshold, oos_index=idx), "threshold_chosen_on": held_out_name}


def _examples(texts: list[str], y: np.ndarray, pred: np.ndarray, probs: np.ndarray, labels: list[str],
              n: int = 12) -> list[dict[str, Any]]:
    """The most confident mistakes first: the most useful rows for a human to look at."""
    wrong = [i for i in range(len(texts)) if y[i] != pred[i]]
    wrong.sort(key=lambda i: -probs[i, pred[i]])
    return [{"text": texts[i], "label": labels[y[i]], "predicted": labels[pred[i]],
             "score": round(float(probs[i, pred[i]]), 4), "correct": False} for i in wrong[:n]]
