"""Text-generation metrics: per-example and corpus scores, bootstrap CIs, paired gains.

Pure functions over strings; no models, no files. Every score is on a **0-100 scale**
(BLEU and chrF as sacrebleu reports them, ROUGE F-measures and exact match multiplied by
100), so tables can mix them. Shares that are not quality scores (``stop_rate``) stay 0-1.

Metrics (``METRICS``):

* ``bleu`` / ``chrf``: sacrebleu defaults (13a tokenisation, or ``zh`` / ``char`` for Chinese / Japanese and
  Korean references, :func:`bleu_tokenize`; exp smoothing; chrF char
  order 6, beta 2). Per example they equal ``sacrebleu.sentence_bleu`` (effective order) and
  ``sacrebleu.sentence_chrf``; for a corpus, ``sacrebleu.corpus_bleu`` / ``corpus_chrf``.
* ``rouge1`` / ``rouge2`` / ``rougeL``: rouge-score F-measure with the Porter stemmer; corpus =
  mean. rouge-score's own tokenizer keeps only ``[a-z0-9]`` runs, so Russian or Chinese text
  scored 0 even against itself: :class:`UnicodeTokenizer` gives the same tokens on ASCII text
  and keeps the letters of every script (CJK ideographs and kana one character a token).
* ``exact_match``: SQuAD normalisation (lowercase, drop punctuation and a/an/the, squash
  whitespace), 100 or 0 per example; corpus = mean.

A reference may be one string or a list of strings (multiple references; BLEU and chrF use
sacrebleu's multi-reference rules, ROUGE and exact match take the best reference).

Bootstrap without re-running sacrebleu: every metric is reduced to per-example sufficient
statistics ``X`` of shape ``(N, D)`` once (BLEU: lengths + n-gram matches/totals, D=10;
chrF: hyp/ref/match counts per order, D=18; mean metrics: the score itself, D=1) plus a
vectorised ``reduce(sums) -> score``. A resample is a ``(B, N)`` matrix of multiplicities
``W``, so all B resampled corpus scores are ``reduce(W @ X)``. The statistics come from
sacrebleu's own (private) ``_extract_corpus_statistics``, and the tests pin that the point
estimate equals ``corpus_score`` to 1e-6.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hone.eval.metrics import _percentile_ci, _resample_chunks

METRICS: tuple[str, ...] = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match")
ROUGE_METRICS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

Reference = str | Sequence[str]
Reducer = Callable[[np.ndarray], np.ndarray]  # (M, D) summed statistics -> (M,) scores


# ----------------------------------------------------------------------------- inputs


def _ref_lists(predictions: Sequence[str], references: Sequence[Reference]) -> list[list[str]]:
    """References as one non-empty list per example; validates lengths."""
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} vs {len(references)}")
    if not predictions:
        raise ValueError("cannot score an empty evaluation set")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("every example needs at least one reference")
    return refs


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric: unknown {metric!r}; choose one of {list(METRICS)}")


def normalize_answer(text: str) -> str:
    """SQuAD answer normalisation: lowercase, no punctuation, no a/an/the, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCT = frozenset(string.punctuation)


# ----------------------------------------------------------------------------- sacrebleu statistics


def bleu_tokenize(refs: list[list[str]]) -> str:
    """sacrebleu's tokenizer for these references: ``zh`` (each Chinese character a word) when most of their letters
    are Han ideographs, ``char`` when most are kana or hangul (``ja-mecab`` / ``ko-mecab`` need MeCab), else its
    default ``13a`` (which leaves a sentence without spaces one word: BLEU 0 for Chinese text scored against itself)."""
    text = "".join(r for rs in refs for r in rs)
    letters = sum(c.isalpha() for c in text) or 1
    han = sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)
    kana_hangul = sum("\u3040" <= c <= "\u30ff" or "\uac00" <= c <= "\ud7af" for c in text)
    if (han + kana_hangul) / letters < 0.5:
        return "13a"
    return "zh" if han >= kana_hangul else "char"


