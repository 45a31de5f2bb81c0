"""Paraphrase augmentation with a causal LM (the embedded SmolLM2, a local directory or a hub id).

Generation is batched with left padding and sampled with a seed; outputs are cleaned
(``Rewrite:`` prefixes, quotes, first line only) and rejected when they answer the message
instead of rewriting it, lose its content words, change protected tokens (placeholders,
numbers) or only change punctuation.  Used by :func:`hone.data.augment.augment_rows`.
"""

from __future__ import annotations

import re

from hone.data.augment import PLACEHOLDER_RE, _tokenize, normalize_text, protected_tokens, synonyms_of
from hone.data._synonyms import STOP_WORDS

PARAPHRASE_SYSTEM = ("Rewrite the customer's message in different words. Keep the meaning, keep it short. "
                     "Reply with the rewrite only.")
PLACEHOLDER_HINT = " Copy tokens like {example} exactly as they are."
# Few-shot examples (hone's own): small chat models otherwise tend to *answer* the message.
PARAPHRASE_EXAMPLES = (
    ("my internet stopped working yesterday and nobody has fixed it",
     "Since yesterday my internet has not worked and nobody has repaired it yet."),
    ("How much does it cost to call abroad from my mobile?",
     "What is the price of calling another country from my phone?"),
    ("I have been charged twice for the same month, please refund me",
     "Please give me my money back, I paid two times for one month."),
)

# ----------------------------------------------------------------------------------------
# Paraphrase with a causal LM
# ----------------------------------------------------------------------------------------

_PREFIX_RE = re.compile(
    r"^(?:(?:sure|okay|ok|certainly)[,!.]?\s*)?"
    r"(?:here(?:'s| is)[^:]{0,60}:\s*)?"
    r"(?:(?:rewrite|rewritten(?: message| version| text)?|rewording|paraphrased?(?: message| version)?|"
    r"new message|output|answer|response)\s*\d*\s*[:\-–]\s*|(?:message|customer|reply|text)\s*\d*\s*:\s*)?",
    re.IGNORECASE)
_QUOTES = "\"'“”‘’`«»"


def clean_paraphrase(output: str) -> str:
    """First meaningful line of a generation, without "Rewrite:"-style prefixes and quotes."""
    for line in output.splitlines():
        s = line.strip().lstrip("-*•>").strip()
        s = _PREFIX_RE.sub("", s, count=1).strip()
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1].strip()  # quotes only as a pair around the whole line ('"My 5G keeps dropping" she said')
        if s:
            return s
    return ""


_FIRST_PERSON = frozenset({"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself", "we", "our", "us"})
_SECOND_PERSON = frozenset({"you", "your", "you're", "you've", "yours", "yourself"})
_REPLY_START = re.compile(r"^(?:i'm sorry|i am sorry|sorry|thank you for|thanks for|sure\b|of course|certainly|"
                          r"i can help|i'd be (?:happy|glad)|i would be (?:happy|glad)|i'll be (?:happy|glad)|"
                          r"happy to help|how can i help|what(?:'s| is) the (?:problem|issue)|"
                          r"hello,? (?:there|customer)|dear customer|as an ai|the customer)", re.IGNORECASE)


def _stem(w: str) -> str:
    return w.lower()[:5]


def _content_words(text: str) -> list[str]:
    return [t.text.lower() for t in _tokenize(text)
            if t.kind == "word" and len(t.text) > 2 and t.text.lower() not in STOP_WORDS]


def content_overlap(candidate: str, source: str) -> float:
    """Share of the source's content words found in ``candidate`` (same 5-letter stem, or a
    synonym from hone's table)."""
    src = list(dict.fromkeys(_content_words(source)))
    if not src:
        return 1.0
    have = {_stem(w) for w in _content_words(candidate)}
    hits = sum(1 for w in src if _stem(w) in have or any(_stem(s) in have for s in synonyms_of(w)))
    return hits / len(src)


def _word_seq(text: str) -> list[str]:
    return [t.text.lower() for t in _tokenize(text) if t.kind in ("word", "protected")]


def _words_lower(text: str) -> set[str]:
    return {t.text.lower().replace("’", "'") for t in _tokenize(text) if t.kind == "word"}


