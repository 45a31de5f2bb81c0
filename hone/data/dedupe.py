"""De-duplication: exact (normalized-text hash) and near-duplicate (MinHash LSH, datasketch),
keeping the first occurrence of each cluster; plus the cross-split leakage check.

Near-duplicates are measured as the Jaccard similarity of character n-gram shingles of the
normalized text (case-folded, punctuation and extra spaces removed).  Character shingles
suit short support messages, where word n-grams are too few to be stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from datasketch import MinHash, MinHashLSH

from hone.config import DedupeConfig
from hone.data.records import Record, joined_text, labels_of, norm_text

MAX_CLUSTERS_LISTED = 50


def _shingles(text: str, k: int) -> list[bytes]:
    t = norm_text(text)
    if len(t) <= k:
        return [t.encode()]
    return list({t[i:i + k].encode() for i in range(len(t) - k + 1)})


def minhashes(texts: Sequence[str], num_perm: int, k: int) -> list[MinHash]:
    # one shared permutation set: MinHash.bulk avoids regenerating it per text
    return MinHash.bulk([_shingles(t, k) for t in texts], num_perm=num_perm, seed=1)


def _cluster_entry(recs: list[Record], schema: str, kind: str, members: list[int], rep: int) -> dict[str, Any]:
    return {"kind": kind, "kept": recs[rep].where, "size": len(members) + 1,
            "removed": [recs[i].where for i in members[:10]],
            "text": joined_text(schema, recs[rep].data)[:160]}


def _content(x: Any) -> str:
    return x if isinstance(x, str) else " ".join(m.get("content", "") for m in x if isinstance(m, dict))


def target(schema: str, data: dict[str, Any]) -> str | None:
    """What a generator row teaches (its replies, completion, output, or chosen-then-rejected pair), normalized; None
    for classification and plain text.  Near-duplicate rows of these schemas are one row only when they teach the
    same thing: a shared system prompt or instruction made distinct conversations (and antonym pairs with opposite
    outputs, or a preference pair and its swap) look alike."""
    if schema == "chat":
        return norm_text(" ".join(m["content"] for m in data["messages"] if m["role"] == "assistant"))
    if schema in ("prompt_completion", "instruction"):
        return norm_text(_content(data["completion" if schema == "prompt_completion" else "output"]))
    if schema == "preference":
        return norm_text(_content(data["chosen"])) + "\x00" + norm_text(_content(data["rejected"]))
    return None


def dedupe_records(records: list[Record], schema: str, cfg: DedupeConfig) -> tuple[list[Record], dict]:
    """Drop exact then near duplicates, keeping the first of each cluster; report clusters."""
    texts = [joined_text(schema, r.data) for r in records]
    removed: set[int] = set()
    clusters: dict[tuple[str, int], list[int]] = {}
    conflicts = 0
    if cfg.exact:
        first: dict[str, int] = {}
        for i, t in enumerate(texts):
            h = hashlib.sha256(norm_text(t).encode()).hexdigest()
            if h in first:
                removed.add(i)
                clusters.setdefault(("exact", first[h]), []).append(i)
            else:
                first[h] = i
    if cfg.near:
        idx = [i for i in range(len(records)) if i not in removed]
        hashes = dict(zip(idx, minhashes([texts[i] for i in idx], cfg.num_perm, cfg.shingle), strict=True))
        teaches = {i: target(schema, records[i].data) for i in idx}
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        for i in idx:
            m = hashes[i]
            cands = sorted(int(c) for c in lsh.query(m))
            match = next((c for c in cands if m.jaccard(hashes[c]) >= cfg.threshold and teaches[c] == teaches[i]),
                         None)
            if match is None:
                lsh.insert(str(i), m)
            else:
                removed.add(i)
                clusters.setdefault(("near", match), []).append(i)
    conflicting = []
    for (kind, rep), members in clusters.items():
        if any(labels_of(records[m].data) != labels_of(records[rep].data) for m in members):
            conflicts += 1
            if len(conflicting) < MAX_CLUSTERS_LISTED:  # which labels disagree: one of them was dropped with its row
                conflicting.append({**_cluster_entry(records, schema, kind, members, rep), "labels": {
                    records[i].where: labels_of(records[i].data) for i in [rep, *members[:10]]}})
    kept = [r for i, r in enumerate(records) if i not in removed]
    ordered = sorted(clusters.items(), key=lambda kv: (-len(kv[1]), kv[0][1]))
    report = {
        "exact_removed": sum(len(v) for (k, _), v in clusters.items() if k == "exact"),
        "near_removed": sum(len(v) for (k, _), v in clusters.items() if k == "near"),
        "clusters": len(clusters), "label_conflicts": conflicts, "kept": len(kept),
        "conflicting_clusters": conflicting,
        "largest_clusters": [_cluster_entry(records, schema, k, v, rep) for (k, rep), v in ordered[:MAX_CLUSTERS_LISTED]],
    }
    return kept, report


def leakage(splits: dict[str, list[Record]], schema: str, threshold: float, *, drop: bool,
            num_perm: int = 128, k: int = 5) -> tuple[dict[str, list[Record]], dict]:
    """Near-duplicates between train and validation/test; optionally drop them from the eval side."""
    train = splits.get("train", [])
    train_hashes = minhashes([joined_text(schema, r.data) for r in train], num_perm, k)
    train_targets = [target(schema, r.data) for r in train]  # a generator row leaks only what it teaches
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, m in enumerate(train_hashes):
        lsh.insert(str(i), m)
    out = dict(splits)
    report: dict[str, Any] = {"threshold": threshold, "action": "drop" if drop else "report", "pairs": {}}
    examples = []
    for name in ("validation", "test"):
        recs = splits.get(name, [])
        hashes = minhashes([joined_text(schema, r.data) for r in recs], num_perm, k) if recs else []
        leaked = []
        for j, m in enumerate(hashes):
            mine = target(schema, recs[j].data)
            hits = [int(c) for c in lsh.query(m) if m.jaccard(train_hashes[int(c)]) >= threshold
                    and train_targets[int(c)] == mine]
            if hits:
                leaked.append(j)
                if len(examples) < 20:
                    examples.append({"split": name, "record": recs[j].where, "train": train[min(hits)].where})
        report["pairs"][name] = len(leaked)
        if drop and leaked:
            gone = set(leaked)
            out[name] = [r for j, r in enumerate(recs) if j not in gone]
    report["examples"] = examples
    report["dropped"] = sum(report["pairs"].values()) if drop else 0
    return out, report
