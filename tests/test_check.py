import pytest

from hone.data.check import DataReport, validate
from hone.data.read import RawRow
from hone.data.records import detect_schema, map_texts, normalize


def run(objs, schema="auto", **kw):
    report = DataReport(files=["f.jsonl"])
    recs = validate(iter(RawRow(o, "f.jsonl", i + 1) for i, o in enumerate(objs)), report, schema=schema, **kw)
    return recs, report


def chat(*turns, **extra):
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


def test_schema_detection():
    assert detect_schema({"text": "a", "label": "b"}) == "classification"
    assert detect_schema({"messages": []}) == "chat"
    assert detect_schema({"conversations": []}) == "sharegpt"
    assert detect_schema({"prompt": "a", "completion": "b"}) == "prompt_completion"
    assert detect_schema({"instruction": "a", "output": "b"}) == "instruction"
    assert detect_schema({"prompt": "a", "chosen": "b", "rejected": "c"}) == "preference"
    assert detect_schema({"text": "a"}) == "text"


def test_classification_stats_and_single_label_warning():
    objs = [{"text": f"t{i}", "label": "a" if i < 8 else "b"} for i in range(11)] + [{"text": "x", "label": "c"}]
    recs, rep = run(objs)
    assert rep.ok and rep.schema == "classification" and len(recs) == 12
    assert rep.labels == {"a": 8, "b": 3, "c": 1} and rep.imbalance_ratio == 8.0
    assert any("single example" in w.message and "'c'" in w.message for w in rep.warnings)
    assert rep.length_chars["min"] == 1 and rep.length_chars["max"] == 3


def test_every_error_collected_with_line_and_field():
    good = [{"text": f"t{i}", "label": "a"} for i in range(10)]
    bad = [{"text": 5, "label": "a"}, {"text": "x"}, {"text": "  ", "label": "a"}, {"text": "x", "label": ""},
           {"text": "x", "label": ["a", ""]}, {"text": "x", "label": True}]
    _, rep = run(good + bad, schema="classification")
    got = [(p.line, p.field) for p in rep.errors]
    assert got == [(11, "text"), (12, "label"), (13, "text"), (14, "label"), (15, "label[1]"), (16, "label")]
    assert rep.valid == 10 and not rep.ok


def test_chat_rules():
    ok = chat(("system", "s"), ("user", "u"), ("assistant", "a"))
    cases = {
        "unknown": (chat(("customer", "u"), ("assistant", "a")), "messages[0].role", "unknown role"),
        "system_late": (chat(("user", "u"), ("system", "s"), ("assistant", "a")), "messages[1].role", "system"),
        "double": (chat(("user", "u"), ("user", "u2"), ("assistant", "a")), "messages[1].role", "out of order"),
        "starts_asst": (chat(("assistant", "a"), ("user", "u")), "messages[0].role", "start with a user"),
        "no_asst": (chat(("user", "u"),), "messages", "no assistant turn"),
        "empty": (chat(("user", ""), ("assistant", "a")), "messages[0].content", "empty"),
        "content_list": ({"messages": [{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "a"}]},
                         "messages[0].content", "must be a string"),
        "not_list": ({"messages": "hello"}, "messages", "must be a list"),
    }
    for name, (obj, field, msg) in cases.items():
        data, issues = normalize(obj, "chat")
        assert data is None, name
        assert any(f == field and msg in m for f, m in issues), (name, issues)
    data, issues = normalize(ok, "chat")
    assert not issues and data == ok


def test_chat_weights():
    obj = chat(("user", "u"), ("assistant", "a"), ("user", "u2"), ("assistant", "b"))
    obj["messages"][1]["weight"] = 0
    data, issues = normalize(obj, "chat")
    assert not issues and data["messages"][1]["weight"] == 0
    obj["messages"][1]["weight"] = 0.5
    assert normalize(obj, "chat")[1] == [("messages[1].weight", "must be 0 or 1, got 0.5")]
    obj["messages"][1]["weight"] = 1
    obj["messages"][0]["weight"] = 1
    assert normalize(obj, "chat")[1] == [("messages[0].weight", "is only allowed on assistant messages")]


def test_sharegpt_converted_to_chat():
    obj = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    data, issues = normalize(obj, "sharegpt")
    assert not issues and data == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"conversations": [{"from": "alien", "value": "hi"}, {"from": "gpt", "value": "x"}]}
    assert ("conversations[0].from", "unknown role 'alien'") in normalize(bad, "sharegpt")[1]


def test_other_schemas():
    assert normalize({"prompt": "p"}, "prompt_completion")[1] == [("completion", "missing")]
    assert normalize({"instruction": "i", "input": "", "output": "o"}, "instruction")[0]["input"] == ""
    assert normalize({"instruction": "i"}, "instruction")[1] == [("output", "missing")]
    assert normalize({"prompt": "p", "chosen": "c"}, "preference")[1] == [("rejected", "missing")]
    assert normalize([1, 2], "classification")[1][0][0] == "(row)"


