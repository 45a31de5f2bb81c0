"""hone.data.augment: word-level EDA methods, embedding neighbours, LM paraphrases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _tiny import build_tiny_llama
from hone.data import augment as A
from hone.data import paraphrase as P
from hone.data.augment import AUGMENT_METHODS, augment_rows, normalize_text, protected_tokens
from hone.errors import ConfigError, ModelError

ROWS = [
    {"text": "My phone bill is too high this month, can you check the charges?", "label": "billing"},
    {"text": "Please cancel my contract, the internet keeps dropping every evening.", "label": "cancel"},
    {"text": "The new handset you sent me is broken and will not turn on.", "label": "device"},
    {"text": "Roaming in Spain cost me a lot, the invoice shows a big fee for data.", "label": ["billing", "roaming"]},
    {"text": "Hi, my signal is weak and calls drop all the time at home.", "label": "network"},
    {"text": "I want to upgrade my plan and get a new mobile with more data.", "label": "upgrade"},
]
PROTECTED = {"text": "Hi <PERSON_1>, my phone bill from <EMAIL_2> shows 42 charges, see https://example.com/bill?id=7 "
                     "for the problem with order 12345.", "label": "billing"}
WORD_METHODS = ("synonym", "neighbour", "swap", "delete", "insert")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _check_rows(rows, out, method=None):
    for r in out:
        i = r["_hone"]["source_index"]
        assert set(r) == {"text", "label", "_hone"}
        assert r["label"] == rows[i]["label"]
        assert normalize_text(r["text"]) != normalize_text(rows[i]["text"])
        assert r["text"].strip()
        if method:
            assert r["_hone"]["augmented"] == method
    norms = [normalize_text(r["text"]) for r in out]
    assert len(norms) == len(set(norms))


@pytest.mark.parametrize("method", WORD_METHODS)
def test_word_methods_make_new_text_with_same_label(method):
    out = augment_rows(ROWS, methods=[method], per_example=1, p=0.2, seed=0, progress=False)
    assert len(out) == len(ROWS)
    _check_rows(ROWS, out, method)
    assert [r["_hone"]["source_index"] for r in out] == list(range(len(ROWS)))
    # Labels are copies: mutating an output never touches the input.
    out[3]["label"].append("x")
    assert ROWS[3]["label"] == ["billing", "roaming"]


def test_cap_and_round_robin():
    out = augment_rows(ROWS, methods=["synonym", "swap", "delete"], per_example=2, seed=1, progress=False)
    _check_rows(ROWS, out)
    per_row = {}
    for r in out:
        per_row.setdefault(r["_hone"]["source_index"], []).append(r["_hone"]["augmented"])
    assert all(len(v) <= 2 for v in per_row.values())
    assert len(out) == 2 * len(ROWS)
    used = [m for v in per_row.values() for m in v]
    assert {"synonym", "swap", "delete"} <= set(used)
    out5 = augment_rows(ROWS, methods=["swap", "delete", "insert"], per_example=5, p=0.3, seed=1, progress=False)
    _check_rows(ROWS, out5)
    counts = {}
    for r in out5:
        counts[r["_hone"]["source_index"]] = counts.get(r["_hone"]["source_index"], 0) + 1
    assert max(counts.values()) <= 5


def test_deterministic_for_a_seed():
    kw = dict(methods=["synonym", "swap", "delete", "insert", "neighbour"], per_example=3, p=0.15, progress=False)
    a = augment_rows(ROWS, seed=7, **kw)
    b = augment_rows(ROWS, seed=7, **kw)
    c = augment_rows(ROWS, seed=8, **kw)
    assert a == b
    assert [r["text"] for r in a] != [r["text"] for r in c]


def test_placeholders_numbers_urls_untouched():
    src = PROTECTED["text"]
    order = [t for t in re.findall(r"<[A-Z_]+_\d+>|https?://\S+|\d+", src)]
    for method in WORD_METHODS:
        for seed in range(5):
            out = augment_rows([PROTECTED], methods=[method], per_example=3, p=1.0, seed=seed, progress=False)
            for r in out:
                assert protected_tokens(r["text"]) == protected_tokens(src), (method, r["text"])
                assert [t for t in re.findall(r"<[A-Z_]+_\d+>|https?://\S+|\d+", r["text"])] == order


def test_cannot_apply_yields_fewer_rows():
    rows = [{"text": "Hello", "label": "x"}, {"text": "<PERSON_1> 42", "label": "y"}, {"text": "", "label": "z"}]
    assert augment_rows(rows, methods=["swap", "delete"], progress=False) == []
    # A method that cannot apply falls back to the next requested one.
    out = augment_rows([{"text": "Zebra quantum xylophone", "label": "x"}], methods=["synonym", "swap"],
                       progress=False)
    assert [r["_hone"]["augmented"] for r in out] == ["swap"]


def test_never_duplicates_an_input_row():
    rows = [{"text": "bill phone", "label": "a"}, {"text": "phone bill", "label": "b"}]
    out = augment_rows(rows, methods=["swap"], per_example=3, seed=0, progress=False)
    assert out == []  # the only swap of each row is the other row


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="unknown method"):
        augment_rows(ROWS, methods=["backtranslate"], progress=False)
    with pytest.raises(ConfigError, match="at least one"):
        augment_rows(ROWS, methods=[], progress=False)
    with pytest.raises(ConfigError, match="per_example"):
        augment_rows(ROWS, methods=["swap"], per_example=0, progress=False)
    for p in (0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"p must be in \(0, 1\]"):
            augment_rows(ROWS, methods=["swap"], p=p, progress=False)
    assert AUGMENT_METHODS == ("synonym", "neighbour", "swap", "delete", "insert", "paraphrase")


def test_synonym_table_and_case():
    from hone.data._synonyms import SYNONYMS

    assert len(SYNONYMS) >= 150
    assert "mobile" in SYNONYMS["phone"] and "invoice" in SYNONYMS["bill"] and "terminate" in SYNONYMS["cancel"]
    assert "issue" in SYNONYMS["problem"] and "faulty" in SYNONYMS["broken"]
    assert "invoices" in A.synonyms_of("bills")
    out = augment_rows([{"text": "PHONE broken. Phone bill", "label": "x"}], methods=["synonym"], p=1.0,
                       per_example=1, progress=False)
    words = out[0]["text"].split()
    assert words[0].isupper() and words[2][0].isupper()


def test_neighbour_uses_real_english_words():
    table = A.neighbour_table()
    assert "telephone" in table.neighbours("phone") or "smartphone" in table.neighbours("phone")
    assert table.neighbours("the") == ()  # stop word
    assert table.neighbours("month") == ()  # only same-class words (year, week) are close
    out = augment_rows(ROWS, methods=["neighbour"], per_example=2, p=0.3, seed=3, progress=False)
    assert len(out) >= len(ROWS)
    _check_rows(ROWS, out, "neighbour")
    for r in out:
        src = ROWS[r["_hone"]["source_index"]]["text"]
        new_words = set(re.findall(r"[A-Za-z]+", r["text"].lower())) - set(re.findall(r"[A-Za-z]+", src.lower()))
        assert new_words
        for w in new_words:
            assert w in table.index and w.isalpha() and len(w) > 1, w


def test_paraphrase_mechanics_with_tiny_llama(tiny_llama, monkeypatch):
    monkeypatch.setattr(P, "accept_paraphrase", lambda cand, src: A.normalize_text(cand) != A.normalize_text(src)
                        and bool(cand.strip()))  # garbage from a random model: test the plumbing only
    calls = []
    real = P.Paraphraser.generate

    def spy(self, texts, seed):
        calls.append(len(texts))
        return real(self, texts, seed)

    monkeypatch.setattr(P.Paraphraser, "generate", spy)
    out = augment_rows(ROWS, methods=["paraphrase"], per_example=1, seed=0, model=str(tiny_llama),
                       max_new_tokens=6, batch_size=4, progress=True)
    assert calls[:2] == [4, 2]  # batched
    assert out and all(r["_hone"]["augmented"] == "paraphrase" for r in out)
    _check_rows(ROWS, out, "paraphrase")
    a = augment_rows(ROWS[:2], methods=["paraphrase"], seed=0, model=str(tiny_llama), max_new_tokens=6,
                     progress=False)
    b = augment_rows(ROWS[:2], methods=["paraphrase"], seed=0, model=str(tiny_llama), max_new_tokens=6,
                     progress=False)
    assert a == b


def test_paraphrase_rejects_empty_and_unchanged(tiny_llama, monkeypatch):
    replies = {  # per source text: what each successive generation returns
        ROWS[2]["text"]: iter(['Rewrite: "The new handset you sent me is faulty and does not turn on."']),
        ROWS[0]["text"]: iter(["   ", ROWS[0]["text"].upper(),  # empty, then unchanged
                               "Can you look at my phone bill, it is too high this month?"]),
    }
    monkeypatch.setattr(P.Paraphraser, "generate", lambda self, texts, seed: [next(replies[t]) for t in texts])
    rows = ROWS[:4]
    out = augment_rows(rows, methods=["paraphrase", "swap"], per_example=1, seed=0, model=str(tiny_llama),
                       progress=False)
    by_src = {r["_hone"]["source_index"]: r for r in out}
    # rows 0 and 2 are paraphrase slots (round robin), rows 1 and 3 swap slots
    assert by_src[2]["text"] == "The new handset you sent me is faulty and does not turn on."
    assert by_src[2]["_hone"]["augmented"] == "paraphrase"
    assert by_src[0]["_hone"]["augmented"] == "paraphrase"  # accepted in the 3rd round
    assert by_src[1]["_hone"]["augmented"] == by_src[3]["_hone"]["augmented"] == "swap"
    _check_rows(rows, out)


def test_paraphrase_falls_back_to_word_methods(tiny_llama, monkeypatch):
    monkeypatch.setattr(P.Paraphraser, "generate", lambda self, texts, seed: [""] * len(texts))
    out = augment_rows(ROWS[:2], methods=["paraphrase", "synonym"], per_example=2, seed=0, model=str(tiny_llama),
                       progress=False)
    assert [r["_hone"]["augmented"] for r in out] == ["synonym"] * 4
    only = augment_rows(ROWS[:2], methods=["paraphrase"], seed=0, model=str(tiny_llama), progress=False)
    assert only == []


def test_clean_and_accept_paraphrase():
    assert P.clean_paraphrase('Rewrite: "My bill is wrong."\nMore text') == "My bill is wrong."
    assert P.clean_paraphrase("Sure! Here is the rewrite:\n  - Please end my contract.") == "Please end my contract."
    assert P.clean_paraphrase("\n \n") == ""
    src = "Please cancel my contract for <PERSON_1> by 12 May"
    assert P.accept_paraphrase("Please terminate the contract of <PERSON_1> by 12 May", src)
    assert not P.accept_paraphrase("Please terminate the contract of John by 12 May", src)  # placeholder lost
    assert not P.accept_paraphrase("Please cancel my contract for <PERSON_1> by 13 May", src)  # number changed
    assert not P.accept_paraphrase("please cancel my contract for <PERSON_1>, by 12 May!", src)  # punctuation only
    assert not P.accept_paraphrase("I'm sorry to hear that, you can cancel online <PERSON_1> 12", src)
    assert not P.accept_paraphrase("Weather is nice in spring <PERSON_1> 12", src)  # lost the content


def test_paraphrase_model_errors(offline_env):
    with pytest.raises(ModelError, match="does not exist"):
        augment_rows(ROWS, methods=["paraphrase"], model="/no/such/model/dir", progress=False)
    with pytest.raises(ModelError, match="could not download nobody/nothing"):
        augment_rows(ROWS, methods=["paraphrase"], model="nobody/nothing", progress=False)


@pytest.fixture
def offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_paraphrase_with_real_smollm2(tmp_path, monkeypatch):
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "hone"))
    rows = [
        {"text": "My phone bill is too high this month, can you check the charges?", "label": "billing"},
        {"text": "The new handset you sent me is broken and won't turn on.", "label": "device"},
        {"text": "I want to upgrade my plan to unlimited data.", "label": "upgrade"},
    ]
    out = augment_rows(rows, methods=["paraphrase"], per_example=1, seed=0, progress=False)
    print([(r["_hone"]["source_index"], r["text"]) for r in out])
    assert len(out) >= 2
    for r in out:
        src = rows[r["_hone"]["source_index"]]
        assert r["_hone"]["augmented"] == "paraphrase" and r["label"] == src["label"]
        assert r["text"].strip() and normalize_text(r["text"]) != normalize_text(src["text"])
        assert P.content_overlap(r["text"], src["text"]) >= 0.5
        assert len(r["text"]) <= 3 * len(src["text"])


def test_delete_never_drops_a_negation():
    # "I do not want to cancel my contract" became "I do want to cancel my contract", labelled retention still
    import random

    rng = random.Random(0)
    for text in ("I do not want to cancel my contract", "I don't want to cancel", "never charge me twice again"):
        neg = {w.casefold() for w in text.split() if A._negation(w)}
        outs = {A.op_delete(text, rng, 0.4) for _ in range(200)} - {None}
        assert outs and all(neg <= {w.casefold() for w in o.split()} for o in outs), text


def test_paraphrase_cleaning_keeps_words_and_acceptance_refuses_loops():
    # "Text-to-speech ..." lost "Text-", a lone quote was stripped, and a looping rewrite was accepted
    assert P.clean_paraphrase("Text-to-speech on my phone stopped working") == (
        "Text-to-speech on my phone stopped working")
    assert P.clean_paraphrase('"My 5G keeps dropping" she said') == '"My 5G keeps dropping" she said'
    assert P.clean_paraphrase('Sure! Rewrite: "my bill is wrong"') == "my bill is wrong"
    src = "please can you give me a list of all the upgrade deals for my plan"
    assert not P.accept_paraphrase("Please, I'm sorry, I'm sorry, I'm sorry, can you give me a list of all the "
                                   "upgrade deals", src)
    assert P.accept_paraphrase("could you list every upgrade deal available for my plan please", src)