def looks_like_reply(candidate: str, source: str) -> bool:
    """True when ``candidate`` answers the message instead of rewriting it (small models do)."""
    if _REPLY_START.match(candidate) and not _REPLY_START.match(source):
        return True
    src, out = _words_lower(source), _words_lower(candidate)
    return bool(src & _FIRST_PERSON) and not (out & _FIRST_PERSON) and bool(out & _SECOND_PERSON)


def accept_paraphrase(candidate: str, source: str, *, min_overlap: float = 0.5) -> bool:
    """Keep a generated rewrite only when it is a plausible paraphrase of ``source``.

    Rejected: empty, unchanged (after whitespace / case normalization), more than 3x longer,
    a changed set of protected tokens (placeholders, numbers, URLs), an answer to the message
    rather than a rewrite of it, or fewer than ``min_overlap`` of the source's content words
    kept (directly or as a synonym).
    """
    if not candidate or normalize_text(candidate) == normalize_text(source):
        return False
    if _word_seq(candidate) == _word_seq(source):  # only punctuation changed
        return False
    if len(candidate) > 3 * max(len(source), 1):
        return False
    if protected_tokens(candidate) != protected_tokens(source):
        return False
    if looks_like_reply(candidate, source):
        return False
    if _repeats(candidate) and not _repeats(source):  # "Please, I'm sorry, I'm sorry, I'm sorry, can you ..."
        return False
    return content_overlap(candidate, source) >= min_overlap


def _repeats(text: str) -> bool:
    """A word trigram that occurs twice: the loop of a small model's sampling."""
    words = _word_seq(text)
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(grams) != len(set(grams))


class Paraphraser:
    """Batched, sampled rewriting with a causal LM (its chat template when it has one)."""

    def __init__(self, model: str = "smollm2", *, max_new_tokens: int = 48, temperature: float = 0.8,
                 top_p: float = 0.95, batch_size: int = 8):
        from hone.model.load import load_causal_lm

        self.model, self.tok = load_causal_lm(model)
        self.tok.padding_side = "left"
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.batch_size = batch_size
        self.chat = bool(getattr(self.tok, "chat_template", None))

    @staticmethod
    def _system(text: str) -> str:
        ph = PLACEHOLDER_RE.search(text)
        return PARAPHRASE_SYSTEM + (PLACEHOLDER_HINT.format(example=ph.group()) if ph else "")

    def messages(self, text: str) -> list[dict]:
        """The chat for one text: system instruction, few-shot examples, the text."""
        msgs = [{"role": "system", "content": self._system(text)}]
        for src, rewrite in PARAPHRASE_EXAMPLES:
            msgs += [{"role": "user", "content": f"Customer message: {src}"},
                     {"role": "assistant", "content": f"Rewrite: {rewrite}"}]
        return msgs + [{"role": "user", "content": f"Customer message: {text}"}]

    def prompt(self, text: str) -> str:
        """The plain-text prompt for tokenizers without a chat template."""
        shots = "".join(f"Customer message: {s}\nRewrite: {r}\n\n" for s, r in PARAPHRASE_EXAMPLES)
        return f"{self._system(text)}\n\n{shots}Customer message: {text}\nRewrite:"

    def _encode(self, texts: list[str]):
        if self.chat:
            return self.tok.apply_chat_template([self.messages(t) for t in texts], add_generation_prompt=True,
                                                tokenize=True, padding=True, return_dict=True,
                                                return_tensors="pt")
        return self.tok([self.prompt(t) for t in texts], return_tensors="pt", padding=True)

    def generate(self, texts: list[str], seed: int) -> list[str]:
        """Raw (uncleaned) generations for ``texts``, one batch, seeded."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        enc = self._encode(texts)
        plen = enc["input_ids"].shape[1]
        tok = self.tok

        class _NewlineAfterText(StoppingCriteria):  # stop a row at its first newline after some text
            def __call__(self, input_ids, scores, **kw):
                outs = tok.batch_decode(input_ids[:, plen:], skip_special_tokens=True)
                return torch.tensor([("\n" in o.lstrip()) for o in outs], dtype=torch.bool,
                                    device=input_ids.device)

        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0,
                max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id,
                stopping_criteria=StoppingCriteriaList([_NewlineAfterText()]))
        return tok.batch_decode(out[:, plen:], skip_special_tokens=True)