def _m(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize("row", [
    {"prompt": [_m("user", "Q")], "chosen": [_m("assistant", "A")], "rejected": [_m("assistant", "B")]},  # TRL
    {"prompt": "Q", "chosen": [_m("user", "Q"), _m("assistant", "A")],  # UltraFeedback: the prompt repeated
     "rejected": [_m("user", "Q"), _m("assistant", "B")]},
    {"chosen": [_m("user", "Q"), _m("assistant", "A")], "rejected": [_m("user", "Q"), _m("assistant", "B")]},
    {"input": {"messages": [_m("user", "Q")], "tools": []}, "preferred_output": [_m("assistant", "A")],  # OpenAI
     "non_preferred_output": [_m("assistant", "B")]},
])
def test_preference_shapes_become_a_prompt_and_the_replies_alone(row):
    """Whole conversations in chosen / rejected were accepted as they were, and DPO then joined the prompt to them:
    the user turn twice; TRL's conversational rows (the replies alone) were refused; OpenAI's DPO format read as text."""
    assert detect_schema(row) == "preference"
    data, issues = normalize(row, "preference")
    assert not issues and data == {"prompt": [_m("user", "Q")], "chosen": [_m("assistant", "A")],
                                   "rejected": [_m("assistant", "B")]}


@pytest.mark.parametrize(("row", "issue"), [
    ({"prompt": "X", "chosen": [_m("user", "Q"), _m("assistant", "A")], "rejected": [_m("user", "Q"), _m("assistant", "B")]},
     ("prompt", "differs from the conversation that chosen continues")),
    ({"chosen": [_m("user", "Q"), _m("assistant", "A")], "rejected": [_m("user", "Q2"), _m("assistant", "B")]},
     ("rejected", "must continue the same conversation as chosen: the messages before the replies differ")),
    ({"prompt": [_m("user", "Q"), _m("assistant", "so?")], "chosen": [_m("assistant", "A")], "rejected": "B"},
     ("chosen[0].role", "roles out of order: two assistant messages in a row")),
    ({"chosen": "A", "rejected": "B"}, ("prompt", "missing")),
    ({"chosen": [_m("user", "Q")], "rejected": [_m("user", "Q"), _m("assistant", "B")]},
     ("chosen", "no assistant reply after the conversation")),
    ({"input": {"messages": [_m("user", "Q")]}, "preferred_output": [_m("assistant", "A")]},
     ("non_preferred_output", "missing")),
])
def test_preference_problems_name_the_field(row, issue):
    data, issues = normalize(row, "preference")
    assert data is None and issue in issues


def test_too_few_examples_is_an_error():
    _, rep = run([{"text": "a", "label": "b"}] * 5)
    assert not rep.ok and rep.errors[-1].field == "(dataset)" and rep.errors[-1].line is None


def test_token_lengths_with_tokenizer():
    class Tok:
        name_or_path = "fake"

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [0] * (len(text.split()) + 2)}

    objs = [{"text": "word " * (i + 1), "label": "a"} for i in range(10)]
    _, rep = run(objs, tokenizer=Tok(), max_length=8)
    assert rep.length_tokens["max"] == 12 and rep.length_tokens["over_max_length"] == 4


def test_map_texts_reading_order():
    data = chat(("system", "s"), ("user", "u"), ("assistant", "a"))
    seen = []
    out = map_texts("chat", data, lambda t: seen.append(t) or t.upper())
    assert seen == ["s", "u", "a"] and out["messages"][2]["content"] == "A"
    assert data["messages"][2]["content"] == "a"  # input untouched


def test_labels_differing_only_in_case_are_warned_about():
    _, rep = run([{"text": f"t{i}", "label": lab} for i, lab in enumerate(["Billing", "billing", "BILLING "] * 4)])
    assert rep.ok and any("differ only in case" in p.message and "'Billing'" in p.message for p in rep.warnings)
    _, rep = run([{"text": f"t{i}", "label": lab} for i, lab in enumerate(["billing", "outage"] * 6)])
    assert not any("differ only in case" in p.message for p in rep.warnings)


def test_a_table_without_a_label_column_is_read_as_text_with_a_warning():
    report = DataReport(files=["t.csv"])
    rows = [RawRow({"text": f"my bill is wrong {i}", "priority": "high"}, "t.csv", i + 2, tabular=True) for i in range(12)]
    validate(iter(rows), report)
    assert report.schema == "text"
    assert [(p.line, p.field) for p in report.warnings] == [(1, "(schema)")] and "'priority'" in report.warnings[0].message


def test_check_warns_about_the_duplicates_prepare_removes():
    # check compared whitespace and case only, prepare's exact de-duplication also drops punctuation: a row with
    # "!!" added passed check and was removed by prepare
    from hone.config import DedupeConfig
    from hone.data.dedupe import dedupe_records

    objs = [chat(("user", "My internet is down"), ("assistant", "Let me check.")),
            chat(("user", "MY INTERNET IS DOWN!!"), ("assistant", "Let me check")),
            chat(("user", "My router is fine"), ("assistant", "Good."))]
    recs, report = run(objs)
    assert [(p.line, p.message) for p in report.warnings] == [(2, "duplicate of line 1 (removed by dedupe in prepare)")]
    kept, _ = dedupe_records(recs, "chat", DedupeConfig(near=False))
    assert len(kept) == 2
