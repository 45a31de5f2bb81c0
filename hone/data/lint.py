"""Chat-data lint: the checks that catch broken fine-tunes before any training.

One :class:`LintReport` per dataset + tokenizer: role order, empty turns, per-example token
length against ``max_length`` (what is truncated, what is dropped because nothing trained is
left), the end-of-turn token really trained, BOS not doubled, a pad token present, and a
rendered example with the trained tokens marked.  Errors stop a run with the example number;
warnings are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hone.data.chat import Example, encode_messages, end_of_turn_ids, visualise_mask
from hone.errors import DataError

MAX_LISTED = 20


@dataclass
class LintReport:
    examples: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truncated: int = 0
    dropped: list[int] = field(default_factory=list)  # example numbers with no trained token left
    tokens: dict[str, float] = field(default_factory=dict)  # length percentiles
    trained_share: float = 0.0  # trained tokens / all tokens
    rendered: str = ""  # one example with trained stretches in [[ ]]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# Chat-data lint: {self.examples} examples", "",
                 "- tokens per example: " + ", ".join(f"{k} {v:g}" for k, v in self.tokens.items()),
                 f"- trained tokens: {self.trained_share:.1%} of all tokens",
                 f"- truncated: {self.truncated}; dropped (nothing left to train): {len(self.dropped)}"]
        lines += [f"- note: {n}" for n in self.notes]
        lines += ["", f"## Errors ({len(self.errors)})", *[f"- {e}" for e in self.errors[:MAX_LISTED]]]
        lines += ["", f"## Warnings ({len(self.warnings)})", *[f"- {w}" for w in self.warnings[:MAX_LISTED]]]
        lines += ["", "## A rendered example (trained tokens in [[ ]])", "", "```", self.rendered, "```", ""]
        return "\n".join(lines)


def _roles(messages: list[dict[str, Any]], where: str, rep: LintReport) -> None:
    for i, m in enumerate(messages):
        if not str(m.get("content", "")).strip():
            rep.errors.append(f"{where}: messages[{i}] ({m.get('role')}) is empty")
        if m.get("role") == "system" and i > 0:
            rep.errors.append(f"{where}: messages[{i}] is a system message after the first turn")
        if i and m.get("role") == messages[i - 1].get("role") and m.get("role") != "system":
            rep.warnings.append(f"{where}: messages[{i - 1}] and [{i}] are both {m.get('role')} turns")
    if not any(m.get("role") == "assistant" and m.get("weight", 1) != 0 for m in messages):
        rep.errors.append(f"{where}: no assistant message trains (all weights 0 or no assistant turn)")


def _tokens(ex: Example, where: str, eot: set[int], bos: int | None, rep: LintReport) -> None:
    if bos is not None and len(ex.input_ids) > 1 and ex.input_ids[0] == bos == ex.input_ids[1]:
        rep.errors.append(f"{where}: BOS token doubled (the template adds it and so does the tokenizer)")
    trained = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != -100]
    if not ex.truncated and trained and not eot & set(trained):
        rep.errors.append(f"{where}: the end-of-turn/EOS token is not trained, so the model never learns to stop")


def lint_conversations(tok, conversations: list[list[dict[str, Any]]], *, max_length: int, train_on: str = "assistant",
                       where: list[str] | None = None, notes: list[str] | None = None) -> tuple[LintReport, list[Example]]:
    """Check and encode conversations; returns the report and the examples that keep ≥ 1 trained token."""
    rep = LintReport(examples=len(conversations), notes=list(notes or []))
    eot, bos = set(end_of_turn_ids(tok)), tok.bos_token_id
    kept: list[Example] = []
    lengths, n_trained, n_all = [], 0, 0
    for k, msgs in enumerate(conversations):
        label = where[k] if where else f"example {k + 1}"
        _roles(msgs, label, rep)
        ex = encode_messages(tok, msgs, max_length, train_on=train_on)
        lengths.append(ex.length)
        rep.truncated += ex.truncated
        _tokens(ex, label, eot, bos, rep)
        if ex.n_trained == 0:
            rep.dropped.append(k + 1)
            rep.warnings.append(f"{label}: nothing left to train after truncation to {max_length} tokens; dropped")
            continue
        n_trained, n_all = n_trained + ex.n_trained, n_all + len(ex.input_ids)
        if not rep.rendered:
            rep.rendered = visualise_mask(tok, ex)
        kept.append(ex)
    if lengths:
        arr = np.asarray(lengths)
        rep.tokens = {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
                      "max": float(arr.max()), "max_length": float(max_length)}
    rep.trained_share = n_trained / max(n_all, 1)
    if rep.truncated:
        rep.warnings.insert(0, f"{rep.truncated} of {len(conversations)} examples are longer than "
                               f"max_length={max_length} and are cut on the right")
    if not kept:
        rep.errors.append("no example keeps a trained token")
    return rep, kept


def raise_on_errors(rep: LintReport, source: str) -> None:
    if rep.ok:
        return
    shown = "\n  ".join(rep.errors[:MAX_LISTED])
    more = f"\n  ... and {len(rep.errors) - MAX_LISTED} more" if len(rep.errors) > MAX_LISTED else ""
    raise DataError(f"{source}: chat-data lint found {len(rep.errors)} problem(s); fix them before training:\n  "
                    f"{shown}{more}")
