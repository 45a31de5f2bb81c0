"""Hone's own small synonym table, stop-word list and antonym pairs for data augmentation.

Written for hone (not copied from a thesaurus): everyday English plus the vocabulary of
telecom / customer-support messages.  Each group lists words that can stand in for one
another in a typical support message; :data:`SYNONYMS` maps every word to the others of its
groups.  Entries are lower-case base forms; :mod:`hone.data.augment` handles case and a plain
``-s`` plural.  Multi-word values ("mobile phone") are allowed, keys are single words.
"""

from __future__ import annotations

_GROUPS: tuple[tuple[str, ...], ...] = (
    # --- devices and equipment ---------------------------------------------------------
    ("phone", "mobile", "handset", "cellphone", "smartphone"),
    ("device", "gadget", "unit"),
    ("router", "modem", "hub"),
    ("sim", "sim card"),
    ("charger", "power adapter"),
    ("screen", "display"),
    ("battery", "power cell"),
    ("tablet", "ipad"),
    ("laptop", "notebook", "computer"),
    ("cable", "wire", "cord"),
    ("decoder", "set-top box"),
    # --- service and network -----------------------------------------------------------
    ("internet", "broadband", "connection", "web"),
    ("wifi", "wireless", "wi-fi"),
    ("network", "service"),
    ("signal", "reception", "coverage"),
    ("outage", "disruption", "interruption", "downtime"),
    ("speed", "bandwidth", "throughput"),
    ("data", "mobile data"),
    ("text", "sms", "message"),
    ("call", "ring"),
    ("voicemail", "answerphone"),
    ("roaming", "using my phone abroad"),
    ("abroad", "overseas"),
    ("plan", "tariff", "package", "bundle"),
    ("contract", "agreement"),
    ("subscription", "membership"),
    ("upgrade", "improvement"),
    ("installation", "setup", "set-up"),
    ("engineer", "technician"),
    ("appointment", "visit", "booking"),
    ("delivery", "shipment"),
    ("order", "purchase"),
    ("account", "profile"),
    ("password", "passcode", "pin"),
    ("login", "sign-in"),
    ("app", "application"),
    ("email", "e-mail", "mail"),
    ("website", "site", "web page"),
    # --- money -------------------------------------------------------------------------
    ("bill", "invoice", "statement"),
    ("charge", "fee", "cost"),
    ("price", "rate", "cost"),
    ("payment", "instalment"),
    ("refund", "reimbursement", "repayment"),
    ("discount", "reduction", "deal"),
    ("credit", "balance"),
    ("money", "cash", "funds"),
    ("expensive", "pricey", "costly"),
    ("cheap", "inexpensive", "affordable"),
    ("overcharged", "charged too much"),
    ("debit", "direct debit"),
    ("receipt", "proof of payment"),
    # --- problems ----------------------------------------------------------------------
    ("problem", "issue", "fault", "trouble"),
    ("error", "mistake", "glitch"),
    ("broken", "faulty", "defective", "damaged"),
    ("slow", "sluggish"),
    ("dead", "not working"),
    ("down", "offline", "unavailable"),
    ("intermittent", "patchy", "unreliable", "spotty"),
    ("bug", "glitch", "defect"),
    ("complaint", "grievance"),
    ("delay", "hold-up"),
    ("late", "overdue", "delayed"),
    ("lost", "missing"),
    ("stolen", "nicked"),
    ("wrong", "incorrect"),
    ("frozen", "stuck", "unresponsive"),
    ("disconnected", "cut off"),
    # --- actions -----------------------------------------------------------------------
    ("cancel", "terminate", "stop"),
    ("fix", "repair", "sort out", "resolve"),
    ("help", "assist", "support"),
    ("need", "require"),
    ("want", "wish", "would like"),
    ("receive", "obtain"),
    ("buy", "purchase"),
    ("send", "post", "dispatch"),
    ("change", "switch", "alter", "modify"),
    ("move", "transfer"),
    ("check", "verify", "confirm", "look into"),
    ("tell", "inform"),
    ("explain", "clarify"),
    ("ask", "enquire", "inquire"),
    ("start", "begin"),
    ("replace", "swap", "exchange"),
    ("return", "send back"),
    ("activate", "enable", "turn on"),
    ("deactivate", "disable", "turn off"),
    ("block", "stop"),
    ("unlock", "unblock"),
    ("reset", "restart", "reboot"),
    ("update", "refresh"),
    ("try", "attempt"),
    ("use", "utilise", "utilize"),
    ("pay", "settle"),
    ("contact", "reach"),
    ("call back", "ring back"),
    ("wait", "hold on"),
    ("arrive", "turn up"),
    ("complain", "object"),
    ("speak", "talk"),
    ("show", "display"),
    ("add", "include"),
    ("remove", "delete", "take off"),
    ("understand", "grasp"),
    ("expect", "anticipate"),
    # --- people and places -------------------------------------------------------------
    ("customer", "client", "subscriber"),
    ("agent", "adviser", "advisor", "representative", "rep"),
    ("manager", "supervisor"),
    ("staff", "team", "employees"),
    ("shop", "store", "branch"),
    ("home", "house"),
    ("area", "region", "neighbourhood", "location"),
    ("company", "provider", "operator", "firm"),
    # --- general -----------------------------------------------------------------------
    ("quickly", "promptly", "rapidly"),
    ("soon", "shortly"),
    ("again", "once more"),
    ("always", "constantly", "all the time"),
    ("never", "not once"),
    ("often", "frequently", "regularly"),
    ("sometimes", "occasionally", "at times"),
    ("very", "really", "extremely"),
    ("completely", "totally", "entirely"),
    ("just", "only"),
    ("also", "too", "as well"),
    ("big", "large", "huge"),
    ("small", "little", "tiny"),
    ("new", "brand-new", "latest"),
    ("old", "previous", "former"),
    ("good", "great"),
    ("bad", "poor", "terrible", "awful"),
    ("happy", "pleased", "glad"),
    ("unhappy", "dissatisfied", "displeased"),
    ("angry", "furious", "annoyed", "upset"),
    ("frustrated", "fed up", "exasperated"),
    ("worried", "concerned", "anxious"),
    ("confused", "puzzled", "unsure"),
    ("easy", "simple", "straightforward"),
    ("hard", "difficult", "tricky"),
    ("quick", "fast", "speedy", "rapid"),
    ("important", "urgent", "pressing"),
    ("correct", "right", "accurate"),
    ("enough", "sufficient"),
    ("several", "a few", "some"),
    ("many", "lots of", "plenty of"),
    ("question", "query"),
    ("answer", "reply", "response"),
    ("information", "details", "info"),
    ("reason", "cause"),
    ("month", "billing period"),
    ("option", "choice"),
    ("offer", "promotion", "deal"),
    ("request", "application"),
    ("thanks", "thank you", "cheers"),
    ("please", "kindly"),
    ("hello", "hi", "hey"),
    ("sorry", "apologies"),
    ("maybe", "perhaps", "possibly"),
    ("because", "as"),
    ("however", "but", "though"),
    ("about", "regarding", "concerning"),
    ("immediately", "right away", "at once", "straight away"),
)

