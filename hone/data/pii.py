"""PII redaction with consistent pseudonyms: ``"Hi, I'm Sarah Jones"`` -> ``"Hi, I'm <PERSON_1>"``.

Detection runs fully offline:

- EMAIL, PHONE, CREDIT_CARD (Luhn), IBAN (checksum), IP_ADDRESS, URL: Presidio's predefined
  recognizers called directly (no AnalyzerEngine, no spaCy model); e-mail domain validation
  uses tldextract's bundled suffix list with fetching switched off.  URLs count as PII only
  when their path or query is personal (``/users/jsmith``, ``?email=``, ``?token=``...).
- ADDRESS, ACCOUNT_NUMBER: hone's own regular expressions (street forms, postcodes after a
  cue or next to a street; ids introduced by "account/order/ticket/ref ..." keywords).
- PERSON: gazetteer + context cues + name pairs, see :mod:`hone.data.pii_names`.
- user ``patterns``: extra regexes, one entity type each.

Within one :class:`Scope` the same normalized value always gets the same placeholder number.
Placeholders already in the text are protected, never re-detected, and new numbers start after
the largest one seen in the scope, so ``redact(redact(x)) == redact(x)``.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from hone.data import pii_names
from hone.errors import ConfigError

ENTITY_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "URL", "ADDRESS",
                                 "ACCOUNT_NUMBER", "DEVICE_ID", "PERSON", "CREDENTIAL")
PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "ES", "IT", "NL", "AU", "CA", "IE", "BE",
                                  "CH", "AT")
_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
Span = tuple[int, int, str]

# ---------------------------------------------------------------- address and account regexes
_UK_PC = r"(?:GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})"
_US_STATE = (r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
             r"NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC)")
_ZIP = r"\d{5}(?:-\d{4})?"
_US_STATE_NAME = (r"(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|"
                  r"Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|"
                  r"Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New[ \t]Hampshire|New[ \t]Jersey|"
                  r"New[ \t]Mexico|New[ \t]York|North[ \t]Carolina|North[ \t]Dakota|Ohio|Oklahoma|Oregon|"
                  r"Pennsylvania|Rhode[ \t]Island|South[ \t]Carolina|South[ \t]Dakota|Tennessee|Texas|Utah|Vermont|"
                  r"Virginia|Washington|West[ \t]Virginia|Wisconsin|Wyoming|District[ \t]of[ \t]Columbia)")
_COUNTRY = r"(?:,[ \t]*(?:United[ \t]States(?:[ \t]of[ \t]America)?|USA|U\.S\.A\.|United[ \t]Kingdom|UK|Canada))?"
_CITY = r"[A-Z][a-zà-ÿ'’.-]+(?:[ -][A-Z][a-zà-ÿ'’.-]+){0,2}"
_SUFFIX = (r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Square|"
           r"Sq|Terrace|Way|Close|Crescent|Cres|Gardens|Grove|Hill|Parkway|Pkwy|Highway|Hwy|Row|Mews|"
           r"Walk|Circle|Cir|Trail|Green|Parade|Embankment|Park|Quay)\b(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW|North|South|East|"
           r"West|Northeast|Northwest|Southeast|Southwest)\b)?")
_UNIT = r"(?:Flat|Apartment|Apt|Unit|Suite|Ste|Room|Floor)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]{1,6}\b"
_NUM = r"(?<![\d,.$£€])\d{1,5}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?"
_WORD = r"(?:[A-Z][a-zA-Z'’.-]*|\d{1,3}(?:st|nd|rd|th))"
_EN_STREET = (rf"(?:(?:{_UNIT},?[ \t]+)?{_NUM}|{_UNIT},?)[ \t]+(?:{_WORD}[ \t]+){{1,4}}{_SUFFIX}"
              rf"(?:,?[ \t]*{_UNIT})?")
_DE_SUF = (r"(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|straat|laan|gracht|plein|"
           r"kade|singel|dijk|vej|gade|gatan|vägen)")
_DE_STREET = (rf"(?:[A-ZÄÖÜ][a-zäöüß]+[ \t-])?(?:[A-ZÄÖÜ][a-zäöüß-]*{_DE_SUF}|Straße|Strasse|Weg|Platz|"
              rf"Allee|Gasse)[ \t]+\d{{1,4}}[ \t]?[a-zA-Z]?\b")
_FR_STREET = (r"\d{1,4}(?:[ \t]?(?:bis|ter))?,?[ \t]+(?:[Rr]ue|avenue|[Bb]oulevard|bd|place|[Aa]llée|allee|"
              r"[Cc]hemin|[Ii]mpasse|[Qq]uai|route|cours)[ \t]+(?:(?:de|du|des|la|le|l'|d')[ \t]*)*[A-ZÉÈ][\w'’-]+"
              r"(?:[ \t]+(?:(?:de|du|des|la|le)[ \t]+)?[A-ZÉÈ][\w'’-]+){0,3}")
_ES_STREET = (r"(?:Calle|C/|Avenida|Avda\.?|Paseo|Plaza|Via|Viale|Piazza|Corso|Largo|Rua|Carrer|Travessa)"
              r"[ \t]+(?:(?:de|del|la|las|los|di|della|delle|dei|da|do|dos|das)[ \t]+)*[A-ZÁÉÍÓÚ][\w'’-]+"
              r"(?:[ \t]+(?:(?:de|del|la|di|della|da|do)[ \t]+)?[A-ZÁÉÍÓÚ][\w'’-]+){0,3},?[ \t]+"
              r"(?:n[º°o]\.?[ \t]*)?\d{1,4}[A-Za-z]?\b(?:,?[ \t]*\d{1,2}[º°ª](?:[ \t]?[A-Z]\b)?)?")
_STREET_RE = re.compile(rf"\b(?:{_EN_STREET}|{_DE_STREET}|{_FR_STREET}|{_ES_STREET})")
_STREET_LOWER_RE = re.compile(_EN_STREET, re.IGNORECASE)  # only tried right after an address cue
_EIRCODE = r"(?:[AC-FHKNPRTV-Y]\d{2}|D6W) ?[0-9AC-FHKNPRTV-Y]{4}"
_POST = rf"(?:(?:{_US_STATE}|{_US_STATE_NAME})[ \t]+{_ZIP}|(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)[ \t]+\d{{4}}|{_UK_PC}|{_EIRCODE}|\d{{4,5}})"
_TAIL_RE = re.compile(
    rf",?[ \t]+(?:{_UK_PC}|{_US_STATE}[ \t]+{_ZIP}|\d{{4}}[ \t]?[A-Z]{{2}}[ \t]+{_CITY}|\d{{4,5}}[ \t]+{_CITY})\b"
    rf"|,[ \t]*(?P<city>{_CITY})(?:,?[ \t]+{_POST}{_COUNTRY})?\b")
_CITY_STOP = frozenset("thanks thank please cheers regards best kind and but or so i we my the it this that is can "
                       "could would will hi hello ok yes no which who where when then since because".split())
_ADDRESS_CUE = re.compile(r"(?i:\baddress\b[^.\n]{0,12}?\b(?:is|to)\b:?|\baddress\s*:|\b(?:live|living|lives|"
                          r"moved|located|ship|send|sent|deliver|delivered|post)\s+(?:it\s+)?(?:at|to))[ \t]+")
_STANDALONE_ADDRESS = re.compile(
    rf"\b(?:P\.?[ \t]?O\.?[ \t]?Box[ \t]+\d{{1,6}}|{_CITY},[ \t]*{_US_STATE}[ \t]+{_ZIP})\b"
    rf"|(?i:\b(?:post[ \t]?code|postal[ \t]code|zip(?:[ \t]?code)?|plz)\b[ \t]*(?:is|:)?[ \t]*)"
    rf"(?P<v>(?i:{_UK_PC})|{_ZIP}|\d{{4}}[ \t]?[A-Z]{{2}})\b"
    rf"|\b(?P<c>{_CITY})[ \t]+(?P<pc>{_UK_PC})\b")
_ACC_KW = (r"account|acct|acc|a/c|order|ticket|case|customer|client|reference|ref|invoice|policy|contract|"
           r"booking|tracking|membership|member|confirmation|transaction|claim|complaint|incident|"
           r"subscriber|loan|mandate|parcel|shipment|consignment|routing|request|application")
_ACCOUNT_RE = re.compile(
    rf"(?i:\b(?:{_ACC_KW})\b(?P<m>[ \t]+(?:number|no|num|nr|id|code|ref|reference)\b)?\.?[ \t]*(?:(?:is|was)[ \t]*)?"
    r"(?P<m2>[:#=]|no\.?|nr\.?)?[ \t]*#?[ \t]*)"
    r"(?P<v>[A-Za-z0-9](?:[A-Za-z0-9]|[-/](?=[A-Za-z0-9])){3,29})\b"
    r"|(?i:\bsort[ \t]?code\b[ \t]*(?:is|:)?[ \t]*)(?P<sc>\d{2}[- ]?\d{2}[- ]?\d{2})\b")
_LOWER_IBAN = re.compile(r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", re.IGNORECASE)
_PHONE_CUE = re.compile(
    r"(?i:\b(?:phone|mobile|cell|tel|telephone|landline|whatsapp|contact)(?:[ \t]+(?:number|no\.?|#))?"
    r"|\b(?:call|text|ring|reach)[ \t]+me[ \t]+(?:on|at))[ \t]*(?:is|:)?[ \t]*(?P<v>\+?\d[\d \-().]{5,18}\d)")
# "+44 7700 900123", "0044 20 7946 0000": international form, whatever libphonenumber thinks of the range
_INTL_PHONE = re.compile(r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])")
# signature lines: "T: 020 7946 0000", "Mob. 07700 900123"
_SIG_PHONE = re.compile(r"(?im)^[ \t]*(?:T|M|P|Tel|Mob|Ph|Phone|Mobile|Cell|Direct)[ \t]*[:.][ \t]*"
                        r"(?P<v>\+?\d[\d \-().]{5,18}\d)")
# IMEI / ICCID / IMSI / MEID / serial numbers after their keyword (an IMEI passes the Luhn check)
_DEVICE_RE = re.compile(
    r"(?i:\b(?:IMEI|MEID|ICCID|IMSI|serial|SIM(?:[ \t]+card)?[ \t]+(?:number|no\.?))(?:[ \t]+(?:number|no\.?|num|#))?"
    r"\b[ \t]*(?:\((?:ICCID|IMEI|IMSI)\)[ \t]*)?(?:is[ \t]*|[:#][ \t]*)?)"
    r"(?:(?P<v>\d(?:\d|[ -](?=\d)){6,23})(?![\w])|(?P<s>[A-Za-z0-9][A-Za-z0-9-]{5,24})\b)")
_PERSONAL_SEG = frozenset("user users u profile profiles account accounts member members customer customers "
                          "people person me my id uid".split())
_PERSONAL_KEY = re.compile(r"(?i)^(?:.*id|user.*|.*name|e-?mail|mail|.*token|auth.*|session.*|sid|.*key|"
                           r"account|acct|customer|phone|msisdn|code|otp|reset|invite|sig|signature|order|ref|"
                           r"reference|ticket|case|invoice|booking|tracking)$")
_SECRET = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{16,}$|^[0-9a-f]{20,}$")
_SCORES = {"EMAIL": 1.0, "URL": 1.0, "CREDIT_CARD": 1.0, "IBAN": 1.0, "IP_ADDRESS": 0.95, "ACCOUNT_NUMBER": 0.9,
           "ADDRESS": 0.8, "PHONE": 0.7, "CUSTOM": 0.95, "DEVICE_ID": 1.05, "CREDENTIAL": 1.1}
# what precedes a version number, which the IP recognizer would take for an address ("version 10.2.3.4")
_VERSION_BEFORE = re.compile(r"(?i:\b(?:version|ver|firmware|fw|build|release|update|os|ios|android|v)\.?[ \t]*:?"
                             r"[ \t]*)\Z")
# a secret a customer types into a ticket: the value after its keyword.  Codes (PIN, CVV, one-time codes) are 3-8
# digits; a password or memorable word is any token after ":" or "=", or after "is" if it has a digit or a symbol
# ("my password is not working" keeps its words)
_CODE_KW = (r"PIN(?:[ \t]?(?:number|code))?|pass[ \t-]?code|CVV2?|CVC2?|CV2|CSC|card[ \t]security[ \t]code|"
            r"security[ \t](?:code|number)|OTP|one[ \t-]time[ \t](?:pass[ \t]?code|code|password|pin)|"
            r"verification[ \t]code|auth(?:entication|orisation|orization)?[ \t]code|2FA[ \t]code|sms[ \t]code")
_CREDENTIAL_RE = re.compile(
    rf"(?i:\b(?:{_CODE_KW})\b[ \t]*(?:(?:is|was|of)[ \t]+|[:=#][ \t]*)?(?:still[ \t]+)?)(?P<code>\d{{3,8}})(?![\d,.]\d)\b"
    r"|(?i:\b(?:password|passwd|pwd|memorable[ \t](?:word|answer|information))\b[ \t]*)"
    r"(?:[:=][ \t]*['\"]?(?P<pw>[^\s'\"]{4,64}?)"  # after ":" or "=": any token
    r"|(?i:(?:is|was)[ \t]+)['\"]?(?P<pw2>(?=[^\s'\"]*\d|[^\s'\"]*[^\w\s'\"][^\s'\"])[^\s'\"]{4,64}?))"
    r"['\"]?(?=[\s,;]|[.:](?:\s|$)|$)")  # a password may end in ! or ?; a full stop after it ends the sentence


def _personal_url(url: str) -> bool:
    parts = urlsplit(url if "://" in url else "http://" + url)
    segs = [s for s in parts.path.split("/") if s]
    if "@" in parts.path or "@" in parts.query or any(s.startswith("~") for s in segs):
        return True
    if any(s.lower() in _PERSONAL_SEG for s in segs[:-1]) or any(_SECRET.match(s) for s in segs):
        return True
    return any(_PERSONAL_KEY.match(k) or _SECRET.match(v) for k, v in parse_qsl(parts.query, True))


def _city_ok(city: str | None) -> bool:
    return city is None or city.split()[0].casefold() not in _CITY_STOP


class _Presidio:
    """Presidio's pattern recognizers, built once per process (the import takes seconds)."""

    _lock = threading.Lock()
    _inst: _Presidio | None = None

    def __init__(self) -> None:
        import tldextract

        # presidio's package import pulls in its optional Hugging Face NER integration, which
        # imports transformers (~4 s) and which hone never uses; hide transformers during the
        # import unless it is already loaded (only presidio's HF modules see it as missing).
        hide = "transformers" not in sys.modules
        if hide:
            sys.modules["transformers"] = None  # type: ignore[assignment]
        try:
            from presidio_analyzer import Pattern
            from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer,
                                                                   IbanRecognizer, IpRecognizer,
                                                                   PhoneRecognizer, UrlRecognizer)
        finally:
            if hide and sys.modules.get("transformers", 0) is None:
                del sys.modules["transformers"]
        # the bundled public-suffix snapshot, never fetched over the network, no disk cache
        extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

        class _Email(EmailRecognizer):
            def validate_result(self, pattern_text: str) -> bool:
                return extract(pattern_text).fqdn != ""

        cards = [*CreditCardRecognizer.PATTERNS,
                 Pattern("Mastercard 2-series", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3)]
        self.email = _Email()
        self.phone = PhoneRecognizer(supported_regions=PHONE_REGIONS, leniency=1)
        self.card = CreditCardRecognizer(patterns=cards)
        self.iban = IbanRecognizer()
        self.ip = IpRecognizer()
        self.url = UrlRecognizer()

    @classmethod
    def get(cls) -> _Presidio:
        with cls._lock:
            if cls._inst is None:
                cls._inst = cls()
            return cls._inst


