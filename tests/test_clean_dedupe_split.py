import pytest

from hone.config import CleanConfig, DedupeConfig, SplitConfig
from hone.data.balance import balance_records, class_weights
from hone.data.clean import clean_records, detect_language, spelling_map, strip_html, strip_signatures
from hone.data.dedupe import dedupe_records, leakage
from hone.data.records import Record
from hone.data.split import split_records


def recs(texts, labels=None, groups=None):
    out = []
    for i, t in enumerate(texts):
        meta = {"group": groups[i]} if groups else {}
        out.append(Record({"text": t, "label": labels[i] if labels else "x"}, "f", i + 1, meta))
    return out


def test_clean_steps_and_counts():
    texts = ["donâ€™t <b>bill</b> me &amp; my srvce on 5 G",
             "My phone is broken.\n\nSent from my iPhone",
             "Hi,\n   router   down \n--\nJane Doe\nAnalyst",
             "ok",
             "Mi internet no funciona desde el lunes y necesito ayuda urgente por favor"]
    cfg = CleanConfig(normalize={"srvce": "service", "5 G": "5G"}, min_chars=3, languages=["en"])
    kept, counts = clean_records(recs(texts), "classification", cfg)
    out = [r.data["text"] for r in kept]
    assert out[0] == "don't bill me & my service on 5G"
    assert out[1] == "My phone is broken."
    assert out[2] == "Hi,\nrouter down"
    assert counts["dropped"] == {"too_short": 1, "language": 1}
    assert counts["records_changed"]["unicode"] == 1 and counts["records_changed"]["html"] == 1
    assert counts["records_changed"]["signatures"] == 2 and counts["records_changed"]["normalize"] == 1


def test_clean_keeps_placeholders_and_never_empties():
    assert strip_html("call <PERSON_1> at <b>home</b>") == "call <PERSON_1> at  home "
    assert strip_signatures("Sent from my iPhone") == "Sent from my iPhone"
    # a signature starts a line or ends the text shortly after; not a customer's words about their phone
    text = "The SMS sent from my phone to 80888 was billed at a premium rate, please refund the 4.99 charge"
    assert strip_signatures(text) == text
    assert strip_signatures("Bill wrong. Sent from my Android device") == "Bill wrong."
    assert strip_signatures("Bill wrong.\n\nSent from my Samsung Galaxy phone.\nJo") == "Bill wrong."
    assert spelling_map({"srvce": "service"})("SRVCE and srvces") == "service and srvces"


def test_language_detection():
    assert detect_language("The network has been down all day and I cannot make calls") == "en"
    assert detect_language("hi") is None


def test_exact_and_near_dedupe_keep_first_and_report_clusters():
    texts = ["My bill is wrong this month", "my bill is WRONG this month!!", "Roaming does not work in Spain",
             "Roaming does not work in Spian", "Totally unrelated question about 5G coverage"]
    kept, rep = dedupe_records(recs(texts, ["a", "a", "b", "c", "d"]), "classification",
                               DedupeConfig(threshold=0.7))
    assert [r.line for r in kept] == [1, 3, 5]
    assert rep["exact_removed"] == 1 and rep["near_removed"] == 1 and rep["clusters"] == 2
    assert rep["label_conflicts"] == 1  # line 4 was labelled c, its representative b


def test_stratified_seeded_split():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["solo"]
    rs = recs([f"t{i}" for i in range(len(labels))], labels)
    s1 = split_records(rs, SplitConfig(train=0.8, validation=0.1, test=0.1), seed=1)
    s2 = split_records(rs, SplitConfig(train=0.8, validation=0.1, test=0.1), seed=1)
    assert [r.line for r in s1["test"]] == [r.line for r in s2["test"]]
    assert sorted(r.line for v in s1.values() for r in v) == list(range(1, 102))
    for lab, n in (("a", 5), ("b", 3), ("c", 2)):
        assert sum(r.data["label"] == lab for r in s1["test"]) == n
    assert any(r.data["label"] == "solo" for r in s1["train"])
    s3 = split_records(rs, SplitConfig(train=0.8, validation=0.1, test=0.1), seed=2)
    assert [r.line for r in s3["test"]] != [r.line for r in s1["test"]]


@pytest.mark.parametrize(("n_labels", "per_label"), [(20, 5), (3, 4), (5, 2)])
def test_many_small_classes_still_fill_the_validation_and_test_splits(n_labels, per_label):
    """Each label rounded alone gave 20 labels of 5 examples no validation or test example at all (5 x 0.1 rounds
    to 0): the splits' sizes are now the whole's rounded shares, spread one per label, every label kept in train."""
    labels = [f"l{i % n_labels}" for i in range(n_labels * per_label)]
    s = split_records(recs([f"t{i}" for i in range(len(labels))], labels),
                      SplitConfig(train=0.8, validation=0.1, test=0.1), seed=7)
    n = len(labels)
    assert len(s["test"]) == round(n * 0.1) and len(s["validation"]) == round(n * 0.1)
    for part in ("test", "validation"):
        assert len({r.data["label"] for r in s[part]}) == len(s[part])  # at most one of each label
    assert {r.data["label"] for r in s["train"]} == set(labels)


