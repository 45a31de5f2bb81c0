"""Convert the public generation data sets in ``shared/data`` into hone's input formats.

    python bench/gen_datasets.py sgd       OUT_DIR [--data DIR]   # chat: bank assistant replies
    python bench/gen_datasets.py dialogsum OUT_DIR [--data DIR]   # prompt/completion: summaries
    python bench/gen_datasets.py teleqna   OUT_DIR [--data DIR]   # multiple choice + explanation text

``--data`` defaults to ``../shared/data`` relative to the repository root (each data set's
``SOURCE.md`` there gives its origin and licence). OUT_DIR must lie outside the repository:
the licences (CC BY-SA, CC BY-NC-SA, and TeleQnA's wish to keep the text out of public code)
keep the converted data out of git. Splits are seeded; every run gives the same files.

* ``sgd`` -> ``train/validation/test.jsonl`` from SGD's ``train/dev/test``: one chat example
  per banking SYSTEM turn (see :func:`sgd_examples`), ``conversation_id`` = dialogue id so
  hone can keep a dialogue's examples in one split.
* ``dialogsum`` -> ``train.jsonl`` (450) + ``validation.jsonl`` (50) from the dev file,
  ``test.jsonl`` from the test file with ``completion`` = the first of its three summaries
  and ``references`` = all three (for multi-reference scoring).
* ``teleqna`` -> ``mc_train.jsonl`` / ``mc_test.jsonl`` (80/20, grouped by question text) of
  ``{"id", "question", "options", "answer", "category", "explanation"}`` (``answer`` is a
  0-based option index), and ``explanations_train.jsonl`` of ``{"text"}`` built from the
  train split only (question, correct answer, explanation) for continued pre-training / SFT;
  and ``topics/train.csv`` / ``topics/test.csv`` (the same split) of ``text`` (the question and
  its options, one per line) / ``category`` (its 5 categories): a classification task with
  longer texts than BANKING77's (median 53 MiniLM tokens, 99th percentile 148), for
  ``bench/speed.py classify --data-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
BANK_SERVICES = ("Banks", "Payment")
SGD_SYSTEM = ("You are a bank's virtual assistant. Help the customer check balances, transfer money and "
              "make payments. Be brief and polite, and ask for any detail you still need.")
SGD_SPLITS = {"train": "train", "validation": "dev", "test": "test"}
SUMMARY_PROMPT = "Summarize the following dialogue.\n\n"
TELEQNA_PASSWORD = b"teleqnadataset"  # published in the TeleQnA README; see shared/data/teleqna/SOURCE.md


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8, no ASCII escaping); returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# ----------------------------------------------------------------------------- SGD banking


def _is_bank(services: Iterable[str]) -> bool:
    return any(s.startswith(BANK_SERVICES) for s in services)


def sgd_examples(dialogue: dict[str, Any], *, max_turns: int = 6, bank_turns_only: bool = True) -> list[dict]:
    """One chat example per SYSTEM turn of an SGD dialogue.

    Messages: the fixed bank-assistant system prompt, then up to ``max_turns`` previous turns
    (a leading SYSTEM turn is dropped so the context starts with the user, as hone requires,
    so the context holds at most ``max_turns - 1`` turns when max_turns is even), earlier
    assistant turns with ``"weight": 0``, and the SYSTEM utterance as the final, trained reply.
    With ``bank_turns_only`` only SYSTEM turns whose frame is a Banks/Payment service become
    targets: multi-service dialogues (all of SGD's dev ones) would otherwise train the bank
    assistant to report the weather or book flights.
    """
    turns = dialogue["turns"]
    out = []
    for i, turn in enumerate(turns):
        if turn["speaker"] != "SYSTEM" or (bank_turns_only and not _is_bank(f["service"] for f in turn["frames"])):
            continue
        context = turns[max(0, i - max_turns):i]
        while context and context[0]["speaker"] == "SYSTEM":
            context = context[1:]
        if not context:
            continue
        msgs: list[dict[str, Any]] = [{"role": "system", "content": SGD_SYSTEM}]
        for t in context:
            user = t["speaker"] == "USER"
            msgs.append({"role": "user", "content": t["utterance"]} if user
                        else {"role": "assistant", "content": t["utterance"], "weight": 0})
        msgs.append({"role": "assistant", "content": turn["utterance"]})
        out.append({"messages": msgs, "conversation_id": dialogue["dialogue_id"]})
    return out


def convert_sgd(data_dir: Path, out_dir: Path, *, bank_turns_only: bool = True) -> dict[str, int]:
    """Banking/payment dialogues of each SGD split -> ``{train,validation,test}.jsonl``; row counts."""
    counts = {}
    for name, split in SGD_SPLITS.items():
        rows = []
        for path in sorted((data_dir / "sgd-banking" / split).glob("dialogues_*.json")):
            for dialogue in json.loads(path.read_text(encoding="utf-8")):
                if _is_bank(dialogue["services"]):
                    rows += sgd_examples(dialogue, bank_turns_only=bank_turns_only)
        counts[name] = write_jsonl(out_dir / f"{name}.jsonl", rows)
    return counts


# ----------------------------------------------------------------------------- DialogSum


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _pair(row: dict[str, Any], summary: str) -> dict[str, str]:
    return {"prompt": SUMMARY_PROMPT + row["dialogue"], "completion": summary}


def convert_dialogsum(data_dir: Path, out_dir: Path, *, seed: int = 0, n_validation: int = 50) -> dict[str, int]:
    """DialogSum dev -> seeded train/validation split, test -> test (three references); row counts."""
    src = data_dir / "dialogsum"
    dev = _read_jsonl(src / "dialogsum.dev.jsonl")
    random.Random(seed).shuffle(dev)
    test = []
    for r in _read_jsonl(src / "dialogsum.test.jsonl"):
        refs = [r[k] for k in ("summary1", "summary2", "summary3") if r.get(k)]
        test.append({**_pair(r, refs[0]), "references": refs, "id": r["fname"]})
    return {
        "train": write_jsonl(out_dir / "train.jsonl", ({**_pair(r, r["summary"]), "id": r["fname"]}
                                                       for r in dev[n_validation:])),
        "validation": write_jsonl(out_dir / "validation.jsonl", ({**_pair(r, r["summary"]), "id": r["fname"]}
                                                                 for r in dev[:n_validation])),
        "test": write_jsonl(out_dir / "test.jsonl", test),
    }


# ----------------------------------------------------------------------------- TeleQnA


def load_teleqna(zip_path: Path) -> dict[str, dict[str, Any]]:
    """Decrypt ``TeleQnA.zip`` (WinZip AES) in memory: ``{"question N": record}``."""
    import pyzipper

    with pyzipper.AESZipFile(zip_path) as z:
        z.setpassword(TELEQNA_PASSWORD)
        return json.loads(z.read("TeleQnA.txt"))


def teleqna_item(key: str, rec: dict[str, Any]) -> dict[str, Any]:
    """One record -> ``{"id", "question", "options", "answer", "category", "explanation"}``.

    ``answer`` is the 0-based index K-1 of the record's ``"option K: ..."`` answer.
    """
    options = []
    while f"option {len(options) + 1}" in rec:
        options.append(str(rec[f"option {len(options) + 1}"]).strip())
    m = re.match(r"\s*option\s*(\d+)\s*:", rec["answer"])
    if m is None or not 1 <= int(m.group(1)) <= len(options):
        raise ValueError(f"{key}: cannot read the answer {rec['answer']!r}")
    return {"id": key, "question": rec["question"].strip(), "options": options, "answer": int(m.group(1)) - 1,
            "category": rec["category"], "explanation": rec.get("explanation", "").strip()}


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> int:
    """Write ``columns`` of each row as a UTF-8 CSV with a header; returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def topic_row(item: dict[str, Any]) -> dict[str, str]:
    """The question and its options (one per line) as ``text``, its category as ``category``."""
    return {"text": "\n".join([item["question"], *item["options"]]), "category": item["category"]}


def explanation_text(item: dict[str, Any]) -> dict[str, str]:
    """Question, correct answer and explanation as one ``{"text"}`` row."""
    return {"text": f"Question: {item['question']}\nAnswer: {item['options'][item['answer']]}\n"
                    f"Explanation: {item['explanation']}"}


def convert_teleqna(data_dir: Path, out_dir: Path, *, seed: int = 0, test_share: float = 0.2) -> dict[str, int]:
    """TeleQnA -> seeded 80/20 multiple-choice split + train-split explanation text; row counts.

    The split is by question text: 26 texts occur 2-3 times (mostly with different options and
    answers), and a train explanation for a test question would leak its answer.
    """
    raw = load_teleqna(data_dir / "teleqna" / "TeleQnA.zip")
    groups: dict[str, list[dict[str, Any]]] = {}
    for k in sorted(raw, key=lambda k: int(k.split()[-1])):
        item = teleqna_item(k, raw[k])
        groups.setdefault(" ".join(item["question"].lower().split()), []).append(item)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    n_test = round(sum(map(len, groups.values())) * test_share)
    test: list[dict[str, Any]] = []
    train: list[dict[str, Any]] = []
    for key in keys:  # a question text repeated in the source stays on one side of the split
        (test if len(test) < n_test else train).extend(groups[key])
    return {
        "mc_train": write_jsonl(out_dir / "mc_train.jsonl", train),
        "mc_test": write_jsonl(out_dir / "mc_test.jsonl", test),
        "explanations_train": write_jsonl(out_dir / "explanations_train.jsonl",
                                          (explanation_text(it) for it in train if it["explanation"])),
        "topics/train.csv": write_csv(out_dir / "topics" / "train.csv", map(topic_row, train), ["text", "category"]),
        "topics/test.csv": write_csv(out_dir / "topics" / "test.csv", map(topic_row, test), ["text", "category"]),
    }


# ----------------------------------------------------------------------------- CLI

CONVERTERS = {"sgd": convert_sgd, "dialogsum": convert_dialogsum, "teleqna": convert_teleqna}


def main(argv: list[str] | None = None) -> int:
    """Run one converter and print its row counts."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", choices=sorted(CONVERTERS))
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder (default {DEFAULT_DATA})")
    args = ap.parse_args(argv)
    out = args.out_dir.resolve()
    if out.is_relative_to(REPO):
        ap.error(f"OUT_DIR {out} is inside the repository; converted data must stay out of git")
    if not (args.data / ("sgd-banking" if args.dataset == "sgd" else args.dataset)).is_dir():
        ap.error(f"no {args.dataset} data under {args.data}")
    counts = CONVERTERS[args.dataset](args.data, out)
    for name, n in counts.items():
        print(f"{args.dataset}: {n:6d} rows -> {out / name}{'' if '.' in name else '.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
