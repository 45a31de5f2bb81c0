"""Write tests/data/pii_labelled.jsonl: synthetic, labelled telecom/banking support messages.

Every value is invented here (seeded), every template is hone's own.  Slots in templates are
``{SLOT}``; a slot either yields a labelled entity or a hard negative (a Luhn-invalid card, an
IBAN with a bad checksum, a non-personal URL) that must stay unlabelled.  Offsets are checked
after writing.

    python bench/make_pii_set.py            # writes tests/data/pii_labelled.jsonl
"""

from __future__ import annotations

import json
import random
import re
import string
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_labelled.jsonl"
rng = random.Random(20261121)

FIRST = """Sarah James Emily Michael Olivia Daniel Hannah David Laura Thomas Rebecca Christopher Jessica
Matthew Sophie Andrew Rachel Benjamin Natalie Jonathan Priya Rahul Ananya Mohammed Fatima Wei Hiroshi
Yuki Lukas Anna Pierre Camille Giulia Marco Sofia Javier Siobhan Aoife Kwame Ngozi Chidi Oluwaseun
Thandiwe Zeynep Mehmet Agnieszka Piotr Dmitri Svetlana Ingrid Lars Nadia Omar Leila Tariq Amara Kofi
Ravi Deepak Sneha Arjun Bartholomew Imogen Tobias Eleanor Gwendolyn Rhiannon Callum Niamh Declan
Ewan Isla Kateryna Bogdan Yusuf Soraya Anjali Vikram Chloe Lucy Oliver George Harriet""".split()
LAST = """Smith Johnson Williams Brown Jones Mitchell Turner Patel Singh Khan Nguyen Chen Wang Kim Garcia
Rodriguez Müller Schmidt Dubois Rossi O'Neil O'Brien McDonald MacLeod Murphy Kowalski Nowak Okafor
Adeyemi Mensah Haddad Hussain Raman Iyer Fernández Hoffmann Lefebvre Bianchi Andersson Nakamura Tanaka
Oyelaran Achterberg Whitfield Pemberton Abernathy Hartley Sinclair Okonkwo Mahlangu Smith-Jones
Featherstone Kaczmarek Papadopoulos Lindqvist Delacroix Ferreira Gallagher Thornton Ashworth""".split()
AMBIG = "Will May June Grace Bill Mark Art Faith Hope Joy Chase Frank Sunny Summer Rich".split()
BRANDS = "northtel skylink bluewave fibrenet telcoone greenbank mybank examplebank harbourbank novamobile".split()
CITIES_UK = [("London", "SW1A 1AA"), ("London", "NW1 6XE"), ("Manchester", "M1 1AE"), ("Leeds", "LS1 4AP"),
             ("Bristol", "BS8 1TH"), ("Cardiff", "CF10 1EP"), ("Glasgow", "G2 3BZ"), ("Edinburgh", "EH1 2NG"),
             ("Birmingham", "B33 8TH"), ("Newcastle", "NE1 7RU"), ("Croydon", "CR2 6XH")]
CITIES_US = [("Springfield", "IL", "62704"), ("Austin", "TX", "78701"), ("Portland", "OR", "97205"),
             ("Denver", "CO", "80202"), ("Columbus", "OH", "43215"), ("Madison", "WI", "53703"),
             ("Raleigh", "NC", "27601"), ("Boise", "ID", "83702"), ("Tampa", "FL", "33602")]
STREETS = "Maple Oak Elm Cedar Pine Washington Park Lake Sunset Highland Main Church Mill Willow Chestnut " \
          "Station Victoria Queens Albert Baker Kingsley Harrow Beech Rosewood".split()
SUFFIX_US = "Street St Avenue Ave Road Rd Lane Drive Dr Boulevard Blvd Court Way Place".split()
SUFFIX_UK = "Road Lane Close Crescent Gardens Street St Rd Terrace Grove Mews Avenue".split()


def pick(xs):
    return rng.choice(xs)


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


# ---------------------------------------------------------------- value generators
def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + digits(length - len(prefix) - 1)
    total = 0
    for i, d in enumerate(reversed(body)):
        v = int(d) * (2 if i % 2 == 0 else 1)
        total += v - 9 if v > 9 else v
    return body + str((10 - total % 10) % 10)


def fmt_card(num: str) -> str:
    style = rng.choice(["space", "dash", "plain", "space"])
    groups = [num[:4], num[4:10], num[10:]] if len(num) == 15 else [num[i:i + 4] for i in range(0, len(num), 4)]
    return {"space": " ".join(groups), "dash": "-".join(groups), "plain": num}[style]


