"""Evaluation report: report.json (the numbers), report.md (to read in a terminal or PR) and
report.html (one self-contained page with plots), all written atomically into a directory.

The report dict is the evaluation's output (see ``write_reports``); only ``systems`` and
``labels`` are required, so a partial evaluation still yields a useful report. Sections are
built once as tables (hone.eval.tables) so Markdown and HTML agree; the HTML page embeds its
charts as inline SVG (hone.eval.plots) and has no external references, so it can be mailed,
archived or opened offline.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hone.artifacts import REPORT_FILES, atomic_write_json, atomic_write_text
from hone.eval import plots
from hone.eval.plots import Series
from hone.eval.tables import (Table, build_tables, gain_lines, headline_scores, is_multi_label, measured_classes,
                              numeric_columns, ordered_systems, primary_name, scored_split)



def to_jsonable(obj: Any) -> Any:
    """Plain-JSON copy: numpy scalars/arrays → Python, Paths → str, NaN/inf → None.

    Evaluation code naturally hands over numpy values; strict JSON has no NaN.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy array or scalar
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)


def write_reports(out_dir: str | Path, report: Mapping[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and report.html into ``out_dir``; return their paths.

    ``report`` keys: ``systems`` ({name: classification_metrics(...) + "kind", "description"})
    and ``labels`` are required; optional are ``title``, ``task``, ``primary``, ``gains``
    ({baseline: paired_bootstrap_gain(...)}), ``history`` (train-loop log rows),
    ``training``, ``oos``, ``forgetting``, ``examples``, ``data``, ``model``.
    A generative report (``report["kind"] == "generator"``) is rendered by hone.eval.gen_report.
    """
    if report.get("kind") == "generator":
        from hone.eval import gen_report  # lazy: gen_report builds on this module's renderers

        return gen_report.write_generator_reports(out_dir, report)
    missing = [k for k in ("systems", "labels") if k not in report]
    if missing or not isinstance(report["systems"], Mapping) or not report["systems"]:
        raise ValueError(f"report needs non-empty 'systems' and 'labels'; missing or empty: {missing or ['systems']}")
    out = Path(out_dir)
    files = {kind: out / name for kind, name in REPORT_FILES.items()}
    clean = to_jsonable(report)
    tables = build_tables(clean, files)
    atomic_write_json(files["json"], clean)
    atomic_write_text(files["md"], render_markdown(clean, tables))
    atomic_write_text(files["html"], render_html(clean, tables))
    return files


# ----------------------------------------------------------------------------- markdown

# Markdown-active characters; "<" only where it could open raw HTML ("<b", "</", "<!"), so "< 0.005" stays readable.
_MD_SPECIAL = re.compile(r"([\\|*`\[\]]|<(?=[A-Za-z/!?]))")


def _md(text: str) -> str:
    """Cell text safe inside a Markdown table: no pipes, newlines or raw HTML."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _md_table(t: Table) -> list[str]:
    rows = t.rows if t.md_rows is None else t.rows[: t.md_rows]
    lines = [f"## {_md(t.title)}", ""]
    if rows:
        lines += ["| " + " | ".join(_md(h) for h in t.header) + " |",
                  "|" + "|".join("---:" if right else "---" for right in numeric_columns(t)) + "|"]
        lines += ["| " + " | ".join(_md(c[:160]) for c in row) + " |" for row in rows]
    for note in (t.note, t.md_note):
        if note:
            lines += ["", _md(note)]
    return lines + [""]


def render_markdown(report: Mapping[str, Any], tables: Sequence[Table]) -> str:
    """The readable summary: headline gain lines, then every section table."""
    lines = [f"# {_md(report.get('title') or 'Evaluation report')}", "", _md(_subtitle(report)), ""]
    lines += [f"- {_md(line)}" for line in gain_lines(report)] + [""]
    for t in tables:
        lines += _md_table(t)
    return "\n".join(lines).rstrip() + "\n"


def _subtitle(report: Mapping[str, Any]) -> str:
    p = primary_name(report)
    n = (report["systems"].get(p) or {}).get("n")
    parts = [f"task: {report.get('task', 'classification')}", f"primary system: {p}",
             f"{len(report.get('labels') or [])} classes"]
    if is_multi_label(report):
        parts.insert(1, "multi-label")
    if n is not None:
        parts.append(f"{n} {scored_split(report)} examples")
    return " · ".join(parts)


# ----------------------------------------------------------------------------- figures


def _history_figures(report: Mapping[str, Any]) -> list[str]:
    """(a) loss, validation-metric and learning-rate curves over training steps."""
    history = [r for r in report.get("history") or [] if isinstance(r, Mapping)]
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {"loss": {}, "metric": {}, "lr": {}}
    for i, row in enumerate(history):
        x = row.get("step", i)
        for key, v in row.items():
            if key in ("step", "epoch") or not isinstance(v, int | float) or isinstance(v, bool) or v is None:
                continue
            group = "loss" if "loss" in key else "lr" if key in ("lr", "learning_rate") else (
                "metric" if key.startswith("eval_") else "")
            if group and isinstance(x, int | float):
                groups[group].setdefault(key, []).append((float(x), float(v)))
    best = (report.get("training") or {}).get("best_step")
    best = best if isinstance(best, int | float) else None
    specs = (("loss", "Loss", "loss", 0.0), ("metric", "Validation metrics", "score", None),
             ("lr", "Learning rate", "lr", 0.0))
    figs = []
    for group, title, y_label, y_min in specs:
        series = [Series(k, [v for _, v in pts], [x for x, _ in pts]) for k, pts in groups[group].items()]
        if series:
            figs.append(plots.line_chart(series, title=title, y_label=y_label, y_min=y_min, marker_x=best,
                                         height=240 if group == "lr" else 300))
    return figs


def _systems_figure(report: Mapping[str, Any]) -> str:
    """(d) accuracy and macro-F1 of every system with CI whiskers (multi-label: micro- and macro-F1 on every label)."""
    systems = [(n, headline_scores(report, m)) for n, m in ordered_systems(report)]

    def value(x: Any) -> float:  # missing → NaN, which the chart draws as "not measured"
        return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan

    def series(metric: str, name: str) -> Series:
        cis = [m.get(f"{metric}_ci") if isinstance(m.get(f"{metric}_ci"), list) else [None, None]
               for _, m in systems]
        return Series(name, [value(m.get(metric)) for _, m in systems],
                      lo=[value(c[0]) for c in cis], hi=[value(c[-1]) for c in cis])

    if is_multi_label(report):
        return plots.bar_chart([n for n, _ in systems],
                               [series("micro_f1", "micro-F1"), series("macro_f1", "macro-F1")],
                               title="Systems: multi-label micro-F1 and macro-F1 (95% CI)", bar_h=16)
    return plots.bar_chart([n for n, _ in systems], [series("accuracy", "accuracy"), series("macro_f1", "macro-F1")],
                           title="Systems: accuracy and macro-F1 (95% CI)", bar_h=16)


def _per_class_figure(report: Mapping[str, Any]) -> str:
    """(c) per-class F1 of the primary system, worst first; classes without examples and predictions left out."""
    name, m = ordered_systems(report)[0]
    per = headline_scores(report, m).get("per_class") or {}
    order = measured_classes(per)[0]
    f1 = [float(per[lab].get("f1") or 0.0) for lab in order]
    return plots.bar_chart(order, [Series("F1", f1)], title=f"Per-class F1 of {name} (worst first)",
                           bar_h=13 if len(order) <= 40 else 10)


def _figures(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """Charts keyed by the table they are shown above."""
    name, m = ordered_systems(report)[0]
    figs: dict[str, list[str]] = {"multi_label" if is_multi_label(report) else "systems": [_systems_figure(report)]}
    if headline_scores(report, m).get("per_class"):
        figs["per_class"] = [_per_class_figure(report)]
    conf = m.get("confusion")
    if isinstance(conf, Mapping) and conf.get("matrix"):
        figs["confusions"] = [plots.heatmap(conf["matrix"], conf.get("labels") or report["labels"],
                                            title=f"Confusion matrix of {name} (share of true class)")]
    history = _history_figures(report)
    if history:
        figs["training"] = history
    return figs


# ----------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666}ul.gains li{margin:.2em 0}.better{color:#17692c}.worse{color:#b00020}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{padding:.25em .6em;border-bottom:1px solid #eee;
vertical-align:top}th{background:#f4f6f8;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}.note{color:#555;font-size:.9em}figure{margin:1em 0}
.warn{color:#b00020;font-weight:600}summary{cursor:pointer;color:#246}
"""


_FOLD_ROWS = 30


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(t: Table, figures: Sequence[str] = ()) -> str:
    """A section: heading, its charts (inline SVG), then the table and note; all text escaped."""
    head = "".join(f"<th>{_h(h)}</th>" for h in t.header)
    right = numeric_columns(t)
    body = ["<tr>" + "".join(f'<td class="n">{_h(c)}</td>' if right[j] else f"<td>{_h(c)}</td>"
                             for j, c in enumerate(row)) + "</tr>" for row in t.rows]
    note_cls = "warn" if t.note.startswith("WARNING") else "note"
    note = f'<p class="{note_cls}">{_h(t.note)}</p>' if t.note else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>" if t.rows else ""
    if len(t.rows) > _FOLD_ROWS:  # long tables (77 classes) fold away so the charts after them stay in reach
        table = f"<details><summary>all {len(t.rows)} rows</summary>{table}</details>"
    figs = "".join(f"<figure>{svg}</figure>" for svg in figures)
    return f'<section id="{_h(t.key)}"><h2>{_h(t.title)}</h2>{figs}{table}{note}</section>'


def render_html(report: Mapping[str, Any], tables: Sequence[Table]) -> str:
    """One self-contained page: headline, then each section with its charts above its table.

    No timestamp, so re-rendering the same report gives byte-identical files.
    """
    title = report.get("title") or "Evaluation report"
    figs = _figures(report)
    lines = []
    for line in gain_lines(report):
        cls = "better" if line.endswith(": better") else "worse" if line.endswith(": worse") else ""
        lines.append(f'<li class="{cls}">{_h(line)}</li>')
    sections = [_html_table(t, figs.get(t.key, ())) for t in tables]
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_h(title)}</h1><p class="sub">{_h(_subtitle(report))}</p>'
        f'<ul class="gains">{"".join(lines)}</ul>{"".join(sections)}</body></html>\n'
    )
