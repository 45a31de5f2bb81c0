"""Tokenized language-modelling data -> batches: padded, or packed without cross-contamination.

:class:`LMData` holds rows of (input_ids, labels); a packed row concatenates several examples
and remembers where each starts.  A packed batch carries ``position_ids`` that restart at 0
for every example and a 4-D additive attention mask ``(B, 1, T, T)`` that is causal *within*
an example and blocks attention across examples, so a packed example sees exactly what it
would see alone (a test pins the logits).  Unpacked batches are right-padded with a 2-D mask.

:class:`PairData` holds preference pairs (chosen, rejected) for DPO; a batch stacks the B
chosen rows then the B rejected rows, so one forward pass scores both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hone.data.batches import length_mask, padded
from hone.data.chat import IGNORE, Example


@dataclass
class LMData:
    """Rows for causal LM training; ``segments[r]`` lists the start offsets of packed examples in row r."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    pad_id: int
    segments: list[list[int]] | None = None  # None = not packed
    encoder_decoder: bool = False  # seq2seq: input_ids = source, labels = target
    sources: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def batch(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = [self.input_ids[i] for i in idx]
        labs = [self.labels[i] for i in idx]
        if self.encoder_decoder:
            return _seq2seq_batch(rows, labs, self.pad_id)
        lengths = [len(r) for r in rows]
        width = max(lengths)
        out = {"input_ids": padded(rows, width, self.pad_id), "labels": padded(labs, width, IGNORE),
               "num_tokens": sum(lengths)}
        if self.segments is None:
            out["attention_mask"] = length_mask(lengths, width)
            return out
        segs = [self.segments[i] for i in idx]
        out["position_ids"], out["attention_mask"] = _packed_positions_and_mask(segs, lengths, width)
        return out


def _seq2seq_batch(src: list[list[int]], tgt: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    lengths = [len(r) for r in src]
    w, v = max(lengths), max(len(r) for r in tgt)
    labels = padded(tgt, v, IGNORE)
    return {"input_ids": padded(src, w, pad_id), "attention_mask": length_mask(lengths, w), "labels": labels,
            "num_tokens": sum(lengths) + int((labels != IGNORE).sum())}


def _packed_positions_and_mask(segs: list[list[int]], lens: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids (B, T) restarting per example, and an additive mask (B, 1, T, T) (0 = attend): each example
    attends causally to its own tokens, and the padding after the last one to the padding (never read by a real token,
    and never trained; so that every query has a key, which hone's CPU attention kernel requires)."""
    b = len(segs)
    pos = torch.zeros((b, width), dtype=torch.long)
    seg_id = torch.full((b, width), -1, dtype=torch.long)  # -1 = padding
    for k, (starts, n) in enumerate(zip(segs, lens, strict=True)):
        bounds = [*starts, n]
        for j in range(len(starts)):
            a, e = bounds[j], bounds[j + 1]
            pos[k, a:e] = torch.arange(e - a)
            seg_id[k, a:e] = j
    same = seg_id[:, :, None] == seg_id[:, None, :]  # (B, T, T)
    allowed = same & torch.tril(torch.ones((width, width), dtype=torch.bool))
    mask = torch.zeros((b, 1, width, width))
    mask.masked_fill_(~allowed[:, None], torch.finfo(torch.float32).min)
    return pos, mask


def from_examples(examples: list[Example], pad_id: int) -> LMData:
    return LMData([e.input_ids for e in examples], [e.labels for e in examples], pad_id)


def pack(examples: list[Example], max_length: int, pad_id: int) -> LMData:
    """First-fit-decreasing packing of examples into rows of at most ``max_length`` tokens.

    Deterministic (ties keep input order); examples longer than ``max_length`` were already
    truncated, so each fits a row on its own.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    rows: list[list[int]] = []  # example indices per row
    free: list[int] = []
    for i in order:
        n = len(examples[i].input_ids)
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max_length - n)
    ids, labels, segs = [], [], []
    for members in rows:
        starts, a, b = [], [], []
        for i in members:
            starts.append(len(a))
            a += examples[i].input_ids
            b += examples[i].labels
        ids.append(a), labels.append(b), segs.append(starts)
    return LMData(ids, labels, pad_id, segments=segs)


def chunk_text(ids: list[int], max_length: int) -> list[Example]:
    """Split one long document's ids into max_length pieces (continued pre-training)."""
    return [Example(ids[s:s + max_length], ids[s:s + max_length], length=len(ids))
            for s in range(0, len(ids), max_length) if len(ids[s:s + max_length]) > 1]


@dataclass
class PairData:
    """Preference pairs: chosen and rejected rows share the prompt; labels mark the reply tokens."""

    chosen: LMData
    rejected: LMData

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def lengths(self) -> list[int]:
        return [max(a, b) for a, b in zip(self.chosen.lengths, self.rejected.lengths, strict=True)]

    def __post_init__(self) -> None:
        self._both = LMData(self.chosen.input_ids + self.rejected.input_ids,
                            self.chosen.labels + self.rejected.labels, self.chosen.pad_id)

    def batch(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        """Rows 0..B-1 are the chosen replies, rows B..2B-1 the rejected ones."""
        n = len(self.chosen)
        return self._both.batch([*idx, *(n + i for i in idx)])
