"""Small helpers shared by tests (plain module, not fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

INTENTS = ["billing", "roaming", "outage"]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def clf_rows(n: int = 30, labels: list[str] = INTENTS) -> list[dict]:
    words = ["bill", "charge", "abroad", "signal", "network", "invoice", "travel", "mast", "refund", "coverage",
             "payment", "europe", "down", "tower", "price", "spain"]
    rows = []
    for i in range(n):
        lab = labels[i % len(labels)]
        text = f"ticket {i}: {lab} question about {words[i % len(words)]} and {words[(i * 7) % len(words)]} number {i * 13}"
        rows.append({"text": text, "label": lab})
    return rows


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