# Words that are never replaced, inserted next to, or offered as a neighbour.
STOP_WORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves will just also im ive dont cant s t d ll m re ve y o
""".split())

# Pairs a static embedding puts close together although they mean the opposite: the
# neighbour method never swaps one for the other.
_ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    ("good", "bad"), ("fast", "slow"), ("quick", "slow"), ("faster", "slower"), ("high", "low"),
    ("higher", "lower"), ("up", "down"), ("on", "off"), ("open", "closed"), ("start", "stop"),
    ("start", "end"), ("begin", "end"), ("cheap", "expensive"), ("more", "less"), ("most", "least"),
    ("increase", "decrease"), ("accept", "reject"), ("activate", "deactivate"), ("enable", "disable"),
    ("connect", "disconnect"), ("connected", "disconnected"), ("working", "broken"), ("online", "offline"),
    ("always", "never"), ("yes", "no"), ("right", "wrong"), ("correct", "incorrect"), ("happy", "unhappy"),
    ("happy", "sad"), ("satisfied", "dissatisfied"), ("satisfied", "unsatisfied"), ("best", "worst"),
    ("better", "worse"), ("great", "terrible"), ("excellent", "terrible"), ("early", "late"),
    ("before", "after"), ("first", "last"), ("new", "old"), ("old", "young"), ("big", "small"),
    ("large", "small"), ("long", "short"), ("hot", "cold"), ("buy", "sell"), ("send", "receive"),
    ("incoming", "outgoing"), ("upload", "download"), ("add", "remove"), ("lock", "unlock"),
    ("block", "unblock"), ("paid", "unpaid"), ("win", "lose"), ("love", "hate"), ("like", "dislike"),
    ("possible", "impossible"), ("able", "unable"), ("valid", "invalid"), ("include", "exclude"),
    ("inside", "outside"), ("import", "export"), ("north", "south"), ("east", "west"),
    ("left", "right"), ("easy", "hard"), ("easy", "difficult"), ("strong", "weak"), ("full", "empty"),
    ("max", "min"), ("maximum", "minimum"), ("positive", "negative"), ("true", "false"),
    ("agree", "disagree"), ("allow", "deny"), ("allowed", "denied"), ("success", "failure"),
    ("pass", "fail"), ("credit", "debit"), ("profit", "loss"), ("morning", "evening"), ("day", "night"),
    ("sent", "received"), ("sent", "got"), ("gave", "took"), ("give", "take"), ("bought", "sold"),
    ("came", "went"), ("come", "go"), ("arrived", "left"), ("found", "lost"), ("find", "lose"),
    ("in", "out"), ("plus", "minus"), ("top", "bottom"), ("front", "back"), ("above", "below"),
    ("over", "under"), ("sooner", "later"), ("cheapest", "dearest"), ("fixed", "broken"),
)

# Closed word classes whose members a static embedding puts next to each other but that are
# never interchangeable (this month -> this year): the neighbour method never swaps within one.
EXCLUSIVE_SETS: tuple[frozenset[str], ...] = tuple(frozenset(s.split()) for s in (
    "second seconds minute minutes hour hours day days week weeks month months year years decade decades "
    "today tomorrow yesterday tonight weekend weekends fortnight morning afternoon evening night",
    "monday tuesday wednesday thursday friday saturday sunday",
    "january february march april may june july august september october november december",
    "zero one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
    "thousand million billion first second third fourth fifth once twice half double triple",
    "red orange yellow green blue purple pink brown black white grey gray silver gold",
    "north south east west northern southern eastern western",
    "he she him her his hers man woman men women boy girl husband wife son daughter father mother "
    "brother sister mum mom dad",
))


def _build() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for group in _GROUPS:
        for word in group:
            if " " in word:
                continue  # phrases are values only
            others = table.setdefault(word, [])
            for alt in group:
                if alt != word and alt not in others:
                    others.append(alt)
    return {k: tuple(v) for k, v in table.items()}


SYNONYMS: dict[str, tuple[str, ...]] = _build()

ANTONYMS: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in _ANTONYM_PAIRS)


def are_antonyms(a: str, b: str) -> bool:
    return frozenset((a.lower(), b.lower())) in ANTONYMS


def same_closed_class(a: str, b: str) -> bool:
    """True when both words belong to one of :data:`EXCLUSIVE_SETS` (month / year, red / blue)."""
    a, b = a.lower(), b.lower()
    return any(a in s and b in s for s in EXCLUSIVE_SETS)
