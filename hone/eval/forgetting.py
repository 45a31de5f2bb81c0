"""Forgetting check: did fine-tuning damage the encoder's *general* embedding quality?

Fine-tuning an encoder on one narrow domain (telecom support, banking) can bend its
embedding space so far that it stops representing ordinary language well — "catastrophic
forgetting".  Public benchmarks for this (STS-B, MTEB) are downloads; hone needs a check that
runs offline, in seconds, on CPU.

**The proxy: general-domain paraphrase retrieval.**  ``data/general_paraphrases.jsonl`` holds
140 pairs of paraphrases written for hone (280 sentences) about everyday topics — cooking,
sport, travel, weather, science, health, work, family, music, gardening, home, pets, school,
nature, shopping, transport, history, art — and deliberately *no* support, telecom or banking
text, so the probe measures what the tuning data does not cover.  Each topic has several
pairs sharing vocabulary ("the bus was crowded" / "the last train leaves at midnight"), and
71 pairs come with a *distractor*: a sentence reusing the words of the first one but meaning
something else ("The doctor told him to cut down on salt." vs "The doctor cut his finger on
the salt shaker.").  Distractors are candidates, never queries; they keep the probe off the
ceiling (the untuned MiniLM finds 99% of partners without them, 89.6% with them), so a
tuned model can be seen to lose — or gain — ground.

For each of the 280 pair sentences the other 350 sentences are ranked by cosine similarity of
their embeddings (:func:`hone.model.embed.embed`: mean pooling + L2 norm, the way the encoder
is used as a sentence encoder):

- ``acc@1``: share of sentences whose nearest neighbour is their own paraphrase;
- ``mrr``: mean reciprocal rank of the paraphrase (softer, moves before acc@1 does);
- ``geometry_spearman``: Spearman correlation between the base and tuned models' pairwise
  similarities (all 351·350/2 pairs) — how much the geometry moved, even when retrieval
  still works (1.0 = unchanged ordering).

The model *regressed* when tuned acc@1 is more than ``threshold`` (default 0.05 = 14
sentences) below the base model's.  For a classifier (``AutoModelForSequenceClassification``,
LoRA-wrapped or not) the encoder under the head is probed; the head itself is not involved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from hone.model.embed import embed

PROBE_FILE = "general_paraphrases.jsonl"
PROXY = ("general-domain paraphrase retrieval: 140 hand-written everyday paraphrase pairs (280 queries, 18 topics, "
         "no support/telecom/banking text) among 351 candidates incl. 71 word-overlapping distractors "
         "that mean something else; acc@1 = share of sentences whose nearest neighbour (cosine, "
         "mean-pooled embeddings) is their paraphrase")


@dataclass(frozen=True)
class Probe:
    """Paraphrase pairs plus distractors (candidates that are never queries)."""

    pairs: tuple[tuple[str, str], ...]
    distractors: tuple[str, ...] = ()

    @property
    def texts(self) -> list[str]:
        """Pair ``i`` at rows ``2i`` and ``2i + 1``, then the distractors."""
        return [s for pair in self.pairs for s in pair] + list(self.distractors)


def load_probe() -> Probe:
    """The shipped probe (``data/general_paraphrases.jsonl``: ``a``, ``b``, optional
    ``distractor``, ``topic``)."""
    text = resources.files("hone.eval").joinpath("data", PROBE_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return Probe(tuple((r["a"], r["b"]) for r in rows), tuple(r["distractor"] for r in rows if r.get("distractor")))


def _similarities(model: Any, tok: Any, probe: Probe) -> np.ndarray:
    """``(M, M)`` cosine similarities between all probe sentences (order of ``probe.texts``)."""
    emb = embed(model, tok, probe.texts)
    return emb @ emb.T


def retrieval_scores(sims: np.ndarray, n_pairs: int) -> tuple[float, float]:
    """``(acc@1, mrr)``: for each of the ``2 * n_pairs`` pair sentences, the rank of its partner
    (row ``i ^ 1``) among every other sentence, distractors included.

    Pessimistic ranking: a candidate as similar as the partner (a tie) or not comparable (NaN, from
    a diverged model) ranks above it, so collapsed or NaN embeddings score near 0, not 1.
    """
    n = 2 * n_pairs
    rows = np.arange(n)
    s = np.array(sims[:n], dtype=np.float64)  # (2P, M): queries are the pair sentences only
    partner_sim = s[rows, rows ^ 1]  # (2P,)
    beaten = s < partner_sim[:, None]  # (2P, M): False for ties and for NaN on either side
    others = np.ones_like(beaten)
    others[rows, rows] = others[rows, rows ^ 1] = False  # a sentence is not its own neighbour nor its partner
    rank = 1 + (others & ~beaten).sum(axis=1)
    return float((rank == 1).mean()), float((1.0 / rank).mean())


def geometry_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of the upper triangles of two similarity matrices."""
    from scipy.stats import spearmanr

    iu = np.triu_indices(len(a), k=1)
    rho = spearmanr(a[iu], b[iu]).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def forgetting_check(base_model: Any, tuned_model: Any, tok: Any, *, threshold: float = 0.05,
                     tuned_tok: Any = None, probe: Probe | None = None) -> dict:
    """Compare base and tuned encoders on the general paraphrase probe (see module docstring).

    ``tuned_tok`` defaults to ``tok``; ``probe`` replaces the shipped one (at least two pairs).
    """
    proxy = PROXY if probe is None else f"paraphrase retrieval on {len(probe.pairs)} given pairs"
    probe = probe if probe is not None else load_probe()
    if len(probe.pairs) < 2:
        raise ValueError("the forgetting probe needs at least two paraphrase pairs")
    base_sims = _similarities(base_model, tok, probe)
    same = tuned_model is base_model and (tuned_tok is None or tuned_tok is tok)
    tuned_sims = base_sims if same else _similarities(tuned_model, tuned_tok or tok, probe)
    base_acc, base_mrr = retrieval_scores(base_sims, len(probe.pairs))
    tuned_acc, tuned_mrr = retrieval_scores(tuned_sims, len(probe.pairs))
    delta = tuned_acc - base_acc
    return {
        "proxy": proxy,
        "n_pairs": len(probe.pairs),
        "n_distractors": len(probe.distractors),
        "base": base_acc,
        "tuned": tuned_acc,
        "delta": delta,
        "base_mrr": base_mrr,
        "tuned_mrr": tuned_mrr,
        "geometry_spearman": geometry_spearman(base_sims, tuned_sims),
        "threshold": threshold,
        "regressed": bool(delta < -threshold),
    }
