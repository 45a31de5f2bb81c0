"""Data augmentation for classification rows (used on the TRAIN split only).

Methods (``AUGMENT_METHODS``):

- ``synonym``: replace about ``p`` of the content words with a synonym from hone's own table
  (:mod:`hone.data._synonyms`: everyday English plus telecom / support vocabulary).
- ``neighbour``: replace about ``p`` of the content words with a nearest neighbour in an
  embedding space (see :class:`NeighbourTable`).
- ``swap`` / ``delete`` / ``insert``: the EDA operations (Wei & Zou, 2019): swap two random
  words, delete each word with probability ``p`` (never all of them), insert a synonym of a
  random word at a random position.
- ``paraphrase``: ask a causal LM (default the embedded SmolLM2) to rewrite the text (chat
  template + three few-shot examples, sampled generation); outputs are cleaned and rejected
  when empty, unchanged, far longer than the source, when they lose a protected token, when
  they answer the message instead of rewriting it, or keep too few of its content words
  (see :func:`accept_paraphrase`).  A 135M model is a weak paraphraser: expect roughly half
  of the generations to be rejected; rejected rows are sampled again, up to 3 times.

Protected tokens are never altered, moved into, or deleted by the word-level methods:
placeholders left by PII redaction (``<PERSON_1>``, ``<EMAIL_2>``), numbers (and words
containing digits, like ``5G``), URLs and e-mail addresses.  Paraphrases that do not keep
them all are rejected.

Everything is deterministic for a seed: every (row, slot, attempt) draws from its own
``random.Random`` seeded from the string ``"{seed}:{row}:{slot}:{method}"``, so a row's output
barely depends on the other rows (only through the duplicate check); paraphrase sampling is
seeded per batch.
"""

from __future__ import annotations

import copy
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hone.data._synonyms import ANTONYMS, STOP_WORDS, SYNONYMS, same_closed_class
from hone.errors import ConfigError

AUGMENT_METHODS = ("synonym", "neighbour", "swap", "delete", "insert", "paraphrase")
WORD_METHODS = ("synonym", "neighbour", "swap", "delete", "insert")
META_KEY = "_hone"

_PARAPHRASE_ROUNDS = 3  # generations per row before a paraphrase slot falls back

_ATTEMPTS = 8  # draws per (row, slot, method) before a word-level method gives up