def card(valid: bool = True) -> str:
    kind = rng.choice(["visa", "visa", "mc", "mc2", "amex", "disc"])
    prefix, length = {"visa": ("4", 16), "mc": (str(rng.randint(51, 55)), 16), "mc2": (str(rng.randint(2221, 2720)), 16),
                      "amex": (rng.choice(["34", "37"]), 15), "disc": ("6011", 16)}[kind]
    num = luhn_complete(prefix, length)
    if not valid:
        num = num[:-1] + str((int(num[-1]) + rng.randint(1, 9)) % 10)
    return fmt_card(num)


IBAN_BBAN = {
    "GB": lambda: "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + digits(14),
    "DE": lambda: digits(18), "ES": lambda: digits(20), "NL": lambda: rng.choice(["ABNA", "RABO", "INGB"]) + digits(10),
    "FR": lambda: digits(10) + digits(11) + digits(2), "IT": lambda: rng.choice("XYZ") + digits(10) + digits(12),
    "IE": lambda: rng.choice(["AIBK", "BOFI"]) + digits(14), "BE": lambda: digits(12),
    "CH": lambda: digits(17), "PL": lambda: digits(24),
}


def iban(valid: bool = True) -> str:
    cc = pick(list(IBAN_BBAN))
    bban = IBAN_BBAN[cc]()
    n = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    check = 98 - n % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2
        check = check if check != 98 - n % 97 else check + 1
    code = f"{cc}{check:02d}{bban}"
    return " ".join(code[i:i + 4] for i in range(0, len(code), 4)) if rng.random() < 0.6 else code


def phone() -> str:
    import phonenumbers
    from phonenumbers import PhoneNumberFormat as F
    from phonenumbers import PhoneNumberType as T

    region = pick(["US", "GB", "GB", "DE", "FR", "IN", "US", "ES", "IT", "NL", "AU", "IE", "CA"])
    kind = pick([T.MOBILE, T.FIXED_LINE])
    ex = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    nat = str(ex.national_number)
    for _ in range(200):
        cand = phonenumbers.parse("+" + str(ex.country_code) + nat[:-4] + digits(4))
        if phonenumbers.is_valid_number(cand):
            break
    else:
        cand = ex
    style = pick(["intl", "intl", "national", "e164", "custom"])
    if style == "custom" and region in ("US", "CA"):
        n = str(cand.national_number)
        return pick([f"({n[:3]}) {n[3:6]}-{n[6:]}", f"{n[:3]}.{n[3:6]}.{n[6:]}", f"+1-{n[:3]}-{n[3:6]}-{n[6:]}"])
    fmt = {"intl": F.INTERNATIONAL, "national": F.NATIONAL, "e164": F.E164, "custom": F.INTERNATIONAL}[style]
    return phonenumbers.format_number(cand, fmt)


def email() -> str:
    f, l = pick(FIRST).lower(), pick(LAST).lower().replace("'", "").replace("ü", "u").replace("á", "a")
    user = pick([f"{f}.{l}", f"{f}{l[0]}", f"{f[0]}{l}{rng.randint(1, 99)}", f"{f}_{l}", f"{f}+bills",
                 f"{l}.{f}{rng.randint(70, 99)}"])
    dom = pick(["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.fr", "web.de", "icloud.com",
                f"{pick(BRANDS)}.com", "company.co.uk", "mail.example.org", "proton.me"])
    return f"{user}@{dom}"


def ip() -> str:
    if rng.random() < 0.15:
        return pick(["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2a02:c7f:1234:5600::1"])
    if rng.random() < 0.3:
        return f"192.168.{rng.randint(0, 20)}.{rng.randint(2, 254)}"
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def token(n: int = 24) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n - 2)) + digits(1) + "x"


def user_slug() -> str:
    return pick([f"{pick(FIRST).lower()}{pick(LAST).lower()[:1]}", f"{pick(FIRST)[0].lower()}{pick(LAST).lower()}",
                 f"{pick(FIRST).lower()}.{rng.randint(10, 99)}"]).replace("'", "").replace("ü", "u")


def url() -> str:
    b = pick(BRANDS)
    return pick([f"https://myaccount.{b}.com/users/{user_slug()}", f"https://portal.{b}.co.uk/profile/{digits(6)}",
                 f"https://{b}.com/account?id={digits(8)}", f"https://www.{b}.com/reset-password?token={token()}",
                 f"https://billing.{b}.net/invoice/view?email={email().replace('@', '%40')}",
                 f"https://{b}.com/u/{user_slug()}/settings", f"http://selfcare.{b}.de/customer/{digits(7)}/bills",
                 f"https://{b}.io/verify?code={digits(6)}&uid={digits(9)}", f"www.{b}.com/members/{user_slug()}"])


def plain_url() -> str:
    b = pick(BRANDS)
    return pick([f"https://www.{b}.com/roaming", f"https://{b}.co.uk/help/apn-settings", f"www.{b}.com/5g-coverage",
                 f"https://status.{b}.com", f"https://www.{b}.com/plans?type=sim-only",
                 f"https://{b}.com/support/articles/reset-voicemail-pin"])