def _sacrebleu_stats(metric: str, predictions: Sequence[str], refs: list[list[str]]) -> np.ndarray:
    """Per-example sufficient statistics ``(N, D)`` from sacrebleu (default settings; BLEU's tokenizer by
    :func:`bleu_tokenize`)."""
    from sacrebleu.metrics import BLEU, CHRF

    scorer = BLEU(tokenize=bleu_tokenize(refs)) if metric == "bleu" else CHRF()
    k = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(k)]  # None = fewer refs
    stats = scorer._extract_corpus_statistics(list(predictions), streams)
    return np.asarray(stats, dtype=np.float64).reshape(len(predictions), -1)


def bleu_from_stats(stats: np.ndarray, *, effective_order: bool = False, max_order: int = 4) -> np.ndarray:
    """sacrebleu's ``compute_bleu`` (exp smoothing) vectorised over rows of ``(M, 2 + 2*max_order)``.

    Row layout: ``[sys_len, ref_len, correct_1..K, total_1..K]``. ``effective_order=True``
    averages only over the orders with hypothesis n-grams (sentence-level BLEU).
    """
    sys_len, ref_len = stats[:, 0], stats[:, 1]
    correct, total = stats[:, 2:2 + max_order], stats[:, 2 + max_order:]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len >= ref_len, 1.0, np.where(sys_len > 0, np.exp(1.0 - ref_len / sys_len), 0.0))
    valid = total > 0  # orders with hypothesis n-grams: a prefix, counts shrink with n
    zero = (correct == 0) & valid
    smooth = 2.0 ** np.cumsum(zero, axis=1)  # exp smoothing halves each successive empty order
    safe_total = np.where(valid, total, 1.0)
    prec = np.where(zero, 100.0 / (smooth * safe_total), 100.0 * correct / safe_total)
    log_p = np.where(valid, np.log(np.where(valid, prec, 1.0)), 0.0)
    order = valid.sum(1) if effective_order else np.full(len(stats), max_order)
    score = bp * np.exp(log_p.sum(1) / np.maximum(order, 1))
    ok = correct.sum(1) > 0
    if not effective_order:
        ok &= valid.all(1)  # a missing order is log(0) in sacrebleu: score 0
    return np.where(ok, score, 0.0)


def chrf_from_stats(stats: np.ndarray, *, beta: float = 2.0) -> np.ndarray:
    """sacrebleu's chrF F-score (no eps smoothing) vectorised over rows of ``(M, 3*order)``.

    Row layout: ``[hyp_1, ref_1, match_1, hyp_2, ...]`` per character n-gram order; precision
    and recall are averaged over the orders where both hypothesis and reference have n-grams.
    """
    s = stats.reshape(len(stats), -1, 3)  # (M, order, 3)
    hyp, ref, match = s[..., 0], s[..., 1], s[..., 2]
    both = (hyp > 0) & (ref > 0)
    eff = both.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_p = np.where(both, match / np.where(both, hyp, 1.0), 0.0).sum(1) / np.maximum(eff, 1)
        avg_r = np.where(both, match / np.where(both, ref, 1.0), 0.0).sum(1) / np.maximum(eff, 1)
        f = beta**2
        score = 100.0 * (1 + f) * avg_p * avg_r / (f * avg_p + avg_r)
    return np.where(avg_p + avg_r > 0, score, 0.0)


# ----------------------------------------------------------------------------- per-example scores


# Scripts written without spaces between words: each character is a token (a letter's combining marks stay with it).
_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_TOKEN = rf"[{_NO_SPACE}]\p{{M}}*|(?:(?![{_NO_SPACE}])[\p{{L}}\p{{N}}])(?:(?![{_NO_SPACE}])[\p{{L}}\p{{M}}\p{{N}}])*"


class UnicodeTokenizer:
    """rouge-score's default tokenizer for every script.

    On ASCII text the tokens are rouge-score's (lowercase ``[a-z0-9]+`` runs, words over 3
    characters Porter-stemmed); letters, digits and combining marks of other scripts are kept
    too, and scripts without spaces (CJK ideographs, kana, Thai, ...) give one token per
    character. Only ASCII words are stemmed: the Porter stemmer is for English.
    """

    def __init__(self, use_stemmer: bool = True) -> None:
        import regex
        from rouge_score.tokenizers import porter

        self._token = regex.compile(_TOKEN)
        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = self._token.findall(text.lower())
        if self._stemmer is None:
            return tokens
        return [self._stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]