def test_group_aware_split_keeps_groups_together():
    n = 120
    rs = recs([f"t{i}" for i in range(n)], [("a", "b")[i % 2] for i in range(n)], [f"cust{i // 4}" for i in range(n)])
    s = split_records(rs, SplitConfig(group_column="customer"), seed=3)
    where = {}
    for name, part in s.items():
        for r in part:
            assert where.setdefault(r.meta["group"], name) == name
    assert len(s["test"]) > 0 and len(s["validation"]) > 0


def test_leakage_report_and_drop():
    train = recs(["my bill is wrong this month", "roaming in spain fails"])
    test = recs(["my bill is wrong this month!", "how do I set up voicemail"])
    out, rep = leakage({"train": train, "validation": [], "test": test}, "classification", 0.8, drop=False)
    assert rep["pairs"] == {"validation": 0, "test": 1} and len(out["test"]) == 2
    out, rep = leakage({"train": train, "validation": [], "test": test}, "classification", 0.8, drop=True)
    assert [r.data["text"] for r in out["test"]] == ["how do I set up voicemail"] and rep["dropped"] == 1


def test_balance_strategies():
    rs = recs([f"t{i}" for i in range(12)], ["a"] * 8 + ["b"] * 3 + ["c"])
    assert class_weights(rs) == {"a": 0.5, "b": pytest.approx(1.333333), "c": 4.0}
    over, rep = balance_records(rs, "oversample", seed=0)
    assert rep["rows_after"] == 24 and sum(r.meta.get("oversampled", False) for r in over) == 12
    assert {lab: sum(r.data["label"] == lab for r in over) for lab in "abc"} == {"a": 8, "b": 8, "c": 8}
    under, _ = balance_records(rs, "undersample", seed=0)
    assert sorted(r.data["label"] for r in under) == ["a", "b", "c"]


def test_k_shot_sampling_is_seeded_and_capped():
    from hone.data.balance import sample_shots

    rs = recs([f"t{i}" for i in range(40)], ["a"] * 25 + ["b"] * 12 + ["c"] * 3)
    out, rep = sample_shots(rs, 10, seed=0)
    assert {lab: sum(r.data["label"] == lab for r in out) for lab in "abc"} == {"a": 10, "b": 10, "c": 3}
    assert [r.line for r in sample_shots(rs, 10, seed=0)[0]] == [r.line for r in out]
    assert [r.line for r in sample_shots(rs, 10, seed=1)[0]] != [r.line for r in out]


def _chat(system, user, reply):
    return Record({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                {"role": "assistant", "content": reply}]}, "f.jsonl", 1, {})


def test_near_duplicates_of_generator_rows_must_teach_the_same_thing():
    # a shared system prompt made 192 of 512 distinct SGD conversations "near-duplicates"; antonym instructions with
    # opposite outputs and a preference pair with its swap were merged with no label conflict counted
    system = ("You are a helpful, polite and concise banking assistant for Example Bank. Answer the customer's "
              "question accurately, never invent account details, and ask for confirmation before any transfer.")
    rows = [_chat(system, f"Send {n} dollars to Amir", f"Confirm: {n} dollars to Amir from checking?") for n in
            (100, 250)] + [_chat(system, "Send 100 dollars to Amir", "Confirm: 100 dollars to Amir from checking?")]
    kept, rep = dedupe_records(rows, "chat", DedupeConfig(exact=False, threshold=0.6))
    assert len(kept) == 2 and rep["near_removed"] == 1  # only the third repeats what the first teaches
    ins = [Record({"instruction": "Classify the sentiment of this review of our mobile network coverage.",
                   "input": f"{w} coverage everywhere!", "output": o}, "f", 1, {})
           for w, o in (("Great", "positive"), ("Terrible", "negative"))]
    assert len(dedupe_records(ins, "instruction", DedupeConfig(exact=False, threshold=0.5))[0]) == 2
    pref = [Record({"prompt": "Reply to: my bill is wrong", "chosen": a, "rejected": b}, "f", 1, {})
            for a, b in (("Sorry, let me fix it.", "Not my problem."), ("Not my problem.", "Sorry, let me fix it."))]
    assert len(dedupe_records(pref, "preference", DedupeConfig(exact=False, threshold=0.5))[0]) == 2
    out, rep = leakage({"train": rows[:1], "validation": rows[1:2], "test": rows[2:]}, "chat", 0.6, drop=False)
    assert rep["pairs"] == {"validation": 0, "test": 1}