def uk_pc() -> str:
    return pick(CITIES_UK)[1]


def address() -> str:
    kind = pick(["us", "us", "uk", "uk", "uk", "de", "fr", "es", "it", "nl", "de"])
    if kind == "us":
        city, st, z = pick(CITIES_US)
        unit = pick(["", "", f", Apt {rng.randint(1, 30)}{pick('ABC')}", f" Suite {rng.randint(100, 900)}"])
        base = f"{rng.randint(10, 9800)} {pick(STREETS)} {pick(SUFFIX_US)}{unit}"
        return pick([f"{base}, {city}, {st} {z}", base, f"{base}, {city}"])
    if kind == "uk":
        city, pc = pick(CITIES_UK)
        street = f"{rng.randint(1, 240)}{pick(['', '', 'A', 'B'])} {pick(STREETS)} {pick(SUFFIX_UK)}"
        flat = pick(["", "", f"Flat {rng.randint(1, 12)}, "])
        return pick([f"{flat}{street}, {city} {pc}", f"{flat}{street}", f"{flat}{street}, {city}"])
    if kind == "de":
        s = pick(["Hauptstraße", "Bahnhofstraße", "Goethestraße", "Lindenweg", "Berliner Straße", "Schillerplatz",
                  "Kastanienallee"])
        city = pick(["10115 Berlin", "80331 München", "50667 Köln", "20095 Hamburg"])
        return pick([f"{s} {rng.randint(1, 120)}", f"{s} {rng.randint(1, 120)}, {city}"])
    if kind == "fr":
        return f"{rng.randint(1, 80)} {pick(['rue de la Paix', 'avenue Victor Hugo', 'boulevard Haussmann', 'rue du Commerce'])}" \
               + pick(["", ", 75002 Paris", ", 69001 Lyon"])
    if kind == "es":
        return f"{pick(['Calle Mayor', 'Avenida de la Constitución', 'Calle de Alcalá'])} {rng.randint(1, 200)}" \
               + pick(["", ", 28013 Madrid", ", 41004 Sevilla"])
    if kind == "it":
        return f"{pick(['Via Roma', 'Via Garibaldi', 'Piazza Navona', 'Corso Buenos Aires'])} {rng.randint(1, 90)}" \
               + pick(["", ", 00184 Roma", ", 20124 Milano"])
    return f"{pick(['Keizersgracht', 'Prinsengracht', 'Damstraat', 'Vondellaan'])} {rng.randint(1, 400)}" \
           + pick(["", ", 1015 CJ Amsterdam", ", 3511 LX Utrecht"])


def acc(kind: str) -> str:
    letters = string.ascii_uppercase
    return {
        "num": lambda: digits(pick([8, 9, 10, 12])),
        "order": lambda: pick([f"A-{digits(5)}", digits(7), f"ORD{digits(6)}", f"{rng.choice(letters)}{digits(6)}"]),
        "ticket": lambda: pick([f"TCK-{digits(5)}", f"INC{digits(7)}", digits(6), f"SR-{digits(4)}-{digits(3)}"]),
        "ref": lambda: pick([f"{digits(2)}{rng.choice(letters)}{rng.choice(letters)}{digits(2)}",
                             f"REF{digits(6)}", f"{rng.choice(letters)}{digits(3)}{rng.choice(letters)}{digits(2)}"]),
        "cust": lambda: pick([f"CU-{digits(6)}", digits(9), f"C{digits(8)}"]),
        "inv": lambda: f"INV-{rng.choice(['2025', '2026'])}-{digits(4)}",
    }[kind]()


def pf() -> str:
    return pick(FIRST)


def full() -> str:
    return f"{pick(FIRST)} {pick(LAST)}"