@functools.lru_cache(maxsize=4)
def _rouge_scorer(names: tuple[str, ...]) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(names), tokenizer=UnicodeTokenizer(use_stemmer=True))


def _rouge(predictions: Sequence[str], refs: list[list[str]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """ROUGE F-measures x 100, each ``(N,)``; the best reference per example."""
    scorer = _rouge_scorer(tuple(names))
    rows = [scorer.score_multi(r, p) for p, r in zip(predictions, refs, strict=True)]
    return {m: np.array([100.0 * row[m].fmeasure for row in rows]) for m in names}


def _exact_match(predictions: Sequence[str], refs: list[list[str]]) -> np.ndarray:
    """100 where the normalised prediction equals any normalised reference, else 0; ``(N,)``."""
    hits = [any(normalize_answer(p) == normalize_answer(x) for x in r) for p, r in zip(predictions, refs, strict=True)]
    return 100.0 * np.asarray(hits, dtype=np.float64)


def per_example_scores(
    predictions: Sequence[str], references: Sequence[Reference], metrics: Sequence[str] = METRICS
) -> dict[str, np.ndarray]:
    """Sentence-level score of each example for each metric: ``{metric: (N,)}``, 0-100.

    ``bleu`` equals ``sacrebleu.sentence_bleu`` (effective order), ``chrf``
    ``sacrebleu.sentence_chrf``; ROUGE is the rouge-score F-measure (stemmed).
    """
    for m in metrics:
        _check_metric(m)
    refs = _ref_lists(predictions, references)
    out: dict[str, np.ndarray] = {}
    if "bleu" in metrics:
        out["bleu"] = bleu_from_stats(_sacrebleu_stats("bleu", predictions, refs), effective_order=True)
    if "chrf" in metrics:
        out["chrf"] = chrf_from_stats(_sacrebleu_stats("chrf", predictions, refs))
    rouge = [m for m in ROUGE_METRICS if m in metrics]
    if rouge:
        out.update(_rouge(predictions, refs, rouge))
    if "exact_match" in metrics:
        out["exact_match"] = _exact_match(predictions, refs)
    return {m: out[m] for m in metrics}


# ----------------------------------------------------------------------------- corpus scores


def _statistics(predictions: Sequence[str], refs: list[list[str]], metric: str) -> tuple[np.ndarray, Reducer]:
    """Per-example statistics ``(N, D)`` and the reducer turning summed rows into corpus scores."""
    if metric == "bleu":
        return _sacrebleu_stats("bleu", predictions, refs), bleu_from_stats
    if metric == "chrf":
        return _sacrebleu_stats("chrf", predictions, refs), chrf_from_stats
    n = len(predictions)
    scores = _rouge(predictions, refs, [metric])[metric] if metric in ROUGE_METRICS else _exact_match(predictions, refs)
    return scores[:, None], lambda sums: sums[:, 0] / n


def _point(stats: np.ndarray, reduce: Reducer) -> float:
    return float(reduce(stats.sum(0, keepdims=True))[0])


def corpus_scores(
    predictions: Sequence[str], references: Sequence[Reference], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Corpus score per metric, 0-100: corpus BLEU / chrF (sacrebleu), mean ROUGE and EM."""
    for m in metrics:
        _check_metric(m)
    refs = _ref_lists(predictions, references)
    return {m: _point(*_statistics(predictions, refs, m)) for m in metrics}


# ----------------------------------------------------------------------------- bootstrap


def _resampled(stats: Sequence[np.ndarray], reduce: Reducer, n_boot: int, seed: int) -> list[np.ndarray]:
    """Corpus scores of each statistics matrix on the same ``n_boot`` resamples, each ``(n_boot,)``."""
    n = len(stats[0])
    out: list[list[np.ndarray]] = [[] for _ in stats]
    for idx in _resample_chunks(n, n_boot, seed):  # (b, N) example indices
        b = idx.shape[0]
        offset = (np.arange(b, dtype=np.int64) * n)[:, None]
        weights = np.bincount((idx + offset).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        for j, x in enumerate(stats):
            out[j].append(reduce(weights @ x))  # (b, D) summed statistics -> (b,)
    return [np.concatenate(parts) for parts in out]


def bootstrap_ci(
    predictions: Sequence[str],
    references: Sequence[Reference],
    metric: str,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """``(point, low, high)``: corpus score and its ``1 - alpha`` percentile-bootstrap interval.

    Examples are resampled with replacement ``n`` times (seeded, the same resamples as
    :mod:`hone.eval.metrics`); BLEU and chrF are recomputed as *corpus* scores on each resample.
    """
    _check_metric(metric)
    if n <= 0:
        raise ValueError("n (bootstrap resamples) must be positive")
    stats, reduce = _statistics(predictions, _ref_lists(predictions, references), metric)
    low, high = _percentile_ci(_resampled([stats], reduce, n, seed)[0], 1.0 - alpha)
    return _point(stats, reduce), low, high


def paired_gain(
    preds_a: Sequence[str],
    preds_b: Sequence[str],
    references: Sequence[Reference],
    metric: str,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Gain of system **a over b** (``a - b``), both scored on the same resamples.

    Returns ``{"metric", "a", "b", "gain", "low", "high", "p_better", "n", "n_boot"}``:
    ``low``/``high`` bound the gain at ``1 - alpha``; ``p_better`` is the share of resamples
    where a scores strictly higher than b (ties count against a).
    """
    _check_metric(metric)
    if n <= 0:
        raise ValueError("n (bootstrap resamples) must be positive")
    if len(preds_a) != len(preds_b):
        raise ValueError(f"preds_a and preds_b differ in length: {len(preds_a)} vs {len(preds_b)}")
    refs = _ref_lists(preds_a, references)
    (sa, reduce), (sb, _) = _statistics(preds_a, refs, metric), _statistics(preds_b, refs, metric)
    boot_a, boot_b = _resampled([sa, sb], reduce, n, seed)
    diff = boot_a - boot_b
    low, high = _percentile_ci(diff, 1.0 - alpha)
    a, b = _point(sa, reduce), _point(sb, reduce)
    return {"metric": metric, "a": a, "b": b, "gain": a - b, "low": low, "high": high,
            "p_better": float(np.mean(diff > 0.0)), "n": len(refs), "n_boot": int(n)}


# ----------------------------------------------------------------------------- generation


def generation_stats(texts: Sequence[str], stopped: Sequence[bool], token_counts: Sequence[int]) -> dict[str, float]:
    """Length and stopping behaviour of generations.

    ``stopped[i]``: generation i ended with the end-of-turn token before ``max_new_tokens``;
    ``token_counts[i]``: its generated tokens. Returns ``{"n", "mean_tokens", "median_tokens",
    "max_tokens", "mean_words", "stop_rate", "empty_rate"}`` (rates are 0-1 shares).
    """
    if not len(texts) == len(stopped) == len(token_counts):
        raise ValueError(f"lengths differ: {len(texts)} texts, {len(stopped)} stopped, {len(token_counts)} counts")
    if not texts:
        raise ValueError("no generations to describe")
    tokens = np.asarray(token_counts, dtype=np.float64)
    words = np.array([len(t.split()) for t in texts], dtype=np.float64)
    return {
        "n": len(texts), "mean_tokens": float(tokens.mean()), "median_tokens": float(np.median(tokens)),
        "max_tokens": float(tokens.max()), "mean_words": float(words.mean()),
        "stop_rate": float(np.mean(np.asarray(stopped, dtype=bool))),
        "empty_rate": float(np.mean([not t.strip() for t in texts])),
    }


def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)`` from a summed natural-log NLL; ``inf`` on overflow."""
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    mean = total_nll / n_tokens
    return math.exp(mean) if mean < 709.0 else math.inf
