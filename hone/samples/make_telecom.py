"""Generate hone's synthetic TELECOM customer-support sample data.

    python -m hone.samples.make_telecom            # rewrite the files beside this script
    python -m hone.samples.make_telecom --check    # regenerate into a temp dir, compare bytes

Writes ``telecom_intents.jsonl`` (intent classification tickets with realistic noise),
``telecom_chats.jsonl`` (customer/agent conversations, OpenAI chat format) and ``README.md``.
Everything is seeded (default 13) and deterministic: no set iteration, no time, no hashing.
All text, names, numbers and companies are synthetic and were written for hone.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from hone.samples import _vocab as V

HERE = Path(__file__).resolve().parent
SEED = 13
INTENTS_FILE, CHATS_FILE, README_FILE = "telecom_intents.jsonl", "telecom_chats.jsonl", "README.md"
OUTPUTS = (INTENTS_FILE, CHATS_FILE, README_FILE)
RATES = {"exact_duplicate": 0.03, "near_duplicate": 0.04, "html": 0.02, "signature": 0.02,
         "mojibake": 0.01, "pii": 0.10}
N_LONG, N_CHATS, N_CHAT_NEAR_DUPS, N_CHAT_WEAK = 15, 320, 10, 14
REGISTERS = (("casual", 0.42), ("neutral", 0.36), ("formal", 0.14), ("angry", 0.08))
SLOT_RE = re.compile(r"\{(\w+)\}")


def _word_re(word: str, flags: int = re.I) -> re.Pattern[str]:
    return re.compile(r"(?<![\w'])" + re.escape(word) + r"(?![\w'])", flags)


TYPO_RES = [(_word_re(w), subs) for w, subs in V.TYPOS.items()] + [(_word_re("receiving"), ["recieving"])]
ABBREV_RES = [(_word_re(w), subs) for w, subs in V.ABBREVIATIONS.items()]
VARIANT_RES = [(_word_re(w, 0), subs) for w, subs in V.SPELLING_VARIANTS.items()]
QUESTION_WORDS = ("how", "what", "what's", "when", "why", "where", "is", "are", "can", "could", "do", "does",
                  "will", "have", "am", "which", "who")
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PII_HINT_RE = re.compile(r"\b\d{8}\b|\+\d{1,3} \d|\(555\)|07700|\b\d+ [A-Z][a-z]+ (?:Road|View|Close|Lane|Street|Avenue|Way|Hill|Row|Crescent)\b")
NEAR_SYNONYMS = [("phone", "mobile"), ("please", "pls"), ("bill", "invoice"), ("hi", "hello"),
                 ("thanks", "thank you"), ("help", "assistance"), ("since", "from"), ("again", "once more")]


# ------------------------------------------------------------------ synthetic identifiers
def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = re.sub(r"\D", "", number)
    return luhn_check_digit(digits[:-1]) == digits[-1]


IBAN_BBAN = {"GB": "AAAA" + "9" * 14, "DE": "9" * 18, "FR": "9" * 23, "ES": "9" * 20, "NL": "AAAA" + "9" * 10}


def iban_checksum_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


class Gen:
    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.people: dict[str, dict[str, str]] = {}
        self.currency = "£"

    # -------------------------------------------------------------- small helpers
    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def digits(self, n: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(n))

    def amount(self) -> str:
        v = self.rng.choice([9.99, 12.5, 14.99, 19.99, 23.4, 35, 45, 60, 87.2, 120, 249.99])
        v = round(v * self.rng.choice([1, 1, 0.5, 2]), 2)
        num = f"{v:.2f}" if v != int(v) else str(int(v))
        return f"{num} quid" if self.currency == "£" and self.rng.random() < 0.12 else f"{self.currency}{num}"

    def card(self, valid: bool = True) -> str:
        body = self.pick(["4", "51", "52", "53", "54", "55"])
        body += self.digits(15 - len(body))
        check = luhn_check_digit(body)
        if not valid:
            check = str((int(check) + 1 + self.rng.randrange(9)) % 10)
        n = body + check
        sep = self.pick([" ", " ", "-", ""])
        return sep.join(n[i:i + 4] for i in range(0, 16, 4))

    def iban(self) -> str:
        cc = self.pick(list(IBAN_BBAN))
        bban = "".join(self.pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ") if c == "A" else str(self.rng.randrange(10))
                       for c in IBAN_BBAN[cc])
        numeric = "".join(str(int(c, 36)) for c in bban + cc + "00")
        s = f"{cc}{98 - int(numeric) % 97:02d}{bban}"
        return " ".join(s[i:i + 4] for i in range(0, len(s), 4)) if self.rng.random() < 0.6 else s

    def phone(self) -> str:
        d = self.digits
        return self.pick([f"+44 7700 900{d(3)}", f"07700 900{d(3)}", f"(555) 01{d(1)}-{d(4)}",
                          f"+1 555-01{d(2)}-{d(2)}", f"+49 30 {d(4)} {d(4)}", f"+49 151 {d(8)}",
                          f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}", f"+34 6{d(2)} {d(3)} {d(3)}",
                          f"+353 87 {d(3)} {d(4)}", f"0044 7700 900 {d(3)}"])

    def ip(self) -> str:
        return self.pick(["192.168.1.254", "192.168.0.1", f"192.168.1.{self.rng.randrange(2, 250)}",
                          f"10.0.0.{self.rng.randrange(2, 250)}", f"203.0.113.{self.rng.randrange(1, 255)}",
                          f"198.51.100.{self.rng.randrange(1, 255)}"])

    def address(self) -> str:
        pc = f"{self.pick(['LS', 'M', 'BS', 'G', 'CF', 'NR', 'EX'])}{self.rng.randrange(1, 20)} " \
             f"{self.rng.randrange(1, 10)}{self.pick('ABDEFGHJLNPQRSTUWXYZ')}{self.pick('ABDEFGHJLNPQRSTUWXYZ')}"
        return f"{self.rng.randrange(1, 240)} {self.pick(V.STREETS)}, {self.pick(V.SLOTS['city'])} {pc}"

    def person(self, cid: str) -> dict[str, str]:
        if cid not in self.people:
            first, last = self.pick(V.FIRST_NAMES), self.pick(V.LAST_NAMES)
            user = self.pick([f"{first}.{last}", f"{first[0]}{last}", f"{first}{self.rng.randrange(70, 99)}"])
            self.people[cid] = {"name": f"{first} {last}", "first": first,
                                "email": f"{user.lower()}@{self.pick(V.EMAIL_DOMAINS)}",
                                "phone": self.phone(), "address": self.address(), "acct": self.digits(8)}
        return self.people[cid]

    def fill(self, template: str, who: dict[str, str] | None = None) -> str:
        def slot(m: re.Match[str]) -> str:
            k = m.group(1)
            if k in V.SLOTS:
                return self.pick(V.SLOTS[k])
            if who and k in who:
                return who[k]
            return {"amount": self.amount, "amount2": self.amount, "last4": lambda: self.digits(4),
                    "invoice": lambda: f"INV-{self.digits(7)}", "ref": lambda: f"RF{self.digits(6)}",
                    "order": lambda: self.digits(5), "ticket": lambda: self.digits(5),
                    "card": lambda: self.card(self.rng.random() < 0.8), "exp": lambda: f"{self.rng.randrange(1, 13):02d}/{self.rng.randrange(26, 31)}",
                    "iban": self.iban, "address": self.address,
                    "pac": lambda: "".join(self.pick("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3)) + self.digits(6),
                    "imei": lambda: (lambda b: b + luhn_check_digit(b))("35" + self.digits(12)), "ip": self.ip, "title": lambda: self.pick(V.JOB_TITLES),
                    "company": lambda: self.pick(V.COMPANIES)}[k]()
        return SLOT_RE.sub(slot, template)

    def swap(self, text: str, table, p: float) -> str:
        for pat, subs in table:
            text = pat.sub(lambda m: self.pick(subs) if self.rng.random() < p else m.group(0), text)
        return text

    def typos(self, text: str, k: int) -> str:
        """Misspell one occurrence of each of up to ``k`` words that have a known typo."""
        found = [(pat, subs) for pat, subs in TYPO_RES
                 if pat.search(text) and (subs != ["teh"] or self.rng.random() < 0.25)]
        for pat, subs in self.rng.sample(found, min(k, len(found))):
            hits = list(pat.finditer(text))
            m = hits[self.rng.randrange(len(hits))]
            text = text[:m.start()] + self.pick(subs) + text[m.end():]
        return text

    # -------------------------------------------------------------- one ticket
    def ticket(self, intent: str, who: dict[str, str], *, register: str | None = None, long: bool = False,
               pii: bool = False, noisy: bool = True) -> str:
        rng = self.rng
        reg = register or rng.choices([r for r, _ in REGISTERS], [w for _, w in REGISTERS])[0]
        self.currency = rng.choices(["£", "€", "$"], [0.7, 0.2, 0.1])[0]
        cores = rng.sample(V.CORE[intent], 3 if long else 1)
        body = [self.fill(c) for c in cores]
        extra = rng.sample(V.DETAILS, 2) + rng.sample(V.LONG_CONTEXT, 2) if long else \
            [self.pick(V.DETAILS)] if rng.random() < 0.35 else []
        body += [self.fill(e) for e in extra]
        if pii:
            kinds = list(V.PII_TEMPLATES)
            prefer = V.PII_FOR_INTENT.get(intent, kinds)
            chosen = [self.pick(prefer) if rng.random() < 0.7 else self.pick(kinds)
                      for _ in range(1 + int(rng.random() < 0.35))]
            for kind in dict.fromkeys(chosen):
                sent = self.fill(self.pick(V.PII_TEMPLATES[kind]), who)
                body.insert(0 if kind == "name" else len(body), sent)
        sents = [self.finish(s, reg) for s in body]
        if reg == "angry" and rng.random() < 0.5:
            sents.insert(rng.randrange(len(sents) + 1), self.pick(V.ANGRY_SHOUTS) + "!!")
        opener, closer = self.pick(V.OPENERS[reg]), self.pick(V.CLOSERS[reg])
        if noisy and reg != "formal" and rng.random() < 0.03:  # code-switched greeting / thanks
            opener, closer = (self.pick(V.CODE_SWITCH_PREFIX).strip(), closer) if rng.random() < 0.5 else \
                (opener, self.pick(V.CODE_SWITCH_SUFFIX).strip())
        if reg == "formal":
            sign = f",\n{who['name']}" if pii and closer in ("Kind regards", "Yours sincerely") else ""
            text = "\n\n".join(p for p in (opener, " ".join(sents), closer + sign) if p)
        else:
            glue = ", " if reg == "casual" and rng.random() < 0.4 else " "
            main = glue.join(sents)
            sep = " "
            if opener.endswith(","):
                sep = self.pick(["\n", "\n\n", " ", " "])
                if sep == " " and rng.random() < 0.6:
                    main = main[0].lower() + main[1:]
            text = sep.join(p for p in (opener, main) if p)
            text = " ".join(p for p in (text, closer) if p)
        if reg == "angry" and rng.random() < 0.3:
            text = text.upper()
        if not noisy:
            return self.swap(text, VARIANT_RES, 0.3)
        if reg in ("casual", "angry"):
            text = self.swap(text, ABBREV_RES, 0.45 if reg == "casual" else 0.15)
        if rng.random() < {"casual": 0.4, "neutral": 0.15, "formal": 0.03, "angry": 0.3}[reg]:
            text = self.typos(text, rng.choice([1, 1, 2, 3]))
        if reg == "casual":
            if rng.random() < 0.45:
                text = text.lower()
            text = re.sub(r"(?<![\w'])I(?=\b)", lambda m: "i" if rng.random() < 0.5 else "I", text)
        text = self.swap(text, VARIANT_RES, 0.4)
        if reg in ("casual", "angry") and rng.random() < 0.15:
            text += " " + self.pick(V.EMOJIS) * rng.choice([1, 1, 2, 3])
        return text

    def finish(self, s: str, reg: str) -> str:
        s = s.strip()
        if reg != "casual":
            s = s[0].upper() + s[1:]
        asks = {s.split(" ", 1)[0].lower(), s.rsplit(", ", 1)[-1].split(" ", 1)[0].lower()} & set(QUESTION_WORDS)
        if s[-1] not in ".?!" and "?" not in s and asks:
            s += self.pick(["?", "?", "??", ""]) if reg == "casual" else "?"
        elif s[-1] not in ".?!":
            s += {"casual": self.pick(["", "", ".", "!"]), "angry": self.pick([".", "!", "!!!"])}.get(reg, ".")
        return s

    # -------------------------------------------------------------- noise
    def near_duplicate(self, text: str) -> str:
        for _ in range(20):
            out, op = text, self.rng.randrange(5)
            if op == 0:
                out = text.rstrip(".!? ") + self.pick(["", "!", "?", "...", " !!"])
            elif op == 1:
                a, b = self.pick(NEAR_SYNONYMS)
                a, b = (a, b) if self.rng.random() < 0.5 else (b, a)
                out = _word_re(a).sub(b, text, count=1)
            elif op == 2:
                out = text + self.pick([" thanks", " pls", " thx", " (2nd message)", " Thanks again."])
            elif op == 3:
                words = text.split(" ")
                if len(words) > 6:
                    del words[self.rng.randrange(1, len(words) - 1)]
                out = " ".join(words)
            else:
                out = re.sub(r"\d", lambda m: str((int(m.group(0)) + 1) % 10), text, count=1)
            if out.strip().lower() != text.strip().lower():
                return out
        return text + " ?"

    def exact_duplicate(self, text: str) -> str:
        return self.pick([text, text, text + " ", "  " + text, text.lower(), text + "\n", text.replace(" ", "  ", 1)])

    def html(self, text: str) -> str:
        t = text.replace("&", "&amp;").replace("\n\n", "<br><br>").replace("\n", "<br>")
        t = re.sub(r"(?<=\w)'(?=\w)", lambda m: self.pick(["&#39;", "&rsquo;", "'"]), t)
        t = re.sub(r" and ", lambda m: " &amp; " if self.rng.random() < 0.5 else m.group(0), t)
        t = re.sub(r"([.!?]) ", lambda m: m.group(1) + self.pick([" ", "<br>", "<br/>", "&nbsp; "]), t)
        return self.pick(["<p>{}</p>", "<div>{}</div>", "{}<br>", "<p>{}</p>\n<p>&nbsp;</p>",
                          '<div dir="ltr">{}</div>']).format(t)

    def mojibake(self, text: str) -> str:
        t = "".join(c for c in text if ord(c) < 0x2000).replace("'", "’")
        if t.isascii():
            t += self.pick([" I don’t understand why.", " Sent from the café wifi.", " It’s been days."])
        raw = t.encode("utf-8")
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("cp1252", errors="replace")


# ------------------------------------------------------------------ datasets
def make_intents(g: Gen) -> tuple[list[dict], Counter]:
    rng = g.rng
    labels = [i for i, n in V.INTENT_COUNTS.items() for _ in range(n)]
    N = len(labels)
    by_intent: dict[str, list[int]] = {}
    for idx, lab in enumerate(labels):
        by_intent.setdefault(lab, []).append(idx)
    kind: dict[int, str] = {}  # replacement kind per row

    def take(intent: str, k: str) -> None:
        free = [i for i in by_intent[intent] if i not in kind]
        kind[g.pick(free)] = k

    for _, intent, _ in V.FOREIGN:
        take(intent, "foreign")
    for intent, _ in V.CODE_SWITCH_WHOLE:
        take(intent, "code_switch")
    for intent in V.SHORT:
        take(intent, "short")
    free = [i for i in range(N) if i not in kind]
    for k, n in (("exact_duplicate", round(N * RATES["exact_duplicate"])),
                 ("near_duplicate", round(N * RATES["near_duplicate"])), ("long", N_LONG)):
        for i in rng.sample(free, n):
            kind[i] = k
        free = [i for i in free if i not in kind]
    plain = [i for i in range(N) if kind.get(i) in (None, "long")]
    deco = {k: set(rng.sample(plain, round(N * RATES[k]))) for k in ("pii", "html", "signature", "mojibake")}

    regulars = [f"C{n}" for n in rng.sample(range(10000, 100000), 240)]
    weights = [1 / (r + 1) ** 0.8 for r in range(len(regulars))]
    fresh = iter(f"C{n}" for n in rng.sample(range(100000, 1000000), N))
    cust = [rng.choices(regulars, weights)[0] if rng.random() < 0.35 else next(fresh) for _ in range(N)]

    texts: list[str | None] = [None] * N
    foreign = iter(V.FOREIGN)
    cs = iter(V.CODE_SWITCH_WHOLE)
    shorts = {i: g.pick(s) for i, s in V.SHORT.items()}
    for i, lab in enumerate(labels):
        k, who = kind.get(i), g.person(cust[i])
        if k == "foreign":
            texts[i] = next(foreign)[2]
        elif k == "code_switch":
            texts[i] = g.fill(next(cs)[1])
        elif k == "short":
            texts[i] = shorts[lab]
        elif k in (None, "long"):
            t = g.ticket(lab, who, long=k == "long", pii=i in deco["pii"])
            if i in deco["signature"]:
                t += g.fill(g.pick(V.SIGNATURES), who)
            if i in deco["html"]:
                t = g.html(t)
            if i in deco["mojibake"]:
                t = g.mojibake(t)
            texts[i] = t
    sources = {lab: [i for i in idxs if kind.get(i) in (None, "long")] for lab, idxs in by_intent.items()}
    for i, lab in enumerate(labels):
        if kind.get(i) in ("exact_duplicate", "near_duplicate"):
            src = g.pick(sources[lab])
            if kind[i] == "exact_duplicate":
                texts[i] = g.exact_duplicate(texts[src])
                cust[i] = cust[src] if rng.random() < 0.75 else cust[i]
            else:
                texts[i] = g.near_duplicate(texts[src])
    rows = [{"text": t, "label": lab, "customer_id": c} for t, lab, c in zip(texts, labels, cust)]
    order = list(range(N))
    rng.shuffle(order)
    stats = Counter(k for k in kind.values())
    stats.update({k: len(v) for k, v in deco.items()})
    return [rows[i] for i in order], stats


def numbered(steps: list[str]) -> str:
    return "\n".join(f"{n}. {s}." for n, s in enumerate(steps, 1))


def make_chat(g: Gen, intent: str, *, exchanges: int, pii: bool, weak: bool) -> dict:
    rng, a = g.rng, V.AGENT[intent]
    who = g.person(f"chat-{rng.randrange(10**9)}")
    msgs: list[dict] = []
    if rng.random() < 0.9:
        msgs.append({"role": "system", "content": g.pick(V.SYSTEM_PROMPTS)})
    first = g.ticket(intent, who, register=g.pick(["casual", "neutral", "neutral", "formal"]), noisy=False)
    msgs.append({"role": "user", "content": first})
    request = intent in V.REQUEST_INTENTS
    apology = g.pick(V.AGENT_GREETING if request else V.AGENT_APOLOGY)
    if exchanges == 1:
        how = "Here's how:" if request else "Here's what to try:"
        reply = f"{apology} {g.fill(g.pick(a['explain']))}\n\n{how}\n{numbered(a['steps'])}\n\n{g.pick(V.AGENT_CLOSE)}"
        msgs.append({"role": "assistant", "content": reply})
        return {"messages": msgs}
    if weak:
        msgs.append({"role": "assistant", "content": g.pick(V.AGENT_WEAK), "weight": 0})
        msgs.append({"role": "user", "content": g.pick(V.USER_RETRY)})
    msgs.append({"role": "assistant", "content": f"{apology} {g.fill(g.pick(a['explain']))} {g.pick(a['ask'])}"})
    details = g.fill(g.pick(a["reply"]), who)
    if pii:
        intro = g.fill(g.pick(V.USER_DETAILS), who)
        details = f"{intro}{'' if intro[-1] in '.?!' else '.'} {details}"
    msgs.append({"role": "user", "content": details})
    thanks = f"Thanks, {who['first']}. " if pii else "Thanks for the details. "
    tail = f"\n\n{'For next time:' if request else 'If it happens again:'}\n{numbered(a['steps'][:3])}" if rng.random() < 0.5 else ""
    msgs.append({"role": "assistant", "content": f"{thanks}{g.fill(g.pick(a['resolve']))}{tail}\n\n{g.pick(V.AGENT_CLOSE)}",
                 **({"weight": 1} if weak else {})})
    if exchanges == 3 and not weak:
        msgs.append({"role": "user", "content": g.pick(V.USER_THANKS)})
        msgs.append({"role": "assistant", "content": g.pick(V.AGENT_THANKS_CLOSE)})
    return {"messages": msgs}


def make_chats(g: Gen) -> tuple[list[dict], Counter]:
    rng = g.rng
    intents = list(V.INTENT_COUNTS)
    plan = [intents[i % len(intents)] for i in range(6 * len(intents))]
    plan += rng.choices(intents, list(V.INTENT_COUNTS.values()), k=N_CHATS - len(plan))
    weak_idx = set(rng.sample(range(N_CHATS), N_CHAT_WEAK))
    convs, stats = [], Counter()
    for i, intent in enumerate(plan):
        weak = i in weak_idx
        exchanges = 2 if weak else rng.choices([1, 2, 3], [0.35, 0.45, 0.2])[0]
        pii = exchanges > 1 and rng.random() < 0.4
        convs.append(make_chat(g, intent, exchanges=exchanges, pii=pii, weak=weak))
        convs[-1]["_intent"] = intent
        who_said = " ".join(m["content"] for m in convs[-1]["messages"] if m["role"] == "user")
        stats.update({"pii": int(bool(EMAIL_RE.search(who_said) or PII_HINT_RE.search(who_said))), "weight_0": int(weak)})
    for src in rng.sample(range(N_CHATS), N_CHAT_NEAR_DUPS):
        dup = json.loads(json.dumps(convs[src]))
        first_user = next(m for m in dup["messages"] if m["role"] == "user")
        first_user["content"] = g.near_duplicate(first_user["content"])
        convs.append(dup)
    stats["near_duplicate"] = N_CHAT_NEAR_DUPS
    rng.shuffle(convs)
    out = []
    for n, c in enumerate(convs, 1):
        stats["intent:" + c.pop("_intent")] += 1
        stats[f"messages:{sum(m['role'] != 'system' for m in c['messages'])}"] += 1
        out.append({"messages": c["messages"], "conversation_id": f"conv-{n:04d}"})
    return out, stats


# ------------------------------------------------------------------ output
def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def readme(rows: list[dict], istats: Counter, chats: list[dict], cstats: Counter, seed: int) -> str:
    counts = Counter(r["label"] for r in rows)
    n = len(rows)
    table = "\n".join(f"| `{k}` | {counts[k]} | {cstats['intent:' + k]} |" for k in V.INTENT_COUNTS)
    turns = ", ".join(f"{cstats[f'messages:{k}']} with {k}" for k in (2, 4, 6))
    n_cust = len({r["customer_id"] for r in rows})
    multi = sum(1 for v in Counter(r["customer_id"] for r in rows).values() if v > 1)
    return f"""# hone sample data: telecom customer support

