"""Train / validation / test splits: seeded, stratified by label, group-aware.

With a group column (conversation or customer id) whole groups are assigned, so no thread
or customer spans two splits.  Stratification works on units (records, or groups labelled
by their most common label); a label with a single unit stays in train, out of
stratification.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from hone.config import SplitConfig
from hone.data.records import Record, labels_of, rarest_label

SPLITS = ("train", "validation", "test")


def _units(records: list[Record], grouped: bool) -> list[list[int]]:
    if not grouped:
        return [[i] for i in range(len(records))]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(str(r.meta["group"]), []).append(i)
    return list(groups.values())  # insertion order = order of first appearance


def _unit_label(records: list[Record], unit: list[int], rarity: Counter | None = None) -> str:
    """The unit's stratum: its most common (first) label; for multi-label data (``rarity``: every label's count) its
    rarest label (:func:`rarest_label`; by first label, a rare second label's only example left train in 10 of 50
    seeds)."""
    if rarity is not None:
        labs = sorted({lab for i in unit for lab in labels_of(records[i].data)})
        return rarest_label(labs, rarity) if labs else ""
    counts = Counter(lab for i in unit for lab in labels_of(records[i].data)[:1])
    if not counts:
        return ""
    top = max(counts.values())
    return min(lab for lab, n in counts.items() if n == top)


def split_records(records: list[Record], cfg: SplitConfig, seed: int) -> dict[str, list[Record]]:
    """Assign every record to exactly one split; each split keeps the input order."""
    units = _units(records, cfg.group_column is not None)
    multi = any(len(labels_of(r.data)) > 1 for r in records)
    rarity = Counter(lab for r in records for lab in labels_of(r.data)) if multi else None
    strata: dict[str, list[int]] = defaultdict(list)
    assign: dict[int, str] = {}
    for u, unit in enumerate(units):
        if any("augmented" in records[i].meta or "oversampled" in records[i].meta for i in unit):
            assign[u] = "train"  # synthetic rows in the input (a prepared train file prepared again) stay in train
            continue
        key = _unit_label(records, unit, rarity) if cfg.stratify else ""
        strata[key].append(u)
    rng = random.Random(seed)
    keys = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        if len(members) < 2 and cfg.stratify:  # single example of a label: train only
            assign[members[0]] = "train"
        else:
            keys.append(key)
    sizes = [len(strata[k]) for k in keys]
    n_test = _allocate(sizes, cfg.test, [n - 1 for n in sizes], rng)  # keep at least one unit for training
    n_val = _allocate(sizes, cfg.validation, [n - 1 - t for n, t in zip(sizes, n_test, strict=True)], rng)
    for key, t, v in zip(keys, n_test, n_val, strict=True):
        for pos, u in enumerate(strata[key]):
            assign[u] = "test" if pos < t else "validation" if pos < t + v else "train"
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for u, unit in enumerate(units):
        out[assign[u]].extend(unit)
    return {s: [records[i] for i in sorted(idx)] for s, idx in out.items()}


def _allocate(sizes: list[int], share: float, caps: list[int], rng: random.Random) -> list[int]:
    """Units of each stratum for a split of ``share``: each stratum's own rounded share (at most its cap), then
    units added to or taken from the strata whose count is furthest from their exact share (ties in seeded order)
    until the total is the whole's rounded share.  Each stratum rounded alone put 20 labels of 5 examples each, at
    0.1, in no split at all (0.5 rounds to 0)."""
    exact = [n * share for n in sizes]
    out = [min(round(e), max(c, 0)) for e, c in zip(exact, caps, strict=True)]
    target = min(round(sum(sizes) * share), sum(max(c, 0) for c in caps))
    tie = [rng.random() for _ in sizes]
    while sum(out) < target:
        k = max((k for k in range(len(out)) if out[k] < caps[k]), key=lambda k: (exact[k] - out[k], tie[k]))
        out[k] += 1
    while sum(out) > target:
        k = min((k for k in range(len(out)) if out[k] > 0), key=lambda k: (exact[k] - out[k], tie[k]))
        out[k] -= 1
    return out


def carve(train: list[Record], share: float, cfg: SplitConfig, seed: int) -> tuple[list[Record], list[Record]]:
    """Split ``share`` of ``train`` off (stratified, group-aware) when a split file is missing."""
    sub = SplitConfig(train=1 - share, validation=share, test=0.0, stratify=cfg.stratify,
                      group_column=cfg.group_column)
    parts = split_records(train, sub, seed)
    return parts["train"], parts["validation"]
