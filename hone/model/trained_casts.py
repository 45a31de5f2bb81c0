"""bf16 copies of trained weights, written by the optimizer's native step instead of cast again by the next forward.

Under bf16 autocast every forward reads each trained fp32 weight and writes its bf16 copy, right after the optimizer
read and wrote the same weight.  hone's native AdamW (:meth:`hone.train.optim.AdamW._native_step`) writes that copy
in the pass in which it updates the weight, rounded as torch's cast rounds it, so the forward's products are
bit-identical and the forward skips a read of 4 and a write of 2 bytes per weight, for 2 more written by AdamW.  On
MiniLM (10.6M weights in the fused BERT layers) a full fine-tuning step was 1.009-1.014x faster at 13 tokens in
in-process A/Bs (``bench/RESULTS.md``, session 22).

It works by request: a forward that wants weights in bf16 asks :func:`stacked` for them (several weights, their rows
concatenated, such as a layer's query, key and value projections, which its product reads as one matrix).  The first
time it gets None, casts as before, and the request is kept; the optimizer's next native step asks :func:`claim` for
where to write each requested weight (a fresh tensor per request, so a copy an autograd graph saved is never
overwritten) and :func:`commit` stamps them with the weights' version counters and storage after its update.  A copy
is used only while every weight has that stamp: any other in-place change (loading a checkpoint, a user's edit), a
weight stepped by torch's path instead, or a weight that stops training makes the forward cast again.
:func:`forget` drops the copies and requests of a model (:func:`hone.model.cpu_kernels.cpu_kernels` does so when its
block ends).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import torch

DTYPE = torch.bfloat16  # the only dtype the native step writes


class _Request:
    """Weights wanted as one bf16 matrix (rows concatenated), and the last copy written."""

    __slots__ = ("weights", "copy", "stamps")

    def __init__(self, weights: Sequence[torch.Tensor]):
        # weak: a request does not keep a model alive; a weight's death drops its entry
        self.weights = tuple(weakref.ref(w, _dead) for w in weights)
        self.copy: torch.Tensor | None = None
        self.stamps: tuple | None = None

    def alive(self) -> list[torch.Tensor] | None:
        ws = [r() for r in self.weights]
        return None if any(w is None for w in ws) else ws


# id(weight) -> (a weak reference to it, its _Request): a plain dict, as this is looked up for every weight at every
# step (torch's WeakTensorKeyDictionary took 2 us a lookup); the reference tells a live weight from a reused id
_requests: dict[int, tuple[weakref.ref, _Request]] = {}


def _dead(ref: weakref.ref) -> None:
    for key, (r, _) in list(_requests.items()):
        if r is ref:
            del _requests[key]


def _request(w: torch.Tensor) -> _Request | None:
    entry = _requests.get(id(w))
    return entry[1] if entry is not None and entry[0]() is w else None


def _stamp(w: torch.Tensor) -> tuple[int, int]:
    return w._version, w.data_ptr()


def _eligible(w: torch.Tensor) -> bool:
    return (isinstance(w, torch.nn.Parameter) and w.requires_grad and w.is_cpu and w.dtype == torch.float32
            and w.is_contiguous() and w.dim() == 2)


def stacked(weights: Sequence[torch.Tensor], dtype: torch.dtype | None) -> torch.Tensor | None:
    """``torch.cat([w.to(dtype) for w in weights])`` as the optimizer's last native step wrote it, if every weight is
    unchanged since; else None, and the optimizer's next native step is asked to write it.  Only for trained fp32
    CPU parameters of the same width, and bf16."""
    if dtype != DTYPE or not weights or not all(_eligible(w) for w in weights) \
            or len({w.shape[1] for w in weights}) != 1:
        return None
    req = _request(weights[0])
    if req is not None and len(req.weights) == len(weights) and all(r() is w for r, w in zip(req.weights, weights)):
        if req.copy is not None and req.stamps == tuple(_stamp(w) for w in weights):
            return req.copy
        return None
    req = _Request(weights)  # new, or regrouped: the weights' earlier requests are dropped
    for w in weights:
        old = _request(w)
        if old is not None:
            for r in old.weights:
                o = r()
                if o is not None and _request(o) is old:
                    del _requests[id(o)]
    for w, r in zip(weights, req.weights):
        _requests[id(w)] = (r, req)
    return None


def claim(weights: Iterable[torch.Tensor]) -> tuple[dict[int, torch.Tensor], list[_Request]]:
    """Where the optimizer's step, about to update ``weights`` in place, should write their bf16 copies: a view per
    weight (keyed by ``id``) into a fresh tensor per request all of whose weights are in the step, and the requests
    to :func:`commit` after it."""
    if not _requests:  # nothing asked for (LoRA, decoders, fp32): no walk over the step's weights
        return {}, []
    stepping = {id(w) for w in weights}
    out: dict[int, torch.Tensor] = {}
    claimed: list[_Request] = []
    seen: set[int] = set()
    for w in weights:
        req = _request(w)
        if req is None or id(req) in seen:
            continue
        seen.add(id(req))
        req.copy = req.stamps = None  # the old copy is stale once the step runs (and its memory is freed now)
        ws = req.alive()
        if ws is None or not all(id(x) in stepping for x in ws):  # (eligible and of one width, as requested)
            continue
        copy = torch.empty(sum(x.shape[0] for x in ws), ws[0].shape[1], dtype=DTYPE)
        row = 0
        for x in ws:
            out[id(x)] = copy[row:row + x.shape[0]]
            row += x.shape[0]
        req.copy = copy
        claimed.append(req)
    return out, claimed


def commit(claimed: Iterable[_Request]) -> None:
    """Stamp the copies the step wrote with their weights' state after it (version counters bumped)."""
    for req in claimed:
        ws = req.alive()
        req.stamps = None if ws is None else tuple(_stamp(w) for w in ws)
        if ws is None:
            req.copy = None


def forget(weights: Iterable[torch.Tensor]) -> None:
    """Drop the copies and requests of these weights."""
    for w in weights:
        req = _request(w)
        if req is not None:
            del _requests[id(w)]
            req.copy = req.stamps = None
