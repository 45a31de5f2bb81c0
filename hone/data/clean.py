"""Text cleaning: Unicode repair, HTML, signatures, boilerplate, whitespace, a domain spelling
map, length and language filters.  Each step is optional and counted.

Steps act on every free-text field of a canonical row (via ``records.map_texts``); filters
drop whole records.  Everything is deterministic.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

from hone.config import CleanConfig
from hone.data.records import Record, joined_text, map_texts, texts

_TAG = re.compile(r"<\s*(br|p|div|li|tr)\b[^>]*>|<\s*/\s*(p|div|li|tr)\s*>", re.I)
_ANY_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s+[^<>]*)?/?>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")
# text is HTML when it closes a tag or breaks a line with one: "List<String>" or "a<b and c>d" are not
_IS_HTML = re.compile(r"</[a-zA-Z][a-zA-Z0-9]*\s*>|<(?:br|p|hr|img)\b[^<>]*>", re.I)
_SIGNATURE_CUTS = [
    # RFC 3676 signature delimiter, followed by a signature's few short lines (a "--" line inside content is not one)
    re.compile(r"\n--[ \t]*\n(?:[^\n]{0,80}(?:\n|\Z)){1,6}\Z"),
    # a mobile mail app's line: where it starts a line (and everything after it goes), or as the text's short tail;
    # not anywhere ("The SMS sent from my phone to 80888 was billed ..." lost all but its first two words)
    # not mid-sentence either ("...the text I sent from my phone"), nor a line that goes on ("Sent from my Android
    # the app crashes ..."): a line of its own, or a sentence of its own at the end, and what is quoted below it
    re.compile(r"\s*(?:(?:^|\n)|(?<=[.!?]))[ \t]*Sent from my (?:%(d)s)\b(?:[ \t]+[\w.-]+){0,2}[ \t]*(?:\n.*)?\Z"
               % {"d": r"iPhone|iPad|Android|Samsung[\w ]*|Galaxy[\w ]*|mobile(?: device)?|phone"}, re.S | re.I),
    re.compile(r"\s*\bGet Outlook for (iOS|Android)\b.*\Z", re.S | re.I),
]
_DEFAULT_BOILERPLATE = [
    re.compile(r"\s*\b(This (e-?mail|message)( and any attachments)? (is|are) (strictly )?confidential)[^\n]*",
               re.I),
    re.compile(r"\s*\bPlease consider the environment before printing[^\n]*", re.I),
]
_HSPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANKS = re.compile(r"\n\s*\n(\s*\n)+")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")  # PII placeholders are not HTML


def fix_unicode(text: str) -> str:
    import ftfy

    return unicodedata.normalize("NFC", ftfy.fix_text(text, normalization="NFC"))


def strip_html(text: str) -> str:
    if "<" not in text and "&" not in text:
        return text
    keep = {m.group(0): f"\x00{i}\x00" for i, m in enumerate(_PLACEHOLDER.finditer(text))}
    for k, v in keep.items():
        text = text.replace(k, v)
    if _IS_HTML.search(text):
        text = _TAG.sub("\n", text)
        text = _ANY_TAG.sub(" ", text)
    # each well-formed entity alone: html.unescape also decodes legacy names without ";" ("&currency=" -> "¤cy=")
    text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    for k, v in keep.items():
        text = text.replace(v, k)
    return text


def strip_signatures(text: str) -> str:
    for pat in _SIGNATURE_CUTS:
        cut = pat.sub("", text)
        if cut.strip():  # never strip a message down to nothing
            text = cut
    return text


def strip_patterns(text: str, patterns: list[re.Pattern[str]]) -> str:
    for pat in patterns:
        cut = pat.sub("", text)
        if cut.strip():
            text = cut
    return text


def normalize_whitespace(text: str, *, keep_indent: bool = False) -> str:
    """Runs of spaces to one, blank-line runs to one blank line, the ends trimmed; ``keep_indent`` keeps each line's
    leading indentation (a generator's replies and completions hold code, YAML, nested lists)."""
    lines = []
    for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        indent = ln[:len(ln) - len(ln.lstrip(" \t"))] if keep_indent else ""
        body = _HSPACE.sub(" ", ln).strip()
        lines.append(indent + body if body else "")
    out = _BLANKS.sub("\n\n", "\n".join(lines))
    return out.rstrip().lstrip("\n") if keep_indent else out.strip()


def spelling_map(mapping: dict[str, str]) -> Callable[[str], str]:
    """Whole-word, case-insensitive replacement of domain spelling variants (``srvce`` -> ``service``).

    Longer keys win over shorter ones; internal spaces in a key match any run of spaces, so
    ``"5 G": "5G"`` also fixes ``5  G``.
    """
    if not mapping:
        return lambda t: t
    keys = sorted(mapping, key=len, reverse=True)
    alts = "|".join(r"\s+".join(map(re.escape, k.split())) for k in keys)
    pat = re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.I)
    folded = {" ".join(k.split()).casefold(): v for k, v in mapping.items()}
    return lambda t: pat.sub(lambda m: folded[" ".join(m.group(0).split()).casefold()], t)


