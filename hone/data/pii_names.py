"""Offline person-name detection for :mod:`hone.data.pii`.

No NER model is available offline, so names are found from three kinds of evidence:

1. a gazetteer: the US census first-name and surname frequency lists shipped by the ``names``
   package (cut to frequent entries), plus a short built-in list of common international names;
2. context cues: "my name is X", "Mr/Dr X", "Dear X", "Hi X," at the start, sign-offs
   ("Thanks,\\nX"), "agent X", "spoke to X", "in the name of X", ...;
3. full-name pairs: a capitalised known first name followed by a capitalised surname.

A lone capitalised first name with no cue counts only when it is not also an English word,
place or brand (``AMBIGUOUS``), and lower-case names count only after a strong cue.
"""

from __future__ import annotations

import importlib.util
import os
import re
import unicodedata
from functools import lru_cache

FIRST_MIN_FREQ = 0.005  # percent of the population, census first names (~2,400 names kept)
LAST_MIN_FREQ = 0.001  # percent of the population, census surnames (~18,800 names kept)

_INTL_FIRST = """aarav aditi aditya aisha akash alessandro alexei amara amit amina ananya anil anjali
anya aoife arjun arnav astrid bjorn camille chidi chloe ciaran darius declan deepak dev divya dmitri
eoin esra fatima fatma femi finn francois freya giulia hamza hana haruka hiroshi ibrahim ines ingrid
isla jan jannik javier jorge jurgen kai karim katarzyna kavya kenji khalid kiran klaus kofi kwame
lakshmi lars lea leila liam linh luca lucia lukas magnus malik manon mariam mateo matteo mehmet meera
mei ming mohammed nadia neha niamh nikhil nils noor nour oisin olumide omar oskar pablo piotr pooja
priya rahul raj rajesh ramesh rania ravi rohan sakura sanjay santiago saoirse sara seo sergei shreya
siobhan sneha sofia soren stefan sunil suresh svetlana takeshi tariq thabo tomasz tunde vikram wei
xin yara yasmin yuki yusuf zainab zanele zara zeynep zoltan aiden jayden harper poppy evie alfie
amir ali ahmed ahmad hassan hussein reza mohammad muhammad mustafa youssef yousef fatemeh maryam zahra leyla
layla farhan imran ayesha bilal hamid nasser samir salma"""

_INTL_LAST = """patel singh kumar sharma gupta khan raman iyer nair reddy rao mehta shah chowdhury mukherjee
banerjee chatterjee desai joshi kapoor malhotra verma agarwal chen wang zhang liu yang huang zhao wu zhou
xu sun zhu lin nguyen tran pham le hoang kim park choi jung kang tanaka suzuki sato watanabe takahashi
yamamoto nakamura muller schmidt schneider fischer weber meyer wagner becker hoffmann schulz koch
richter klein wolf neumann dubois moreau laurent lefebvre leroy rousseau fournier girard rossi russo
ferrari esposito bianchi romano colombo ricci marino greco bruno garcia fernandez gonzalez rodriguez
lopez martinez sanchez perez gomez diaz romero navarro obrien oneill oneil murphy byrne walsh doyle
kowalski nowak wisniewski wojcik kaminski ivanov petrov smirnov okafor adeyemi okonkwo mensah nkosi
haddad hussain ahmed rahman yilmaz kaya demir celik jansen bakker visser smit andersson johansson
nilsson larsson nielsen hansen jensen larsen eriksen mahmoud farouk abadi karimi hosseini"""

# Census first names that are also common English words, places, months or brands: never
# redacted on their own without a cue ("Will you...", "May I...", "Chase bank", "Grace period").
AMBIGUOUS = frozenset("""will may june april august autumn summer winter spring grace bill mark rich art
faith hope joy chase frank sunny iphone max guy drew pat sue rose iris ivy holly hazel amber crystal
ruby pearl jade jewel ivory opal violet daisy lily olive ginger candy candi honey dawn destiny charity
chance precious princess prince queen king major noble royal sterling ray gene dale glen glenn lane
reed wade heath forest bud buck rocky rusty dusty misty sandy stormy penny page paige mercedes harley
lincoln dallas houston austin denver cleveland columbus phoenix orlando sydney florence victoria
chelsea georgia virginia carolina india asia jordan israel kenya china madison savannah regina
dakota china easter christian constance earnest ernest merry miles lou young brain numbers son sun
ma mi bo al ed jo an ina ira ora ola ola van long short price cash green brown white black gray grey
hunter archer carter cooper mason parker porter fisher baker taylor marshall sherman bishop dean
deacon elder angel angelica ebony tiffany chanel alexa cortana siri echo genie nova ace jack jackie
jean jeans jewell sol dee kay bee colt cruz lupe mac sal dick rod nick rob will art wiley les bert
carol herb clay cliff roman german ty tad vance stanford berkeley princeton raleigh camden kingston
memphis nashville tulsa tampa reno irvine""".split())

