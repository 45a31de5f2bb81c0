"""Baselines computed by hone on the same test split as the fine-tuned model.

A fine-tuned intent classifier is only worth shipping if it beats what the *untuned* encoder
already does.  These are the usual cheap alternatives, all on frozen sentence embeddings
(:func:`hone.model.embed.embed`, mean pooling + L2 norm, so dot product = cosine):

- :func:`zero_shot` — no labelled data: nearest label *description* (the humanized label
  name by default, ``"card_payment_fee_charged"`` -> ``"card payment fee charged"``);
- :func:`few_shot` — ``k`` labelled examples per class: nearest class centroid, or a
  k-nearest-neighbour vote;
- :func:`linear_probe` — all the training data, but only a logistic regression on top of
  the frozen embeddings (the strongest "no fine-tuning" baseline).

Every function returns a :class:`BaselineResult` with predictions *and* per-class scores, so
the same metric code (accuracy, macro-F1, top-k, thresholds) applies to every baseline.
All accept ``test_emb=`` so several baselines can share one embedding of the test texts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hone.model.embed import embed

# Label-name pieces written in capitals when humanized ("sim_swap" -> "SIM swap").
ACRONYMS = frozenset({
    "sim", "esim", "pin", "atm", "sms", "mms", "id", "eu", "uk", "us", "usa", "vat", "apn", "puk", "iban",
    "faq", "tv", "dsl", "adsl", "vpn", "ip", "url", "pdf", "otp", "imei", "nfc", "usb", "gps", "api",
})
SPECIAL_WORDS = {"esim": "eSIM", "wifi": "Wi-Fi"}
MISSING_CENTROID = -2.0  # score of a class without examples: below any cosine similarity


@dataclass(frozen=True)
class BaselineResult:
    """Predictions of one baseline on the test texts.

    ``pred``: ``(N,)`` int label indices.  ``scores``: ``(N, C)`` float — cosine similarities
    (zero-shot, centroid), vote shares (kNN) or probabilities (linear probe); higher = more
    likely, and ``scores.argmax(1) == pred``.
    """

    pred: np.ndarray
    scores: np.ndarray
    name: str
    description: str


# --------------------------------------------------------------------------------------------
# Label descriptions
# --------------------------------------------------------------------------------------------


def _humanize_word(w: str) -> str:
    low = w.lower()
    if low in SPECIAL_WORDS:
        return SPECIAL_WORDS[low]
    if low in ACRONYMS or re.fullmatch(r"\d+[a-z]", low):  # 5g -> 5G, 4g -> 4G
        return low.upper()
    return low


def humanize_label(label: str) -> str:
    """``"card_payment_fee_charged"`` -> ``"card payment fee charged"``, ``"5g_coverage"`` ->
    ``"5G coverage"``, ``"CardArrival"`` -> ``"card arrival"``, ``"reverted_card_payment?"``
    -> ``"reverted card payment"``: a sentence encoder understands words, not identifiers."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", " ", str(label))  # camelCase boundaries
    words = [w for w in re.split(r"[\s_\-./:]+|[^\w\s]", spaced) if w]
    return " ".join(_humanize_word(w) for w in words) or str(label)


def label_descriptions(labels: Sequence[str], descriptions: Mapping[str, str] | None = None) -> dict[str, str]:
    """One description per label: the user's text where given, else the humanized name."""
    given = dict(descriptions or {})
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise ValueError(f"descriptions given for unknown labels: {', '.join(unknown[:5])}")
    return {lab: (given.get(lab) or "").strip() or humanize_label(lab) for lab in labels}


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def _embed_test(model: Any, tok: Any, texts: Sequence[str], test_emb: np.ndarray | None) -> np.ndarray:
    if test_emb is None:
        return embed(model, tok, texts)
    if len(test_emb) != len(texts):
        raise ValueError(f"test_emb has {len(test_emb)} rows for {len(texts)} test texts")
    return test_emb


def zero_shot(model: Any, tok: Any, test_texts: Sequence[str], labels: Sequence[str], *,
              descriptions: Mapping[str, str] | None = None, template: str = "{}",
              test_emb: np.ndarray | None = None) -> BaselineResult:
    """Nearest label description by cosine similarity; ``template`` wraps each description
    (e.g. ``"a customer asking about {}"``).  Scores: ``(N, C)`` cosine similarities."""
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the description goes, got {template!r}")
    desc = label_descriptions(labels, descriptions)
    label_emb = embed(model, tok, [template.format(desc[lab]) for lab in labels])  # (C, H)
    scores = _embed_test(model, tok, test_texts, test_emb) @ label_emb.T  # (N, C)
    how = "user descriptions" if descriptions else "humanized label names"
    return BaselineResult(scores.argmax(1), scores, "zero_shot",
                          f"untuned encoder, nearest label description ({how}, template {template!r})")