class Scope:
    """One pseudonym namespace: a record or a whole conversation."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._last: collections.Counter[str] = collections.Counter()  # highest number used per type

    def reserve(self, *texts: str) -> None:
        """Never hand out numbers already used by placeholders in ``texts``."""
        for t in texts:
            for m in PLACEHOLDER_RE.finditer(t):
                self._last[m[1]] = max(self._last[m[1]], int(m[2]))

    def number(self, etype: str, key: str) -> int:
        k = (etype, key)
        if k not in self._ids and etype == "PERSON":  # "John" after "John Smith" is the same person
            toks = key.split()
            same = [n for (t, v), n in self._ids.items() if t == "PERSON" and (
                len(toks) == 1 and toks[0] in v.split() or len(toks) > 1 and v in (toks[0], toks[-1]))]
            if len(set(same)) == 1:
                self._ids[k] = same[0]
        if k not in self._ids:
            self._last[etype] += 1
            self._ids[k] = self._last[etype]
        return self._ids[k]


def _normalize(etype: str, value: str) -> str:
    if etype == "PHONE":
        import phonenumbers

        for region in (None, *PHONE_REGIONS):
            try:
                num = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(num):
                return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        return re.sub(r"\D", "", value)
    if etype in ("CREDIT_CARD", "IBAN", "ACCOUNT_NUMBER"):
        return re.sub(r"[\W_]", "", value).casefold()
    return " ".join(re.sub(r"[^\w@.:/?=&%+~-]", " ", value.casefold()).split())


class Redactor:
    """Finds PII spans and replaces them with numbered placeholders."""

    def __init__(self, entities: Sequence[str] | None = None, patterns: Mapping[str, str] | None = None) -> None:
        wanted = list(ENTITY_TYPES if entities is None else entities)
        unknown = [e for e in wanted if e not in ENTITY_TYPES]
        if unknown:
            raise ConfigError(f"data.pii.entities: unknown entity type(s) {unknown}; known: {list(ENTITY_TYPES)}")
        self.entities = tuple(e for e in ENTITY_TYPES if e in wanted)
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for name, rx in (patterns or {}).items():
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ConfigError(f"data.pii.patterns: name {name!r} must be an upper-case entity type like ORDER_ID")
            try:
                self.patterns.append((name, re.compile(rx)))
            except (re.error, TypeError) as e:
                raise ConfigError(f"data.pii.patterns.{name}: invalid regular expression {rx!r}: {e}") from None
        self.counts: collections.Counter[str] = collections.Counter()
        needs = {"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "URL"}
        self._p = _Presidio.get() if needs & set(self.entities) else None
        detectors: dict[str, Callable[[str, int], list[tuple[int, int, float]]]] = {
            "EMAIL": self._email, "PHONE": self._phone, "CREDIT_CARD": self._card, "IBAN": self._iban,
            "IP_ADDRESS": self._ip, "URL": self._url, "ADDRESS": self._address,
            "ACCOUNT_NUMBER": self._account, "DEVICE_ID": self._device, "PERSON": self._person,
            "CREDENTIAL": self._credential}
        self._detectors = [(e, detectors[e]) for e in self.entities]

    def scope(self) -> Scope:
        return Scope()

    # ------------------------------------------------------------ detection
    def find(self, text: str) -> list[Span]:
        """Non-overlapping ``(start, end, type)`` PII spans, sorted; placeholders are skipped."""
        if not text:
            return []
        digits = sum(c.isdigit() for c in text)
        cands: list[tuple[float, int, int, str]] = []
        for etype, fn in self._detectors:
            cands += [(score, s, e, etype) for s, e, score in fn(text, digits)]
        for name, rx in self.patterns:
            for m in rx.finditer(text):
                s, e = m.span(1) if rx.groups else m.span()
                if e > s:
                    cands.append((_SCORES["CUSTOM"], s, e, name))
        taken = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)]
        out: list[Span] = []
        for score, s, e, etype in sorted(cands, key=lambda c: (-c[0], c[1] - c[2], c[1])):
            while e > s and text[e - 1].isspace():
                e -= 1
            if e > s and all(e <= a or s >= b for a, b in taken):
                taken.append((s, e))
                out.append((s, e, etype))
        return sorted(out)

    def _presidio(self, rec, text: str, score: float, check=None) -> list[tuple[int, int, float]]:
        res = rec.analyze(text, entities=rec.supported_entities, nlp_artifacts=None)
        return [(r.start, r.end, score) for r in res if r.score >= 0.3 and (check is None or check(r.start, r.end))]

    def _email(self, text: str, digits: int):
        return self._presidio(self._p.email, text, _SCORES["EMAIL"]) if "@" in text else []

    def _card(self, text: str, digits: int):
        return self._presidio(self._p.card, text, _SCORES["CREDIT_CARD"]) if digits >= 12 else []

    def _iban(self, text: str, digits: int):
        if digits < 8:
            return []
        # presidio's IBAN patterns are upper-case: also try lower-case candidates, upper-cased in place
        upper = _LOWER_IBAN.sub(lambda m: m.group().upper(), text)
        return self._presidio(self._p.iban, upper, _SCORES["IBAN"])

    def _ip(self, text: str, digits: int):
        if not re.search(r"\d\.\d|[0-9a-fA-F]:[0-9a-fA-F:]*:", text):
            return []
        return [(s, e, sc) for s, e, sc in self._presidio(self._p.ip, text, _SCORES["IP_ADDRESS"])
                if not _VERSION_BEFORE.search(text, max(0, s - 24), s)]  # "version 10.2.3.4" is no address

    def _url(self, text: str, digits: int):
        if not re.search(r"\w\.\w[^\s]*[/?]", text):
            return []
        out = []
        for r in self._p.url.analyze(text, entities=["URL"], nlp_artifacts=None):
            s, e = r.start, r.end
            while e > s and text[e - 1] in ".,;:!?)]}'\"":
                e -= 1
            if text[s] in "\"'":
                s += 1
            if _personal_url(text[s:e]):
                out.append((s, e, _SCORES["URL"]))
        return out

    def _phone(self, text: str, digits: int):
        if digits < 7:
            return []

        def isolated(s: int, e: int) -> bool:  # not a piece of a longer number, code or date
            before, after = text[max(0, s - 40):s], text[e:e + 2]
            return not (re.search(r"[\w/.]$|\d[ -]$|\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){0,7} ?$", before)
                        or re.match(r"[\w@/]|[ -]\d", after))

        # "+44 (0)20 ..." : blank the trunk prefix (same length, so offsets hold) for phonenumbers
        plain = re.sub(r"(?<=\d) ?\(0\) ?", lambda m: " " * len(m.group()), text)
        found = [(s, e, sc) for s, e, sc in self._presidio(self._p.phone, plain, _SCORES["PHONE"]) if isolated(s, e)]
        for m in _PHONE_CUE.finditer(text):
            v = m.group("v")
            if 7 <= sum(c.isdigit() for c in v) <= 15:
                found.append((m.start("v"), m.end("v"), _SCORES["PHONE"] - 0.1))
        for m in _SIG_PHONE.finditer(text):
            if 7 <= sum(c.isdigit() for c in m.group("v")) <= 15:
                found.append((m.start("v"), m.end("v"), _SCORES["PHONE"] - 0.1))
        for m in _INTL_PHONE.finditer(text):
            nd = sum(c.isdigit() for c in m.group()) - (2 if m.group().startswith("00") else 0)
            if 10 <= nd <= 15 and isolated(m.start(), m.end()):
                found.append((m.start(), m.end(), _SCORES["PHONE"] - 0.15))
        return found

    def _credential(self, text: str, digits: int):
        out = []
        for m in _CREDENTIAL_RE.finditer(text):
            g = next(k for k in ("code", "pw", "pw2") if m.group(k))
            out.append((m.start(g), m.end(g), _SCORES["CREDENTIAL"]))
        return out

    def _device(self, text: str, digits: int):
        if digits < 6:
            return []
        out = []
        for m in _DEVICE_RE.finditer(text):
            g = "v" if m.group("v") else "s"
            if sum(c.isdigit() for c in m.group(g)) >= (6 if g == "v" else 3):
                out.append((m.start(g), m.end(g), _SCORES["DEVICE_ID"]))
        return out

    def _address(self, text: str, digits: int):
        score, out = _SCORES["ADDRESS"], []
        if digits:
            spans = [m.span() for m in _STREET_RE.finditer(text)]
            for m in _ADDRESS_CUE.finditer(text):
                hit = _STREET_LOWER_RE.match(text, m.end())
                if hit:
                    spans.append(hit.span())
            for s, e in spans:
                tail = _TAIL_RE.match(text, e)
                if tail and _city_ok(tail.group("city")):
                    e = tail.end()
                    city = tail.group("city") or ""
                    end = next((m.start() for m in re.finditer(r"\.[ -]([^\W\d_]+)", city)
                                if m.group(1).casefold() in _CITY_STOP), None)
                    if end is not None:  # "..., London. Thanks": the sentence ended after the city
                        e = tail.start("city") + end
                out.append((s, e, score))
        for m in _STANDALONE_ADDRESS.finditer(text):
            if m.group("pc"):
                if _city_ok(m.group("c")) and not re.fullmatch(r".*\d[GMKT]B", m.group("pc")):
                    out.append((m.start("c"), m.end("pc"), score - 0.05))
            elif m.group("v") or digits:
                s, e = m.span("v") if m.group("v") else m.span()
                out.append((s, e, score - 0.05))
        return out

    def _account(self, text: str, digits: int):
        if not digits:
            return []
        out = []
        for m in _ACCOUNT_RE.finditer(text):
            if m.group("sc"):
                out.append((m.start("sc"), m.end("sc"), _SCORES["ACCOUNT_NUMBER"]))
                continue
            v = m.group("v")
            nd = sum(c.isdigit() for c in v)
            marked = bool(m.group("m") or m.group("m2") or "#" in m.group(0))
            if nd < 1 or _IBAN_SHAPE.fullmatch(v) or re.fullmatch(r"(?:19|20)\d\d", v):
                continue
            if nd >= 2 and ((marked and len(v) >= 4) or (len(v) >= 5 and nd >= 3)):
                out.append((m.start("v"), m.end("v"), _SCORES["ACCOUNT_NUMBER"]))
            elif marked and len(v) >= 5 and nd == 1 and v.isupper():  # booking ref TJVNH1
                out.append((m.start("v"), m.end("v"), _SCORES["ACCOUNT_NUMBER"]))
        return out

    def _person(self, text: str, digits: int):
        return pii_names.find_person_spans(text)

    # ------------------------------------------------------------ replacement
    def redact(self, text: str, scope: Scope | None = None) -> str:
        """``text`` with every PII span replaced by its placeholder in ``scope`` (a fresh one if None)."""
        if not isinstance(text, str) or not text:
            return text
        scope = scope if scope is not None else self.scope()
        scope.reserve(text)
        for _ in range(3):  # a replacement can expose nothing new; loop to a fixpoint just in case
            spans = self.find(text)
            if not spans:
                break
            parts, pos = [], 0
            for s, e, etype in spans:
                n = scope.number(etype, _normalize(etype, text[s:e]))
                parts += [text[pos:s], f"<{etype}_{n}>"]
                self.counts[etype] += 1
                pos = e
            text = "".join(parts) + text[pos:]
        return text


_default: Redactor | None = None


def redact(text: str) -> str:
    """Redact one text with a default :class:`Redactor` and a fresh scope."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default.redact(text)
