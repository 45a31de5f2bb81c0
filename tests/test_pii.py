"""PII redaction: detection per type, pseudonym consistency, idempotence, configuration, no network."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from hone.data import pii
from hone.data.pii import ENTITY_TYPES, PLACEHOLDER_RE, Redactor, redact
from hone.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ROOT / "tests" / "data" / "pii_labelled.jsonl"


@pytest.fixture(scope="module")
def red() -> Redactor:
    return Redactor()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def _eval_module():
    spec = importlib.util.spec_from_file_location("pii_eval", ROOT / "bench" / "pii_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- each type
@pytest.mark.parametrize("text, value, etype", [
    ("Send it to jane.doe+bills@example.co.uk please", "jane.doe+bills@example.co.uk", "EMAIL"),
    ("You can reach me on +44 20 7946 0958 after 5pm.", "+44 20 7946 0958", "PHONE"),
    ("Call me back at (201) 555-0123 tomorrow.", "(201) 555-0123", "PHONE"),
    ("My German number is +49 30 12345678.", "+49 30 12345678", "PHONE"),
    ("Card 4111 1111 1111 1111 was charged twice.", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("Card 5500-0000-0000-0004 was declined.", "5500-0000-0000-0004", "CREDIT_CARD"),
    ("Refund to DE89 3704 0044 0532 0130 00 please.", "DE89 3704 0044 0532 0130 00", "IBAN"),
    ("My IBAN is GB29NWBK60161331926819.", "GB29NWBK60161331926819", "IBAN"),
    ("The alert came from 86.24.113.7 last night.", "86.24.113.7", "IP_ADDRESS"),
    ("The link https://myaccount.example.com/users/jsmith shows my bills.",
     "https://myaccount.example.com/users/jsmith", "URL"),
    ("Reset via https://telco.example.com/reset?token=a8f3k29dj3k2l1m0x9z8",
     "https://telco.example.com/reset?token=a8f3k29dj3k2l1m0x9z8", "URL"),
    ("Please deliver it to 221B Baker Street, London NW1 6XE.", "221B Baker Street, London NW1 6XE", "ADDRESS"),
    ("I moved to Flat 3, 14 High St last month.", "Flat 3, 14 High St", "ADDRESS"),
    ("Meine Adresse ist Hauptstraße 5, 10115 Berlin.", "Hauptstraße 5, 10115 Berlin", "ADDRESS"),
    ("My account number is 123456789 and the debit bounced.", "123456789", "ACCOUNT_NUMBER"),
    ("I still haven't received order #A-77812.", "A-77812", "ACCOUNT_NUMBER"),
    ("Any update on ticket TCK-00123?", "TCK-00123", "ACCOUNT_NUMBER"),
    ("My payment ref: 88XK21 hasn't shown up.", "88XK21", "ACCOUNT_NUMBER"),
    ("Hi, my name is Sarah Jones and I can't log in.", "Sarah Jones", "PERSON"),
    ("Dr. Priya Raman is the account holder.", "Priya Raman", "PERSON"),
    ("I'd like to speak to Mary-Jane O'Neil.", "Mary-Jane O'Neil", "PERSON"),
    ("Thanks for your help!\n\nKind regards,\nChidi Okafor", "Chidi Okafor", "PERSON"),
    ("my name is john smith, i need to cancel", "john smith", "PERSON"),
    ("I typed my PIN 4821 three times.", "4821", "CREDENTIAL"),
    ("The OTP is 558213 but it expired.", "558213", "CREDENTIAL"),
    ("CVC2: 456 was rejected.", "456", "CREDENTIAL"),
    ("My password is hunter2. Please check.", "hunter2", "CREDENTIAL"),
    ("Login: kb_22, password: letmein", "letmein", "CREDENTIAL"),
])
def test_each_type_detected_and_replaced(red, text, value, etype):
    start = text.index(value)
    assert (start, start + len(value), etype) in red.find(text)
    out = red.redact(text)
    assert value not in out
    assert f"<{etype}_1>" in out


def test_every_entity_type_is_covered():
    assert set(ENTITY_TYPES) == {"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "URL", "ADDRESS", "DEVICE_ID",
                                 "ACCOUNT_NUMBER", "PERSON", "CREDENTIAL"}


@pytest.mark.parametrize("text", ["I forgot my PIN and need a new one.", "I entered the wrong PIN 3 times.",
                                  "My password is not working since the update.", "my password is wrong!",
                                  "Can you resend the verification code?", "Where is the 3 digit CVV?",
                                  "How do I change my password?", "The OTP never arrives.",
                                  "Version 10.2.3.4 broke my router", "firmware v10.2.3.4 is out"])
def test_keywords_without_a_secret_and_version_numbers_are_left_alone(red, text):
    assert red.redact(text) == text


def test_invalid_luhn_card_and_bad_iban_checksum_are_kept(red):
    text = "I typed 4111 1111 1111 1112 and DE89 3704 0044 0532 0130 01 but both were rejected."
    assert red.find(text) == []
    assert red.redact(text) == text


def test_non_personal_urls_and_word_numbers_are_kept(red):
    for text in ["Roaming prices are on https://www.telco.com/roaming today.",
                 "I have 5G at home and 2 lines on my plan.",
                 "Is the 20% off deal valid until the 31st? I paid £45.99 at 10:30.",
                 "Updated to iOS 17.4.1 and my Galaxy S21 5GB add-on vanished."]:
        assert red.redact(text) == text, red.find(text)


def test_common_word_names_need_context(red):
    for text in ["Will you refund me?", "May I change my payment date?", "The Grace period ended.",
                 "Bill is due on Friday.", "Mark this as urgent.", "Chase bank says it was sent.",
                 "Be frank with me.", "Summer deals look good.", "Art supplies order is pending.",
                 "tell john the bill is paid"]:
        assert red.find(text) == [], text
    assert red.redact("Thanks,\nGrace") == "Thanks,\n<PERSON_1>"
    assert red.redact("my name is Will Turner") == "my name is <PERSON_1>"
    assert red.redact("Your agent Mark said so.") == "Your agent <PERSON_1> said so."


# ---------------------------------------------------------------- pseudonyms
def test_consistency_within_scope_and_fresh_numbering_across_scopes(red):
    scope = red.scope()
    a = red.redact("Hi, I'm Sarah Jones, email sarah.j@example.com, phone +44 20 7946 0958.", scope)
    b = red.redact("Thanks Sarah. Your colleague Omar Haddad called me from 020 7946 0958.", scope)
    c = red.redact("Please copy sarah.j@example.com and omar.h@example.com.", scope)
    assert a == "Hi, I'm <PERSON_1>, email <EMAIL_1>, phone <PHONE_1>."
    assert b == "Thanks <PERSON_1>. Your colleague <PERSON_2> called me from <PHONE_1>."
    assert c == "Please copy <EMAIL_1> and <EMAIL_2>."
    other = red.redact("Omar Haddad wrote from omar.h@example.com.", red.scope())
    assert other == "<PERSON_1> wrote from <EMAIL_1>."


def test_normalization_cards_ibans(red):
    scope = red.scope()
    out = red.redact("Card 4111 1111 1111 1111, again 4111-1111-1111-1111; IBAN GB29 NWBK 6016 1331 9268 19 "
                     "or GB29NWBK60161331926819", scope)
    assert out == "Card <CREDIT_CARD_1>, again <CREDIT_CARD_1>; IBAN <IBAN_1> or <IBAN_1>"


def test_idempotent_on_labelled_set(red, rows):
    for row in rows:
        once = redact(row["text"])
        assert redact(once) == once, row["text"]


def test_placeholders_are_never_redetected(red):
    text = "<PERSON_1> called from <PHONE_2> about <ACCOUNT_NUMBER_3>. Thanks, <PERSON_1>"
    assert red.find(text) == []
    assert red.redact(text) == text


def test_numbering_avoids_existing_placeholders(red):
    out = red.redact("<PERSON_1> and <PERSON_4> met Sarah Jones; mail <EMAIL_2> or bob@example.com")
    assert out == "<PERSON_1> and <PERSON_4> met <PERSON_5>; mail <EMAIL_2> or <EMAIL_3>"
    scope = red.scope()
    red.redact("<PHONE_7> is my old number", scope)
    assert red.redact("new one: +44 20 7946 0958", scope) == "new one: <PHONE_8>"


def test_counts_increment_per_type():
    r = Redactor()
    r.redact("Email a@example.com or b@example.com, call +44 20 7946 0958. Thanks, Sarah Jones")
    assert r.counts == Counter({"EMAIL": 2, "PHONE": 1, "PERSON": 1})
    r.redact("Also c@example.com")
    assert r.counts["EMAIL"] == 3


# ---------------------------------------------------------------- configuration
def test_custom_patterns():
    r = Redactor(patterns={"ACCOUNT_NUMBER": r"\bACC-\d{6,}\b", "TICKET_ID": r"\bTCK\d{5}\b"})
    out = r.redact("ACC-1234567 opened TCK12345 and TCK12345 again")
    assert out == "<ACCOUNT_NUMBER_1> opened <TICKET_ID_1> and <TICKET_ID_1> again"
    assert r.counts["TICKET_ID"] == 2
    assert r.redact(out) == out  # custom placeholders are protected too


def test_invalid_configuration_raises_config_error():
    with pytest.raises(ConfigError, match="TICKET_ID"):
        Redactor(patterns={"TICKET_ID": r"TCK(\d{5}"})
    with pytest.raises(ConfigError, match="ticket"):
        Redactor(patterns={"ticket": r"TCK\d{5}"})
    with pytest.raises(ConfigError, match="NAME"):
        Redactor(entities=["NAME"])


def test_entity_subset():
    r = Redactor(entities=["EMAIL"])
    text = "Mail jo@example.com or call +44 20 7946 0958, Sarah Jones"
    assert r.redact(text) == "Mail <EMAIL_1> or call +44 20 7946 0958, Sarah Jones"


def test_module_redact_and_passthrough():
    assert redact("Write to jo@example.com") == "Write to <EMAIL_1>"
    assert redact("") == ""
    assert redact("nothing personal here") == "nothing personal here"


def test_no_network_access(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PII redaction tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(pii._Presidio, "_inst", None)  # rebuild the recognizers under the guard
    t0 = time.perf_counter()
    r = Redactor()
    out = r.redact("Mail jo@example.co.uk or see https://portal.example.com/profile/88231 from 10.1.2.3")
    assert out == "Mail <EMAIL_1> or see <URL_1> from <IP_ADDRESS_1>"
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- labelled set and quality floor
def test_labelled_set_shape(rows):
    counts = Counter(e["type"] for row in rows for e in row["entities"])
    assert sum(counts.values()) >= 300
    assert all(counts[t] >= 25 for t in ENTITY_TYPES), counts
    assert counts["PERSON"] >= 60 and counts["PHONE"] >= 40
    assert sum(1 for row in rows if not row["entities"]) >= 55
    for row in rows:  # offsets are real, spans trimmed and non-overlapping
        spans = sorted((e["start"], e["end"]) for e in row["entities"])
        for (s, e), nxt in zip(spans, spans[1:] + [(len(row["text"]) + 1, 0)]):
            assert 0 <= s < e <= nxt[0] and row["text"][s:e].strip() == row["text"][s:e]
        assert not PLACEHOLDER_RE.search(row["text"])


# measured with bench/pii_eval.py (see docs/PII.md) minus a small margin, so a regression fails
FLOORS = {"OVERALL": (0.97, 0.94), "PERSON": (0.97, 0.85), "PHONE": (0.97, 0.95), "EMAIL": (0.97, 0.93),
          "CREDIT_CARD": (0.97, 0.97), "IBAN": (0.97, 0.95), "IP_ADDRESS": (0.97, 0.97), "URL": (0.97, 0.95),
          "ADDRESS": (0.95, 0.95), "ACCOUNT_NUMBER": (0.95, 0.95), "CREDENTIAL": (0.97, 0.95)}


def test_quality_floor_on_labelled_set(red, rows):
    res = _eval_module().evaluate(rows, red)
    for etype, (p_min, r_min) in FLOORS.items():
        assert res[etype]["precision"] >= p_min, (etype, res[etype])
        assert res[etype]["recall"] >= r_min, (etype, res[etype])


def test_placeholder_format():
    out = redact("Sarah Jones, sarah@example.com, +44 20 7946 0958")
    assert re.fullmatch(r"<PERSON_1>, <EMAIL_1>, <PHONE_1>", out)


@pytest.mark.parametrize("text", [
    "I'd like a hotel in San Francisco", "Something around Stanford.", "The Mets play at Citi Field tonight",
    "Lincoln Financial Field, please", "The Sounders Vs Red Bulls at CenturyLink Field", "Find me a flat in San Jose",
    "Any events in Santa Rosa or Los Gatos?", "A two-bedroom at Casa Pino Condos", "Walnut Creek is fine. Bye"])
def test_places_and_venues_are_not_people(red, text):
    # SGD dialogues: 'San <PERSON_1>', 'Citi Field' and 'Stanford' were redacted as people (1,161 PERSON spans in
    # the shared SGD turns, 856 after without the place false positives; the labelled set and BANKING77 unchanged)
    assert red.redact(text) == text


def test_people_beside_places_are_still_found(red):
    assert red.redact("Transfer 500 dollars to Amir from my checking account") == (
        "Transfer 500 dollars to <PERSON_1> from my checking account")
    assert red.redact("Please send it to Maria Lopez in San Diego") == "Please send it to <PERSON_1> in San Diego"


@pytest.mark.parametrize("text, want", [
    # the city, state name, ZIP and country stayed: "<ADDRESS_1> Southwest, Washington, District of Columbia 20024, ..."
    ("740 Water Street Southwest, Washington, District of Columbia 20024, United States", "<ADDRESS_1>"),
    ("The address is 55 Oak Road South, Springfield, Illinois 62704, USA", "The address is <ADDRESS_1>"),
    ("Ship to 9 Oak Road, St. Louis, MO 63101 today", "Ship to <ADDRESS_1> today"),
    # the sentence after the city was swallowed with it: "I live at <ADDRESS_1>" with ". Thanks" gone
    ("I live at 12 Baker Street, London. Thanks for that", "I live at <ADDRESS_1>. Thanks for that"),
])
def test_whole_addresses_are_redacted_and_nothing_after_them(red, text, want):
    assert red.redact(text) == want
