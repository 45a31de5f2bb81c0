"""Class balance for the training split: ``none | class_weights | oversample | undersample``.

Class weights are not applied here: they are written into the prepared dataset's metadata
and consumed by the training loss.  Over/undersampling is seeded and only ever touches the
training split (rows added by oversampling are marked).  Multi-label rows count towards
their first label.
"""

from __future__ import annotations

import random
from collections import Counter

from hone.data.records import Record, labels_of, rarest_label


def class_weights(records: list[Record]) -> dict[str, float]:
    """``n_samples / (n_classes * n_c)``, scikit-learn's "balanced" heuristic."""
    counts = Counter(lab for r in records for lab in labels_of(r.data))
    total, k = sum(counts.values()), len(counts)
    return {lab: round(total / (k * n), 6) for lab, n in sorted(counts.items())}


def _by_label(records: list[Record]) -> dict[str, list[int]]:
    """Row indices per label; a multi-label row counts under its :func:`rarest_label`, as the split stratifies it."""
    rarity = Counter(lab for r in records for lab in labels_of(r.data))
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        labs = labels_of(r.data)
        out.setdefault(rarest_label(labs, rarity) if labs else "", []).append(i)
    return dict(sorted(out.items()))


def balance_records(records: list[Record], strategy: str, seed: int) -> tuple[list[Record], dict]:
    if strategy in ("none", "class_weights") or not records:
        rep = {"strategy": strategy, "rows_before": len(records), "rows_after": len(records)}
        if strategy == "class_weights":
            rep["class_weights"] = class_weights(records)
        return records, rep
    rng = random.Random(seed)
    groups = _by_label(records)
    sizes = [len(v) for v in groups.values()]
    if strategy == "oversample":
        target = max(sizes)
        extra: list[Record] = []
        for idx in groups.values():
            need = target - len(idx)
            picks = [idx[j % len(idx)] for j in range(need)]  # cycle through every row first
            rng.shuffle(picks)
            extra += [Record(records[i].data, records[i].source, records[i].line,
                             {**records[i].meta, "oversampled": True}) for i in sorted(picks)]
        out = records + extra
    elif strategy == "undersample":
        target = min(sizes)
        keep = {i for idx in groups.values() for i in rng.sample(idx, target)}
        out = [r for i, r in enumerate(records) if i in keep]
    else:
        raise ValueError(f"unknown balance strategy {strategy!r}")
    return out, {"strategy": strategy, "target_per_class": target, "rows_before": len(records),
                 "rows_after": len(out)}


def sample_shots(records: list[Record], k: int, seed: int) -> tuple[list[Record], dict]:
    """At most ``k`` examples per label, sampled with ``seed`` (the k-shot training sets of few-shot benchmarks)."""
    rng = random.Random(seed)
    keep = {i for idx in _by_label(records).values() for i in (idx if len(idx) <= k else rng.sample(idx, k))}
    out = [r for i, r in enumerate(records) if i in keep]
    return out, {"shots": k, "rows_before": len(records), "rows_after": len(out)}