def sample_per_class(labels: Sequence[int], n_labels: int, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` examples per class (all of a class with fewer), drawn without
    replacement by a seeded generator, classes in index order — the same seed gives the
    same sample on every machine."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(n_labels):
        idx = np.flatnonzero(y == c)
        if len(idx):
            picked.append(np.sort(rng.choice(idx, size=min(k, len(idx)), replace=False)))
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def _centroid_scores(emb: np.ndarray, y: np.ndarray, test: np.ndarray, n_labels: int) -> np.ndarray:
    """Cosine similarity ``(N, C)`` to each class's normalized mean embedding."""
    centroids = np.zeros((n_labels, emb.shape[1]), dtype=np.float32)
    present = np.zeros(n_labels, dtype=bool)
    for c in np.unique(y):
        centroids[c] = emb[y == c].mean(0)
        present[c] = True
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    scores = test @ centroids.T
    scores[:, ~present] = MISSING_CENTROID
    return scores


def _knn_scores(emb: np.ndarray, y: np.ndarray, test: np.ndarray, n_labels: int, k_neighbors: int) -> np.ndarray:
    """Vote shares ``(N, C)`` of the ``k_neighbors`` most similar examples.

    Ties in the vote go to the class with the single most similar neighbour: 1e-6 times that
    similarity is added to each voted class's share, so ``argmax`` breaks ties that way and
    the scores stay (almost exactly) vote shares.
    """
    kn = min(k_neighbors, len(y))
    sims = test @ emb.T  # (N, M)
    nn = np.argsort(-sims, axis=1, kind="stable")[:, :kn]  # (N, kn)
    scores = np.zeros((len(test), n_labels), dtype=np.float64)
    best = np.full((len(test), n_labels), -np.inf)
    rows = np.arange(len(test))
    for j in range(kn):
        cls, s = y[nn[:, j]], sims[rows, nn[:, j]]
        np.add.at(scores, (rows, cls), 1.0 / kn)
        best[rows, cls] = np.maximum(best[rows, cls], s)
    voted = np.isfinite(best)
    scores[voted] += 1e-6 * (best[voted] + 1.0)  # + 1 keeps the nudge positive
    return scores.astype(np.float32)


def few_shot(model: Any, tok: Any, train_texts: Sequence[str], train_labels: Sequence[int],
             test_texts: Sequence[str], n_labels: int, *, k: int = 8,
             method: Literal["centroid", "knn"] = "centroid", seed: int = 0,
             test_emb: np.ndarray | None = None) -> BaselineResult:
    """``k`` labelled examples per class (seeded sample of the train split), then nearest
    centroid or a kNN vote (``min(5, k)`` neighbours, cosine).  Only the sampled texts are
    embedded, so this is cheap even on a large train split."""
    if len(train_texts) != len(train_labels):
        raise ValueError(f"{len(train_texts)} train texts but {len(train_labels)} labels")
    if method not in ("centroid", "knn"):
        raise ValueError(f"method must be 'centroid' or 'knn', got {method!r}")
    idx = sample_per_class(train_labels, n_labels, k, seed)
    if not len(idx):
        raise ValueError("few_shot needs at least one labelled training example")
    y = np.asarray(train_labels, dtype=np.int64)[idx]
    emb = embed(model, tok, [train_texts[i] for i in idx])
    test = _embed_test(model, tok, test_texts, test_emb)
    if method == "centroid":
        scores = _centroid_scores(emb, y, test, n_labels)
        what = "nearest class centroid (cosine)"
    else:
        scores = _knn_scores(emb, y, test, n_labels, min(5, k))
        what = f"{min(5, k)}-nearest-neighbour vote (cosine)"
    return BaselineResult(scores.argmax(1), scores, f"few_shot_{method}_k{k}",
                          f"untuned encoder, {k} examples per class (seed {seed}), {what}")


def linear_probe(model: Any, tok: Any, train_texts: Sequence[str], train_labels: Sequence[int],
                 test_texts: Sequence[str], *, C: float = 1.0, seed: int = 0, n_labels: int | None = None,
                 test_emb: np.ndarray | None = None, train_emb: np.ndarray | None = None) -> BaselineResult:
    """Multinomial logistic regression on frozen embeddings of the whole train split.

    Scores are ``predict_proba`` spread over ``n_labels`` columns (default: largest train
    label + 1); classes absent from the train split get probability 0.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(train_labels, dtype=np.int64)
    if len(train_texts) != len(y):
        raise ValueError(f"{len(train_texts)} train texts but {len(y)} labels")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("linear_probe needs at least two classes in the train split")
    n_labels = int(y.max()) + 1 if n_labels is None else n_labels
    x = embed(model, tok, train_texts) if train_emb is None else train_emb
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(x, y)
    proba = clf.predict_proba(_embed_test(model, tok, test_texts, test_emb))
    scores = np.zeros((len(proba), n_labels), dtype=np.float32)
    scores[:, clf.classes_] = proba
    return BaselineResult(scores.argmax(1), scores, "linear_probe",
                          f"logistic regression (C={C}) on frozen embeddings of {len(y)} train examples")


def run_baselines(model: Any, tok: Any, train_texts: Sequence[str], train_labels: Sequence[int],
                  test_texts: Sequence[str], labels: Sequence[str], *, k: int = 8, seed: int = 0,
                  descriptions: Mapping[str, str] | None = None) -> list[BaselineResult]:
    """Zero-shot, few-shot centroid and kNN (``k`` per class) and the linear probe, sharing one
    embedding of the test texts (the most expensive part)."""
    test_emb = embed(model, tok, test_texts)
    n = len(labels)
    return [
        zero_shot(model, tok, test_texts, labels, descriptions=descriptions, test_emb=test_emb),
        few_shot(model, tok, train_texts, train_labels, test_texts, n, k=k, seed=seed, test_emb=test_emb),
        few_shot(model, tok, train_texts, train_labels, test_texts, n, k=k, method="knn", seed=seed,
                 test_emb=test_emb),
        linear_probe(model, tok, train_texts, train_labels, test_texts, seed=seed, n_labels=n, test_emb=test_emb),
    ]
