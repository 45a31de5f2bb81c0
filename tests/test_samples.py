"""Self-checks for the synthetic sample data (hone/samples) and the test fixtures (tests/fixtures).

The fixture checks include a tiny reference reader built on ``hone.data.records.normalize`` that
finds the first problem in each broken file, so EXPECT.json is verified against the real rules.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from hone.data.records import detect_schema, normalize
from hone.samples import make_telecom as mt

SAMPLES = Path(mt.__file__).resolve().parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
VALID, BROKEN = FIXTURES / "valid", FIXTURES / "broken"
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD_RE = re.compile(r"\b(?:\d{4}[ -]?){3}\d{4}\b")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")
PHONE_RE = re.compile(r"\+\d{1,3}[ -]\d|\(555\) 01\d|07700 900")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def intents() -> list[dict]:
    return _jsonl(SAMPLES / mt.INTENTS_FILE)


@pytest.fixture(scope="module")
def chats() -> list[dict]:
    return _jsonl(SAMPLES / mt.CHATS_FILE)


# ------------------------------------------------------------------ generator

def test_generator_is_deterministic_and_committed_files_are_fresh(tmp_path: Path) -> None:
    a, b = mt.main(tmp_path / "a"), mt.main(tmp_path / "b")
    assert set(a) == set(mt.OUTPUTS)
    for name in mt.OUTPUTS:
        fresh = a[name].read_bytes()
        assert fresh == b[name].read_bytes(), f"{name} differs between two runs"
        assert fresh == (SAMPLES / name).read_bytes(), f"committed {name} is stale: run python -m hone.samples.make_telecom"
    assert mt.main(tmp_path / "c", seed=14)[mt.INTENTS_FILE].read_bytes() != a[mt.INTENTS_FILE].read_bytes()


def test_intent_rows_counts_and_imbalance(intents: list[dict]) -> None:
    assert len(intents) >= 1800
    assert all(set(r) == {"text", "label", "customer_id"} for r in intents)
    assert all(isinstance(r["text"], str) and r["text"].strip() for r in intents)
    counts = Counter(r["label"] for r in intents)
    assert len(counts) >= 24
    assert all(re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)*", k) for k in counts)
    assert 3 <= max(counts.values()) / min(counts.values()) <= 8
    assert sum(1 for v in counts.values() if v <= 30) >= 2
    assert all(re.fullmatch(r"C\d{5,6}", r["customer_id"]) for r in intents)
    per_customer = Counter(r["customer_id"] for r in intents)
    assert sum(1 for v in per_customer.values() if v >= 3) >= 20  # groups for group-aware splitting
    words = [len(r["text"].split()) for r in intents]
    assert min(words) <= 2 and max(words) >= 80
    assert sum(3 <= w <= 80 for w in words) / len(words) > 0.95


def test_intent_noise_is_present(intents: list[dict]) -> None:
    texts = [r["text"] for r in intents]
    n = len(texts)

    def count(pred) -> int:
        return sum(1 for t in texts if pred(t))

    norm = Counter(" ".join(t.lower().split()) for t in texts)
    assert sum(v - 1 for v in norm.values()) >= 0.02 * n  # exact duplicates (modulo case/whitespace)
    assert count(lambda t: re.search(r"<(p|br|div)\b|&amp;|&nbsp;|&#39;", t)) >= 0.015 * n
    assert count(lambda t: "â€" in t or "Ã" in t or "Â" in t) >= 0.008 * n
    sig = re.compile(r"Sent from my|Get Outlook|(?:\n|<br>)-- (?:\n|<br>)|confidential|consider the environment"
                     r"|Kind regards,(?:\n|<br>)[A-Z]")
    assert count(sig.search) >= 0.015 * n
    assert count(lambda t: EMAIL_RE.search(t)) >= 15
    assert count(lambda t: PHONE_RE.search(t)) >= 15
    cards = [m.group(0) for t in texts for m in CARD_RE.finditer(t)]
    assert sum(map(mt.luhn_valid, cards)) >= 10 and len(cards) > sum(map(mt.luhn_valid, cards))
    ibans = [m.group(0) for t in texts for m in IBAN_RE.finditer(t)]
    assert len(ibans) >= 10 and all(map(mt.iban_checksum_ok, ibans))
    assert count(lambda t: re.search(r"\b(?:192\.168|10\.0\.0|203\.0\.113|198\.51\.100)\.\d+", t)) >= 5
    assert count(lambda t: re.search(r"TCK-\d{5}|order #A-\d+|\bacc no \d{8}", t, re.I)) >= 5
    assert count(lambda t: re.search(r"[¿ñ]|\b(?:Je|Ich|Guten|Bonjour|Hola|Me han)\b", t)) >= 8  # other languages
    assert count(lambda t: re.search(r"\b(?:recieve|cant|srvce|netwrok)\b", t)) >= 10  # typos
    assert count(lambda t: re.search(r"\b(?:pls|thx|acc|asap|b/c|mob)\b", t)) >= 50  # abbreviations
    assert count(lambda t: re.search(r"5 G|e-sim|wi fi", t, re.I)) >= 5
    assert count(lambda t: re.search(r"[\U0001F300-\U0001FAFF]", t)) >= 30
    assert count(lambda t: len(t) > 20 and t == t.upper()) >= 5  # ALL CAPS anger
    assert count(lambda t: t.startswith("Dear ")) >= 50


def test_chats_are_well_formed(chats: list[dict]) -> None:
    assert len(chats) >= 300
    ids = [c["conversation_id"] for c in chats]
    assert len(set(ids)) == len(ids)
    for c in chats:
        roles = [m["role"] for m in c["messages"]]
        if roles[0] == "system":
            roles = roles[1:]
        assert 2 <= len(roles) <= 6 and len(roles) % 2 == 0
        assert roles == ["user", "assistant"] * (len(roles) // 2), c["conversation_id"]
        for m in c["messages"]:
            assert isinstance(m["content"], str) and m["content"].strip()
            assert set(m) <= {"role", "content", "weight"}
            if "weight" in m:
                assert m["role"] == "assistant" and m["weight"] in (0, 1)
        data, issues = normalize(c, "chat")
        assert not issues, (c["conversation_id"], issues)
    assert sum(any(m.get("weight") == 0 for m in c["messages"]) for c in chats) >= 5
    user_text = [" ".join(m["content"] for m in c["messages"] if m["role"] == "user") for c in chats]
    assert sum(bool(EMAIL_RE.search(t) or PHONE_RE.search(t) or re.search(r"\b\d{8}\b", t)) for t in user_text) >= 30
    firsts = Counter(" ".join(c["messages"][1 if c["messages"][0]["role"] == "system" else 0]["content"].split()[:6])
                     for c in chats)
    assert sum(v - 1 for v in firsts.values()) >= 5  # near-duplicate conversations exist


def test_synthetic_identifiers_are_valid() -> None:
    g = mt.Gen(1)
    assert all(mt.luhn_valid(g.card(True)) for _ in range(50))
    assert not any(mt.luhn_valid(g.card(False)) for _ in range(50))
    assert all(mt.iban_checksum_ok(g.iban()) for _ in range(50))
    assert mt.iban_checksum_ok("GB82 WEST 1234 5698 7654 32")  # the textbook example


# ------------------------------------------------------------------ fixtures

def _manifest(folder: Path) -> dict[str, dict]:
    return json.loads((folder / "EXPECT.json").read_text(encoding="utf-8"))


def _load_make_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Bad(str):
    """Marks a line that failed before row validation; the value is the field ("(json)", "(encoding)")."""


def _read_rows(path: Path, options: dict) -> list[tuple[int, object]] | tuple[int, str]:
    """(line, raw row) pairs in file order, or (line, field) for a file-level problem."""
    enc = options.get("encoding", "utf-8")
    raw = path.read_bytes()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(i + 1, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    if path.suffix == ".jsonl":  # streaming: bad lines are reported in order with the rows
        rows: list[tuple[int, object]] = []
        for i, line in enumerate(raw.split(b"\n"), 1):
            try:
                s = line.decode(enc)
                if s.strip():
                    rows.append((i, json.loads(s)))
            except UnicodeDecodeError:
                rows.append((i, _Bad("(encoding)")))
            except json.JSONDecodeError:
                rows.append((i, _Bad("(json)")))
        return rows
    for i, line in enumerate(raw.split(b"\n"), 1):
        try:
            line.decode(enc)
        except UnicodeDecodeError:
            return i, "(encoding)"
    text = raw.decode("utf-8-sig" if enc == "utf-8" else enc)
    if path.suffix == ".json":
        try:
            return [(i + 1, o) for i, o in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            return e.lineno, "(json)"
    if path.suffix == ".txt":
        return [(i, ln) for i, ln in enumerate(text.split("\n"), 1) if ln.strip()]
    assert path.suffix in (".csv", ".tsv"), path
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix == ".tsv" else ",")
    header = next(reader)
    mapping = {options.get("text_column", "text"): "text", options.get("label_column", "label"): "label"}
    for col in mapping:
        if col not in header:
            return 1, col
    rows, start = [], reader.line_num + 1
    for rec in reader:
        if rec:  # blank lines are skipped
            rows.append((start, {mapping.get(h, h): (rec[j] if j < len(rec) else None) for j, h in enumerate(header)}))
        start = reader.line_num + 1
    return rows


def _first_problem(path: Path, schema: str | None, options: dict) -> tuple[int | None, str] | None:
    """Reference reader: (line, field) of the first problem, or None when the file is valid."""
    rows = _read_rows(path, options)
    if isinstance(rows, tuple):
        return rows
    schema = schema or detect_schema(rows[0][1])
    for line, obj in rows:
        if isinstance(obj, _Bad):
            return line, str(obj)
        _, issues = normalize(obj, schema)
        if issues:
            return line, issues[0][0]
    return (None, "(dataset)") if len(rows) < 10 else None


def test_expect_covers_every_broken_file() -> None:
    expect = _manifest(BROKEN)
    files = sorted(p.name for p in BROKEN.iterdir() if p.name != "EXPECT.json")
    assert len(files) >= 32
    assert set(files) <= set(expect), set(files) - set(expect)
    for name, exp in expect.items():
        assert (BROKEN / name).is_file(), name
        assert set(exp) >= {"line", "field", "schema", "options"}
        assert exp["line"] is None or exp["line"] >= 1
        assert exp["schema"] in (None, "classification", "chat", "sharegpt", "prompt_completion", "instruction",
                                 "preference", "text")


@pytest.mark.parametrize("name", sorted(_manifest(BROKEN)))
def test_broken_fixture_fails_where_expected(name: str) -> None:
    exp = _manifest(BROKEN)[name]
    path = BROKEN / name
    assert _first_problem(path, exp["schema"], exp["options"]) == (exp["line"], exp["field"])
    if "accept_with" in exp:
        assert _first_problem(path, exp["schema"], {**exp["options"], **exp["accept_with"]}) is None


@pytest.mark.parametrize("name", sorted(n for n, e in _manifest(BROKEN).items()
                                         if e["line"] not in (None, 1) and "also" not in e and "accept_with" not in e))
def test_broken_fixture_has_only_the_planted_problem(name: str, tmp_path: Path) -> None:
    exp = _manifest(BROKEN)[name]
    lines = (BROKEN / name).read_bytes().split(b"\n")
    del lines[exp["line"] - 1]
    fixed = tmp_path / name
    fixed.write_bytes(b"\n".join(lines))
    assert _first_problem(fixed, exp["schema"], exp["options"]) is None


def test_broken_fixtures_have_enough_otherwise_valid_rows() -> None:
    for name, exp in _manifest(BROKEN).items():
        if exp["field"] == "(dataset)" or exp["line"] == 1:
            continue
        lines = [ln for ln in (BROKEN / name).read_bytes().split(b"\n")[1 if name.endswith((".csv", ".tsv", ".json")) else 0:]
                 if ln.strip() and ln.strip() not in (b"[", b"]")]
        assert len(lines) >= 11, name


@pytest.mark.parametrize("name", sorted(_manifest(VALID)))
def test_valid_fixture_is_clean_and_big_enough(name: str) -> None:
    exp = _manifest(VALID)[name]
    path = VALID / name
    assert exp["rows"] >= 10 or path.is_dir()
    if path.is_dir():
        docs = sorted(path.glob("*.txt"))
        assert len(docs) == exp["rows"] and all(d.read_text(encoding="utf-8").strip() for d in docs)
        assert len(docs) >= 10
        return
    assert _first_problem(path, exp["schema"], exp["options"]) is None


def test_valid_fixture_formats() -> None:
    valid = set(_manifest(VALID))
    assert {"classification.jsonl", "classification_multilabel.jsonl", "classification.csv", "classification.tsv",
            "classification_bom_crlf.csv", "classification.json", "classification.parquet",
            "classification_cp1252.csv", "chat.jsonl", "sharegpt.jsonl", "prompt_completion.jsonl",
            "instruction.jsonl", "preference.jsonl", "text.txt", "docs"} <= valid
    bom = (VALID / "classification_bom_crlf.csv").read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf") and b"\r\n" in bom and bom.endswith(b"\r\n\r\n\r\n")
    assert b"\n" not in bom.replace(b"\r\n", b"")
    csv_text = (VALID / "classification.csv").read_text(encoding="utf-8")
    assert '",' in csv_text and re.search(r'"[^"]*\n[^"]*"', csv_text)
    chat = _jsonl(VALID / "chat.jsonl")
    assert any(c["messages"][0]["role"] == "system" for c in chat)
    assert any(c["messages"][0]["role"] != "system" for c in chat)
    assert {0, 1} <= {m["weight"] for c in chat for m in c["messages"] if "weight" in m}
    assert any(r["input"] == "" for r in _jsonl(VALID / "instruction.jsonl"))
    assert all(isinstance(r["label"], list) for r in _jsonl(VALID / "classification_multilabel.jsonl"))


def test_make_fixtures_reproduces_committed_files(tmp_path: Path) -> None:
    _load_make_fixtures().main(tmp_path)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*")
                       if p.is_file() and p.name != "make_fixtures.py" and "__pycache__" not in p.parts)
    assert made == committed
    for rel in made:
        if rel.suffix == ".parquet":  # bytes embed the writer version; compare the table
            import pyarrow.parquet as pq

            assert pq.read_table(tmp_path / rel).equals(pq.read_table(FIXTURES / rel))
        else:
            assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
