"""Embedding baselines of the untuned MiniLM on BANKING77 (train -> test), with wall times.

    python bench/baselines_banking77.py [--threads 2] [--data ../shared/data/banking77]

Prints one line per baseline (accuracy, macro-F1, seconds), the embedding throughput, the
forgetting probe's base acc@1 / MRR, and one JSON line with everything.  The test texts are
embedded once and shared (``test_emb=``); each baseline's time covers its own embedding work
(label descriptions, sampled examples) plus the classifier; the train split is embedded once,
timed on its own, and the linear probe's time is the logistic-regression fit alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from hone.eval.baselines import few_shot, linear_probe, zero_shot
    from hone.eval.forgetting import forgetting_check
    from hone.model.embed import embed
    from hone.model.load import load_encoder

    train_x, train_lab = read(args.data / "train.csv")
    test_x, test_lab = read(args.data / "test.csv")
    labels = sorted(set(train_lab))
    index = {lab: i for i, lab in enumerate(labels)}
    train_y, test_y = [index[v] for v in train_lab], np.array([index[v] for v in test_lab])
    model, tok = load_encoder("minilm")
    out: dict = {"threads": args.threads, "n_train": len(train_x), "n_test": len(test_x),
                 "load_average": os.getloadavg()[0]}

    t0 = time.perf_counter()
    test_emb = embed(model, tok, test_x)
    secs = time.perf_counter() - t0
    out["embed_test"] = {"seconds": round(secs, 2), "texts_per_s": round(len(test_x) / secs, 1)}
    print(f"embed test: {len(test_x)} texts in {secs:.1f} s = {len(test_x) / secs:.0f} texts/s")

    t0 = time.perf_counter()
    train_emb = embed(model, tok, train_x)
    secs = time.perf_counter() - t0
    out["embed_train"] = {"seconds": round(secs, 2), "texts_per_s": round(len(train_x) / secs, 1)}
    print(f"embed train: {len(train_x)} texts in {secs:.1f} s = {len(train_x) / secs:.0f} texts/s")

    runs = {
        "zero_shot": lambda: zero_shot(model, tok, test_x, labels, test_emb=test_emb),
        "centroid_k10": lambda: few_shot(model, tok, train_x, train_y, test_x, 77, k=10, test_emb=test_emb),
        "centroid_k30": lambda: few_shot(model, tok, train_x, train_y, test_x, 77, k=30, test_emb=test_emb),
        "knn_k10": lambda: few_shot(model, tok, train_x, train_y, test_x, 77, k=10, method="knn",
                                    test_emb=test_emb),
        "linear_probe_fit": lambda: linear_probe(model, tok, train_x, train_y, test_x, n_labels=77,
                                                 test_emb=test_emb, train_emb=train_emb),
    }
    for name, fn in runs.items():
        t0 = time.perf_counter()
        r = fn()
        secs = time.perf_counter() - t0
        acc, f1 = float((r.pred == test_y).mean()), macro_f1(test_y, r.pred)
        out[name] = {"accuracy": round(acc, 4), "macro_f1": round(f1, 4), "seconds": round(secs, 2)}
        print(f"{name:14s} acc {acc:.4f}  macro-F1 {f1:.4f}  {secs:6.1f} s   ({r.description})")

    t0 = time.perf_counter()
    fc = forgetting_check(model, model, tok)
    out["forgetting_probe"] = {"base_acc1": round(fc["base"], 4), "base_mrr": round(fc["base_mrr"], 4),
                               "seconds": round(time.perf_counter() - t0, 2)}
    print(f"forgetting probe (base): acc@1 {fc['base']:.4f}  MRR {fc['base_mrr']:.4f}")
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