SLOTS = {  # slot -> (generator, entity type or None for an unlabelled hard negative)
    "FULL": (full, "PERSON"), "FIRST": (pf, "PERSON"), "LAST": (lambda: pick(LAST), "PERSON"),
    "full": (lambda: full().lower(), "PERSON"), "AMB": (lambda: pick(AMBIG), "PERSON"),
    "AMBFULL": (lambda: f"{pick(AMBIG)} {pick(LAST)}", "PERSON"),
    "EMAIL": (email, "EMAIL"), "PHONE": (phone, "PHONE"), "CARD": (card, "CREDIT_CARD"),
    "BADCARD": (lambda: card(False), None), "IBAN": (iban, "IBAN"), "BADIBAN": (lambda: iban(False), None),
    "IP": (ip, "IP_ADDRESS"), "URL": (url, "URL"), "PLAINURL": (plain_url, None), "ADDR": (address, "ADDRESS"),
    "PC": (uk_pc, "ADDRESS"), "ZIP": (lambda: pick(CITIES_US)[2], "ADDRESS"),
    "ACCNUM": (lambda: acc("num"), "ACCOUNT_NUMBER"), "ORDER": (lambda: acc("order"), "ACCOUNT_NUMBER"),
    "TICKET": (lambda: acc("ticket"), "ACCOUNT_NUMBER"), "REF": (lambda: acc("ref"), "ACCOUNT_NUMBER"),
    "CUST": (lambda: acc("cust"), "ACCOUNT_NUMBER"), "INV": (lambda: acc("inv"), "ACCOUNT_NUMBER"),
    "flow": (lambda: pick(FIRST).lower(), "PERSON"), "FULLUP": (lambda: full().upper(), "PERSON"),
    "LASTFIRST": (lambda: f"{pick(LAST)}, {pick(FIRST)}", "PERSON"),
    "PH00": (lambda: f"0044 20 7946 {digits(4)}", "PHONE"), "PH0": (lambda: f"+44 (0)7400 12{digits(1)} {digits(3)}", "PHONE"),
    "PHDRAMA": (lambda: f"01632 960{digits(3)}", "PHONE"), "PHIN": (lambda: f"+91-98765-{digits(5)}", "PHONE"),
    "PHUKMOB": (lambda: f"07{rng.choice('45789')}{digits(2)} {digits(6)}", "PHONE"),
    "PHDE": (lambda: f"+49 (0)30 {digits(8)}", "PHONE"),
    "ADDRH": (lambda: pick(["Apt 5, 300 W 23rd St, New York, NY 10011", "Unit 7, Riverside Business Park, Leeds LS1 4AP",
                            "14 Rue Oberkampf, 75011 Paris", "Flat 2B, 33 Queen's Road, Bristol BS8 1TH",
                            "Calle de Serrano 45, 3º B, 28001 Madrid", "77 Harbour View Road, Cork, T12 K7PX",
                            "1600 Pennsylvania Ave NW, Washington, DC 20500", "Wohnung 3, Kastanienallee 12, 10435 Berlin",
                            "9 Sandy Lane", "58 Rue de Rivoli, Paris", "Via dei Mille 8, 80121 Napoli",
                            "4/12 George Street, Sydney NSW 2000"]), "ADDRESS"),
    "ACCH": (lambda: digits(10), "ACCOUNT_NUMBER"), "SORT": (lambda: f"{digits(2)}-{digits(2)}-{digits(2)}", "ACCOUNT_NUMBER"),
    "CUSTH": (lambda: f"{digits(3)}-{digits(3)}-{digits(3)}", "ACCOUNT_NUMBER"),
    "BOOK": (lambda: "".join(rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(5)) + digits(1), "ACCOUNT_NUMBER"),
    "CASEREF": (lambda: f"CR/2026/{digits(5)}", "ACCOUNT_NUMBER"),
    "EMAILUP": (lambda: f"{pick(FIRST)[0]}.{pick(LAST).replace(chr(39), '')}@Company.CO.UK", "EMAIL"),
    "EMAILOBF": (lambda: f"{pick(FIRST).lower()} dot {pick(LAST).lower().replace(chr(39), '')} at gmail dot com", "EMAIL"),
    "URLACCT": (lambda: f"https://app.{pick(BRANDS)}.com/statements/2026/03?acct={digits(8)}", "URL"),
    "URLNOSCHEME": (lambda: f"{pick(BRANDS)}.com/profile/{user_slug()}", "URL"),
    "URLORDER": (lambda: f"https://{pick(BRANDS)}.com/track?order=A-{digits(5)}", "URL"),
    "CARDPLAIN": (lambda: luhn_complete("4", 16), "CREDIT_CARD"),
    "IBANLOW": (lambda: iban().lower(), "IBAN"),
    "IMEI": (lambda: luhn_complete("35" + digits(6), 15), "DEVICE_ID"),
    "IMEISP": (lambda: (lambda d: f"{d[:2]} {d[2:8]} {d[8:14]} {d[14]}")(luhn_complete("35" + digits(6), 15)), "DEVICE_ID"),
    "ICCID": (lambda: "8944" + digits(15), "DEVICE_ID"),
    "SERIAL": (lambda: "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3)) + digits(7), "DEVICE_ID"),
    "PHFICT": (lambda: f"+44 7700 900{digits(3)}", "PHONE"),
    "PH0044": (lambda: f"0044 7700 900 {digits(3)}", "PHONE"),
    "IPPUB": (lambda: f"86.{rng.randint(1, 250)}.{rng.randint(1, 250)}.{rng.randint(1, 250)}", "IP_ADDRESS"),
}

# (template, how many lines to make from it)
TEMPLATES = [
    # ---- people, with cues
    ("Hi, my name is {FULL} and I can't log in to my online banking.", 5),
    ("my name is {full}, i need to cancel my broadband contract", 3),
    ("Hello, this is {FIRST} from the billing team. I've applied a £10 credit to your account.", 3),
    ("I spoke to {FIRST} yesterday and was promised a callback that never came.", 3),
    ("Can I speak to {FULL} please? She handled my complaint last week.", 2),
    ("Dear Mr. {LAST}, thank you for contacting us about your roaming charges.", 3),
    ("Dr. {FULL} is the account holder, I'm her assistant.", 2),
    ("Thanks for your help!\n\nKind regards,\n{FULL}", 4),
    ("The replacement SIM arrived and works fine now. Cheers, {FIRST}", 3),
    ("The account is in the name of {FULL}.", 3),
    ("{FULL} here, my SIM stopped working after the software update.", 2),
    ("My wife {FIRST} added me as an authorised user but I can't see the statements.", 2),
    ("Please transfer me to agent {FIRST}, she already knows my case.", 2),
    ("Hi {FIRST}, your replacement card has been dispatched and should arrive in 3-5 working days.", 3),
    ("I'm {FIRST} and I've been a customer for over ten years.", 2),
    ("Ms {LAST} said the late payment fee would be refunded.", 2),
    ("Mrs. {FULL} has power of attorney over the joint account.", 2),
    ("Yesterday {FIRST} told me the upgrade would be free, but I was charged £49.", 2),
    ("Please let {FIRST} know that I've paid the outstanding balance.", 2),
    ("Hello {FIRST},\nI've reviewed your account and removed the duplicate charge.", 2),
    ("The refund was approved by {FULL} on Monday but I still don't see it.", 3),
    ("I was helped by a lovely agent called {FIRST}, please pass on my thanks.", 2),
    ("My son {FIRST} lost his phone at school, can you block the SIM?", 2),
    ("The card belongs to {FULL}, who is my business partner.", 2),
    ("Thank you {FIRST}, that solved it!", 2),
    ("I'd like to add {FULL} as a second cardholder.", 2),
    ("my name is {AMBFULL} and my direct debit failed twice this month", 2),
    ("Thanks, {AMB}", 2),
    ("Dear {AMB},\nYour complaint has been escalated to our specialist team.", 2),
    ("Your agent {AMB} said the engineer would come on Tuesday.", 2),
    ("The transfer to {FULL} is still pending after two days.", 2),
    ("Regards,\n{FIRST}", 2),
    # ---- contact details
    ("Please send the statement to {EMAIL} instead of my old address.", 5),
    ("You can reach me on {PHONE} after 5pm.", 5),
    ("Call me back on {PHONE} or email {EMAIL}, whichever is easier.", 4),
    ("My new mobile number is {PHONE}, please update my profile.", 4),
    ("I changed my email to {EMAIL} but the login still asks for the old one.", 4),
    ("Hi, {FULL} here. My number {PHONE} has no signal since Friday.", 3),
    ("Text me at {PHONE} when the engineer is on the way.", 3),
    ("The caller ID showed {PHONE} and they asked for my PIN, is that you?", 3),
    ("Can you port {PHONE} to my new contract? The PAC code expired.", 2),
    ("Contact details: {FULL}, {EMAIL}, {PHONE}", 3),
    # ---- cards and banks
    ("My card {CARD} was charged twice for the same purchase.", 6),
    ("Please block card number {CARD}, it was stolen at the station.", 4),
    ("The payment with {CARD} was declined but I have enough funds.", 3),
    ("I typed {BADCARD} and the app says the card number is invalid, is that right?", 3),
    ("Send the refund to {IBAN} please.", 6),
    ("My IBAN is {IBAN} and my salary hasn't arrived yet.", 4),
    ("The transfer to {IBAN} was returned, what happened?", 5),
    ("The form rejected {BADIBAN}, I think I copied it wrong.", 3),
    ("Is {BADIBAN} a valid account? The app says no.", 2),
    ("Refund {CARD} or pay into {IBAN}, either works for me.", 2),
    # ---- network
    ("My router's public IP is {IP} and I can't reach the VPN.", 4),
    ("The login alert came from {IP}, which isn't me.", 5),
    ("Port forwarding to {IP} stopped working after the firmware update.", 3),
    ("Someone at {IP} tried to access my account three times.", 3),
    ("Static IP {IP} was assigned but traceroute shows a different address.", 2),
    ("I have 5G at home but my modem only gets {IP} from DHCP.", 2),
    # ---- urls
    ("The link {URL} shows someone else's bills!", 5),
    ("I got an email with {URL} asking me to confirm my details, is it genuine?", 4),
    ("My profile page {URL} returns a 404 error.", 3),
    ("I followed {PLAINURL} but it doesn't mention fees. My account page is {URL}.", 4),
    ("The help page {PLAINURL} says roaming is free in the EU.", 4),
    ("Use {URL} to reset it, the link expires in 24 hours.", 3),
    # ---- addresses
    ("Please deliver the router to {ADDR}.", 6),
    ("I moved to {ADDR} last month, can you update my billing address?", 6),
    ("My address is {ADDR} but the card was sent to my old flat.", 5),
    ("i live at {low_addr} and the broadband keeps dropping", 2),
    ("My postcode is {PC}, is fibre available here?", 3),
    ("What's the coverage like in zip code {ZIP}?", 2),
    ("The statement went to {ADDR} instead of my home.", 4),
    ("Is there a store near {ADDR}? I need a new SIM today.", 3),
    ("Please send the paperwork to {pobox}, not my street address.", 2),
    # ---- account / order / ticket numbers
    ("My account number is {ACCNUM} and the direct debit bounced.", 5),
    ("I still haven't received order #{ORDER}.", 4),
    ("Any update on ticket {TICKET}? It's been a week.", 4),
    ("My payment ref: {REF} hasn't shown up.", 3),
    ("Customer ID {CUST}, please close my account.", 4),
    ("Invoice {INV} shows a charge I don't recognise.", 3),
    ("Reference number {REF} for the chargeback, please.", 3),
    ("Order number {ORDER} was delivered to the wrong house.", 3),
    ("I'm calling about case {TICKET} opened by {FULL}.", 3),
    ("Account {ACCNUM} is in the name of {FULL}, living at {ADDR}.", 3),
    # ---- mixed
    ("Hi, I'm {FULL}, my account number is {ACCNUM} and my email is {EMAIL}.", 3),
    ("Card {CARD} expired, please send the new one to {ADDR}.", 2),
    ("My name is {FULL}, phone {PHONE}, order #{ORDER}.", 3),
    ("Hi there, {FULL} from accounts here. Your ticket {TICKET} is resolved.", 2),
    # ---- more contact / payment / network / url lines
    ("I'm abroad, my roaming number is {PHONE}.", 5),
    ("Missed call from {PHONE} claiming to be your fraud team.", 6),
    ("Please add {PHONE} as the backup number for security codes.", 5),
    ("Email: {EMAIL}\nPhone: {PHONE}", 3),
    ("Could you confirm {EMAIL} is the address you have on file?", 3),
    ("The receipt went to {EMAIL}, which I no longer use.", 5),
    ("Why was {CARD} charged €12.99 for a subscription I cancelled?", 4),
    ("Is {CARD} still linked to my wallet?", 5),
    ("The shop refunded {CARD} but I paid with {BADCARD}, I think.", 2),
    ("Please use {IBAN} for the direct debit from now on.", 6),
    ("The beneficiary IBAN {IBAN} belongs to my landlord.", 3),
    ("My laptop at {IP} can't get past the captive portal.", 4),
    ("Blocked login attempt from IP address {IP}.", 5),
    ("{URL} keeps logging me out.", 5),
    ("Is {URL} a phishing link? It has my name in it.", 5),
    ("Your colleague {FULL} gave me the number {PHONE} to call.", 3),
    # ---- harder, less regular cases (written to probe the detector, not to match it)
    ("can u ask {flow} to call me back, she has my details", 2),
    ("Name on card: {FULLUP}", 2),
    ("{FIRST} called me twice today about an unpaid bill.", 2),
    ("Spoke with {FIRST} on chat, she said to email you.", 2),
    ("Is {FIRST} working today? She sorted my router last time.", 2),
    ("Transfer £200 to {FULL} for the rent.", 2),
    ("I'm trying to pay {FULL}'s phone bill.", 2),
    ("Please cancel the extra line for my daughter, {FIRST}.", 2),
    ("Account holder: {LASTFIRST}", 2),
    ("Good morning {AMB}, thanks for the quick reply.", 2),
    ("Joint account with {FULL} and {FULL}.", 2),
    ("{FULL} (my father) passed away, how do I close his account?", 2),
    ("Hey it's {FIRST} again, still no signal.", 2),
    ("The technician, {FULL}, never arrived.", 2),
    ("Please speak with my accountant Mr {FULL} about the VAT invoices.", 1),
    ("{AMB} and I share a plan, how do I split the bill?", 2),
    ("ring me on {PH00} any time", 2),
    ("My UK number is {PH0}.", 2),
    ("my landline is {PHDRAMA} if the mobile fails", 2),
    ("whatsapp: {PHIN}", 2),
    ("mob. {PHUKMOB}", 2),
    ("tel {PHDE} (office)", 2),
    ("Please update my address to {ADDRH}.", 6),
    ("Billing address: {ADDRH}", 6),
    ("acct# {ACCH}", 2),
    ("a/c {ACCH}, sort code {SORT}", 2),
    ("customer number: {CUSTH}", 2),
    ("booking ref {BOOK} for the handset repair", 2),
    ("ticket no. {TICKET} still open", 2),
    ("Your case reference is {CASEREF}.", 2),
    ("Reply to {EMAILUP} please.", 2),
    ("email me at {EMAILOBF}", 1),
    ("Statement link: {URLACCT}", 2),
    ("Go to {URLNOSCHEME} and you'll see my old address.", 2),
    ("Tracking: {URLORDER}", 2),
    ("card {CARDPLAIN} exp 12/27", 2),
    ("iban {IBANLOW}", 2),
    ("my IP is {IPPUB} if that helps", 2),
    # ---- device identifiers (IMEI passes the Luhn check, so it must not become a card)
    ("My IMEI is {IMEI}, can you check if it's blacklisted?", 6),
    ("IMEI: {IMEISP} - the phone was stolen yesterday", 4),
    ("the phone's IMEI number is {IMEI} and it's still network locked", 5),
    ("SIM card number (ICCID) {ICCID} isn't recognised by the app", 4),
    ("ICCID {ICCID}, new eSIM profile won't download", 3),
    ("Router serial number {SERIAL} (on the label underneath).", 4),
    # ---- phone numbers in fictional ranges (invalid for libphonenumber) and signatures
    ("Kind regards,\n{FULL}\nSupport Analyst\nT: {PHFICT}", 3),
    ("pls call me on {PH0044} after 5pm", 3),
    ("My mobile is {PHFICT} if you need it.", 2),
    # ---- hard negatives with some PII
    ("Will you refund me? My order #{ORDER} never came.", 2),
    ("May I ask why {FULL} was charged the roaming fee?", 2),
    ("Grace period on my bill ended, but my IBAN {IBAN} had money.", 1),
    ("Mark this as urgent please, ticket {TICKET}.", 2),
]

LOW_STREETS = ["42 oak street", "17 willow lane", "8 station road", "230 maple avenue"]

NO_PII = [
    "How do I activate international roaming before my trip?",
    "Will my contract renew automatically at the end of the year?",
    "May I change my payment date to the 15th?",
    "The grace period for late payments is how many days?",
    "My bill is higher than usual this month, can you explain why?",
    "How do I mark a transaction as fraudulent in the app?",
    "I have 2 lines on my plan and want to add a third.",
    "Is 5G available in my area yet?",
    "My phone says SIM not provisioned, what should I do?",
    "Why was my card declined at the petrol station?",
    "Can I get a refund for a cancelled direct debit?",
    "What's the daily ATM withdrawal limit?",
    "I'd like to upgrade to the Unlimited Max plan.",
    "How long does a bank transfer to Europe take?",
    "The app keeps crashing when I open the statements tab.",
    "Can I freeze my card temporarily?",
    "Why is there a £5 fee on my top-up?",
    "My broadband speed drops every evening around 8pm.",
    "How do I set up voicemail on an iPhone 15?",
    "Do you charge for transfers in euros?",
    "I was charged twice for the same coffee.",
    "Summer deals: is the 50GB offer still available?",
    "Chase bank says the transfer left on Monday, when will it arrive?",
    "Be frank with me, is this outage going to last long?",
    "I have high hopes for the new fibre plan.",
    "It's a sunny day and my signal is still terrible.",
    "Art supplies purchase shows as pending for 3 days.",
    "I'd like to pay my bill in two instalments.",
    "My exchange rate looked wrong on the 12/03 transaction.",
    "Please cancel the Netflix add-on from next month.",
    "How do I get a PUK code for my SIM?",
    "Can you explain the early termination fee?",
    "The router light is flashing orange, what does it mean?",
    "Why can't I top up with Apple Pay?",
    "I want to dispute a transaction from last week.",
    "What documents do I need to verify my identity?",
    "The contactless limit seems lower than before.",
    "My pending transaction has been stuck for 48 hours.",
    "Does the Pixel 8 Pro support Wi-Fi calling on your network?",
    "Is there a fee for receiving money from abroad?",
    "How much data is left on my 10 GB plan?",
    "I'd like to change my PIN at an ATM.",
    "The engineer never showed up between 8am and 1pm.",
    "June was the month my bill doubled.",
    "Joy of joys, the internet is down again.",
    "Faith in your service is pretty low right now.",
    "Will the price rise in April affect my plan?",
    "My card got stuck in the machine at the branch.",
    "Are virtual cards free to create?",
    "Why does my balance show a negative amount?",
    "Can I use my phone in the US without extra charges?",
    "What is the APN for mobile data?",
    "My credit limit increase request was rejected.",
    "I got a text saying my account is locked, is it real?",
    "Where can I see my PAC code?",
    "Hi team, the app shows an error 503 when I log in.",
    "Thanks, that fixed it!",
    "Hello, can you help me with a refund please?",
    "I topped up 20 pounds but only 15 arrived.",
    "Rich text messages aren't sending on my Android phone.",
    "I paid 3 bills this week and one bounced.",
    "Can I switch from prepaid to a 12 month contract?",
    "Ticket prices for the match were charged twice.",
    "In case 2 payments go through, will you refund one?",
    "With reference to my earlier email, nothing has changed.",
    "The Galaxy S21 5GB add-on isn't showing.",
    "Updated to iOS 17.4.1 and now no mobile data.",
    "I was charged £1,234.56 at 10:30am, that's wrong.",
    "Is the 20% off deal still valid until the 31st?",
    "My card ending 4242 expires 12/27.",
    "Firmware 2.4.1 broke the wifi on my router.",
    "Order of events: the app froze, then the payment failed.",
    "My account has been open for 3 years.",
    "Can I order 2 SIM cards for my kids?",
    "The engineer said case 1 is a faulty cable.",
    "Our family plan has 4 lines and 100GB shared.",
    "Street Fighter download keeps failing on mobile data.",
    "Park and ride ticket payment was declined.",
    "The Victoria line station had no signal at all.",
]


def _slot(slot: str) -> tuple[str, str | None]:
    if slot == "low_addr":
        return pick(LOW_STREETS), "ADDRESS"
    if slot == "pobox":
        return f"PO Box {digits(4)}", "ADDRESS"
    gen, etype = SLOTS[slot]
    return gen(), etype


def render(template: str, slot_value=_slot) -> tuple[str, list[dict]]:
    text, ents = "", []
    for piece in re.split(r"(\{\w+\})", template):
        m = re.fullmatch(r"\{(\w+)\}", piece)
        if not m:
            text += piece
            continue
        value, etype = slot_value(m.group(1))
        if etype:
            ents.append({"start": len(text), "end": len(text) + len(value), "type": etype})
        text += value
    return text, ents


# Secrets customers type into tickets (PINs, card security codes, one-time codes, passwords), added in session 27
# with their own generator after the rows above, which stay as they were.
crng = random.Random(20261207)
CRED_SLOTS = {
    "pin": lambda: "".join(crng.choice(string.digits) for _ in range(4)),
    "otp": lambda: "".join(crng.choice(string.digits) for _ in range(6)),
    "cvv": lambda: "".join(crng.choice(string.digits) for _ in range(3)),
    "pw": lambda: crng.choice(["tulip", "Harbour", "sunny", "Rover", "kestrel", "Maple"]) + str(crng.randint(10, 99))
    + crng.choice(["", "!", "#", "$"]),
    "pwalpha": lambda: crng.choice(["letmein", "bluebird", "Snowdrop", "quokka"]),
}
CRED_TEMPLATES = [
    ("I typed my PIN {pin} three times and now the card is blocked.", 3),
    ("my pin is {pin} can you check why the ATM refuses it", 3),
    ("The OTP is {otp} but the app says it expired.", 3),
    ("Verification code: {otp}, and it still didn't work.", 3),
    ("CVV {cvv} keeps getting rejected on the checkout page.", 3),
    ("Card ending 4411, security code {cvv}, please take the payment.", 2),
    ("My password is {pw} if you need to log in and check.", 3),
    ("Login details: user kb_22, password: {pwalpha}", 2),
    ("Memorable word is {pw} for telephone banking.", 2),
    ("Passcode {pin}, the account holder asked us to reset it.", 2),
    ("one-time passcode {otp} arrived after 20 minutes", 2),
    ("The 2FA code {otp} was sent to my old number.", 2),
]
CRED_NEGATIVES = ["I forgot my PIN and need a new one.", "The OTP never arrives on my phone.",
                  "My password is not working since the update.", "Where is the CVV on my card?",
                  "I entered the wrong PIN 3 times.", "Can you resend the verification code?",
                  "How do I change my password?", "The 3 digit security code is worn off."]


def render_credential(template: str) -> tuple[str, list[dict]]:
    return render(template, lambda slot: (CRED_SLOTS[slot](), "CREDENTIAL"))


def main() -> int:
    lines = []
    for template, n in TEMPLATES:
        lines += [render(template) for _ in range(n)]
    lines += [(t, []) for t in NO_PII]
    rng.shuffle(lines)
    cred = [render_credential(t) for t, n in CRED_TEMPLATES for _ in range(n)] + [(t, []) for t in CRED_NEGATIVES]
    crng.shuffle(cred)
    lines += cred
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for text, ents in lines:
            f.write(json.dumps({"text": text, "entities": ents}, ensure_ascii=False) + "\n")
    # verify: offsets in range, non-overlapping, no surrounding whitespace
    counts: dict[str, int] = {}
    for line in OUT.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prev = -1
        for e in sorted(row["entities"], key=lambda e: e["start"]):
            span = row["text"][e["start"]:e["end"]]
            assert span and span == span.strip() and e["start"] >= prev, (row, e)
            prev = e["end"]
            counts[e["type"]] = counts.get(e["type"], 0) + 1
    print(f"{len(lines)} lines, {sum(counts.values())} entities: {dict(sorted(counts.items()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
