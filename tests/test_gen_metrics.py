"""Generation metrics agree with sacrebleu / rouge-score; bootstrap and paired gains behave."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from hone.eval import gen_metrics as gm

_TEXT = ("the customer wants to cancel the contract because the bill was too high and the router keeps "
         "restarting while roaming in spain so the agent offers a discount on the unlimited data plan")
WORDS = _TEXT.split()


def _corpus(n: int = 60, seed: int = 0, drop: float = 0.3) -> tuple[list[str], list[str]]:
    """References of random words and noisy predictions (some empty, some exact)."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) + "." for _ in range(n)]
    preds = []
    for r in refs:
        kept = [w for w in r.split() if rng.random() > drop]
        preds.append("" if rng.random() < 0.05 else r if rng.random() < 0.1 else " ".join(kept))
    return preds, refs


def test_per_example_matches_sacrebleu_and_rouge() -> None:
    preds, refs = _corpus()
    got = gm.per_example_scores(preds, refs, gm.METRICS)
    assert set(got) == set(gm.METRICS) and all(v.shape == (len(preds),) for v in got.values())
    np.testing.assert_allclose(got["bleu"], [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs)],
                               atol=1e-9)
    np.testing.assert_allclose(got["chrf"], [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds, refs)],
                               atol=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    direct = [scorer.score(r, p) for p, r in zip(preds, refs)]
    for m in ("rouge1", "rouge2", "rougeL"):
        np.testing.assert_allclose(got[m], [100 * d[m].fmeasure for d in direct], atol=1e-9)
    assert set(np.unique(got["exact_match"])) <= {0.0, 100.0} and got["exact_match"].max() == 100.0


def test_corpus_scores_match_sacrebleu_corpus_functions() -> None:
    preds, refs = _corpus(seed=1)
    got = gm.corpus_scores(preds, refs, gm.METRICS)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-6)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-6)
    per = gm.per_example_scores(preds, refs, ["rougeL", "exact_match"])
    assert got["rougeL"] == pytest.approx(per["rougeL"].mean())
    assert got["exact_match"] == pytest.approx(per["exact_match"].mean())


def test_multi_reference_matches_sacrebleu() -> None:
    preds, refs = _corpus(n=20, seed=2)
    alt = [r.upper() if i % 2 else r[::-1] for i, r in enumerate(refs)]
    multi = [[a, r] for a, r in zip(alt, refs)]
    got = gm.corpus_scores(preds, multi, ["bleu", "chrf", "exact_match"])
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [alt, refs]).score, abs=1e-6)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [alt, refs]).score, abs=1e-6)
    # a variable number of references per example (sacrebleu pads with None)
    ragged = [[r] if i % 2 else [a, r] for i, (a, r) in enumerate(zip(alt, refs))]
    streams = [[a if i % 2 == 0 else None for i, a in enumerate(alt)], refs]
    assert gm.corpus_scores(preds, ragged, ["bleu"])["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(preds, streams).score, abs=1e-6)


def test_bleu_edge_cases_match_sacrebleu() -> None:
    preds = ["", "a", "a b", "x y z w v", "the cat sat on the mat"]
    refs = ["a b c", "", "a b", "a b c d e f g", "the cat sat on a mat today"]
    got = gm.per_example_scores(preds, refs, ["bleu", "chrf"])
    np.testing.assert_allclose(got["bleu"], [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds, refs)])
    np.testing.assert_allclose(got["chrf"], [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds, refs)])
    for i in range(1, len(preds) + 1):  # corpora where some n-gram order is missing entirely
        assert gm.corpus_scores(preds[:i], refs[:i], ["bleu"])["bleu"] == pytest.approx(
            sacrebleu.corpus_bleu(preds[:i], [refs[:i]]).score, abs=1e-6)


@pytest.mark.parametrize(("pred", "ref", "hit"), [
    ("The Eiffel Tower!", "eiffel tower", True),
    ("  an   apple ", "Apple.", True),
    ("A cat, a dog", "cat dog", True),
    ("there", "the re", False),  # articles only removed as whole words
    ("Paris", "Paris, France", False),
    ("", "", True),
])
def test_exact_match_normalization(pred: str, ref: str, hit: bool) -> None:
    assert gm.per_example_scores([pred], [ref], ["exact_match"])["exact_match"][0] == (100.0 if hit else 0.0)


def test_exact_match_takes_best_reference() -> None:
    assert gm.corpus_scores(["4"], [["four", "4"]], ["exact_match"])["exact_match"] == 100.0


@pytest.mark.parametrize("metric", gm.METRICS)
def test_bootstrap_ci_contains_point_and_is_seeded(metric: str) -> None:
    preds, refs = _corpus(n=80, seed=3)
    point, low, high = gm.bootstrap_ci(preds, refs, metric, n=300, seed=7)
    assert point == pytest.approx(gm.corpus_scores(preds, refs, [metric])[metric])
    assert low <= point <= high and low < high
    assert gm.bootstrap_ci(preds, refs, metric, n=300, seed=7) == (point, low, high)
    assert gm.bootstrap_ci(preds, refs, metric, n=300, seed=8) != (point, low, high)
    narrow = gm.bootstrap_ci(preds, refs, metric, n=300, seed=7, alpha=0.5)
    assert low <= narrow[1] <= narrow[2] <= high


