import json

import pytest

from hone.data.read import read_rows
from hone.errors import DataError


def rows(path, **kw):
    problems = []
    out = list(read_rows(path, problems, **kw))
    return out, problems


def test_jsonl_bom_crlf_blank_trailing_lines(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "x"}\r\n{"text": "b", "label": "y"}\r\n\r\n\r\n')
    out, problems = rows(f)
    assert [r.obj["text"] for r in out] == ["a", "b"] and [r.line for r in out] == [1, 2] and not problems


def test_jsonl_invalid_line_reported_and_reading_continues(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "a"}\n{"text": "b",}\n{"text": "c"}\n')
    out, problems = rows(f)
    assert [r.line for r in out] == [1, 3]
    assert len(problems) == 1 and problems[0].line == 2 and problems[0].field == "(json)"


def test_non_utf8_detected_and_decoded_only_when_asked(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes("text,label\ncaf\u00e9 \u20ac5,x\nplain,y\n".encode("cp1252"))
    out, problems = rows(f)
    assert len(out) == 1 and problems[0].line == 2 and problems[0].field == "(encoding)"
    assert "--encoding cp1252" in problems[0].message
    out, problems = rows(f, encoding="cp1252")
    assert not problems and out[0].obj["text"] == "caf\u00e9 \u20ac5"


def test_csv_quoting_multiline_and_column_mapping(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('ticket,intent\n"hello, world",greet\n"two\nlines",multi\nlast,end\n')
    out, problems = rows(f, text_column="ticket", label_column="intent")
    assert not problems
    assert [(r.obj["text"], r.obj["label"], r.line) for r in out] == [
        ("hello, world", "greet", 2), ("two\nlines", "multi", 3), ("last", "end", 5)]


def test_csv_missing_mapped_column_and_short_row(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("ticket,intent\na,b\n")
    _, problems = rows(f, label_column="category")
    assert problems[0].line == 1 and problems[0].field == "category"
    t = tmp_path / "a.tsv"
    t.write_text("text\tlabel\na\tb\nonly-text\nc\td\n")
    out, problems = rows(t)
    assert len(out) == 2 and problems[0].line == 3 and problems[0].field == "label"


def test_json_array_streamed_with_line_numbers(tmp_path):
    f = tmp_path / "a.json"
    items = [{"text": f"t{i}", "label": "x"} for i in range(5)]
    f.write_text(json.dumps(items, indent=2))
    out, problems = rows(f)
    assert not problems and [r.obj["text"] for r in out] == [f"t{i}" for i in range(5)]
    assert out[0].line == 2 and out[1].line == 6  # indent=2: each object spans 4 lines
    bad = tmp_path / "b.json"
    bad.write_text('[\n{"text": "a"},\n{"text": "b" "label": 1},\n{"text": "c"}\n]\n')
    out, problems = rows(bad)
    assert [r.obj["text"] for r in out] == ["a"]
    assert problems[0].line == 3 and problems[0].field == "(json)"


def test_json_array_unclosed(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[{"text": "a"},\n{"text": "b"}\n')
    out, problems = rows(f)
    assert len(out) == 2 and "not closed" in problems[0].message


def test_parquet_and_txt(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["a", "b"], "y": ["x", "z"]}), f)
    out, problems = rows(f, text_column="body", label_column="y")
    assert [(r.obj["text"], r.obj["label"], r.line) for r in out] == [("a", "x", 1), ("b", "z", 2)]
    t = tmp_path / "a.txt"
    t.write_text("first line\n\nsecond line\n")
    out, _ = rows(t)
    assert [(r.obj["text"], r.line) for r in out] == [("first line", 1), ("second line", 3)]
    d = tmp_path / "docs"
    d.mkdir()
    (d / "1.txt").write_text("doc one\nmore")
    (d / "2.txt").write_text("doc two")
    out, _ = rows(d)
    assert [r.obj["text"] for r in out] == ["doc one\nmore", "doc two"]


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="not found"):
        rows(tmp_path / "nope.jsonl")
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(DataError, match="--format"):
        rows(tmp_path / "a.xyz")


def test_streaming_does_not_load_whole_file(tmp_path):
    f = tmp_path / "big.jsonl"
    with open(f, "w") as fh:
        for i in range(20000):
            fh.write(json.dumps({"text": "x" * 200, "label": str(i % 5)}) + "\n")
    problems = []
    it = read_rows(f, problems)
    first = next(it)
    assert first.line == 1  # a generator: nothing else has been read yet
    assert sum(1 for _ in it) == 19999


def test_multi_label_csv_separator(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text('text,labels\n"roaming and bill",roaming; billing\nonly outage,outage\n')
    out, problems = rows(f, label_column="labels", multi_label_sep=";")
    assert not problems
    assert [r.obj["label"] for r in out] == [["roaming", "billing"], ["outage"]]


def test_a_later_json_row_without_the_mapped_column_is_an_error_at_its_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"body": "bill", "intent": "billing"}\n{"content": "roaming", "intent": "roaming"}\n'
                 '{"body": "no signal", "intent": "outage"}\n')
    out, problems = rows(f, text_column="body", label_column="intent")  # it raised KeyError: 'body'
    assert [r.obj["text"] for r in out] == ["bill", "no signal"]
    assert [(p.line, p.field) for p in problems] == [(2, "body")] and "content, intent" in problems[0].message


def test_csv_fields_beyond_csvs_default_limit_are_read(tmp_path):
    import csv as _csv

    f = tmp_path / "long.csv"
    with f.open("w", newline="") as fh:
        w = _csv.writer(fh)
        w.writerows([["text", "label"], ["a" * 200_000, "thread"], ["short", "x"]])
    out, problems = rows(f)
    assert not problems and [len(r.obj["text"]) for r in out] == [200_000, 5]


def test_tsv_row_joined_by_a_stray_quote_is_warned_about(tmp_path):
    f = tmp_path / "q.tsv"
    f.write_text('text\tlabel\n"Fibre to the home, it said\tconnectivity\nmy 5" tablet SIM\tbilling\nok\tbilling\n')
    out, problems = rows(f)
    assert len(out) == 2 and [(p.severity, p.line) for p in problems] == [("warning", 2)]
    assert "spans lines 2-3" in problems[0].message


def test_json_error_message_reads_well(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "abc\n')
    _, problems = rows(f)
    assert problems[0].message == "invalid JSON: Unterminated string starting at column 10"


def test_a_json_element_spanning_many_lines_is_decoded_a_few_times_not_once_per_line(tmp_path, monkeypatch):
    """Every line of a pretty-printed element tried the decoder on the whole buffer again (quadratic: 29 s for a
    740 kB file); now a line that can close it, once the buffer has doubled since the last try."""
    from hone.data import read

    msgs = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(2000)]
    f = tmp_path / "big.json"
    f.write_text(json.dumps([{"messages": msgs}, {"messages": msgs[:2]}], indent=2))
    calls = []
    real = json.JSONDecoder.raw_decode
    monkeypatch.setattr(read.json.JSONDecoder, "raw_decode", lambda self, s, idx=0: calls.append(1) or real(self, s, idx))
    out, problems = rows(f)
    assert not problems and [len(r.obj["messages"]) for r in out] == [2000, 2] and [r.line for r in out] == [2, 8006]
    assert len(calls) < 40  # 8,000 lines


@pytest.mark.parametrize(("name", "encoding", "given"), [
    ("bom.jsonl", "utf-16", None), ("bom.csv", "utf-16", None), ("bom.json", "utf-16", None),
    ("le.jsonl", "utf-16-le", "utf-16-le"), ("be32.jsonl", "utf-32", None)])
def test_utf16_and_utf32_files_are_read(tmp_path, name, encoding, given):
    """Excel's "Unicode text" export is UTF-16 with a byte-order mark; it was refused."""
    rows_in = [{"text": f"mañana factura {i} €", "label": "billing"} for i in range(3)]
    f = tmp_path / name
    if name.endswith(".csv"):
        f.write_text('text,label\r\n"two\nlines",a\r\nb,c\r\n', encoding=encoding, newline="")
        want = [(2, {"text": "two\nlines", "label": "a"}), (4, {"text": "b", "label": "c"})]
    elif name.endswith(".json"):
        f.write_text(json.dumps(rows_in, ensure_ascii=False), encoding=encoding)
        want = [(1, r) for r in rows_in]
    else:
        f.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows_in), encoding=encoding)
        want = [(i + 1, r) for i, r in enumerate(rows_in)]
    out, problems = rows(f, **({"encoding": given} if given else {}))
    assert not problems and [(r.line, r.obj) for r in out] == want


def test_utf16_without_a_byte_order_mark_gets_a_hint(tmp_path):
    f = tmp_path / "le.jsonl"
    f.write_text('{"text": "a", "label": "b"}\n', encoding="utf-16-le")
    out, problems = rows(f)
    assert not out and "pass --encoding utf-16-le" in problems[0].message
