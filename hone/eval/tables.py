"""Report content as plain tables, built once and rendered to both Markdown and HTML.

Keeping the numbers-to-text step here means report.md and report.html can never disagree.
Every section tolerates a missing or partial input: only ``systems`` and ``labels`` are
required, everything else (gains, history, training, oos, forgetting, ...) may be absent.
Cells are plain, unescaped text; the renderers escape them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASH = "—"
_RATE_SUFFIXES = ("accuracy", "recall", "precision", "rate", "f1")
_NUMERIC_CELL = re.compile(r"^(—|[<>]? ?[+\-−]?[\d.,]+(e[+\-]\d+)?( ?%| pts| s| samples/s)?( (–|to) .*)?)$")


@dataclass(frozen=True)
class Table:
    """One report section: ``key`` names it for the renderers (which attach plots by key)."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    md_rows: int | None = None  # Markdown shows only the first md_rows rows (HTML shows all) ...
    md_note: str = ""  # ... and says so here


# ----------------------------------------------------------------------------- formatting


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: Any) -> str:
    """0.9134 → '91.3%'; anything not a finite number → '—'."""
    return f"{x:.1%}" if _is_num(x) else DASH


def ci_text(ci: Any) -> str:
    """[0.90, 0.93] → '90.0 – 93.0%'."""
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_num(v) for v in ci):
        return f"{ci[0] * 100:.1f} – {ci[1] * 100:.1f}%"
    return DASH


def pts(x: Any) -> str:
    """A difference of two rates in percentage points, always signed: '+12.3 pts'."""
    return f"{x * 100:+.1f} pts" if _is_num(x) else DASH


def num(x: Any) -> str:
    """Generic cell text for scalars and small dicts."""
    if x is None:
        return DASH
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.4g}" if math.isfinite(x) else DASH
    if isinstance(x, Mapping):
        if "name" in x and "value" in x:
            return f"{x['name']} = {num(x['value'])}"
        return ", ".join(f"{k}={num(v)}" for k, v in x.items())
    if isinstance(x, list | tuple):
        return ", ".join(num(v) for v in x)
    return str(x)


def duration(seconds: Any) -> str:
    """120.5 → '2 min 0.5 s'."""
    if not _is_num(seconds):
        return DASH
    minutes, s = divmod(float(seconds), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes} min {s:.0f} s"
    return f"{minutes} min {s:.1f} s" if minutes else f"{s:.1f} s"


def numeric_columns(t: Table) -> list[bool]:
    """Columns (after the first) whose every cell is a number, to be right-aligned."""
    cols = list(zip(*t.rows)) if t.rows else [() for _ in t.header]
    return [j > 0 and bool(col) and all(_NUMERIC_CELL.match(c) for c in col) for j, col in enumerate(cols)]


def p_value(p: Any, n_boot: Any) -> str:
    """Bootstrap p-value; 0 means 'below the resolution', so say '< 1/n_boot'."""
    if _is_num(p) and p == 0 and _is_num(n_boot) and n_boot > 0:
        return f"< {1 / n_boot:.2g}"
    return f"{p:.3f}" if _is_num(p) else DASH


def _kv_rows(d: Mapping[str, Any], known: Mapping[str, tuple[str, Any]]) -> list[list[str]]:
    """Rows for a key/value section: known keys first with their label and formatter, then the rest."""
    rows = [[label, fmt(d[key])] for key, (label, fmt) in known.items() if key in d]
    for key, value in d.items():
        if key not in known:
            rate = _is_num(value) and 0 <= value <= 1 and key.endswith(_RATE_SUFFIXES)
            rows.append([key.replace("_", " "), pct(value) if rate else num(value)])
    return rows


# ----------------------------------------------------------------------------- systems & gains


def primary_name(report: Mapping[str, Any]) -> str:
    """The system the report is about: ``report['primary']`` if it names a system, else the first."""
    systems = report.get("systems") or {}
    p = report.get("primary")
    return p if p in systems else next(iter(systems), "")