def test_bootstrap_bleu_resamples_equal_sacrebleu_on_the_same_indices() -> None:
    preds, refs = _corpus(n=40, seed=4)
    stats, reduce = gm._statistics(preds, [[r] for r in refs], "bleu")
    boot = gm._resampled([stats], reduce, 5, seed=11)[0]
    idx = gm._resample_chunks(len(preds), 5, 11)[0]
    expected = [sacrebleu.corpus_bleu([preds[i] for i in row], [[refs[i] for i in row]]).score for row in idx]
    np.testing.assert_allclose(boot, expected, atol=1e-6)


def test_paired_gain_identical_systems_is_zero() -> None:
    preds, refs = _corpus(n=50, seed=5)
    for metric in ("bleu", "rougeL"):
        out = gm.paired_gain(preds, list(preds), refs, metric, n=200)
        assert out["gain"] == 0.0 and out["low"] == 0.0 and out["high"] == 0.0 and out["p_better"] == 0.0


def test_paired_gain_clearly_better_system() -> None:
    worse, refs = _corpus(n=60, seed=6, drop=0.6)
    better, _ = _corpus(n=60, seed=6, drop=0.05)
    for metric in ("bleu", "chrf", "rouge1"):
        out = gm.paired_gain(better, worse, refs, metric, n=500, seed=1)
        assert out["gain"] == pytest.approx(out["a"] - out["b"]) and out["gain"] > 10
        assert 0 < out["low"] <= out["gain"] <= out["high"]
        assert out["p_better"] > 0.99
        assert gm.paired_gain(worse, better, refs, metric, n=500, seed=1)["p_better"] < 0.01


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="unknown"):
        gm.corpus_scores(["a"], ["a"], ["meteor"])
    with pytest.raises(ValueError, match="differ in length"):
        gm.per_example_scores(["a", "b"], ["a"], ["bleu"])
    with pytest.raises(ValueError, match="empty"):
        gm.bootstrap_ci([], [], "bleu")
    with pytest.raises(ValueError, match="at least one reference"):
        gm.corpus_scores(["a"], [[]], ["bleu"])


def test_generation_stats_and_perplexity() -> None:
    out = gm.generation_stats(["hello there", "", "one two three four"], [True, False, True], [3, 10, 5])
    assert out["n"] == 3 and out["mean_tokens"] == 6.0 and out["median_tokens"] == 5.0 and out["max_tokens"] == 10
    assert out["mean_words"] == 2.0 and out["stop_rate"] == pytest.approx(2 / 3)
    assert out["empty_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        gm.generation_stats(["a"], [True, False], [1])
    assert gm.perplexity(10 * math.log(5.0), 10) == pytest.approx(5.0)
    assert gm.perplexity(0.0, 4) == 1.0 and gm.perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError):
        gm.perplexity(1.0, 0)


def test_rouge_tokenizer_equals_rouge_scores_on_ascii_and_keeps_other_scripts() -> None:
    """rouge-score's tokenizer keeps only [a-z0-9]: Russian or Chinese text scored ROUGE 0 even against itself."""
    from rouge_score.tokenizers import DefaultTokenizer

    ascii_texts = ["The cats were running_quickly to the station, weren't they? 42 TIMES!",
                   "Hello-World: 3.14 e-mail A_B ... generalization's", _TEXT, "  ", "x"]
    ours, theirs = gm.UnicodeTokenizer(), DefaultTokenizer(use_stemmer=True)
    for t in ascii_texts:
        assert ours.tokenize(t) == theirs.tokenize(t), t
    preds, refs = _corpus(30, seed=4)
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    got = gm.per_example_scores(preds, refs, ["rouge1", "rouge2", "rougeL"])
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        want = default.score(r, p)
        assert [got[m][i] for m in ("rouge1", "rouge2", "rougeL")] == pytest.approx(
            [100 * want[m].fmeasure for m in ("rouge1", "rouge2", "rougeL")])
    same = ["Ваш счёт оплачен", "您的账单已支付", "お支払いを確認しました"]
    scores = gm.per_example_scores(same, same, ["rouge1", "rouge2", "rougeL"])
    assert all(list(v) == [100.0] * 3 for v in scores.values())
    assert ours.tokenize("您的账单 Ваш") == ["您", "的", "账", "单", "ваш"]
    g = gm.paired_gain(same, ["Привет мир", "今天天气", "こんばんは"], same, "rougeL", n=50)
    assert g["gain"] == pytest.approx(100.0) and g["low"] > 0


def test_bleu_tokenizes_chinese_japanese_and_korean_as_sacrebleu_would_be_told_to():
    # 13a left a sentence without spaces one word: BLEU 0 for Chinese scored against itself
    import sacrebleu

    assert gm.bleu_tokenize([["the bill is paid"]]) == "13a"
    assert gm.bleu_tokenize([["您的账单已支付"]]) == "zh" and gm.bleu_tokenize([["お支払いが完了しました"]]) == "char"
    for pred, ref, tok in (("您的账单已支付了", "您的账单已支付", "zh"), ("お支払いが完了した", "お支払いが完了しました", "char"),
                           ("the bill was paid", "the bill is paid", "13a")):
        want = sacrebleu.corpus_bleu([pred], [[ref]], tokenize=tok).score
        assert gm.corpus_scores([pred], [[ref]], ["bleu"])["bleu"] == pytest.approx(want)
    assert gm.corpus_scores(["您的账单已支付"], [["您的账单已支付"]], ["bleu"])["bleu"] == pytest.approx(100)