@lru_cache(maxsize=1)
def _langdetect():  # imported lazily: langdetect loads ~50 language profiles
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # langdetect is random unless seeded
    return detect_langs


_EN_FUNCTION = frozenset("the and or but is are were be been it this that my your our you we they to of for with at "
                         "from by not does did have has had can could would please thanks thank what why how when "
                         "where which there".split())
# English function words that Spanish, Italian, French, Portuguese or German write the same: they count only beside
# one of the words above ("No me cobraron a tiempo, no puedo pagar a mi banco" was read as English)
_EN_SHARED = frozenset("a an i in on do no me was will".split())
_WORD = re.compile(r"[a-z']+")


def detect_language(text: str, min_chars: int = 20) -> str | None:
    """ISO 639-1 code, or None when the text is too short or unclear to tell.

    Text whose words are at least 30% English function words is English without asking
    langdetect (8 ms a call): support tickets are mostly English, and this keeps the filter
    cheap while mixed or foreign text still gets the full detector.
    """
    letters = sum(c.isalpha() for c in text)
    if letters < min_chars:
        return None
    words = _WORD.findall(text.casefold())
    english = sum(w in _EN_FUNCTION for w in words)
    if len(words) >= 4 and english and (english + sum(w in _EN_SHARED for w in words)) / len(words) >= 0.3:
        return "en"
    from langdetect.lang_detect_exception import LangDetectException

    try:
        best = _langdetect()(text)[0]
    except LangDetectException:
        return None
    return best.lang if best.prob >= 0.80 else None


def clean_records(records: list[Record], schema: str, cfg: CleanConfig) -> tuple[list[Record], dict]:
    """Apply the enabled steps; returns the kept records and per-step counts."""
    steps: list[tuple[str, Callable[[str], str]]] = []
    if cfg.unicode:
        steps.append(("unicode", fix_unicode))
    if cfg.html:
        steps.append(("html", strip_html))
    if cfg.signatures:
        steps.append(("signatures", strip_signatures))
    extra = [re.compile(p, re.I | re.M) for p in cfg.boilerplate]
    steps.append(("boilerplate", lambda t: strip_patterns(t, _DEFAULT_BOILERPLATE + extra)))
    if cfg.normalize:
        steps.append(("normalize", spelling_map(cfg.normalize)))
    if cfg.whitespace:
        keep = schema != "classification"  # (indentation carries meaning in what a generator learns to write)
        steps.append(("whitespace", lambda t: normalize_whitespace(t, keep_indent=keep)))
    changed: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    langs: Counter[str] = Counter()
    kept: list[Record] = []
    for rec in records:
        data, touched = rec.data, False
        for name, fn in steps:
            new = map_texts(schema, data, fn)
            if new != data:
                changed[name] += 1
                touched = True
            data = new
        text = joined_text(schema, data)
        reason = _drop_reason(text, cfg, langs)
        if reason is None and touched and any(
                a.strip() and not b.strip() for a, b in zip(texts(schema, rec.data), texts(schema, data), strict=True)):
            reason = "field_empty_after_cleaning"  # e.g. a chat turn of only HTML: hone's own check refuses it
        if reason:
            dropped[reason] += 1
            continue
        kept.append(Record(data, rec.source, rec.line, dict(rec.meta)))
    counts = {"records_changed": {name: changed[name] for name, _ in steps},
              "dropped": dict(dropped), "kept": len(kept)}
    if cfg.languages is not None:
        counts["languages"] = dict(langs.most_common())
    return kept, counts


def _drop_reason(text: str, cfg: CleanConfig, langs: Counter[str]) -> str | None:
    n = len(text.strip())
    if n == 0:
        return "empty_after_cleaning"
    if n < cfg.min_chars:
        return "too_short"
    if cfg.max_chars is not None and n > cfg.max_chars:
        return "too_long"
    if cfg.languages is not None:
        lang = detect_language(text)
        langs[lang or "undetermined"] += 1
        if lang is not None and lang not in cfg.languages:
            return "language"
    return None
