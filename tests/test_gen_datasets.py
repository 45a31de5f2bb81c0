"""bench/gen_datasets.py on the shared public data (skipped where /work/shared/data is absent)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hone.data.records import normalize

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def gd() -> ModuleType:
    if not DATA.is_dir():
        pytest.skip(f"no shared data at {DATA}")
    spec = importlib.util.spec_from_file_location("gen_datasets", ROOT / "bench" / "gen_datasets.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _need(name: str) -> None:
    if not (DATA / name).is_dir():
        pytest.skip(f"no {name} under {DATA}")


def test_sgd(gd: ModuleType, tmp_path: Path) -> None:
    _need("sgd-banking")
    counts = gd.convert_sgd(DATA, tmp_path)
    assert set(counts) == {"train", "validation", "test"} and min(counts.values()) > 0
    for name, n in counts.items():
        rows = _rows(tmp_path / f"{name}.jsonl")
        assert len(rows) == n
        for row in rows[:: max(1, n // 50)]:
            msgs = row["messages"]
            assert set(row) == {"messages", "conversation_id"}
            assert msgs[0] == {"role": "system", "content": gd.SGD_SYSTEM} and msgs[1]["role"] == "user"
            assert msgs[-1]["role"] == "assistant" and "weight" not in msgs[-1]
            assert all(m.get("weight") == 0 for m in msgs[1:-1] if m["role"] == "assistant")
            assert len(msgs) - 2 <= 6  # at most 6 context turns
            data, issues = normalize(row, "chat")
            assert data is not None and issues == []
    assert len({r["conversation_id"] for r in _rows(tmp_path / "test.jsonl")}) > 1


def test_sgd_only_banking_turns_become_targets(gd: ModuleType) -> None:
    _need("sgd-banking")
    dialogue = next(d for d in json.loads((DATA / "sgd-banking" / "dev" / "dialogues_011.json").read_text())
                    if len(d["services"]) > 1 and gd._is_bank(d["services"]))
    system_turns = [t for t in dialogue["turns"] if t["speaker"] == "SYSTEM"]
    bank = [t["utterance"] for t in system_turns if gd._is_bank(f["service"] for f in t["frames"])]
    got = gd.sgd_examples(dialogue)
    assert [ex["messages"][-1]["content"] for ex in got] == bank and 0 < len(bank) < len(system_turns)
    assert len(gd.sgd_examples(dialogue, bank_turns_only=False)) == len(system_turns)


def test_dialogsum(gd: ModuleType, tmp_path: Path) -> None:
    _need("dialogsum")
    counts = gd.convert_dialogsum(DATA, tmp_path)
    assert counts == {"train": 450, "validation": 50, "test": 500}
    train, val, test = (_rows(tmp_path / f"{n}.jsonl") for n in ("train", "validation", "test"))
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    for row in (train[0], val[0], test[0]):
        assert row["prompt"].startswith("Summarize the following dialogue.\n\n#Person1#:")
        assert normalize(row, "prompt_completion")[1] == []
    assert len(test[0]["references"]) == 3 and test[0]["completion"] == test[0]["references"][0]
    gd.convert_dialogsum(DATA, tmp_path / "again")
    assert _rows(tmp_path / "again" / "validation.jsonl") == val  # seeded split


def test_teleqna(gd: ModuleType, tmp_path: Path) -> None:
    _need("teleqna")
    counts = gd.convert_teleqna(DATA, tmp_path)
    assert counts["mc_train"] + counts["mc_test"] == 10_000 and abs(counts["mc_test"] - 2000) <= 5
    assert 0 < counts["explanations_train"] <= counts["mc_train"]
    train, test = _rows(tmp_path / "mc_train.jsonl"), _rows(tmp_path / "mc_test.jsonl")
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    for item in train[:200] + test[:200]:
        assert set(item) == {"id", "question", "options", "answer", "category", "explanation"}
        assert 2 <= len(item["options"]) <= 5 and 0 <= item["answer"] < len(item["options"])
        assert all(isinstance(o, str) and o for o in item["options"])
    texts = _rows(tmp_path / "explanations_train.jsonl")
    assert texts[0]["text"].startswith("Question: ") and "\nAnswer: " in texts[0]["text"]
    test_questions = {r["question"] for r in test}  # repeated question texts stay on one side
    assert not test_questions & {r["question"] for r in train}
    assert not any(t["text"].split("\n")[0][len("Question: "):] in test_questions for t in texts)
    # the topic classification files: the same split, question and options as the text, the category as label
    assert counts["topics/train.csv"] == counts["mc_train"] and counts["topics/test.csv"] == counts["mc_test"]
    with (tmp_path / "topics" / "test.csv").open(encoding="utf-8", newline="") as fh:
        topics = list(csv.DictReader(fh))
    assert [r["category"] for r in topics] == [r["category"] for r in test]
    assert topics[0]["text"].split("\n") == [test[0]["question"], *test[0]["options"]]
    assert len({r["category"] for r in topics}) == 5


def test_cli_refuses_output_inside_repo(gd: ModuleType) -> None:
    with pytest.raises(SystemExit):
        gd.main(["dialogsum", str(ROOT / "converted"), "--data", str(DATA)])
    assert not (ROOT / "converted").exists()
