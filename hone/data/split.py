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
from hone.data.records import Record, labels_of

SPLITS = ("train", "validation", "test")


def _units(records: list[Record], grouped: bool) -> list[list[int]]:
    if not grouped:
        return [[i] for i in range(len(records))]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(str(r.meta["group"]), []).append(i)
    return list(groups.values())  # insertion order = order of first appearance


def _unit_label(records: list[Record], unit: list[int]) -> str:
    counts = Counter(lab for i in unit for lab in labels_of(records[i].data)[:1])
    if not counts:
        return ""
    top = max(counts.values())
    return min(lab for lab, n in counts.items() if n == top)


def split_records(records: list[Record], cfg: SplitConfig, seed: int) -> dict[str, list[Record]]:
    """Assign every record to exactly one split; each split keeps the input order."""
    units = _units(records, cfg.group_column is not None)
    strata: dict[str, list[int]] = defaultdict(list)
    for u, unit in enumerate(units):
        key = _unit_label(records, unit) if cfg.stratify else ""
        strata[key].append(u)
    rng = random.Random(seed)
    assign: dict[int, str] = {}
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        n = len(members)
        if n < 2 and cfg.stratify:  # single example of a label: train only
            assign[members[0]] = "train"
            continue
        n_test = round(n * cfg.test)
        n_val = round(n * cfg.validation)
        while n_test + n_val >= n and (n_test or n_val):  # keep at least one unit for training
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        for pos, u in enumerate(members):
            assign[u] = "test" if pos < n_test else "validation" if pos < n_test + n_val else "train"
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for u, unit in enumerate(units):
        out[assign[u]].extend(unit)
    return {s: [records[i] for i in sorted(idx)] for s, idx in out.items()}


def carve(train: list[Record], share: float, cfg: SplitConfig, seed: int) -> tuple[list[Record], list[Record]]:
    """Split ``share`` of ``train`` off (stratified, group-aware) when a split file is missing."""
    sub = SplitConfig(train=1 - share, validation=share, test=0.0, stratify=cfg.stratify,
                      group_column=cfg.group_column)
    parts = split_records(train, sub, seed)
    return parts["train"], parts["validation"]
