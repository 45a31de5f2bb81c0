"""Readable rich rendering of a DataReport (the JSON form is ``DataReport.to_dict``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from hone.data.check import DataReport


def render(report: DataReport, console: Console, *, max_problems: int = 30) -> None:
    t = Table(title="Data report", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("files", "\n".join(report.files))
    t.add_row("schema", str(report.schema))
    t.add_row("rows", f"{report.rows} read, {report.valid} valid")
    t.add_row("errors / warnings", f"[red]{report.error_count}[/] / [yellow]{report.warning_count}[/]")
    if report.labels:
        t.add_row("labels", f"{len(report.labels)}{' (multi-label)' if report.multi_label else ''}, "
                            f"imbalance ratio {report.imbalance_ratio} (largest / smallest class)")
    if report.length_chars:
        t.add_row("length (chars)", _dist(report.length_chars))
    if report.length_tokens:
        lt = report.length_tokens
        t.add_row("length (tokens)", f"{_dist(lt)}; {lt['over_max_length']} over max_length {lt['max_length']}")
    console.print(t)
    if report.labels:
        lab = Table(title="Label distribution", title_justify="left")
        lab.add_column("label")
        lab.add_column("rows", justify="right")
        lab.add_column("share", justify="right")
        total = sum(report.labels.values())
        items = sorted(report.labels.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = items if len(items) <= 30 else items[:15] + [("…", 0)] + items[-14:]
        for name, n in shown:
            lab.add_row(name, str(n) if n else "", f"{n / total:.1%}" if n else "")
        console.print(lab)
    if report.steps:
        st = Table(title="Preparation steps", title_justify="left")
        st.add_column("step", style="bold")
        st.add_column("result")
        for name, val in report.steps.items():
            st.add_row(name, _step(name, val))
        console.print(st)
    if report.splits:
        sp = Table(title="Splits", title_justify="left")
        for col in ("split", "rows", "labels", "imbalance"):
            sp.add_column(col, justify="right" if col != "split" else "left")
        for name, s in report.splits.items():
            sp.add_row(name, str(s["rows"]), str(s["labels"]), str(s["imbalance_ratio"]))
        console.print(sp)
    for kind, items, style in (("error", report.errors, "red"), ("warning", report.warnings, "yellow")):
        for p in items[:max_problems]:
            console.print(f"[{style}]{kind}[/] {p}", highlight=False, soft_wrap=True)
        total = report.error_count if kind == "error" else report.warning_count
        if total > max_problems:
            console.print(f"[{style}]… {total - max_problems} more {kind}s (all of them are in the JSON report: "
                          "--json FILE for hone data check, report.json of a prepared folder)[/]")


def _dist(d: dict[str, Any]) -> str:
    return f"min {d['min']}, p50 {d['p50']}, p90 {d['p90']}, p99 {d['p99']}, max {d['max']}, mean {d['mean']}"


def _step(name: str, val: Any) -> str:
    if not isinstance(val, dict):
        return str(val)
    if name == "dedupe" and "exact_removed" in val:
        return (f"{val['exact_removed']} exact + {val['near_removed']} near duplicates removed in "
                f"{val['clusters']} clusters ({val['label_conflicts']} with conflicting labels); {val['kept']} kept"
                + "".join(f"\n    conflict: " + "; ".join(f"{w} {'/'.join(labs)}" for w, labs in c["labels"].items())
                          for c in val.get("conflicting_clusters", [])[:5]))
    if name == "leakage":
        return f"{val['pairs']} eval rows near-duplicate train rows (threshold {val['threshold']}, {val['action']})"
    if name == "clean" and "records_changed" in val:
        changed = ", ".join(f"{k} {v}" for k, v in val["records_changed"].items())
        dropped = ", ".join(f"{k} {v}" for k, v in val["dropped"].items()) or "none"
        langs = f"; languages {val['languages']}" if "languages" in val else ""
        return f"changed: {changed}; dropped: {dropped}; kept {val['kept']}{langs}"
    if name == "pii" and "entities" in val:
        ents = ", ".join(f"{k} {v}" for k, v in val["entities"].items()) or "none found"
        return f"{val['records_changed']} records redacted; {ents}"
    if name == "balance":
        txt = f"{val['strategy']}: train rows {val['rows_before']} -> {val['rows_after']}"
        if "class_weights" in val:
            w = val["class_weights"]
            txt += f"; {len(w)} class weights from {min(w.values()):.3g} to {max(w.values()):.3g} (in metadata.json)"
        return txt
    return ", ".join(f"{k}: {v}" for k, v in val.items() if k != "largest_clusters")