All text in this folder is **synthetic**: it was generated for hone by `make_telecom.py` from
templates and vocabulary written for hone (`_vocab.py`). Every name, email, phone number,
card number, IBAN, address, account number and company is invented (emails use `example.*`
domains; UK numbers use the 07700 900xxx drama range; US numbers use 555-01xx; IPs are private
or documentation ranges). Nothing was copied from a public dataset or website.

Regenerate (seed {seed}, deterministic, byte-identical on every run):

    python -m hone.samples.make_telecom            # rewrite the files here
    python -m hone.samples.make_telecom --check    # verify the committed files are up to date

## `{INTENTS_FILE}` — intent classification ({n} rows, {len(counts)} intents)

One JSON object per line: `{{"text": ..., "label": <intent>, "customer_id": "C12345"}}`.
`customer_id` is a group column: {n_cust} customers, {multi} of them with more than one ticket
(exact duplicates usually keep the same customer), for group-aware splitting.
Imbalance is deliberate: largest/smallest = {max(counts.values())}/{min(counts.values())} = {max(counts.values()) / min(counts.values()):.1f}.

| intent | tickets | chats |
|---|---|---|
{table}

Text varies in register (casual, neutral, formal letters, ALL-CAPS anger), length (1 word to
~150 words), typos ("recieve", "netwrok", "cant"), abbreviations (pls, thx, acc, asap, b/c,
mob), spelling variants ("5 G", "e-sim", "wi fi"), emojis and code-switching ("hola, mi internet
no funciona since monday"). Planted noise, so every preparation step has work to do:

| noise | rows | what it looks like |
|---|---|---|
| exact duplicates | {istats['exact_duplicate']} | same text as another row of the same intent, sometimes with extra whitespace or lower-cased |
| near duplicates | {istats['near_duplicate']} | a word swapped/removed, punctuation or a digit changed |
| HTML remnants | {istats['html']} | `<p>`, `<div>`, `<br>`, `&amp;`, `&#39;`, `&nbsp;` |
| email signatures / boilerplate | {istats['signature']} | "Sent from my iPhone", `-- ` signature blocks, confidentiality footers |
| mojibake | {istats['mojibake']} | UTF-8 read as cp1252: `donâ€™t`, `cafÃ©`, `Â£` |
| synthetic PII | {istats['pii']} | names, emails, phones (UK/US/DE/FR/ES/IE formats), card numbers (mostly Luhn-valid), IBANs (valid check digits), IPs, street addresses, account/order/ticket numbers |
| other language | {istats['foreign']} | whole ticket in Spanish, French or German |
| code-switched | {istats['code_switch']} (+ ~3% with a foreign greeting/thanks) | English mixed with Spanish/French/German |
| very short | {istats['short']} | 1-2 words ("refund??", "PAC code") |
| very long | {istats['long']} | several complaints and details in one ticket |

Signature and PII noise can overlap on one row (a signature may carry a name and phone number).

## `{CHATS_FILE}` — support conversations ({len(chats)} conversations)

OpenAI chat fine-tuning format plus an id:
`{{"messages": [{{"role": "system", ...}}, {{"role": "user", ...}}, {{"role": "assistant", ...}}], "conversation_id": "conv-0001"}}`.
Roles alternate after an optional system message (~90% have one) and every conversation ends with
the assistant. Non-system messages per conversation: {turns}. Agent replies apologise, explain
the cause, ask for details, give numbered steps and close.

- {cstats['weight_0']} conversations have a weak first agent reply marked `"weight": 0` (don't train on it)
  followed by a proper answer marked `"weight": 1`.
- {cstats['pii']} conversations contain synthetic PII (the customer gives a name, phone, email or account number).
- {cstats['near_duplicate']} conversations are near-duplicates of another (first user message slightly changed).
"""


def main(out_dir: Path | str | None = None, seed: int = SEED) -> dict[str, Path]:
    """Generate all sample files into ``out_dir`` (default: this folder); return their paths."""
    out = Path(out_dir) if out_dir is not None else HERE
    out.mkdir(parents=True, exist_ok=True)
    g = Gen(seed)
    rows, istats = make_intents(g)
    chats, cstats = make_chats(g)
    paths = {name: out / name for name in OUTPUTS}
    write_jsonl(paths[INTENTS_FILE], rows)
    write_jsonl(paths[CHATS_FILE], chats)
    paths[README_FILE].write_text(readme(rows, istats, chats, cstats, seed), encoding="utf-8", newline="\n")
    return paths


def check(seed: int = SEED) -> list[str]:
    """Names of committed files that differ from a fresh generation (empty = up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = main(tmp, seed)
        return [n for n, p in fresh.items() if not (HERE / n).exists() or (HERE / n).read_bytes() != p.read_bytes()]


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: beside this script)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args = ap.parse_args(argv)
    if args.check:
        stale = check(args.seed)
        print("up to date" if not stale else "stale: " + ", ".join(stale))
        return 1 if stale else 0
    for p in main(args.out, args.seed).values():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
