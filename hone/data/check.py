"""Validation and statistics: raw rows -> canonical Records + a DataReport.

All problems are collected before anything fails, each with file, line and field.  Errors
make the dataset unusable (exit code 2, nothing written); warnings are oddities a user
should see (a label with one example, duplicate rows, a trailing user turn).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from hone.data.read import RawRow, read_rows
from hone.data.records import (
    INPUT_SCHEMAS, META_KEY, Problem, Record, detect_schema, joined_text, labels_of, norm_text, normalize,
    output_schema,
)

MAX_LISTED = 200  # problems listed in the report; the totals are always exact
_SNIFF = 50  # rows looked at to auto-detect the schema


@dataclass
class DataReport:
    """What ``hone data check`` / ``prepare`` found. Serialized to data_report.json."""

    files: list[str]
    schema: str | None = None
    rows: int = 0
    valid: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False
    imbalance_ratio: float | None = None  # largest / smallest class
    length_chars: dict[str, float] = field(default_factory=dict)
    length_tokens: dict[str, Any] | None = None
    steps: dict[str, Any] = field(default_factory=dict)  # filled by prepare: clean, dedupe, pii, ...
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def add(self, p: Problem) -> None:
        if p.severity == "error":
            self.error_count += 1
            if len(self.errors) < MAX_LISTED:
                self.errors.append(p)
        else:
            self.warning_count += 1
            if len(self.warnings) < MAX_LISTED:
                self.warnings.append(p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "schema": self.schema, "rows": self.rows, "valid": self.valid,
            "error_count": self.error_count, "warning_count": self.warning_count,
            "errors": [p.to_dict() for p in self.errors], "warnings": [p.to_dict() for p in self.warnings],
            "labels": dict(sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0]))),
            "n_labels": len(self.labels), "multi_label": self.multi_label,
            "imbalance_ratio": self.imbalance_ratio, "length_chars": self.length_chars,
            "length_tokens": self.length_tokens, "steps": self.steps, "splits": self.splits,
        }


def distribution(values: Any) -> dict[str, float]:
    """min / mean / nearest-rank percentiles / max of lengths (a list or an int64 array)."""
    v = np.sort(np.asarray(values, dtype=np.int64))
    if not len(v):
        return {}

    def pct(q: float) -> int:
        return int(v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))])
    return {"min": int(v[0]), "mean": round(float(v.mean()), 1), "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "max": int(v[-1])}


def label_stats(records: Iterable[Record]) -> tuple[dict[str, int], bool, float | None]:
    counts: Counter[str] = Counter()
    multi = False
    for r in records:
        labs = labels_of(r.data)
        multi = multi or isinstance(r.data.get("label"), list)
        counts.update(labs)
    ratio = round(max(counts.values()) / min(counts.values()), 2) if counts else None
    return dict(counts), multi, ratio


def _sniff_schema(rows: Iterator[RawRow]) -> tuple[str | None, Iterator[RawRow]]:
    head = list(islice(rows, _SNIFF))
    votes = Counter(s for s in (detect_schema(r.obj) for r in head) if s)
    return (votes.most_common(1)[0][0] if votes else None), chain(head, rows)


def validate(rows: Iterator[RawRow], report: DataReport, *, schema: str = "auto",
             read_problems: list[Problem] | None = None, keep: bool = True, min_examples: int = 10,
             tokenizer: Any = None, max_length: int = 512) -> list[Record]:
    """Normalize and check every row, filling ``report``; returns the valid Records if ``keep``.

    ``read_problems`` is the list the reader appends to; it is drained into the report as
    rows stream by, so problems stay in file order and memory stays flat for ``keep=False``.
    """
    read_problems = read_problems if read_problems is not None else []
    if schema == "auto":
        schema, rows = _sniff_schema(rows)
        if schema is None:
            schema = "text"
    elif schema not in INPUT_SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}")
    report.schema = output_schema(schema)
    out: list[Record] = []
    # compact per-row columns (12-16 bytes a row) keep memory flat when streaming big files
    char_lengths, token_lengths = array("q"), array("q")
    row_hashes, row_lines = array("q"), array("q")
    label_counts: Counter[str] = Counter()
    missing_columns: set[str] = set()
    multi = False
    for raw in rows:
        _drain(read_problems, report)
        report.rows += 1
        if report.rows == 1 and schema == "text" and raw.tabular and isinstance(raw.obj, dict) and \
                set(raw.obj) - {"text", META_KEY}:  # e.g. text,priority: a label column under another name?
            other = ", ".join(repr(c) for c in raw.obj if c not in ("text", META_KEY))
            report.add(Problem("warning", raw.source, 1, "(schema)",
                               f"no label column, so the rows are plain text (continued pre-training) and column(s) "
                               f"{other} are not used; for classification pass --label-column"))
        data, issues = normalize(raw.obj, schema)
        for fld, msg in issues:
            if raw.tabular and msg == "missing":  # a column absent from the header: say it once, at line 1
                if fld not in missing_columns:
                    missing_columns.add(fld)
                    cols = ", ".join(map(str, raw.obj))
                    report.add(Problem("error", raw.source, 1, fld, f"no {fld!r} column in the header (columns: "
                                       f"{cols}); map one with --{'label' if fld == 'label' else 'text'}-column"))
                continue
            if msg == "missing" and isinstance(raw.obj, dict) and fld not in missing_columns:  # JSON: say what is
                missing_columns.add(fld)  # there, once (the first row), and how to map it
                keys = ", ".join(repr(k) for k in raw.obj if k != META_KEY) or "none"
                msg = (f"missing (this row's keys: {keys}); name the text field with --text-column / data.text_column"
                       f" and the label with --label-column (a classifier), or a generator's input and target with "
                       f"--prompt-column and --completion-column; chat rows need a messages list")
            report.add(Problem("error", raw.source, raw.line, fld, msg))
        if data is None:
            continue
        meta = raw.obj.get(META_KEY) if isinstance(raw.obj, dict) else None
        rec = Record(data, raw.source, raw.line, dict(meta) if isinstance(meta, dict) else {})
        report.valid += 1
        text = joined_text(report.schema, data)
        char_lengths.append(len(text))
        if tokenizer is not None:
            token_lengths.append(len(tokenizer(text, add_special_tokens=True)["input_ids"]))
        label_counts.update(labels_of(data))
        multi = multi or isinstance(data.get("label"), list)
        row_hashes.append(hash(norm_text(text)))  # as prepare's exact de-duplication compares
        row_lines.append(raw.line)
        _row_warnings(rec, report)
        if keep:
            out.append(rec)
    _drain(read_problems, report)
    _duplicate_warnings(row_hashes, row_lines, report.files[0] if len(report.files) == 1 else "", report)
    if report.valid < min_examples:
        report.add(Problem("error", ", ".join(report.files), None, "(dataset)",
                           f"only {report.valid} valid example(s); at least {min_examples} "
                           f"{'is' if min_examples == 1 else 'are'} needed"))
    report.labels = dict(label_counts)
    report.multi_label = multi
    if label_counts:
        report.imbalance_ratio = round(max(label_counts.values()) / min(label_counts.values()), 2)
        for lab, n in sorted(label_counts.items()):
            if n == 1:
                report.add(Problem("warning", ", ".join(report.files), None, "label",
                                   f"label {lab!r} has a single example; it is kept out of stratification"))
        variants: dict[str, list[str]] = {}
        for lab in sorted(label_counts):
            variants.setdefault(" ".join(lab.casefold().split()), []).append(lab)
        for same in variants.values():
            if len(same) > 1:  # "Billing" and "billing" train as two classes
                report.add(Problem("warning", ", ".join(report.files), None, "label",
                                   f"labels {', '.join(map(repr, same))} differ only in case or spacing; they are "
                                   "different classes (normalize them in the data if they mean one)"))
    report.length_chars = distribution(np.frombuffer(char_lengths, dtype=np.int64))
    if tokenizer is not None:
        report.length_tokens = {**distribution(np.frombuffer(token_lengths, dtype=np.int64)), "max_length": max_length,
                                "over_max_length": sum(t > max_length for t in token_lengths),
                                "tokenizer": getattr(tokenizer, "name_or_path", str(tokenizer))}
    return out


def _drain(problems: list[Problem], report: DataReport) -> None:
    for p in problems:
        report.add(p)
    problems.clear()


def _duplicate_warnings(hashes: array, lines: array, source: str, report: DataReport) -> None:
    """Warn about rows whose whitespace/case-normalized text repeats an earlier row."""
    if not hashes:
        return
    h = np.frombuffer(hashes, dtype=np.int64)
    order = np.argsort(h, kind="stable")  # equal hashes stay in line order
    hs = h[order]
    starts = np.r_[True, hs[1:] != hs[:-1]]  # first row of each run of equal hashes
    run_first = np.flatnonzero(starts)[np.cumsum(starts) - 1]  # per sorted position: its run's first
    ln = np.frombuffer(lines, dtype=np.int64)
    dup_pos = np.flatnonzero(~starts)
    dup_lines, first_lines = ln[order[dup_pos]], ln[order[run_first[dup_pos]]]
    shown = np.argsort(dup_lines, kind="stable")[:MAX_LISTED]  # only the listed ones become objects
    for k in shown:
        report.add(Problem("warning", source, int(dup_lines[k]), "(row)",
                           f"duplicate of line {int(first_lines[k])} (removed by dedupe in prepare)"))
    report.warning_count += len(dup_pos) - len(shown)


def _row_warnings(rec: Record, report: DataReport) -> None:
    msgs = rec.data.get("messages")
    if msgs and msgs[-1]["role"] != "assistant":
        report.add(Problem("warning", rec.source, rec.line, f"messages[{len(msgs) - 1}]",
                           "conversation ends with a user turn, which is never trained on"))
    if msgs and all(m.get("weight", 1) == 0 for m in msgs if m["role"] == "assistant"):
        report.add(Problem("warning", rec.source, rec.line, "messages", "every assistant turn has weight 0"))


def read_valid(path: str | Path, *, schema: str = "auto", **columns: str | None) -> tuple[list[Record], DataReport]:
    """Every row of one file, validated (``columns``: ``read_rows``' column mapping); a DataError naming the first
    20 problems when any row is invalid (evaluation, prediction and lint files: nothing to prepare)."""
    from hone.errors import DataError

    problems: list[Problem] = []
    report = DataReport(files=[str(path)])
    recs = validate(read_rows(path, problems, **columns), report, schema=schema, read_problems=problems,
                    min_examples=1)
    if not report.ok:
        raise DataError(f"{report.error_count} error(s) in {path}\n  " + "\n  ".join(str(p) for p in report.errors[:20]))
    return recs, report


def check_file(path: str, data: Any, *, tokenizer: Any = None) -> DataReport:
    """Stream-validate one file with a ``DataConfig``'s reading options; nothing is kept in memory."""
    problems: list[Problem] = []
    report = DataReport(files=[str(path)])
    rows = read_rows(path, problems, fmt=data.format, encoding=data.encoding, txt_mode=data.txt_mode,
                     text_column=data.text_column, label_column=data.label_column,
                     multi_label_sep=data.multi_label_sep, prompt_column=data.prompt_column,
                     completion_column=data.completion_column)
    validate(rows, report, schema=data.schema_, read_problems=problems, keep=False, min_examples=data.min_examples,
             tokenizer=tokenizer, max_length=data.max_length)
    return report