# Words that are never names in a support message even when capitalised after a cue.
COMMON = frozenset("""a about above account accounts actually add address after again agent all also
am an and another any anyone anything app apple are around as ask at atm available back bank banking
bbc be because been before being best better between billing both broadband business but by
call calling can cancel card cards cash cheers check checking close code company contact could credit
currently customer customers data day dear debit did do does done down each email english euro euros
even every everyone everything fee fees few first for free friday from fine get getting go going
good google great guys had has have having hello help here hey hi his how however if in internet is
it its just kind last let like line lines live looking lost made madam main many me mobile
monday money month more morning much must my need network new next no not now number of off ok okay
on once one online only or order other our out over paid pay payment payments paypal people phone
plan please plus pro quick really refund regards sales same saturday savings service services she
should sim since sir so some someone something sorry still sunday support sure team technical text
than thank thanks that the their them then there these they this those through thursday to today
too top transfer tuesday two uk under unlimited up urgent us usa use using very visa wallet want was
we wednesday week well were what when where which while who why wifi with would yes yesterday you
your yours regard hopefully manager supervisor department desk centre center store shop broadband
fibre roaming unable trying writing waiting still happy angry upset frustrated confused new old
british american canadian french german indian irish spanish italian dutch european mastercard
pet smart mart money pound pounds dollar dollars ruble rubles yen franc francs rupee store market
express master speed good-bye goodbye ma'am los las san santa fort mount port amex western union
revolut monzo vodafone verizon sprint orange mr mrs ms mx dr prof madam vs versus bye""".split())

# A capitalised phrase ending in (or containing) one of these is a place, venue or product, not a person.
PLACE_HEADS = frozenset("""street st road rd avenue ave lane drive boulevard court place square terrace way close
crescent gardens grove hill park parkway highway row mews walk circle trail green parade city town village county
state bay beach falls lake river island islands mountain mountains valley bridge tower towers hotel inn motel mall
centre center plaza airport station university college school academy hospital clinic church cathedral museum
gallery theatre theater cinema stadium arena restaurant cafe bar pub club store shop market supermarket bank
company inc ltd llc corp corporation group foundation institute hall house building office music light gold steak
shock christmas day week festival award airlines airways express field fields creek hills heights springs
condos condo condominiums apartments apartment estates ranch manor villas dome coliseum ballpark pavilion
amphitheatre amphitheater auditorium bowl speedway""".split())
# A name right after one of these is a place: "San Francisco", "Santa Rosa", "Los Angeles", "Fort Worth".
PLACE_PREFIXES = frozenset("san santa santo sao são los las fort mount mt port saint st palo".split())

GENERIC_ADDRESSEES = frozenset("team support there all everyone guys folks friends sir madam sirs "
                               "colleagues customer customers service billing admin".split())

TITLE_RE = re.compile(r"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Mister|Madam)\b\.?[ \t]+"
                      r"|\b(?:mr|mrs|ms|dr)\b\.?[ \t]+")
# Strong cues: the next capitalised word(s) are a name unless they are common words.
STRONG_CUES = re.compile(
    r"(?i:\bmy\s+name\s+is|\bmy\s+name's|\bmy\s+full\s+name\s+is|\bthe\s+name\s+is|\bname\s*:"
    r"|\bname\s+on\s+the\s+(?:account|card)\s+is|\bin\s+the\s+name\s+of|\bon\s+behalf\s+of"
    r"|\b(?:account|card)\s*-?\s*holder(?:'s)?(?:\s+name)?(?:\s+is|\s*:)?|\bnamed"
    r"|\b(?:agent|advisor|adviser|representative|rep|operator|technician|engineer|colleague)\s*,?"
    r"|\bdear)[ \t]+")