def test_exact_duplicates_keep_emoji_and_symbols_apart():
    rows = recs(["👍", "👎", "😀 love it", "😡 love it", "C++ course", "C course", "Hello, world!", "hello world"],
                ["a", "b"] * 4)
    kept, rep = dedupe_records(rows, "classification", DedupeConfig(near=False))
    assert [r.data["text"] for r in kept] == ["👍", "👎", "😀 love it", "😡 love it", "C++ course", "C course",
                                              "Hello, world!"]


def test_cleaning_leaves_text_that_is_not_html_or_a_signature_alone():
    assert strip_html("List<String> items") == "List<String> items"
    assert strip_html("a<b and c>d, press <Enter>") == "a<b and c>d, press <Enter>"
    assert strip_html("https://x.com/?a=1&currency=EUR&region=DE") == "https://x.com/?a=1&currency=EUR&region=DE"
    assert strip_html("<p>Hello</p><div>world &amp; co</div>").split() == ["Hello", "world", "&", "co"]
    assert strip_signatures("the text I sent from my phone") == "the text I sent from my phone"
    assert strip_signatures("Hi,\nSent from my Android the app crashes when I open it").endswith("open it")
    assert strip_signatures("Please help.\nSent from my iPhone") == "Please help."
    assert strip_signatures("Please help. Sent from my iPhone") == "Please help."


def test_whitespace_keeps_a_generators_indentation():
    code = "Here:\n\n```yaml\nplan:\n    name:   unlimited\n    price: 20\n```"
    row = Record({"prompt": "Give the plan as YAML", "completion": code}, "f", 1, {})
    kept, _ = clean_records([row], "prompt_completion", CleanConfig())
    assert kept[0].data["completion"] == code.replace("name:   unlimited", "name: unlimited")
    kept, _ = clean_records(recs(["  two   spaces\n  indented"], ["a"]), "classification", CleanConfig())
    assert kept[0].data["text"] == "two spaces\nindented"


def test_spanish_and_french_are_not_read_as_english():
    # the English fast path counted "a", "no", "me", "on" as English function words
    assert detect_language("No me cobraron a tiempo, no puedo pagar a mi banco") == "es"
    assert detect_language("Je ne peux pas payer a la banque, on me dit no") == "fr"
    assert detect_language("I was charged twice for my bill this month") == "en"


def test_the_dedupe_report_lists_the_clusters_whose_labels_conflict():
    # the README says it does; it gave a count only (BANKING77: "Has my top up gone through?" pending_top_up
    # against "Has my top-up gone through?" top_up_reverted)
    rows = recs(["Has my top up gone through?", "Has my top-up gone through?", "card lost"],
                ["pending_top_up", "top_up_reverted", "lost_card"])
    kept, rep = dedupe_records(rows, "classification", DedupeConfig(near=False))
    assert rep["label_conflicts"] == 1 and len(kept) == 2
    (c,) = rep["conflicting_clusters"]
    assert sorted(lab for labs in c["labels"].values() for lab in labs) == ["pending_top_up", "top_up_reverted"]


def test_multi_label_rows_are_stratified_by_their_rarest_label():
    # by first label: the only two examples of a rare second label both went to one split in many seeds
    from hone.config import SplitConfig

    rows = [Record({"text": f"t{i}", "label": ["billing"] + (["fraud"] if i % 20 == 0 else [])}, "f", i + 1, {})
            for i in range(100)] + [Record({"text": f"o{i}", "label": ["outage"]}, "f", 200 + i, {}) for i in range(50)]
    for seed in range(20):
        parts = split_records(rows, SplitConfig(train=0.6, validation=0.2, test=0.2), seed)
        where = {s for s, rs in parts.items() for r in rs if "fraud" in r.data["label"]}
        assert "train" in where and len(where) >= 2, seed  # 5 fraud rows: in train and held out


def test_oversampling_a_multi_label_set_copies_its_rare_labels_rows():
    rows = [Record({"text": f"t{i}", "label": ["billing"] + (["fraud"] if i < 3 else [])}, "f", i + 1, {})
            for i in range(30)] + [Record({"text": f"o{i}", "label": ["outage"]}, "f", 100 + i, {}) for i in range(12)]
    out, rep = balance_records(rows, "oversample", seed=0)
    copies = [r for r in out if r.meta.get("oversampled")]
    assert sum("fraud" in r.data["label"] for r in copies) > 0  # by first label, no fraud row was ever copied
