"""Vocabulary and templates for :mod:`hone.samples.make_telecom`.

Every string here was written for hone; names, numbers and companies are invented.
Templates use ``{slot}`` placeholders filled from :data:`SLOTS` (or computed slots such as
``{amount}`` and ``{last4}`` that the generator fills itself).
"""

from __future__ import annotations

# Rows per intent (insertion order is the output order of the README table).
# Largest / smallest = 150 / 26 ~= 5.8, a realistic long tail.
INTENT_COUNTS: dict[str, int] = {
    "network_outage": 150, "slow_mobile_data": 140, "billing_dispute": 135,
    "unexpected_charge": 125, "router_problem": 115, "no_signal_indoor": 110,
    "plan_upgrade": 100, "payment_failed": 95, "roaming_charges": 90,
    "refund_status": 85, "account_access": 85, "cancel_contract": 80,
    "sim_swap": 75, "broadband_installation": 75, "port_in_number": 70,
    "data_allowance_topup": 70, "roaming_activation": 65, "esim_activation": 60,
    "lost_or_stolen_phone": 55, "device_unlock": 55, "plan_downgrade": 50,
    "international_calling": 45, "5g_coverage": 40, "port_out_number": 35,
    "change_billing_address": 28, "voicemail_setup": 26,
}

SLOTS: dict[str, list[str]] = {
    "device": ["iPhone 13", "iPhone 15 Pro", "iphone 12", "Galaxy S23", "Galaxy A54", "Pixel 8",
               "Pixel 7a", "Moto G84", "Redmi Note 12", "OnePlus 11", "Nokia G22", "new Samsung",
               "old iPhone", "Galaxy Z Flip", "work phone"],
    "plan": ["Unlimited Plus", "Essentials 20GB", "SIM Only 12GB", "Family Share", "Unlimited Max",
             "Basic 5GB", "Pay As You Go", "Fibre 150", "Fibre 500", "Business Pro", "Starter 8GB"],
    "day": ["monday", "Monday", "yesterday", "last week", "the weekend", "friday night", "this morning",
            "tuesday", "the 3rd", "2 days ago", "Sunday", "last night", "the 14th", "Wednesday"],
    "duration": ["3 days", "a week", "two hours", "48 hours", "nearly a month",
                 "5 days", "over a week", "2 weeks", "ages", "about an hour", "ten days"],
    "country": ["Spain", "France", "the US", "Portugal", "Italy", "Turkey", "Mexico", "Canada",
                "Greece", "Thailand", "Morocco", "Germany", "Japan", "Croatia", "the UAE", "Poland"],
    "city": ["Manchester", "Leeds", "Bristol", "Glasgow", "Cardiff", "Birmingham", "Brighton",
             "Norwich", "Sheffield", "Derby", "Swansea", "Aberdeen", "Leicester", "Exeter", "Hull"],
    "room": ["basement", "kitchen", "back bedroom", "home office", "upstairs", "garage", "living room",
             "loft", "bathroom"],
    "floor": ["ground", "2nd", "third", "10th", "top", "basement"],
    "speed": ["0.3 Mbps", "1 mbps", "under 2Mbps", "like 200kbps", "0.8mbps", "less than 1 meg",
              "0.1 Mbps", "about 500 kbps"],
    "gb": ["5GB", "10GB", "20 gigs", "50GB", "2GB", "15GB", "my allowance"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December", "last month"],
    "time": ["6pm", "8 in the evening", "midnight", "lunchtime", "7am", "about 9pm", "3 o'clock"],
    "router": ["Hub 3", "Smart Hub", "the white router", "the router you sent", "Home Hub 2",
               "my modem", "the new hub"],
    "light": ["orange light", "red light", "flashing blue light", "flashing orange light", "no lights",
              "solid red light"],
    "carrier": ["Skyline Mobile", "Orbit Telecom", "Bluewave", "my old network", "my previous provider",
                "Kestrel Mobile", "Meridian"],
    "new_carrier": ["Skyline Mobile", "Orbit Telecom", "Bluewave", "Kestrel Mobile", "Meridian", "a cheaper network"],
    "app": ["Netflix", "Spotify", "WhatsApp", "Instagram", "Google Maps", "YouTube", "the banking app",
            "TikTok", "Teams"],
    "months": ["3", "6", "9", "11", "14", "18", "20", "22"],
    "years": ["2", "5", "8", "10", "12", "15", "over 20"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "Saturday"],
    "eta": ["by 6pm today", "within 24 hours", "by tomorrow morning", "later this evening",
            "within 48 hours"],
}

CORE: dict[str, list[str]] = {
    "network_outage": [
        "no service at all since {day}, calls and data both dead",
        "is there an outage in {city}? nothing is working on my phone",
        "my whole street has lost signal since {day}, the neighbours on your network say the same",
        "my phone says SOS only and has done for {duration}",
        "is the network down? I can't make calls or send texts",
        "everything went down around {time} and there is still no service",
        "I think a mast is down near {city}, nobody here has any bars",
        "emergency calls only on my {device} since {day}, I have restarted it twice",
        "no mobile service in {city} for {duration} now, when will it be fixed",
        "your status page says no issues but there is clearly an outage in my area",
        "landline and broadband both dead since the storm on {weekday}",
        "lost all connection at {time}, my partner's phone on the same network is dead too",
    ],
    "no_signal_indoor": [
        "I get full bars outside but zero signal inside my house",
        "the signal drops to nothing as soon as I walk into the {room}",
        "calls cut out whenever I'm indoors, fine in the garden",
        "no signal inside my flat on the {floor} floor, I have to stand by the window to send a text",
        "I can't get reception in my office building, colleagues on other networks are fine",
        "is there a signal booster you can send? indoor coverage at my place is terrible",
        "do you support wifi calling? I have no signal indoors at all",
        "calls go straight to voicemail when I'm at home, no bars in the {room}",
        "new build house with thick walls, absolutely no reception indoors",
        "one bar at best inside the house and calls keep dropping",
    ],
    "5g_coverage": [
        "my {device} never shows 5G even though your map says {city} has it",
        "why does my phone keep switching between 5G and 4G",
        "I pay for 5G on {plan} but I only ever see 4G",
        "when is 5G coming to {city}?",
        "the 5G icon shows but speeds are worse than on 4G",
        "is 5G included in my plan or do I need an add-on",
        "the coverage checker says 5G is available at my postcode but I've never had it",
        "does the {device} work on your 5G network? I can't see the option in settings",
        "5G disappears the moment I go indoors, is that normal",
    ],
    "slow_mobile_data": [
        "mobile data is painfully slow, {speed} on a speed test",
        "my data has been crawling since {day}, pages won't even load",
        "4G shows full bars but nothing loads",
        "data speeds drop to nothing in the evenings",
        "have I been throttled? data has been super slow since I hit {gb}",
        "videos buffer constantly on mobile data, wifi is fine",
        "the data works but at {speed}, unusable for maps",
        "{app} won't load on mobile data, everything times out",
        "slow internet on my phone for {duration}, I already reset the network settings",
        "speed test gives {speed} download, I'm on {plan} and it used to be fast",
    ],
    "roaming_activation": [
        "I'm going to {country} on {weekday}, how do I turn on roaming",
        "I'm in {country} and my phone has no service, is roaming switched on for my account",
        "please activate roaming on my line before I travel to {country}",
        "just landed in {country} and data doesn't work, roaming is on in my settings",
        "do I need to do anything to use my phone in {country} next week",
        "apparently roaming is barred on my account, can you lift it",
        "can you add the travel pass for {country}? my trip starts on {weekday}",
        "can I use my allowance in {country} or do I have to add roaming",
    ],
    "roaming_charges": [
        "I've been charged {amount} for roaming in {country}, I thought it was included",
        "my bill shows roaming charges from my trip to {country} but I had data roaming off",
        "why was I charged daily roaming fees when I barely used my phone",
        "got a text saying I've already spent {amount} on roaming, how",
        "roaming charges of {amount} for {country}, your website says it's in the zone",
        "I was charged for roaming on a cruise ship and nobody warned me",
        "can you explain the {amount} roaming charge on my last bill",
        "my son used data abroad and now we have a {amount} bill, isn't there a cap",
    ],
    "billing_dispute": [
        "my bill this month is {amount}, normally it's {amount2}",
        "I've been billed twice for {month}",
        "I want to dispute my latest bill, the total is wrong",
        "you're still charging me the old price after I changed to {plan}",
        "I was promised a discount of {amount} a month when I signed up and it's not on the bill",
        "the price went up mid-contract without any notice",
        "I'm being charged for a line I cancelled in {month}",
        "the bill says {amount} but my contract says {amount2}, please correct it",
        "I don't agree with the charges on invoice {invoice}",
        "why has my monthly payment gone up to {amount}? nobody told me",
    ],
    "unexpected_charge": [
        "there's a {amount} charge on my bill I don't recognise",
        "what is this {amount} charge for premium services",
        "I've been charged for a subscription I never signed up to",
        "a random {amount} charge appeared on my account yesterday",
        "charged {amount} for calling a number I've never called",
        "what's the admin fee of {amount} on my bill",
        "you took {amount} from my account and nothing in my plan explains it",
        "a charge for {app} is showing on my phone bill, I didn't buy anything",
        "there's a third party charge on my bill, I want it removed and blocked",
    ],
    "payment_failed": [
        "my payment keeps failing when I try to pay my bill online",
        "the direct debit bounced but there's money in my account",
        "card declined on your app, it works everywhere else",
        "got an email saying my payment failed, but my bank shows it went out",
        "I tried to pay {amount} three times and it keeps erroring",
        "the payment page just spins then says something went wrong",
        "you've charged me a late payment fee because your system rejected my card",
        "I can't update my card details, it says payment method invalid",
    ],
    "sim_swap": [
        "I need a new SIM, mine got damaged",
        "my SIM card says invalid SIM since {day}",
        "I need a nano SIM instead of the standard one for my new {device}",
        "phone says no SIM card, I tried it in another phone and same thing",
        "can you send a replacement SIM to my address",
        "got a new phone and the old SIM doesn't fit",
        "my SIM was swapped without my permission, I didn't request it",
        "how long does a replacement SIM take to arrive",
    ],
    "lost_or_stolen_phone": [
        "my phone was stolen last night, please block the SIM",
        "I lost my phone on the train, I need to stop anyone using my number",
        "phone stolen in {city}, can you blacklist the IMEI",
        "I left my {device} in a taxi, how do I block it and get a new SIM",
        "my bag was snatched with my phone in it, please bar my line",
        "I lost my phone in {country}, I'm worried about charges",
        "is there insurance on my account? my {device} was stolen",
        "do you need a police reference? my phone was stolen on {weekday}",
    ],
    "port_in_number": [
        "I want to move my number from {carrier} to you",
        "I have my PAC code, how do I transfer my number",
        "I'm switching to you but want to keep my old number",
        "my number transfer was supposed to happen {day} and it hasn't",
        "the port in failed, it says the details don't match",
        "I've got a temporary number, when does my real number come across",
        "how long does it take to bring my number over from {carrier}",
        "the number port is stuck and I can't receive calls on either SIM",
    ],
    "port_out_number": [
        "I need my PAC code to move to another network",
        "how do I get my STAC code",
        "I'm leaving and taking my number, send me the code please",
        "I texted PAC to 65075 and got no reply",
        "my number is moving to {new_carrier}, will I be charged for the rest of the contract",
        "the code you gave me has expired, I need a new one",
        "my new provider says the port out was rejected by you",
    ],
    "plan_upgrade": [
        "I'd like to upgrade to {plan}",
        "am I eligible for an upgrade yet? my contract started {months} months ago",
        "I want more data, what's the next plan up from {plan}",
        "can I upgrade to the {device} and keep my number",
        "what upgrade deals do you have for existing customers",
        "looking to move to unlimited, how much extra a month is it",
        "I want to add a second line and upgrade mine at the same time",
        "is there an early upgrade fee? I'm {months} months into a 24 month contract",
    ],
    "plan_downgrade": [
        "I want to move to a cheaper plan",
        "can I drop down to {plan}, I don't use all my data",
        "I need to reduce my monthly bill, what's the cheapest option",
        "switch me to SIM only now that my contract is up",
        "I want to downgrade from {plan} to something smaller, is there a fee",
        "I'm only using about 3GB, why am I paying for unlimited",
        "I've lost my job and need a lower plan",
    ],
    "cancel_contract": [
        "I want to cancel my contract",
        "how much will it cost to leave early",
        "please cancel my broadband, I'm moving abroad",
        "I'm within the 14 day cooling off period and want to cancel",
        "cancel my line ending {last4} please",
        "my contract ends in {month}, how do I give notice",
        "I want to close my account, the service has been awful",
        "I need to cancel my father's account, he passed away in {month}",
    ],
    "device_unlock": [
        "how do I unlock my phone to use another network's SIM",
        "I need an unlock code for my {device}",
        "my phone says SIM not supported when I put in a foreign SIM",
        "is my {device} locked to your network",
        "I requested an unlock {duration} ago and still nothing",
        "I bought my phone outright, why is it locked",
        "my unlock request was rejected, it says device not eligible",
    ],
    "esim_activation": [
        "how do I set up an eSIM on my {device}",
        "the eSIM QR code won't scan",
        "I want to switch from a physical SIM to an eSIM",
        "I activated the eSIM but it says no service",
        "I transferred my eSIM to my new phone and now nothing works",
        "can I get an eSIM for my watch",
        "the eSIM activation has been stuck on activating for {duration}",
        "I lost the eSIM QR email, can you resend it",
    ],
    "voicemail_setup": [
        "how do I set up voicemail",
        "voicemail isn't working, calls just ring out",
        "I forgot my voicemail PIN",
        "how do I change my voicemail greeting",
        "please turn off voicemail, I never use it",
        "visual voicemail isn't showing on my {device}",
    ],
    "international_calling": [
        "how much does it cost to call {country} from my mobile",
        "calls to {country} won't connect",
        "is there an international add-on for calling {country}",
        "I was charged {amount} for calls to {country}",
        "I can't call international numbers, it says call barred",
        "what's the best bundle for calling family in {country}?",
    ],
    "data_allowance_topup": [
        "I've run out of data, how do I add more",
        "can I buy a data add-on for the rest of the month",
        "the top up didn't go through but the money left my account",
        "how do I check how much data I have left",
        "I added a {gb} booster but my data still isn't working",
        "I bought a top up of {amount} and it's not showing",
        "my data allowance finished after {duration}, something is eating it",
    ],
    "broadband_installation": [
        "when is my broadband installation",
        "the engineer didn't turn up for my installation on {weekday}",
        "I need to reschedule my fibre install",
        "I'm moving house and want broadband set up at the new address from {weekday}",
        "my install date keeps getting pushed back",
        "the engineer came but said they can't install, now what",
        "the router arrived but I have no activation date",
        "do I need to be home for the installation",
    ],
    "router_problem": [
        "my router has a {light} and no internet",
        "the wifi keeps dropping every few minutes",
        "my router keeps restarting itself",
        "the wifi signal doesn't reach upstairs",
        "broadband says connected but my devices say no internet access",
        "I can't log into the router settings page",
        "{router} showing a {light} since {day}, I've reset it already",
        "the internet drops every evening at about {time}",
        "the 5GHz network has vanished from my router",
    ],
    "refund_status": [
        "when will I get my refund",
        "you promised a refund of {amount} {duration} ago and I still haven't received it",
        "where's my refund for the overcharge",
        "the refund was approved but I haven't received it",
        "I returned my {device} {duration} ago, when do I get the money back",
        "can you check the status of my refund, reference {ref}",
        "there's a credit on my account but I want the money back on my card",
    ],
    "account_access": [
        "I can't log into my account",
        "I forgot my password and the reset email never arrives",
        "I'm locked out of the app after too many attempts",
        "I'm not receiving the verification code by text",
        "it says my email is already registered but I can't sign in",
        "I changed phone and now can't get the 2FA code",
        "the app keeps logging me out",
    ],
    "change_billing_address": [
        "I've moved, please update my billing address",
        "how do I change the address on my account",
        "my bills are still going to my old address",
        "I need to update my address but the online form won't accept my postcode",
        "change of address for invoices please",
    ],
}

# One- or two-word messages people really send.
SHORT: dict[str, list[str]] = {
    "network_outage": ["outage?", "no service", "network down??"],
    "no_signal_indoor": ["no signal", "signal indoors"],
    "slow_mobile_data": ["slow data", "data slow"],
    "roaming_activation": ["roaming?", "roaming on"],
    "billing_dispute": ["bill wrong", "overcharged"],
    "unexpected_charge": ["weird charge", "unknown charge"],
    "refund_status": ["refund??", "refund"],
    "router_problem": ["router broken", "wifi down"],
    "cancel_contract": ["cancel", "cancel pls"],
    "port_out_number": ["PAC code", "pac"],
    "account_access": ["password reset", "locked out"],
    "esim_activation": ["esim help"],
    "device_unlock": ["unlock"],
    "data_allowance_topup": ["top up", "more data"],
    "voicemail_setup": ["voicemail"],
    "5g_coverage": ["5G?"],
}

DETAILS: list[str] = [
    "I've already restarted the phone.",
    "This is the third time I've contacted you about this.",
    "I work from home so I really need this sorted.",
    "There's nothing on your status page.",
    "I've been a customer for {years} years.",
    "I tried the live chat but it kept disconnecting.",
    "I need this fixed today.",
    "The account is in my husband's name but I manage it.",
    "I've already turned it off and on again, twice.",
    "Your app just says try again later.",
    "I was on hold for 40 minutes yesterday and got cut off.",
    "Nobody in the shop could help.",
    "I'm on {plan} if that matters.",
    "Please don't tell me to restart the router again.",
    "My elderly mum relies on this phone.",
    "I've checked the settings and everything looks right.",
    "I need it for work on {weekday}.",
    "It was working fine until {day}.",
]

# Extra context for the few very long tickets.
LONG_CONTEXT: list[str] = [
    "I run a small business from home and my customers can't reach me, which is costing me money every day this goes on.",
    "I have called three times now, each time I'm told it will be sorted within 48 hours and each time nothing happens.",
    "The agent I spoke to on {day} said someone would call me back and nobody did, and the reference number they gave me doesn't work in the app.",
    "My daughter is away at university and this is the only way we stay in touch, so please understand why I'm frustrated.",
    "I have been with you for {years} years and never had a problem until now, but I'm seriously thinking about leaving when the contract ends.",
    "I've tried everything your website suggests, including resetting the network settings, taking the SIM out and putting it back, and updating the software.",
]

OPENERS: dict[str, list[str]] = {
    "casual": ["hi", "hey", "hiya", "yo", "hello", "morning", "hi there", "", "", "ok so", "hey guys",
               "um hi", "hi again"],
    "neutral": ["Hello,", "Hi,", "Good morning,", "Hi team,", "Hello there,", "", "", "Good afternoon,"],
    "formal": ["Dear Sir/Madam,\n\nI am writing to ask for your help with the following.",
               "Dear Sir or Madam,\nI am writing regarding my mobile account.",
               "To whom it may concern,",
               "Good afternoon,\n\nI would be grateful for your assistance with the matter below.",
               "Dear Customer Services,"],
    "angry": ["", "Right.", "Unbelievable.", "Again!!", "Seriously?"],
}

CLOSERS: dict[str, list[str]] = {
    "casual": ["thanks", "cheers", "thanks!!", "please help", "asap please", "", "", "ta", "thank you"],
    "neutral": ["Thanks.", "Thank you.", "Any help appreciated.", "Please advise.", "Thanks in advance.", ""],
    "formal": ["I look forward to your prompt response.\n\nYours faithfully",
               "Kind regards", "I would appreciate a reply at your earliest convenience.",
               "Many thanks in advance.", "Yours sincerely"],
    "angry": ["SORT IT OUT.", "Absolutely ridiculous.", "I want a call back TODAY.", "Worst service ever.",
              "FIX IT.", "I'm paying for a service I'm not getting!!"],
}

ANGRY_SHOUTS: list[str] = ["THIS IS RIDICULOUS", "3RD TIME I'M CONTACTING YOU", "NOBODY HELPS",
                           "I WANT THIS FIXED NOW", "UNACCEPTABLE"]

EMOJIS: list[str] = ["😡", "🙄", "😤", "🙏", "😭", "📵", "📶", "💸", "👍", "🤬", "😩", "🙂", "😅"]

# Word-level typos (regex word boundaries, case-insensitive on the key).
TYPOS: dict[str, list[str]] = {
    "receive": ["recieve"], "received": ["recieved"], "can't": ["cant", "cnt"], "service": ["srvce", "servce"],
    "network": ["netwrok", "ntwork"], "signal": ["singal", "sigal"], "account": ["acount", "accout"],
    "internet": ["intenet", "internt"], "because": ["becuase", "becasue"], "phone": ["phnoe", "fone"],
    "the": ["teh"], "really": ["realy"], "tomorrow": ["tommorow"], "connection": ["conection"],
    "address": ["adress"], "separate": ["seperate"], "charged": ["chraged"], "working": ["workin"],
    "don't": ["dont"], "I'm": ["im", "Im"], "doesn't": ["doesnt"], "won't": ["wont"],
    "I've": ["ive", "Ive"], "there's": ["theres"], "what's": ["whats"], "definitely": ["definately"],
}

ABBREVIATIONS: dict[str, list[str]] = {
    "please": ["pls", "plz"], "thanks": ["thx", "ty"], "account": ["acc"], "because": ["b/c", "cos", "bc"],
    "mobile": ["mob"], "you": ["u"], "message": ["msg"], "number": ["no.", "num"], "with": ["w/"],
    "tomorrow": ["tmrw"], "as soon as possible": ["asap"], "to be honest": ["tbh"], "people": ["ppl"],
}

SPELLING_VARIANTS: dict[str, list[str]] = {
    "5G": ["5 G", "5g", "5G"], "4G": ["4 G", "4g", "4G"], "eSIM": ["e-sim", "esim", "E-SIM", "eSim"],
    "wifi": ["wi fi", "WiFi", "wi-fi", "Wifi"], "SIM": ["sim", "Sim"],
}

# Phrases mixed into otherwise English tickets (code-switching).
CODE_SWITCH_PREFIX: list[str] = ["hola, ", "hola! ", "bonjour, ", "hallo, ", "buenas, ", "salut, "]
CODE_SWITCH_SUFFIX: list[str] = [" gracias", " por favor", " merci", " merci beaucoup", " danke",
                                 " bitte", " vielen Dank", " s'il vous plaît"]
CODE_SWITCH_WHOLE: list[tuple[str, str]] = [
    ("network_outage", "hola, mi internet no funciona since {day}, no signal at all en mi casa"),
    ("router_problem", "bonjour, le wifi ne marche pas since {day}, router shows a {light}"),
    ("slow_mobile_data", "hallo, my data is so langsam since {day}, nothing loads"),
    ("roaming_activation", "hola, voy a {country} next week, necesito roaming on my line por favor"),
    ("billing_dispute", "bonjour, my facture is {amount} this month, c'est pas normal"),
    ("no_signal_indoor", "no tengo señal inside the house, only in the garden"),
]

# Whole tickets in another language (~0.5% of rows, for the language filter).
FOREIGN: list[tuple[str, str, str]] = [
    ("es", "network_outage", "Hola, desde ayer no tengo señal en casa y no puedo hacer llamadas. ¿Hay alguna avería en mi zona?"),
    ("es", "billing_dispute", "Me han cobrado dos veces la factura de este mes. Quiero que me devuelvan el dinero cuanto antes."),
    ("es", "roaming_activation", "Viajo a Francia la semana que viene y quiero activar la itinerancia. ¿Cómo lo hago?"),
    ("es", "account_access", "No puedo entrar en mi cuenta, la contraseña no funciona y no me llega el código por SMS."),
    ("fr", "slow_mobile_data", "Bonjour, mes données mobiles sont très lentes depuis trois jours, c'est inutilisable le soir."),
    ("fr", "cancel_contract", "Je souhaite résilier mon contrat. Pouvez-vous m'indiquer la marche à suivre et les frais éventuels ?"),
    ("fr", "lost_or_stolen_phone", "On m'a volé mon téléphone hier soir dans le métro, merci de bloquer ma carte SIM au plus vite."),
    ("fr", "payment_failed", "Le paiement de ma facture a été refusé alors que ma carte bancaire est valide. Que dois-je faire ?"),
    ("de", "router_problem", "Guten Tag, mein Router blinkt seit heute Morgen rot und das WLAN funktioniert nicht mehr."),
    ("de", "port_in_number", "Ich möchte meine Rufnummer von meinem alten Anbieter zu Ihnen mitnehmen. Was brauche ich dafür?"),
    ("de", "unexpected_charge", "Auf meiner letzten Rechnung steht eine Gebühr von 19,99 €, die ich nicht kenne. Bitte um Erklärung."),
]

# ------------------------------------------------------------------ synthetic identities
FIRST_NAMES: list[str] = ["Priya", "Tom", "Aisha", "Daniel", "Marta", "Kwame", "Sophie", "Liam", "Chen",
                          "Fatima", "Oliver", "Grace", "Mateo", "Hannah", "Ravi", "Ewa", "Jamal", "Niamh",
                          "Lucas", "Yuki", "Omar", "Isla", "Bogdan", "Chloe", "Arjun", "Leah", "Tariq",
                          "Freya", "Dmitri", "Ana"]
LAST_NAMES: list[str] = ["Shah", "Whitfield", "Okafor", "Brennan", "Kowalczyk", "Mensah", "Durand",
                         "Gallagher", "Huang", "Rahman", "Pemberton", "Adeyemi", "Ferreira", "Lindqvist",
                         "Nair", "Novak", "Haddad", "Byrne", "Moreau", "Tanaka", "Castillo", "Fairbairn",
                         "Petrescu", "Abbott", "Iyer", "Sandoval", "Quinlan", "Holm", "Varga", "Ellery"]
EMAIL_DOMAINS: list[str] = ["example.com", "example.org", "example.net", "mail.example.com",
                            "inbox.example.org"]
STREETS: list[str] = ["Elmfield Road", "Harbour View", "Cedar Close", "Mill Lane", "Station Street",
                      "Ashgrove Avenue", "Kingfisher Way", "Quarry Hill", "Orchard Row", "Bell Street",
                      "Maple Crescent", "Wharf Road"]
COMPANIES: list[str] = ["Halden Logistics Ltd", "Brightwater Consulting", "Norland Foods plc",
                        "Corvid Analytics", "Tamsin & Rowe LLP"]
JOB_TITLES: list[str] = ["Senior Analyst", "Office Manager", "Operations Lead", "Account Director",
                         "Finance Assistant", "Head of IT"]

# Sentences that carry PII; {x} slots are filled by the generator with synthetic values.
PII_TEMPLATES: dict[str, list[str]] = {
    "name": ["My name is {name}.", "this is {name} btw", "Account holder: {name}.",
             "It's {name} here."],
    "email": ["you can reach me at {email}", "my login email is {email}.", "Email me on {email} please.",
              "send the confirmation to {email}"],
    "phone": ["my number is {phone}", "call me back on {phone}", "the affected number is {phone}.",
              "Best number to reach me: {phone}"],
    "card": ["I paid with card {card} exp {exp}.", "card no {card}", "the card I'm using is {card}",
             "it was taken from my card {card}"],
    "iban": ["please refund to IBAN {iban}", "my direct debit comes from {iban}.",
             "bank details: {iban}"],
    "ip": ["my router IP is {ip}", "the public ip shows as {ip}", "gateway {ip} won't load"],
    "address": ["I live at {address}.", "install address: {address}", "new address is {address}.",
                "the address on file should be {address}"],
    "account": ["acc no {acct}", "account number {acct}.", "order #A-{order}", "ticket TCK-{ticket}",
                "my ref is {acct}", "customer no. {acct}"],
}
PII_FOR_INTENT: dict[str, list[str]] = {  # kinds most natural for an intent (others still possible)
    "payment_failed": ["card", "account"], "refund_status": ["iban", "card", "account"],
    "billing_dispute": ["account", "iban"], "unexpected_charge": ["account", "card"],
    "router_problem": ["ip", "account"], "broadband_installation": ["address", "phone"],
    "change_billing_address": ["address", "account"], "account_access": ["email", "phone"],
    "sim_swap": ["address", "phone"], "lost_or_stolen_phone": ["phone", "name"],
    "port_in_number": ["phone", "account"], "port_out_number": ["phone"],
}

SIGNATURES: list[str] = [
    "\n\nSent from my iPhone",
    "\n\nSent from my Galaxy",
    "\n\nGet Outlook for Android",
    "\n\n-- \n{name}\n{title}\n{company}",
    "\n\nKind regards,\n{name}\n{title} | {company}\nT: {phone}",
    "\n\nThis email and any attachments are confidential and intended solely for the addressee. "
    "If you have received it in error please notify the sender and delete it.",
    "\n\n{name}\n\nPlease consider the environment before printing this email.",
]

# ------------------------------------------------------------------ agent side (chats)
SYSTEM_PROMPTS: list[str] = [
    "You are a helpful support agent for Telco, a mobile and home broadband provider. "
    "Be friendly, concise and accurate, and never ask for full card numbers or passwords.",
    "You are a helpful support agent for Telco. Apologise when something has gone wrong, explain the "
    "cause in plain words, give clear numbered steps and check whether the customer needs anything else.",
    "You are a helpful support agent for Telco's customer care team. Keep answers short and practical.",
]

# Intents that are requests rather than faults: the agent greets instead of apologising.
REQUEST_INTENTS: tuple[str, ...] = ("roaming_activation", "plan_upgrade", "plan_downgrade", "cancel_contract",
                                    "port_in_number", "port_out_number", "esim_activation", "voicemail_setup",
                                    "international_calling", "data_allowance_topup", "change_billing_address",
                                    "5g_coverage", "device_unlock")
AGENT_GREETING: list[str] = ["Happy to help with that.", "Thanks for getting in touch.", "Sure, I can help with that.",
                             "Thanks for reaching out."]
AGENT_APOLOGY: list[str] = ["I'm sorry about this.", "Sorry for the trouble.", "I'm sorry to hear that.",
                            "Apologies for the inconvenience.", "Thanks for letting us know, and sorry about this."]
AGENT_CLOSE: list[str] = ["Is there anything else I can help with today?",
                          "Let me know if there's anything else I can do.",
                          "If anything else comes up, just reply here.",
                          "Is there anything else I can help you with?"]
AGENT_THANKS_CLOSE: list[str] = ["You're welcome! Have a good day.", "Glad that's sorted. Take care!",
                                 "Happy to help. Have a great evening.", "Great news, thanks for your patience."]
AGENT_WEAK: list[str] = ["Have you tried turning it off and on again?", "Please restart your device.",
                         "Please check our website for more information.", "Can you try again later?"]
USER_DETAILS: list[str] = ["Sure, it's {name}, account number {acct}.", "Name is {name}, the number is {phone}.",
                           "{name}. Account {acct}, email {email}.", "it's {name}, mob {phone}",
                           "Account number is {acct}.", "sure, acc {acct}", "This is {name}, {phone}."]
USER_RETRY: list[str] = ["I already did that, it didn't help.", "done that twice already",
                         "Yes, I've tried that. Still the same."]
USER_THANKS: list[str] = ["That worked, thank you!", "ok great, thanks", "Perfect, thanks for your help.",
                          "brilliant, cheers", "Thanks, that's all for now."]

AGENT: dict[str, dict[str, list[str]]] = {
    "network_outage": {
        "reply": ["It's both calls and data, I'm in {city}.", "Postcode is in {city} centre, nothing works at all since {day}."],
        "explain": ["There is an open incident affecting mobile service in some areas, and engineers are working on it; the current estimate for a fix is {eta}."],
        "ask": ["Could you tell me the postcode where you're having the problem, and whether calls, data or both are affected?"],
        "steps": ["Switch airplane mode on for 30 seconds, then off", "Check that Settings > Mobile network > Network selection is set to automatic", "If you have wifi, turn on wifi calling so calls and texts still work"],
        "resolve": ["I've checked your area and a nearby mast has a power fault. I've linked your number to the incident, so you'll get a text as soon as service is back, and I've added a credit for the days without service."],
    },
    "no_signal_indoor": {
        "reply": ["It's a {device}. Not sure about wifi calling, how do I check?", "{device}, and no, wifi calling is off I think."],
        "explain": ["Thick walls, insulated glass and basements can block mobile signal indoors even when coverage outside is good."],
        "ask": ["Which phone model do you have, and is wifi calling switched on?"],
        "steps": ["Open Settings > Phone (or Connections) and turn on wifi calling", "Make sure your phone software is up to date", "Restart the phone once after enabling it"],
        "resolve": ["Your phone and plan both support wifi calling, and I've activated it on your line from our side. Calls and texts will now go over your home wifi when mobile signal is weak."],
    },
    "5g_coverage": {
        "reply": ["It's a {device}, and I'm checking my home postcode in {city}.", "{device}. I'm in {city}."],
        "explain": ["5G coverage depends on both your location and your phone, and the phone will drop back to 4G when the 5G signal is weaker than 4G."],
        "ask": ["Which handset are you using, and what postcode are you checking?"],
        "steps": ["Go to Settings > Mobile data > Voice & data and choose 5G Auto or 5G On", "Confirm 5G is included on your plan in the app under My plan", "Restart the phone to pick up the new setting"],
        "resolve": ["5G is included on your plan, and your postcode shows outdoor 5G coverage. Indoors the phone will often use 4G instead, which is expected. I've also refreshed the 5G setting on your line."],
    },
    "slow_mobile_data": {
        "reply": ["Mostly at home in {city}, it started {day}.", "Everywhere really, since {day}. Speed test says {speed}."],
        "explain": ["Slow data is usually caused by local congestion, a reached fair-use limit, or old network settings on the phone."],
        "ask": ["Where are you seeing the slow speeds, and roughly when did it start?"],
        "steps": ["Check in the app whether you've used your full data allowance this month", "Reset network settings (Settings > General > Reset > Reset Network Settings)", "Check that the APN is set to 'telco.internet'", "Run a speed test in a different location to compare"],
        "resolve": ["There's no fault on your line, but the cell near you has been very busy in the evenings. We're adding capacity there this month. In the meantime I've refreshed your data connection, which often helps."],
    },
    "roaming_activation": {
        "reply": ["{country}, flying out on {weekday} for {duration}.", "Going to {country} from {weekday}."],
        "explain": ["Roaming is switched off by default on some accounts to protect against unexpected charges, so it may need turning on before you travel."],
        "ask": ["Which country are you travelling to, and on what dates?"],
        "steps": ["Turn on Data Roaming in your phone settings", "Restart the phone after you land so it registers on a local network", "If it doesn't connect, choose a partner network manually under Network selection"],
        "resolve": ["I've switched roaming on for your number. Your destination is in our travel zone, so your UK allowance works there at no extra cost. You'll get a welcome text when you arrive."],
    },
    "roaming_charges": {
        "reply": ["I was in {country} for a week, the charge is {amount}.", "Away from the 3rd to the 10th, charged {amount}."],
        "explain": ["Roaming charges can appear when a country is outside your travel zone, or when the phone connects to a ship or aircraft network, which is charged separately."],
        "ask": ["Could you tell me the dates you were away and the amount you're querying?"],
        "steps": ["Check the itemised bill in the app under Bills > Roaming", "Set a spending cap in the app to avoid future surprises", "Turn off Data Roaming when you're on a ship or plane"],
        "resolve": ["I can see the charges came from a maritime network, which isn't covered by the travel zone. As this is the first time it's happened, I've refunded the charges as a goodwill credit on your next bill."],
    },
    "billing_dispute": {
        "reply": ["It's the latest bill, {amount} instead of the usual {amount2}.", "The {month} bill please."],
        "explain": ["Differences in a bill usually come from a price change, a partial month after a plan change, or a discount that wasn't applied."],
        "ask": ["Could you confirm your account number and which bill you'd like me to look at?"],
        "steps": ["Open the bill in the app and compare the line items with last month", "Look for a part-month charge if you changed plan recently", "Reply here with the items you think are wrong"],
        "resolve": ["I've gone through the bill: the discount you were promised wasn't applied. I've added it back from the start of the contract and credited the difference, which will show on your next bill."],
    },
    "unexpected_charge": {
        "reply": ["{amount} on the 12th.", "It's {amount}, taken {day}."],
        "explain": ["Unrecognised charges are often third-party subscriptions or premium-rate services that were billed to your phone number."],
        "ask": ["Could you tell me the amount and the date of the charge?"],
        "steps": ["Check Bills > Itemised charges in the app for the provider name", "Block premium-rate and third-party charges under Settings > Spend controls", "Cancel any subscription you don't recognise with the provider"],
        "resolve": ["The charge was from a third-party subscription billed to your number. I've cancelled it, refunded the amount and put a block on third-party charges so it can't happen again."],
    },
    "payment_failed": {
        "reply": ["I tried {day} with my debit card.", "This morning, through the app, with a credit card."],
        "explain": ["Payments usually fail because of a card security check, an expired card, or a mismatch in the billing address."],
        "ask": ["When did you try to pay, and which payment method were you using? Please don't send the full card number."],
        "steps": ["Check the expiry date and billing address saved in the app", "Approve the payment in your banking app if it asks for verification", "Try again, or pay by bank transfer using the details on your bill"],
        "resolve": ["I can see the payment was declined by the bank's security check. I've removed the late payment fee and extended your due date by seven days, so you can try again without any penalty."],
    },
    "sim_swap": {
        "reply": ["Same address as on the account please.", "Please send it to the address you have on file."],
        "explain": ["A damaged or old SIM can stop being recognised; a free replacement keeps your number and plan."],
        "ask": ["Could you confirm the delivery address and the number the SIM is for?"],
        "steps": ["When the new SIM arrives, text ACTIVATE to 5050 from any phone", "Power off, insert the new SIM and switch back on", "Your old SIM stops working once the new one is active"],
        "resolve": ["I've ordered a replacement SIM to the address on your account. It should arrive in 1-2 working days and your number, plan and balance will stay the same."],
    },
    "lost_or_stolen_phone": {
        "reply": ["I last had it {day} in {city}.", "It was taken {day}, about 8pm."],
        "explain": ["We can bar your SIM straight away so nobody can use your number or run up charges."],
        "ask": ["Can you confirm the number and when you last had the phone?"],
        "steps": ["Report the theft to the police and note the reference", "Change passwords for your email and banking apps", "Use Find My iPhone or Find My Device to lock or wipe the handset"],
        "resolve": ["I've barred the SIM and blocked the handset's IMEI, so it can't be used on any UK network. A replacement SIM with your number is on its way, and there are no charges after the time you reported it."],
    },
    "port_in_number": {
        "reply": ["The PAC is {pac}, coming from {carrier}.", "Code is {pac}."],
        "explain": ["Bringing your number over uses a PAC code from your old provider; the switch normally completes the next working day."],
        "ask": ["Could you give me the number you're bringing across and the PAC code?"],
        "steps": ["Text PAC to 65075 from your old SIM to get the code", "Enter the code in our app under Keep my number", "Keep your old SIM in the phone until the switch completes"],
        "resolve": ["The PAC code is valid and I've booked the transfer for tomorrow. Your temporary number will be replaced by your own number during the day; you may lose service for up to an hour while it moves."],
    },
    "port_out_number": {
        "reply": ["It's the number on this account, the main line.", "The main number on the account please."],
        "explain": ["You can request a PAC code to move your number, or a STAC code if you want a new number. Both are valid for 30 days."],
        "ask": ["Can you confirm the number you want to move?"],
        "steps": ["Text PAC to 65075 (or STAC to 75075)", "Give the code to your new provider within 30 days", "Your service with us ends automatically once the number moves"],
        "resolve": ["I've issued a new PAC code; you'll receive it by text in the next few minutes. Any remaining contract charges are shown in the same text so there are no surprises."],
    },
    "plan_upgrade": {
        "reply": ["Thinking about {plan}, or the {device} if it's a good deal.", "{plan} please."],
        "explain": ["Existing customers can upgrade from month 21 of a 24-month contract without a fee, and earlier with a small early upgrade fee."],
        "ask": ["Which plan or phone are you interested in?"],
        "steps": ["Open My plan > Upgrade in the app to see your personal offers", "Compare the monthly price with your current plan", "Confirm, and the new plan starts on your next bill date"],
        "resolve": ["You're eligible now with no early upgrade fee. I've applied the new plan from your next bill date and your number stays the same."],
    },
    "plan_downgrade": {
        "reply": ["Honestly about 3GB a month.", "Less than 5GB most months."],
        "explain": ["You can move to a smaller plan at the end of your minimum term at no cost, or on a rolling plan at any time."],
        "ask": ["How much data do you usually use in a month?"],
        "steps": ["Check your average usage in the app under Usage", "Pick a plan a little above that amount", "The change takes effect from your next bill date"],
        "resolve": ["Your minimum term has ended, so I've moved you to the smaller plan from your next bill. That saves you money each month and there's no fee for the change."],
    },
    "cancel_contract": {
        "reply": ["It's the broadband and the mobile line.", "Just the mobile line please."],
        "explain": ["You can cancel at any time; if you're still in your minimum term there may be an early termination charge for the remaining months."],
        "ask": ["Could you confirm the account holder's name and the number or service you'd like to cancel?"],
        "steps": ["If you want to keep your number, request a PAC code first", "Return any rented equipment such as a router within 30 days", "Your final bill will show any remaining charges"],
        "resolve": ["I've processed the cancellation. You'll receive a confirmation email with your final bill date, and a prepaid bag for returning the router."],
    },
    "device_unlock": {
        "reply": ["It's a {device}, IMEI {imei}.", "{device}. IMEI is {imei}."],
        "explain": ["Phones bought from us are unlocked free of charge once they're fully paid for or your contract has run for 6 months."],
        "ask": ["Could you tell me the phone model and its IMEI (dial *#06# to see it)?"],
        "steps": ["Insert a SIM from another network", "Connect to wifi and restart the phone", "Follow any on-screen message; iPhones unlock automatically once approved"],
        "resolve": ["Your phone meets the criteria, so I've submitted the unlock. It usually completes within 24 hours; then a SIM from any network will work."],
    },
    "esim_activation": {
        "reply": ["{device}, and yes I think I scanned it once already.", "It's a {device}, first time trying."],
        "explain": ["An eSIM is downloaded from a QR code; each code can only be used once, so a new one is needed if it was scanned before."],
        "ask": ["Which phone are you setting it up on, and have you scanned the code before?"],
        "steps": ["Connect to wifi", "Go to Settings > Mobile data > Add eSIM and scan the QR code", "Set the eSIM as your primary line and restart the phone"],
        "resolve": ["I've cancelled the old profile and emailed you a fresh QR code. Scan it while on wifi and the eSIM should be active within a few minutes."],
    },
    "voicemail_setup": {
        "reply": ["The PIN, I forgot it.", "Calls don't go to voicemail at all."],
        "explain": ["Voicemail is included on every plan; it's set up by calling 443 from your phone."],
        "ask": ["Is it the greeting, the PIN or the call forwarding that isn't working?"],
        "steps": ["Call 443 from your mobile", "Follow the prompts to record a greeting and set a PIN", "Check call forwarding is set to voicemail under Settings > Phone"],
        "resolve": ["I've reset your voicemail PIN and turned call diversion back on. You'll get a text with a temporary PIN to use the next time you call 443."],
    },
    "international_calling": {
        "reply": ["{country}, maybe 2 hours a month.", "Mostly {country}, a few calls a week."],
        "explain": ["Calls abroad from the UK are charged per minute unless you have an international add-on, and some accounts have international calls barred by default."],
        "ask": ["Which country do you usually call, and roughly how many minutes a month?"],
        "steps": ["Dial the number with the country code, e.g. +34 for Spain", "Check the rate in the app under Add-ons > International", "Add the International 500 bundle if you call often"],
        "resolve": ["I've lifted the international bar on your line and added the International 500 add-on, which covers calls to that country at a much lower rate."],
    },
    "data_allowance_topup": {
        "reply": ["Maybe {gb} to get me to the end of the month.", "Just a small one, {gb}."],
        "explain": ["When your allowance runs out, data stops until you add a booster or your allowance resets on your bill date."],
        "ask": ["How much extra data do you think you'll need before your bill date?"],
        "steps": ["Open the app and go to Add-ons > Data boosters", "Choose a booster; it's active within a few minutes", "Restart mobile data if it doesn't connect straight away"],
        "resolve": ["I can see the booster payment went through but didn't attach to your line. I've added it manually and your data is working again."],
    },
    "broadband_installation": {
        "reply": ["Same address as the order. I'm free any day after {weekday}.", "Any weekday morning works."],
        "explain": ["Installation needs an engineer to connect your line at the street cabinet and sometimes inside the property."],
        "ask": ["Could you confirm the installation address and the dates you're available?"],
        "steps": ["Make sure someone over 18 is home on the day", "Clear access to the master socket", "Plug the router in once the engineer confirms the line is live"],
        "resolve": ["I've rebooked the installation for the earliest slot and added a note for the engineer. You'll get a text the day before with a two-hour arrival window, and I've applied compensation for the missed appointment."],
    },
    "router_problem": {
        "reply": ["It's a {light} now, and yes the cable is in the grey port.", "Still a {light}. Cable looks fine."],
        "explain": ["A red or orange light usually means the router can't reach our network, which is often fixed by a restart or a cable check."],
        "ask": ["What colour is the light now, and is anything plugged into the grey broadband port?"],
        "steps": ["Turn the router off at the wall for 60 seconds", "Check the cable from the wall socket to the grey port is firmly in", "If it's still red after 10 minutes, hold the reset button for 15 seconds"],
        "resolve": ["I've run a line test and found a fault at the exchange. An engineer will fix it remotely within 24 hours; you don't need to be home, and you'll get a text when it's done."],
    },
    "refund_status": {
        "reply": ["Reference is {ref}, agreed on the phone {day}.", "It was agreed {day}, I don't have a reference."],
        "explain": ["Refunds go back to the original payment method and take 3-5 working days to appear after they're processed."],
        "ask": ["Could you give me the refund reference or the date it was agreed?"],
        "steps": ["Check the Payments section in the app for the refund date", "Allow 3-5 working days for your bank to show it", "Reply here if it hasn't arrived after that"],
        "resolve": ["I can see the refund was approved but never sent to the payment team. I've pushed it through now, so it will reach your account within 3-5 working days."],
    },
    "account_access": {
        "reply": ["It's the email I signed up with, {email}.", "My usual email, the one on the bills."],
        "explain": ["Accounts lock after five wrong attempts to protect your details; a reset link or code unlocks it."],
        "ask": ["Which email address is the account registered to? Please don't send your password."],
        "steps": ["Use Forgot password on the login page", "Check your spam folder for the reset email", "If the text code doesn't arrive, choose Send by email instead"],
        "resolve": ["I've unlocked the account and sent a new reset link to your registered email. It's valid for one hour."],
    },
    "change_billing_address": {
        "reply": ["New address is {address}.", "It's {address}."],
        "explain": ["You can update your billing address in the app, or I can do it for you here."],
        "ask": ["What's the new address, including the postcode?"],
        "steps": ["Open Account > Personal details", "Select Billing address and enter the new one", "Save; your next bill will go to the new address"],
        "resolve": ["Done — I've updated your billing address. Your next bill and any letters will go to the new address."],
    },
}
