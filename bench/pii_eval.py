"""Measure hone's PII redactor.

1. Precision / recall / F1 per entity type and overall on tests/data/pii_labelled.jsonl.
   Overlap match: a predicted span is correct when it overlaps a gold span of the same type,
   and a gold span is found when a same-type prediction overlaps it.  Exact match: same
   (start, end, type).
2. False positives on PII-free support text: the BANKING77 queries in
   ../shared/data/banking77/{train,test}.csv (skipped with a message when absent): the share
   of messages that redaction alters and how often each type fired.
3. PERSON spans in every turn of the SGD dialogues in ../shared/data/sgd-banking (unlabelled: real contacts
   and, before session 28, places and venues), with the most frequent.
4. Speed: messages per second for ``Redactor.redact`` (one process, after start-up).

    python bench/pii_eval.py [--errors] [--labelled PATH] [--shared DIR]

Prints a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hone.data.pii import ENTITY_TYPES, Redactor  # noqa: E402


def prf(tp_p: int, n_p: int, tp_g: int, n_g: int) -> dict[str, float]:
    p = tp_p / n_p if n_p else 1.0
    r = tp_g / n_g if n_g else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def evaluate(rows: list[dict], red: Redactor, show_errors: bool = False) -> dict:
    c: dict[str, collections.Counter] = {t: collections.Counter() for t in ENTITY_TYPES}
    for row in rows:
        text, gold = row["text"], [(e["start"], e["end"], e["type"]) for e in row["entities"]]
        pred = red.find(text)
        for s, e, t in pred:
            k = c.setdefault(t, collections.Counter())
            k["pred"] += 1
            hit = any(t == gt and s < ge and gs < e for gs, ge, gt in gold)
            k["tp_pred"] += hit
            k["exact"] += (s, e, t) in gold
            if show_errors and not hit:
                print(f"  FP {t:<14} {text[s:e]!r:<40} in {text!r}")
        for s, e, t in gold:
            k = c[t]
            k["gold"] += 1
            hit = any(t == pt and s < pe and ps < e for ps, pe, pt in pred)
            k["tp_gold"] += hit
            if show_errors and not hit:
                print(f"  FN {t:<14} {text[s:e]!r:<40} in {text!r}")
    out = {}
    tot = collections.Counter()
    for t, k in c.items():
        tot.update(k)
        out[t] = {"gold": k["gold"], "pred": k["pred"], **prf(k["tp_pred"], k["pred"], k["tp_gold"], k["gold"]),
                  "exact": prf(k["exact"], k["pred"], k["exact"], k["gold"])}
    out["OVERALL"] = {"gold": tot["gold"], "pred": tot["pred"],
                      **prf(tot["tp_pred"], tot["pred"], tot["tp_gold"], tot["gold"]),
                      "exact": prf(tot["exact"], tot["pred"], tot["exact"], tot["gold"])}
    return out


def banking77(folder: Path, red: Redactor, show_errors: bool = False) -> dict | None:
    files = [folder / "train.csv", folder / "test.csv"]
    if not all(f.is_file() for f in files):
        return None
    texts: list[str] = []
    for f in files:
        with open(f, newline="", encoding="utf-8") as fh:
            texts += [row["text"] for row in csv.DictReader(fh)]
    before = collections.Counter(red.counts)
    t0 = time.perf_counter()
    altered = 0
    for text in texts:
        new = red.redact(text)
        if new != text:
            altered += 1
            if show_errors:
                print(f"  B77 {text!r} -> {new!r}")
    dt = time.perf_counter() - t0
    fired = dict(sorted((red.counts - before).items()))
    return {"messages": len(texts), "altered": altered, "altered_share": round(altered / len(texts), 5),
            "fired": fired, "messages_per_s": round(len(texts) / dt, 1)}


def sgd_person_spans(folder: Path) -> dict | None:
    """PERSON spans found in every turn of the SGD dialogues (unlabelled: it names real contacts as well as the
    places and venues that were false positives), and the most frequent spans."""
    from hone.data.pii_names import find_person_spans

    files = sorted(folder.glob("*/dialogues_*.json"))
    if not files:
        return None
    turns = [t["utterance"] for f in files for d in json.loads(f.read_text(encoding="utf-8")) for t in d["turns"]]
    spans = collections.Counter(t[a:b] for t in turns for a, b, _ in find_person_spans(t))
    return {"turns": len(turns), "person_spans": sum(spans.values()), "top": spans.most_common(20)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", type=Path, default=ROOT / "tests" / "data" / "pii_labelled.jsonl")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--errors", action="store_true", help="print every false positive / negative")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    red = Redactor()
    startup = time.perf_counter() - t0
    rows = [json.loads(line) for line in args.labelled.read_text(encoding="utf-8").splitlines() if line.strip()]
    res = evaluate(rows, red, args.errors)
    t1 = time.perf_counter()
    for _ in range(3):
        for row in rows:
            red.redact(row["text"])
    labelled_speed = 3 * len(rows) / (time.perf_counter() - t1)

    print(f"labelled set: {args.labelled.relative_to(ROOT) if args.labelled.is_relative_to(ROOT) else args.labelled}"
          f" ({len(rows)} messages, {res['OVERALL']['gold']} entities)")
    print(f"{'type':<15}{'gold':>6}{'pred':>6}{'P':>8}{'R':>8}{'F1':>8}{'P exact':>9}{'R exact':>9}")
    for t, m in res.items():
        print(f"{t:<15}{m['gold']:>6}{m['pred']:>6}{m['precision']:>8.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}"
              f"{m['exact']['precision']:>9.3f}{m['exact']['recall']:>9.3f}")
    b77 = banking77(args.shared / "data" / "banking77", red, args.errors)
    if b77 is None:
        print(f"BANKING77 false-positive check skipped: {args.shared / 'data' / 'banking77'} not found")
    else:
        print(f"BANKING77 (PII-free): {b77['altered']}/{b77['messages']} messages altered "
              f"({100 * b77['altered_share']:.2f}%), fired: {b77['fired']}, {b77['messages_per_s']:.0f} messages/s")
    sgd = sgd_person_spans(args.shared / "data" / "sgd-banking")
    if sgd is not None:
        print(f"SGD dialogues: {sgd['person_spans']} PERSON spans in {sgd['turns']} turns; most frequent: "
              + ", ".join(f"{s} {n}" for s, n in sgd["top"][:10]))
    print(f"start-up (Redactor(), incl. presidio import): {startup:.2f}s; labelled set: {labelled_speed:.0f} messages/s")
    print(json.dumps({"labelled": res, "banking77": b77, "sgd": sgd, "startup_s": round(startup, 2),
                      "labelled_messages_per_s": round(labelled_speed, 1),
                      "python": platform.python_version(), "cpus": __import__("os").cpu_count()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