def ordered_systems(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Primary first, then the others in the order given."""
    systems = report.get("systems") or {}
    p = primary_name(report)
    return [(p, systems[p])] * bool(p) + [(k, v) for k, v in systems.items() if k != p]


def gain_entries(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(baseline, paired_bootstrap_gain dict) pairs; accepts one gain or {metric: gain} per baseline."""
    out = []
    for baseline, g in (report.get("gains") or {}).items():
        if isinstance(g, Mapping) and "gain" in g:
            out.append((baseline, g))
        elif isinstance(g, Mapping):
            out.extend((baseline, {"metric": m, **v}) for m, v in g.items() if isinstance(v, Mapping) and "gain" in v)
    return out


def verdict(gain_ci: Any) -> str:
    """'better' / 'worse' when the CI excludes 0, else 'no clear difference'."""
    if isinstance(gain_ci, list | tuple) and len(gain_ci) == 2 and all(_is_num(v) for v in gain_ci):
        if gain_ci[0] > 0:
            return "better"
        if gain_ci[1] < 0:
            return "worse"
    return "no clear difference"


def _p_phrase(g: Mapping[str, Any]) -> str:
    text = p_value(g.get("p_b_not_better"), g.get("n_boot"))
    return text if text.startswith("<") else f"= {text}"


def is_multi_label(report: Mapping[str, Any]) -> bool:
    """A multi-label model's report: its systems carry scores on every label (``multi_label``)."""
    return isinstance((report.get("systems") or {}).get(primary_name(report), {}).get("multi_label"), Mapping)


def headline_scores(report: Mapping[str, Any], system: Mapping[str, Any]) -> Mapping[str, Any]:
    """The scores a system is judged by: its multi-label scores for a multi-label model, else its own."""
    ml = system.get("multi_label")
    return ml if is_multi_label(report) and isinstance(ml, Mapping) else system


def gain_lines(report: Mapping[str, Any]) -> list[str]:
    """One plain sentence per comparison of the primary system against a baseline (values in the names' order)."""
    p = primary_name(report)
    lines = []
    for baseline, g in gain_entries(report):
        metric = str(g.get("metric", "accuracy")).replace("_", "-")
        ci = g.get("gain_ci") or [None, None]
        lines.append(f"{p} vs {baseline} ({metric}): {p} {pct(g.get('b'))} vs {baseline} {pct(g.get('a'))}, "
                     f"gain {pts(g.get('gain'))} (95% CI {pts(ci[0])} to {pts(ci[1])}, "
                     f"one-sided p {_p_phrase(g)}): {verdict(ci)}")
    if not lines:  # no paired bootstrap supplied: fall back to point differences, said so plainly
        systems = report.get("systems") or {}
        metrics = ("micro_f1", "subset_accuracy") if is_multi_label(report) else ("accuracy", "macro_f1")
        for name, m in ordered_systems(report)[1:]:
            for metric in metrics:
                a, b = headline_scores(report, m).get(metric), headline_scores(report, systems[p]).get(metric)
                if _is_num(a) and _is_num(b):
                    lines.append(f"{p} vs {name} ({metric.replace('_', '-')}): {p} {pct(b)} vs {name} {pct(a)}, "
                                 f"difference {pts(b - a)} (unpaired; no bootstrap CI supplied)")
    return lines


def systems_table(report: Mapping[str, Any]) -> Table:
    p = primary_name(report)
    rows = [[name + (" (primary)" if name == p else ""), str(m.get("kind", "")), str(m.get("description", "")),
             num(m.get("n")), pct(m.get("accuracy")), ci_text(m.get("accuracy_ci")),
             pct(m.get("macro_f1")), ci_text(m.get("macro_f1_ci"))]
            for name, m in ordered_systems(report)]
    split = scored_split(report)
    note = f"CIs: percentile bootstrap over {split} examples." + (
        " No test split: these are validation scores, and training chose its best checkpoint on the same split, "
        "so they are optimistic." if split == "validation" else "")
    if is_multi_label(report):
        return Table("systems", f"Single-label view on the {split} set: top label vs each example's first label",
                     ["system", "kind", "description", "n", "accuracy", "95% CI", "macro-F1", "95% CI"], rows,
                     note + " Multi-label data: an example labelled [a, b] and predicted b counts as wrong here; "
                     "read the multi-label scores above.")
    return Table("systems", f"Systems on the {split} set",
                 ["system", "kind", "description", "n", "accuracy", "95% CI", "macro-F1", "95% CI"], rows, note)


def scored_split(report: Mapping[str, Any]) -> str:
    """'test', or 'validation' when a run without a test split scored its validation split."""
    return str(report.get("scored_split") or "test")


def multi_label_table(report: Mapping[str, Any]) -> Table | None:
    """Every system scored on every label (fine-tuned: each label at its threshold; a baseline: its one label)."""
    if not is_multi_label(report):
        return None
    rows = [[name + (" (primary)" if name == primary_name(report) else ""), num(ml.get("n")), pct(ml.get("micro_f1")),
             ci_text(ml.get("micro_f1_ci")), pct(ml.get("macro_f1")), pct(ml.get("subset_accuracy")),
             pct(ml.get("hamming_loss"))]
            for name, m in ordered_systems(report) if isinstance(ml := m.get("multi_label"), Mapping)]
    threshold = (report.get("multi_label") or {}).get("threshold", 0.5)
    return Table("multi_label", f"Multi-label scores on the {scored_split(report)} set (every label)",
                 ["system", "n", "micro-F1", "95% CI", "macro-F1", "subset accuracy", "hamming loss"], rows,
                 f"The fine-tuned model predicts every label scoring at least {num(threshold)}; a baseline predicts "
                 "one label per example. Subset accuracy: every label of an example right. Hamming loss: share of "
                 "wrong (example, label) cells (lower is better).")


def gains_table(report: Mapping[str, Any]) -> Table:
    rows = [[baseline, str(g.get("metric", "accuracy")), pct(g.get("a")), pct(g.get("b")), pts(g.get("gain")),
             f"{pts((g.get('gain_ci') or [None])[0])} to {pts((g.get('gain_ci') or [None, None])[1])}",
             p_value(g.get("p_b_not_better"), g.get("n_boot")), verdict(g.get("gain_ci"))]
            for baseline, g in gain_entries(report)]
    return Table("gains", f"Gain of {primary_name(report)} over each baseline",
                 ["baseline", "metric", "baseline score", f"{primary_name(report)} score", "gain", "95% CI",
                  "p-value (not better)", "verdict"], rows,
                 "Paired bootstrap: both systems scored on the same resamples. p-value (not better): share of "
                 f"resamples in which {primary_name(report)} does not beat the baseline (one-sided; small = a real "
                 "gain).")


# ----------------------------------------------------------------------------- per class


def measured_classes(per: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(classes worst F1 first, classes left out): a class with no examples and no predictions has no score
    (its F1 0 is not a measurement; macro-F1 leaves it out too, as scikit-learn does)."""
    absent = [lab for lab, c in per.items() if c.get("support") == 0 and c.get("predicted") == 0]
    order = sorted((lab for lab in per if lab not in absent), key=lambda lab: (per[lab].get("f1") or 0.0, lab))
    return order, absent


def per_class_table(report: Mapping[str, Any]) -> Table | None:
    """Per-class scores of the primary system, worst F1 first, with other systems' F1 beside them."""
    systems = [(n, headline_scores(report, m)) for n, m in ordered_systems(report)]
    if not systems or not isinstance(systems[0][1].get("per_class"), Mapping):
        return None
    p, per = systems[0][0], systems[0][1]["per_class"]
    others = [(n, m["per_class"]) for n, m in systems[1:4] if isinstance(m.get("per_class"), Mapping)]
    order, absent = measured_classes(per)
    rows = [[lab, pct(per[lab].get("f1")), pct(per[lab].get("precision")), pct(per[lab].get("recall")),
             num(per[lab].get("support"))] + [pct((o.get(lab) or {}).get("f1")) for _, o in others]
            for lab in order]
    more = f"Worst 15 of {len(rows)} classes shown; all in report.html and report.json." if len(rows) > 15 else ""
    kind = ", every label" if is_multi_label(report) else ""
    note = (f"{len(absent)} class(es) with no {scored_split(report)} examples and no predictions left out (not "
            f"measured{'' if kind else '; macro-F1 leaves them out too'}): "
            f"{', '.join(absent[:10])}{' …' * (len(absent) > 10)}." if absent else "")
    return Table("per_class", f"Per-class scores of {p}{kind} (worst F1 first)",
                 ["class", "F1", "precision", "recall", "support"] + [f"F1 {n}" for n, _ in others],
                 rows, note, md_rows=15, md_note=more)


def top_confusions(confusion: Mapping[str, Any], limit: int = 15) -> list[tuple[str, str, int, float]]:
    """Largest off-diagonal cells as (true, predicted, count, share of the true class)."""
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells.extend((labels[i], labels[j], int(c), c / total) for j, c in enumerate(row) if i != j and c)
    return sorted(cells, key=lambda c: (-c[2], -c[3], c[0], c[1]))[:limit]


def confusions_table(report: Mapping[str, Any]) -> Table | None:
    systems = ordered_systems(report)
    conf = systems[0][1].get("confusion") if systems else None
    if not isinstance(conf, Mapping):
        return None
    rows = [[t, p, num(c), pct(s)] for t, p, c, s in top_confusions(conf)]
    view = " (top label vs first label)" if is_multi_label(report) else ""
    return Table("confusions", f"Most frequent confusions of {systems[0][0]}{view}",
                 ["true", "predicted", "count", "share of true class"], rows,
                 "" if rows else "No confusions: every test example was classified correctly.")


# ----------------------------------------------------------------------------- other sections


def oos_table(oos: Mapping[str, Any]) -> Table:
    known = {"label": ("out-of-scope label", str), "threshold": ("abstain below score", num),
             "in_scope_accuracy": ("in-scope accuracy", pct), "oos_recall": ("out-of-scope recall", pct),
             "oos_precision": ("out-of-scope precision", pct), "abstain_rate": ("abstain rate", pct),
             "threshold_chosen_on": ("threshold chosen on", str)}
    return Table("oos", "Out-of-scope detection", ["measure", "value"], _kv_rows(oos, known))


def forgetting_table(fg: Mapping[str, Any]) -> Table:
    known = {"proxy": ("proxy task", str), "base": ("base model", num), "tuned": ("fine-tuned model", num),
             "delta": ("change (tuned − base)", lambda v: f"{v:+.4g}" if _is_num(v) else DASH),
             "threshold": ("allowed drop", num), "regressed": ("regressed beyond allowed drop", num)}
    note = "WARNING: general ability regressed beyond the allowed drop." if fg.get("regressed") else ""
    return Table("forgetting", "Forgetting (general ability before and after fine-tuning)",
                 ["measure", "value"], _kv_rows(fg, known), note)


def training_table(tr: Mapping[str, Any]) -> Table:
    known = {"method": ("method", str), "steps": ("optimizer steps", num), "epochs": ("epochs", num),
             "wall_time_s": ("wall time", duration), "best_step": ("best step", num),
             "best_metric": ("best validation metric", num),
             "samples_per_s": ("throughput", lambda v: f"{v:,.1f} samples/s" if _is_num(v) else DASH)}
    return Table("training", "Training", ["setting", "value"], _kv_rows(tr, known))


def examples_table(examples: Iterable[Mapping[str, Any]]) -> Table:
    rows = [[str(ex.get("text", "")), str(ex.get("label", "")), str(ex.get("predicted", "")), num(ex.get("score")),
             num(ex.get("correct"))] for ex in examples]
    more = f"First 10 of {len(rows)} shown; all in report.html." if len(rows) > 10 else ""
    return Table("examples", "Example predictions", ["text", "label", "predicted", "score", "correct"], rows,
                 md_rows=10, md_note=more)


def paths_table(report: Mapping[str, Any], files: Mapping[str, Path]) -> Table:
    rows = [[k if k.startswith(sec) else f"{sec} {k}", num(v)]
            for sec in ("model", "data") for k, v in (report.get(sec) or {}).items()]
    rows += [[f"report ({k})", str(v)] for k, v in files.items()]
    return Table("paths", "Model, data and files", ["item", "value"], rows)


def build_tables(report: Mapping[str, Any], files: Mapping[str, Path]) -> list[Table]:
    """All sections in reading order, skipping the ones whose input is missing."""
    tables: list[Table | None] = [multi_label_table(report), systems_table(report)]
    if gain_entries(report):
        tables.append(gains_table(report))
    for key, make in (("oos", oos_table), ("forgetting", forgetting_table), ("training", training_table)):
        if isinstance(report.get(key), Mapping) and report[key]:
            tables.append(make(report[key]))
    tables += [per_class_table(report), confusions_table(report)]
    if report.get("examples"):
        tables.append(examples_table(report["examples"]))
    tables.append(paths_table(report, files))
    return [t for t in tables if t is not None]