# Medium cues: the next word must be a known name (or be followed by "from/here/speaking").
MEDIUM_CUES = re.compile(
    r"(?i:\bi\s+am|\bi'm|\bim|\bthis\s+is|\bit's|\bcall\s+me|\bcalled|\bask\s+for|\bask"
    r"|\b(?:speak|spoke|speaking|talk|talked|talking|chat|chatted|chatting|transferred|spoken)"
    r"\s+(?:to|with)|\bmy\s+(?:husband|wife|son|daughter|partner|mother|mom|mum|father|dad|"
    r"brother|sister|friend|colleague|boss|grandmother|grandfather|fianc[eé]e?|neighbour|neighbor)"
    r"|\bthanks|\bthank\s+you)\s*,?[ \t]+")
GREETING_RE = re.compile(r"(?:^|\n)[ \t]*(?i:hi|hello|hey|hiya|dear|good\s+(?:morning|afternoon|evening))"
                         r"[ \t]*,?[ \t]*")
SIGNOFF_RE = re.compile(
    r"\b(?i:thanks|thank\s+you|many\s+thanks|thanks\s+again|regards|best\s+regards|kind\s+regards|"
    r"warm\s+regards|best|cheers|sincerely|yours\s+sincerely|yours\s+truly|best\s+wishes|ta)"
    r"[ \t]*[,.!]?[ \t]*(?:\n[ \t]*)?")
DASH_END_RE = re.compile(r"(?:^|\s)[-–—~][ \t]*")
INTRO_HINT = re.compile(r"[ \t]*,?[ \t]+(?i:from|here|speaking|calling)\b")  # "this is Anil from ..."
AFTER_HINT = re.compile(r"[ \t]*,?[ \t]+(?i:from|here|speaking|calling|at|with|in|who|yesterday|today|"
                        r"earlier|last|on|about|and|but|before|regarding|over|please|again|instead|directly)\b"
                        r"|[ \t]*(?:[,.!?;\n]|$)")
PARTICLES = frozenset("van von der den de del della di da dos du la le bin binti ibn al el ter ten".split())
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_SENT_END = re.compile(r"(?:^|[.!?:;\n\"(])\s*$")
_SUFFIX_RE = re.compile(r"(?:ing|ly|ed|tion|ment|ness|able|ful|less|ies|ian|ese|ish|ern|ical)$")


def _fold(word: str) -> str:
    word = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in word if not unicodedata.combining(c)).replace("’", "'")


def _names_dir() -> str | None:
    spec = importlib.util.find_spec("names")  # locate without importing the package
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(spec.origin)


