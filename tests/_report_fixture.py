"""Synthetic but realistic evaluation reports for the report-writer tests (plain module)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hone.eval.metrics import classification_metrics, paired_bootstrap_gain

INTENT_WORDS = ["billing", "roaming", "outage", "upgrade", "cancel", "refund", "sim", "porting", "data",
                "voicemail", "contract", "invoice", "coverage"]


def intent_labels(k: int) -> list[str]:
    """k distinct intent names, the last one hostile (HTML in a label must be escaped)."""
    names = [f"{INTENT_WORDS[i % 13]}_{['question', 'dispute', 'request'][i // 13 % 3]}_{i // 39}" for i in range(k)]
    names[-1] = "<script>alert('x')</script> & co"
    return names


def _noisy(rng: np.random.Generator, y: np.ndarray, k: int, acc: float) -> np.ndarray:
    wrong = rng.random(y.size) > acc
    near = (y + rng.integers(1, 3, y.size)) % k  # errors cluster on neighbouring classes
    return np.where(wrong, near, y)


def synthetic_report(k: int = 26, n: int = 390, seed: int = 0, n_boot: int = 200) -> dict[str, Any]:
    """A report shaped like the evaluation's output: three systems, gains, history, oos, forgetting."""
    rng = np.random.default_rng(seed)
    labels = intent_labels(k)
    y = rng.integers(0, k, n)
    preds = {"fine_tuned": _noisy(rng, y, k, 0.9), "few_shot": _noisy(rng, y, k, 0.62),
             "zero_shot": _noisy(rng, y, k, 0.4)}
    systems = {}
    for name, p in preds.items():
        m = classification_metrics(y, p, labels, n_boot=n_boot)
        systems[name] = {**m, "kind": "tuned" if name == "fine_tuned" else "baseline",
                         "description": f"{name.replace('_', ' ')} on MiniLM"}
    gains = {b: paired_bootstrap_gain(y, preds[b], preds["fine_tuned"], n_boot=n_boot, n_classes=k)
             for b in ("zero_shot", "few_shot")}
    history = []
    for step in range(10, 310, 10):
        history.append({"step": step, "epoch": step / 100, "train_loss": 3.2 * np.exp(-step / 80) + 0.1,
                        "lr": 1e-4 * min(1.0, step / 30) * (1 - step / 320)})
        if step % 50 == 0:
            history.append({"step": step, "eval_loss": 2.9 * np.exp(-step / 90) + 0.25,
                            "eval_accuracy": 0.93 - 0.6 * np.exp(-step / 70),
                            "eval_macro_f1": 0.91 - 0.65 * np.exp(-step / 70)})
    return {
        "task": "classification", "title": "telecom intents — MiniLM full fine-tune", "labels": labels,
        "systems": systems, "primary": "fine_tuned", "gains": gains, "history": history,
        "training": {"method": "full", "steps": 300, "epochs": 3, "wall_time_s": 120.5, "best_step": 250,
                     "best_metric": {"name": "macro_f1", "value": 0.91}, "samples_per_s": 80.1},
        "oos": {"label": "oos", "threshold": 0.42, "in_scope_accuracy": 0.93, "oos_recall": 0.8,
                "oos_precision": 0.7, "abstain_rate": 0.1},
        "forgetting": {"proxy": "masked-token accuracy on general English", "base": 0.81, "tuned": 0.77,
                       "delta": -0.04, "threshold": 0.05, "regressed": False},
        "examples": [{"text": "my bill is <b>twice</b> what it was | why?", "label": labels[0],
                      "predicted": labels[-1], "score": 0.61, "correct": False}],
        "data": {"train": 1500, "validation": 180, "test": n, "data_sha256": "ab" * 32},
        "model": {"base": "minilm", "artifact": "/runs/telecom/artifact"},
    }