# One token of a text: placeholders, URLs, e-mails and numbers are protected; words are the
# only tokens the word-level methods touch; the rest (spaces, punctuation) is kept as is.
_TOKEN_RE = re.compile(r"""
    (?P<protected>
        <[A-Z_]+_\d+>                              # PII placeholder: <PERSON_1>
      | (?:https?://|www\.)[^\s<>"]+               # URL
      | [\w.+-]+@[\w-]+(?:\.[\w-]+)+               # e-mail address
      | [^\W_]*\d[\w]*(?:[.,:/-]\d+)*              # number, or a word with a digit (5G, 20.50)
    )
  | (?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*)          # a word, with its apostrophes (don't)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
PLACEHOLDER_RE = re.compile(r"<[A-Z_]+_\d+>")
_PLURAL_EXCEPTIONS = frozenset({"news", "goods", "always", "sometimes", "perhaps", "series", "thanks", "glass"})


def normalize_text(text: str) -> str:
    """The form two texts are compared in: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


@dataclass
class _Tok:
    kind: str  # "protected" | "word" | "space" | "other"
    text: str


def _tokenize(text: str) -> list[_Tok]:
    return [_Tok(m.lastgroup or "other", m.group()) for m in _TOKEN_RE.finditer(text)]


def _detok(toks: list[_Tok]) -> str:
    return "".join(t.text for t in toks)


def protected_tokens(text: str) -> Counter:
    """Multiset of the protected tokens of a text (placeholders, numbers, URLs, e-mails)."""
    return Counter(t.text for t in _tokenize(text) if t.kind == "protected")


def _match_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _pluralize(word: str) -> str:
    head, _, last = word.rpartition(" ")
    if last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def synonyms_of(word: str) -> tuple[str, ...]:
    """Synonyms of ``word`` from hone's table (lower case), handling a plain ``-s`` plural."""
    w = word.lower()
    if w in STOP_WORDS:
        return ()
    if w in SYNONYMS:
        return SYNONYMS[w]
    if w in _PLURAL_EXCEPTIONS or len(w) < 4 or not w.endswith("s") or w.endswith("ss"):
        return ()
    for base in (w[:-1], w[:-2] if w.endswith("es") else None, w[:-3] + "y" if w.endswith("ies") else None):
        if base and base in SYNONYMS and _pluralize(base) == w:
            return tuple(_pluralize(s) for s in SYNONYMS[base])
    return ()


def _word_positions(toks: list[_Tok]) -> list[int]:
    return [i for i, t in enumerate(toks) if t.kind == "word"]


# ----------------------------------------------------------------------------------------
# Embedding neighbours
# ----------------------------------------------------------------------------------------


def _same_lemma(a: str, b: str) -> bool:
    """Crude same-lemma test: one is a prefix of the other, or they share their leading letters
    (4, or all but one of the shorter word).  Erring towards "same" only drops a candidate."""
    if a.startswith(b) or b.startswith(a):
        return True
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n >= min(4, max(2, min(len(a), len(b)) - 1))  # send/sent, bill/billing


def _variants(w: str) -> set[str]:
    out = {w}
    for suf in ("s", "es", "ed", "er", "ly", "est", "ing", "ness"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            base = w[: -len(suf)]
            out.add(base)
            if len(base) > 3 and base[-1] == base[-2]:  # bigger -> big
                out.add(base[:-1])
            out.add(base + "e")  # closer -> close
    return out


def _ends(w: str, suffix: str) -> bool:
    return w.endswith(suffix) and len(w) > len(suffix) + 2  # "need" does not end in -ed


def _antonymous(a: str, b: str) -> bool:
    return any(frozenset((x, y)) in ANTONYMS for x in _variants(a) for y in _variants(b))


class NeighbourTable:
    """Nearest neighbours of words in MiniLM's input word-embedding space.

    This is the classic *embedding neighbour replacement* of EDA / TextAttack-style
    augmentation (TextAttack's ``WordSwapEmbedding``, nlpaug's ``WordEmbsAug``): a word is
    replaced by one of its nearest neighbours (cosine similarity) among the rows of a word
    embedding matrix.  We use the input (wordpiece) embedding matrix of the embedded
    all-MiniLM-L6-v2 encoder, so it works offline.  Only words that are a single wordpiece of
    the uncased vocabulary are replaced, and only by whole alphabetic words (no ``##`` pieces),
    never by the same word or an inflection of it, a stop word, a known antonym, a member of the
    same closed class (``month`` -> ``year``, ``red`` -> ``blue``), a word of different
    grammatical number (``contract`` -> ``agreements``) or with a different -ing / -ed / -ly
    ending (``help`` -> ``assisting``).  Static embeddings still put
    some related-but-different words close (brands next to ``phone``), which is the known
    price of this method; ``min_similarity`` keeps the worst away.
    """

    def __init__(self, model: str = "minilm", *, top_k: int = 5, min_similarity: float = 0.4):
        import torch

        from hone.model.load import load_encoder

        t0 = time.perf_counter()
        enc, tok = load_encoder(model)
        weight = enc.get_input_embeddings().weight.detach().float()
        self.matrix = torch.nn.functional.normalize(weight, dim=1)
        del enc
        vocab = tok.convert_ids_to_tokens(list(range(self.matrix.shape[0])))
        self.vocab: list[str] = [v if isinstance(v, str) else "" for v in vocab]
        self.index = {v: i for i, v in enumerate(self.vocab)}
        ok = [bool(re.fullmatch(r"[a-z]{2,}", v)) and v not in STOP_WORDS for v in self.vocab]
        self.valid = torch.tensor(ok, dtype=torch.bool)
        self.top_k, self.min_similarity = top_k, min_similarity
        self.cache: dict[str, tuple[str, ...]] = {}
        self.build_seconds = time.perf_counter() - t0

    def _plural(self, w: str) -> bool:
        return w.endswith("s") and not w.endswith("ss") and w[:-1] in self.index

    def precompute(self, words: Iterable[str], chunk: int = 512) -> None:
        """Fill the cache for many words with a few matrix products."""
        import torch

        todo = sorted({w.lower() for w in words} - self.cache.keys())
        ids = []
        for w in todo:
            if w in STOP_WORDS or w not in self.index or not re.fullmatch(r"[a-z]{2,}", w):
                self.cache[w] = ()
            else:
                ids.append((w, self.index[w]))
        k = min(self.top_k * 8 + 16, self.matrix.shape[0])
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            rows = torch.tensor([i for _, i in part])
            sims = self.matrix[rows] @ self.matrix.T
            sims[:, ~self.valid] = -2.0
            values, idx = sims.topk(k, dim=1)
            for (w, _), vals, ix in zip(part, values.tolist(), idx.tolist()):
                out: list[str] = []
                for v, j in zip(vals, ix):
                    if v < self.min_similarity or len(out) >= self.top_k:
                        break
                    cand = self.vocab[j]
                    if (_same_lemma(w, cand) or _antonymous(w, cand) or same_closed_class(w, cand)
                            or self._plural(w) != self._plural(cand)
                            or any(_ends(w, suf) != _ends(cand, suf) for suf in ("ing", "ed", "ly"))):
                        continue
                    out.append(cand)
                self.cache[w] = tuple(out)

    def neighbours(self, word: str) -> tuple[str, ...]:
        w = word.lower()
        if w not in self.cache:
            self.precompute([w])
        return self.cache[w]


_TABLES: dict[str, NeighbourTable] = {}


def neighbour_table(model: str = "minilm") -> NeighbourTable:
    """The (lazily built, process-wide cached) neighbour table of an encoder."""
    if model not in _TABLES:
        _TABLES[model] = NeighbourTable(model)
    return _TABLES[model]


# ----------------------------------------------------------------------------------------
# Word-level operations: each returns the new text, or None when it cannot apply
# ----------------------------------------------------------------------------------------


def _how_many(p: float, n: int) -> int:
    return max(1, round(p * n))


def _replace(text: str, rng, p: float, options) -> str | None:
    toks = _tokenize(text)
    words = _word_positions(toks)
    cands = [i for i in words if options(toks[i].text)]
    if not cands:
        return None
    for i in rng.sample(cands, min(_how_many(p, len(words)), len(cands))):
        toks[i] = _Tok("word", _match_case(rng.choice(options(toks[i].text)), toks[i].text))
    return _detok(toks)


def op_synonym(text: str, rng, p: float, **_: Any) -> str | None:
    return _replace(text, rng, p, synonyms_of)


def op_neighbour(text: str, rng, p: float, *, table: NeighbourTable | None = None, **_: Any) -> str | None:
    table = table or neighbour_table()
    toks = _tokenize(text)
    words = _word_positions(toks)
    # A capitalised word inside a sentence is probably a name (Spain, Vodafone): leave it.
    starts = {i for k, i in enumerate(words) if k == 0 or re.search(r"[.!?]\s*$", _detok(toks[words[k - 1]:i]))}
    names = {toks[i].text for i in words if i not in starts and toks[i].text[:1].isupper()}
    return _replace(text, rng, p, lambda w: () if w in names else table.neighbours(w))


def op_swap(text: str, rng, p: float, **_: Any) -> str | None:
    toks = _tokenize(text)
    words = _word_positions(toks)
    if len(words) < 2:
        return None
    first = words[0] if not _detok(toks[: words[0]]).strip() else None  # the sentence-initial word
    for _ in range(_how_many(p, len(words))):
        i, j = rng.sample(words, 2)
        a, b = toks[i].text, toks[j].text
        if first in (i, j):  # keep the capital at the start of the text
            start_word, moved = (a, b) if first == i else (b, a)
            if start_word[:1].isupper() and start_word[1:2].islower() and moved.islower() and start_word != "I":
                start_word, moved = start_word[:1].lower() + start_word[1:], moved[:1].upper() + moved[1:]
                a, b = (start_word, moved) if first == i else (moved, start_word)
        toks[i], toks[j] = _Tok("word", b), _Tok("word", a)
    return _detok(toks)


def _tidy(text: str) -> str:
    text = re.sub(r"^[\s,;:]+", "", text)
    return re.sub(r"[ \t]+([,.;:!?])", r"\1", text) if text else text


# never deleted: without them the text says the opposite under the same label ("I do not want to cancel")
NEGATIONS = frozenset("not no never none nothing nobody neither nor cannot cant without".split())


def _negation(word: str) -> bool:
    w = word.casefold()
    return w in NEGATIONS or w.endswith(("n't", "n’t"))


def op_delete(text: str, rng, p: float, **_: Any) -> str | None:
    toks = _tokenize(text)
    every = _word_positions(toks)
    words = [i for i in every if not _negation(toks[i].text)]
    if len(words) < 2:
        return None
    drop = {i for i in words if rng.random() < p}
    if not drop:
        drop = {rng.choice(words)}
    if len(drop) == len(words):
        drop.discard(rng.choice(words))
    first_cap = toks[every[0]].text[:1].isupper()
    out: list[_Tok] = []
    skip_space = False
    for i, t in enumerate(toks):
        if i in drop:
            if out and out[-1].kind == "space":
                out.pop()  # "a b c" -> "a c"
            else:
                skip_space = True  # text-initial word: drop the space after it
            continue
        if skip_space and t.kind == "space":
            skip_space = False
            continue
        skip_space = False
        out.append(t)
    new = _tidy(_detok(out))
    lead = _tokenize(new)[:1]
    if every[0] in drop and first_cap and lead and lead[0].kind == "word":  # keep the capital at the start
        new = new[:1].upper() + new[1:]
    return new or None


def op_insert(text: str, rng, p: float, **_: Any) -> str | None:
    toks = _tokenize(text)
    words = _word_positions(toks)
    single = {toks[i].text: [s for s in synonyms_of(toks[i].text) if " " not in s] for i in words}
    cands = [w for w, syns in single.items() if syns]
    if not cands:
        return None
    for _ in range(_how_many(p, len(words))):
        syn = rng.choice(single[rng.choice(cands)])  # one-word synonyms only, as in EDA
        after = rng.choice(_word_positions(toks))  # never before the first word: keeps its capital
        toks[after + 1:after + 1] = [_Tok("space", " "), _Tok("word", syn)]
    return _detok(toks)


WORD_OPS = {"synonym": op_synonym, "neighbour": op_neighbour, "swap": op_swap, "delete": op_delete,
            "insert": op_insert}


# ----------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------


def _check_args(methods: Sequence[str], per_example: int, p: float) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = [methods]
    ms = tuple(dict.fromkeys(str(m).strip().lower() for m in methods))
    if not ms:
        raise ConfigError("data.augment.methods: give at least one of " + ", ".join(AUGMENT_METHODS))
    bad = [m for m in ms if m not in AUGMENT_METHODS]
    if bad:
        raise ConfigError(f"data.augment.methods: unknown method(s) {', '.join(map(repr, bad))}; "
                          f"choose from {', '.join(AUGMENT_METHODS)}")
    if isinstance(per_example, bool) or not isinstance(per_example, int) or per_example < 1:
        raise ConfigError(f"data.augment.per_example must be an integer >= 1, got {per_example!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ConfigError(f"data.augment.p must be in (0, 1], got {p!r}")
    return ms


def _rng(seed: int, *parts: object):
    import random

    return random.Random(":".join(str(x) for x in (seed, *parts)))


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled, transient=False)


def augment_rows(rows: list[dict], *, methods: Sequence[str], per_example: int = 1, p: float = 0.1,
                 seed: int = 0, model: str | None = None, max_new_tokens: int = 48,
                 progress: bool = True, batch_size: int = 8) -> list[dict]:
    """Return NEW rows only. Each new row = ``{"text": ..., "label": <same label>,
    "_hone": {"augmented": "<method>", "source_index": i}}``.

    ``per_example`` caps the number of new rows made from one input row (across all methods).
    Input row ``i`` gets ``per_example`` slots, assigned to ``methods`` round-robin from
    ``i * per_example`` (so each method gets an equal share of the slots overall).  A word-level
    method that cannot change a row (no synonym, one word) falls back to the next requested
    word-level method; a rejected paraphrase is sampled again (3 generations in all), then
    falls back the same way.
    A slot nothing fills is left empty, so fewer rows may come back.

    Deterministic for a seed.  Never returns a text identical (after whitespace / case
    normalization) to its source, to any input row, or to another returned row.  ``model`` is
    the causal LM for ``paraphrase`` (default ``"smollm2"``); a model that cannot be loaded
    raises :class:`~hone.errors.ModelError`.  Rows are returned in (source row, slot) order.
    """
    ms = _check_args(methods, per_example, p)
    word_methods = [m for m in ms if m in WORD_METHODS]
    seen = {normalize_text(r["text"]) for r in rows if isinstance(r.get("text"), str)}
    results: dict[tuple[int, int], tuple[str, str]] = {}  # (row, slot) -> (method, text)

    def fresh(text: str | None) -> bool:
        return bool(text and text.strip()) and normalize_text(text) not in seen

    def word_level(i: int, j: int, text: str, order: list[str], table) -> bool:
        for m in order:
            rng = _rng(seed, i, j, m)
            for _ in range(_ATTEMPTS):
                new = WORD_OPS[m](text, rng, p, table=table)
                if new is None:
                    break
                if fresh(new):
                    seen.add(normalize_text(new))
                    results[(i, j)] = (m, new)
                    return True
        return False

    def fallback_order(m: str) -> list[str]:
        if m not in word_methods:
            return word_methods
        k = word_methods.index(m)
        return word_methods[k:] + word_methods[:k]

    plan = [(i, j, ms[(i * per_example + j) % len(ms)])
            for i, r in enumerate(rows) if isinstance(r.get("text"), str) and r["text"].strip()
            for j in range(per_example)]
    para_jobs = [(i, j) for i, j, m in plan if m == "paraphrase"]

    table = None
    if "neighbour" in ms and plan:
        table = neighbour_table()
        table.precompute(w.text for r in rows if isinstance(r.get("text"), str)
                         for w in _tokenize(r["text"]) if w.kind == "word")

    paraphraser = None
    if para_jobs:  # before the progress display: a first use of smollm2 shows its own status
        from hone.data import paraphrase as P

        paraphraser = P.Paraphraser(model or "smollm2", max_new_tokens=max_new_tokens, batch_size=batch_size)
        para_jobs.sort(key=lambda ij: (len(rows[ij[0]]["text"]), ij))  # similar lengths batch together

    with _progress(progress) as bar:
        word_jobs = [(i, j, m) for i, j, m in plan if m != "paraphrase"]
        if word_jobs:
            task = bar.add_task("augment", total=len(word_jobs))
            for i, j, m in word_jobs:
                word_level(i, j, rows[i]["text"], fallback_order(m), table)
                bar.advance(task)
        if paraphraser is not None:
            task = bar.add_task(f"paraphrase ({model or 'smollm2'})", total=len(para_jobs))
            pending = para_jobs
            for rnd in range(_PARAPHRASE_ROUNDS):  # rejected generations are sampled again
                rejected = []
                for b in range(0, len(pending), paraphraser.batch_size):
                    batch = pending[b:b + paraphraser.batch_size]
                    outs = paraphraser.generate([rows[i]["text"] for i, _ in batch],
                                                seed=seed * 1_000_003 + rnd * 100_003 + b)
                    for (i, j), raw in zip(batch, outs):
                        cand = P.clean_paraphrase(raw)
                        if P.accept_paraphrase(cand, rows[i]["text"]) and fresh(cand):
                            seen.add(normalize_text(cand))
                            results[(i, j)] = ("paraphrase", cand)
                            bar.advance(task)
                        else:
                            rejected.append((i, j))
                pending = rejected
                if not pending:
                    break
            for i, j in pending:  # still rejected: fall back to the word-level methods
                word_level(i, j, rows[i]["text"], fallback_order("paraphrase"), table)
                bar.advance(task)

    out = []
    for (i, _j), (m, text) in sorted(results.items()):
        out.append({"text": text, "label": copy.deepcopy(rows[i].get("label")),
                    META_KEY: {"augmented": m, "source_index": i}})
    return out