def _read_census(filename: str, min_freq: float) -> set[str]:
    folder = _names_dir()
    if folder is None:
        return set()
    out: set[str] = set()
    with open(os.path.join(folder, filename), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and float(parts[1]) >= min_freq:
                out.add(parts[0].casefold())
    return out


@lru_cache(maxsize=1)
def gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), case-folded and accent-stripped."""
    first = _read_census("dist.male.first", FIRST_MIN_FREQ) | _read_census("dist.female.first", FIRST_MIN_FREQ)
    last = _read_census("dist.all.last", LAST_MIN_FREQ)
    first |= set(_INTL_FIRST.split())
    last |= set(_INTL_LAST.split())
    return frozenset(first), frozenset(last)


class _Tok:
    __slots__ = ("text", "start", "end", "key", "cap", "first", "last")

    def __init__(self, text: str, start: int, first: frozenset[str], last: frozenset[str]):
        if text.endswith(("'s", "’s")) and len(text) > 3:
            text = text[:-2]
        self.text, self.start, self.end = text, start, start + len(text)
        self.key = _fold(text)
        flat = self.key.replace("'", "")
        self.cap = text[0].isupper()
        parts = [p for p in re.split(r"[-']", self.key) if p]
        self.first = self.key in first or (bool(parts) and parts[0] in first and all(
            p in first or p in last for p in parts))
        self.last = self.key in last or flat in last or (len(parts) > 1 and all(
            p in last or p in first or p in ("o", "mc", "mac") for p in parts))
        if re.search(r"'(?:m|t|re|ve|ll|d)$", self.key):  # I'm, don't, we've: contractions, never names
            self.cap = self.first = self.last = False

    @property
    def known(self) -> bool:
        return self.first or self.last


def _plain(tok: _Tok) -> bool:
    """Capitalised and not a common word: can be part of a name after a cue."""
    return tok.cap and len(tok.text) >= 2 and tok.key not in COMMON and (
        tok.known or not _SUFFIX_RE.search(tok.key))


def find_person_spans(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of person names in ``text``; may overlap each other."""
    first, last = gazetteer()
    toks = [_Tok(m.group(), m.start(), first, last) for m in _TOKEN_RE.finditer(text)]
    if not toks:
        return []
    at = {t.start: i for i, t in enumerate(toks)}
    spans: list[tuple[int, int, float]] = []

    def joined(i: int) -> bool:  # token i follows token i-1 with a single space
        return i > 0 and text[toks[i - 1].end:toks[i].start] == " "

    def extend(i: int, lower: bool) -> int:
        """Index one past the last token of a name starting at token i."""
        j = i + 1
        while j < len(toks) and j - i < 4 and joined(j):
            t = toks[j]
            if lower:
                if t.cap or not (t.last or t.first) or t.key in COMMON:
                    break
            elif t.key in PARTICLES and j + 1 < len(toks) and joined(j + 1) and toks[j + 1].cap:
                j += 1
                continue
            elif not (_plain(t) and (t.known or t.text[:1].isupper() and not t.text.isupper())):
                break
            j += 1
        return j

    def emit(i: int, j: int, score: float) -> None:
        if j < len(toks) and joined(j) and toks[j].key in PLACE_HEADS:  # "Lincoln Street", "Mabel Hotel"
            return
        if i > 0 and joined(i) and toks[i - 1].cap and toks[i - 1].key in PLACE_PREFIXES:  # "San Jose"
            return
        if not any(toks[k].key in PLACE_HEADS for k in range(i, j)):
            spans.append((toks[i].start, toks[j - 1].end, score))

    def after(pos: int) -> int | None:
        k = pos
        while k < len(text) and text[k] in " \t":
            k += 1
        return at.get(k)

    # 1. cues
    for m in TITLE_RE.finditer(text):
        i = after(m.end())
        if i is not None and (_plain(toks[i]) or (not toks[i].cap and toks[i].known and m.group()[0].islower())):
            emit(i, extend(i, not toks[i].cap), 0.9)
    for rx, strong in ((STRONG_CUES, True), (MEDIUM_CUES, False)):
        for m in rx.finditer(text):
            i = after(m.end())
            if i is None:
                continue
            t = toks[i]
            if t.cap:
                if not _plain(t) or t.key in GENERIC_ADDRESSEES:
                    continue
                j = extend(i, False)
                end = toks[j - 1].end
                if (strong or INTRO_HINT.match(text, end) or t.known and (
                        t.key not in AMBIGUOUS or j > i + 1 or AFTER_HINT.match(text, end))):
                    emit(i, j, 0.85 if strong else 0.75)
            elif t.first and t.key not in AMBIGUOUS and t.key not in COMMON and (
                    strong or re.match(r"(?i)my\s+name|i\s+am|i'm|im\b|this\s+is", m.group())):
                emit(i, extend(i, True), 0.7)
    for m in GREETING_RE.finditer(text):
        i = after(m.end())
        if i is not None and _plain(toks[i]) and toks[i].key not in GENERIC_ADDRESSEES:
            j = extend(i, False)
            if toks[i].known or re.match(r"[ \t]*(?:[,!:\n]|$)", text[toks[j - 1].end:]):
                emit(i, j, 0.8)
    for rx in (SIGNOFF_RE, DASH_END_RE):
        for m in rx.finditer(text):
            i = after(m.end())
            if i is None or not _plain(toks[i]) or toks[i].key in GENERIC_ADDRESSEES:
                continue
            j = extend(i, False)
            if re.match(r"[ \t]*[.!]?[ \t]*(?:\n|$)", text[toks[j - 1].end:]):
                emit(i, j, 0.8)
    # 2. full-name pairs and 3. lone unambiguous first names
    for i, t in enumerate(toks):
        if (not t.known and _plain(t) and not t.text.isupper() and i + 1 < len(toks) and joined(i + 1)
                and not _SENT_END.search(text[:t.start])):  # unknown given name + known surname
            nxt = toks[i + 1]
            if nxt.cap and nxt.last and not nxt.first and nxt.key not in COMMON and nxt.key not in AMBIGUOUS:
                emit(i, extend(i + 1, False), 0.55)
        if not (t.cap and t.first and len(t.text) >= 2) or t.key in COMMON or t.text.isupper() and len(t.text) < 3:
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) and joined(i + 1) else None
        if nxt is not None and nxt.cap and nxt.last and nxt.key not in COMMON and (
                t.key not in AMBIGUOUS or nxt.key not in AMBIGUOUS):
            emit(i, extend(i, False), 0.7)
        elif t.key not in AMBIGUOUS and len(t.text) >= 3 and not t.text.isupper():
            emit(i, extend(i, False), 0.6)
    return spans
