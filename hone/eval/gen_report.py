"""Generative evaluation report (``kind == "generator"``; hone.eval.report.write_reports dispatches here).

Only ``systems`` is required; every other section is omitted when its input is missing. Scores
are 0-100 (hone.eval.gen_metrics), rates 0-1. Sections are built once as tables so Markdown and
HTML agree; charts are inline SVG; all text, model outputs included, is escaped. Side-by-side
examples show the prompt's last user turn (clipped; the full prompt folds out in HTML).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hone.artifacts import REPORT_FILES, atomic_write_json, atomic_write_text
from hone.eval import plots
from hone.eval.plots import Series
from hone.eval.report import _CSS, _h, _html_table, _md, _md_table, to_jsonable
from hone.eval.tables import DASH, Table, _is_num, ci_text, duration, num, pct, pts, verdict

SYSTEM_ORDER = ("fine_tuned", "zero_shot", "few_shot")
METRIC_NAMES = {"rougeL": "ROUGE-L", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "bleu": "BLEU", "chrf": "chrF",
                "exact_match": "exact match"}
EXAMPLE_GROUPS = {"best": "Best examples (highest {m} of the fine-tuned model)", "random": "Random examples",
                  "worst": "Worst examples (lowest {m} of the fine-tuned model)"}
OUTPUT_COLUMNS = (("reference", "reference"), ("fine_tuned", "fine-tuned"), ("zero_shot", "base zero-shot"),
                  ("few_shot", "base few-shot"))
PROMPT_CHARS = 400  # prompts are clipped to this many characters (full text folded away in HTML)
TEXT_CHARS = 1500  # outputs and references, HTML
MD_TEXT_CHARS = 600  # outputs and references, Markdown

_GEN_CSS = """
.regression{color:#fff;background:#b00020;font-weight:700;padding:.5em .8em;border-radius:4px}
.ex{border:1px solid #ddd;border-radius:6px;padding:.6em .8em;margin:.8em 0}.exhead{font-weight:600}.ex h4{margin:.3em 0
.2em;font-size:.8em;color:#555;text-transform:uppercase;letter-spacing:.03em}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.6em}
.txt{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.9em;background:#fafbfc;padding:.4em;border-radius:4px}
"""


def _fmt(x: Any, spec: str, unit: str = "") -> str:
    """``x`` formatted with ``spec`` (plus ``unit``), or '—' when it is not a finite number."""
    return f"{x:{spec}}{unit}" if _is_num(x) else DASH


def _ci(lo: Any, hi: Any) -> str:
    return f"[{lo:.1f}, {hi:.1f}]" if _is_num(lo) and _is_num(hi) else DASH


def metric_name(metric: str) -> str:
    """'rougeL' → 'ROUGE-L'; unknown metrics keep their name with spaces for underscores."""
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def system_name(name: str, system: Mapping[str, Any] | None = None) -> str:
    """'fine_tuned' → 'fine-tuned', 'few_shot' with k=2 → 'base few-shot (k=2)'."""
    if name not in ("zero_shot", "few_shot"):
        return "fine-tuned" if name == "fine_tuned" else name.replace("_", " ")
    k = (system or {}).get("k")
    return f"base {name.replace('_', '-')}" + (f" (k={k})" if k is not None else "")


def ordered_systems(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """fine_tuned, zero_shot, few_shot (when present), then any other system in the order given."""
    systems = {k: v for k, v in (report.get("systems") or {}).items() if isinstance(v, Mapping)}
    known = [(k, systems[k]) for k in SYSTEM_ORDER if k in systems]
    return known + [(k, v) for k, v in systems.items() if k not in SYSTEM_ORDER]


def metrics_of(report: Mapping[str, Any]) -> list[str]:
    """``report["metrics"]``, else every metric scored for some system (first seen first)."""
    if report.get("metrics"):
        return [str(m) for m in report["metrics"]]
    return list(dict.fromkeys(str(m) for _, s in ordered_systems(report) for m in s.get("scores") or {}))


def main_metric(report: Mapping[str, Any]) -> str:
    metrics = metrics_of(report)
    return str(report.get("main_metric") or (metrics[0] if metrics else "rougeL"))


def _entry(system: Mapping[str, Any] | None, metric: str) -> Mapping[str, Any]:
    """One score as {"value", "low", "high"}; a bare number is accepted too."""
    e = ((system or {}).get("scores") or {}).get(metric)
    return e if isinstance(e, Mapping) else {"value": e}


def _score_ci(e: Mapping[str, Any]) -> str:
    ci = _ci(e.get("low"), e.get("high"))
    return _fmt(e.get("value"), ".1f") + ("" if ci == DASH or not _is_num(e.get("value")) else f" {ci}")


def headlines(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(sentence, verdict) per baseline on the main metric, e.g. 'fine-tuned ROUGE-L 31.2 vs base zero-shot
    18.4 (+12.8, 95% CI [10.1, 15.3])' and 'better'; verdict '' when no paired bootstrap was supplied."""
    systems, m = report.get("systems") or {}, main_metric(report)
    tuned = _entry(systems.get("fine_tuned"), m).get("value")
    out = []
    for name, s in [(n, s) for n, s in ordered_systems(report) if n != "fine_tuned"]:
        base = _entry(s, m).get("value")
        g = ((report.get("gains") or {}).get(name) or {}).get(m)
        if isinstance(g, Mapping) and _is_num(g.get("gain")):
            ci = [g.get("low"), g.get("high")]
            detail, v = f"{g['gain']:+.1f}, 95% CI {_ci(*ci)}", verdict(ci)
        elif _is_num(tuned) and _is_num(base):
            detail, v = f"{tuned - base:+.1f}, unpaired; no bootstrap CI supplied", ""
        else:
            continue
        line = f"fine-tuned {metric_name(m)} {_fmt(tuned, '.1f')} vs {system_name(name, s)} {_fmt(base, '.1f')}"
        out.append((f"{line} ({detail})", v))
    return out


def regression_text(report: Mapping[str, Any]) -> str:
    """The red flag's text, or '' when the forgetting check did not flag the tuned model."""
    fg = report.get("forgetting")
    flagged = isinstance(fg, Mapping) and fg.get("flagged")
    return (f"REGRESSION: general ability of the fine-tuned model worsened beyond the threshold "
            f"({num(fg.get('threshold'))}); see Forgetting.") if flagged else ""


def subtitle(report: Mapping[str, Any]) -> str:
    """model · method · objective · test examples · training wall time (whatever is known)."""
    parts = [f"{key}: {report[key]}" for key in ("model", "method", "objective") if report.get(key)]
    parts += [f"{num(report.get('test_examples'))} test examples"] * (report.get("test_examples") is not None)
    wall = (report.get("training") or {}).get("wall_time_s")
    parts += [f"training wall time {duration(wall)}"] * _is_num(wall)
    return " · ".join(parts) or "generative evaluation"


# ----------------------------------------------------------------------------- tables


def systems_table(report: Mapping[str, Any]) -> Table:
    metrics = metrics_of(report)
    header = ["system"] + [f"{metric_name(m)} (95% CI)" for m in metrics] + [
        "stop rate", "mean tokens", "perplexity", "generation time"]
    rows = []
    for name, s in ordered_systems(report):
        st = s.get("stats") or {}
        rows.append([system_name(name, s)] + [_score_ci(_entry(s, m)) for m in metrics] + [
            pct(st.get("stop_rate")), _fmt(st.get("mean_tokens"), ".1f"), _fmt(s.get("perplexity"), ".2f"),
            _fmt(s.get("seconds"), ".1f", " s")])
    note = ("Scores on a 0-100 scale with 95% bootstrap CIs over test examples. Stop rate: share of outputs "
            "that ended on their own before the token limit. Perplexity: of the reference replies.")
    per_example = report.get("generation_seconds_per_example")
    if _is_num(per_example):
        note += f" Generation took {per_example:.2f} s per example."
    return Table("systems", "Systems on the test set", header, rows, note)


def gains_table(report: Mapping[str, Any]) -> Table | None:
    systems, metrics, rows = report.get("systems") or {}, metrics_of(report), []
    for baseline, per_metric in (report.get("gains") or {}).items():
        per_metric = per_metric if isinstance(per_metric, Mapping) else {}
        for m in [m for m in metrics if m in per_metric] + [m for m in per_metric if m not in metrics]:
            g = per_metric[m]
            if isinstance(g, Mapping) and "gain" in g:
                ci = [g.get("low"), g.get("high")]
                rows.append([system_name(baseline, systems.get(baseline)), metric_name(m), _fmt(g["gain"], "+.1f"),
                             _ci(*ci), _fmt(g.get("p_better"), ".3f"), verdict(ci)])
    return Table("gains", "Gain of the fine-tuned model over each baseline",
                 ["baseline", "metric", "gain", "95% CI", "share of resamples better", "verdict"], rows,
                 "Paired bootstrap: both systems scored on the same resamples of the test set. Share of resamples "
                 "better: how often the fine-tuned model scored higher than the baseline (near 1 = a clear gain; "
                 "this is not a p-value).") if rows else None


def training_table(tr: Mapping[str, Any]) -> Table | None:
    known = {"steps": ("optimizer steps", num), "wall_time_s": ("wall time", duration),
             "samples_per_s": ("throughput", lambda v: _fmt(v, ",.1f", " samples/s")),
             "tokens_per_s": ("token throughput", lambda v: _fmt(v, ",.0f", " tokens/s"))}
    rows = [[label, fmt(tr[key])] for key, (label, fmt) in known.items() if key in tr]
    rows += [[k.replace("_", " "), num(v)] for k, v in tr.items() if k not in known and k != "history"]
    return Table("training", "Training", ["setting", "value"], rows) if rows or tr.get("history") else None


def forgetting_table(fg: Mapping[str, Any]) -> Table | None:
    rows = []
    ppl, qa = fg.get("general_perplexity"), fg.get("general_qa")
    if isinstance(ppl, Mapping):
        rows.append(["general-text perplexity (lower is better)", num(ppl.get("base")), num(ppl.get("tuned")),
                     _fmt(ppl.get("change"), "+.1%")])
    if isinstance(qa, Mapping):
        rows.append(["general Q&A accuracy", pct(qa.get("base")), pct(qa.get("tuned")), pts(qa.get("change"))])
    if not rows:
        return None
    note = "Perplexity change is relative; accuracy change is in percentage points."
    if "threshold" in fg:
        note += f" Flag threshold: {num(fg['threshold'])}."
    return Table("forgetting", "Forgetting (general ability before and after fine-tuning)",
                 ["measure", "base", "fine-tuned", "change"], rows, note)


def _base_tuned(d: Mapping[str, Any], cell: Any, extra: int) -> list[list[str]]:
    """Rows 'base' and 'fine-tuned' (those present), then 'change' when both values are numbers."""
    rows = [[label, *cell(d[k])] for k, label in (("base", "base"), ("tuned", "fine-tuned")) if d.get(k) is not None]
    value = [v.get("accuracy") if isinstance(v, Mapping) else v for v in (d.get("base"), d.get("tuned"))]
    if rows and all(_is_num(v) for v in value):
        rows.append(["change", pts(value[1] - value[0])] + [DASH] * extra)
    return rows


def choice_table(ch: Mapping[str, Any]) -> Table | None:
    rows = _base_tuned(ch, lambda v: [pct(v.get("accuracy")), ci_text([v.get("low"), v.get("high")])]
                       if isinstance(v, Mapping) else [DASH, DASH], 1)
    note = f"{num(ch['items'])} items, scored by option log-likelihood." if "items" in ch else ""
    return Table("choice", "Multiple-choice accuracy", ["model", "accuracy", "95% CI"], rows, note) if rows else None


def preference_table(pref: Mapping[str, Any]) -> Table | None:
    rows = _base_tuned(pref, lambda v: [pct(v)], 0)
    pairs = f"{num(pref['pairs'])} held-out" if "pairs" in pref else "held-out"
    note = f"Share of {pairs} preference pairs where the model ranks the chosen reply above the rejected one."
    return Table("preference", "Preference accuracy", ["model", "prefers chosen"], rows, note) if rows else None


def lint_table(lint: Mapping[str, Any]) -> Table | None:
    known = {"examples": "training examples", "truncated": "truncated to the length limit",
             "dropped": "dropped", "trained_share": "share of tokens trained on"}
    rows = [[label, pct(lint[k]) if k == "trained_share" else num(lint[k])] for k, label in known.items() if k in lint]
    rows += [[k.replace("_", " "), num(v)] for k, v in lint.items() if k not in known]
    return Table("lint", "Training data lint", ["check", "value"], rows) if rows else None


def build_tables(report: Mapping[str, Any]) -> list[Table]:
    """All sections in reading order, skipping those whose input is missing."""
    tables: list[Table | None] = [systems_table(report), gains_table(report)]
    for key, make in (("training", training_table), ("forgetting", forgetting_table), ("choice", choice_table),
                      ("preference", preference_table), ("lint", lint_table)):
        if isinstance(report.get(key), Mapping) and report[key]:
            tables.append(make(report[key]))
    return [t for t in tables if t is not None]


# ----------------------------------------------------------------------------- figures


def systems_figure(report: Mapping[str, Any]) -> str | None:
    """Grouped bars: one group per metric, one bar per system, with CI whiskers (0-100 scale)."""
    metrics, systems = metrics_of(report), ordered_systems(report)
    if not metrics or not systems:
        return None

    def col(s: Mapping[str, Any], key: str) -> list[float]:  # missing → NaN, drawn as "not measured"
        return [float(v) if _is_num(v := _entry(s, m).get(key)) else math.nan for m in metrics]

    series = [Series(system_name(n, s), col(s, "value"), lo=col(s, "low"), hi=col(s, "high")) for n, s in systems]
    top = max((v for s in series for v in (*s.values, *(s.hi or ())) if math.isfinite(v)), default=1.0)
    x_max = plots.nice_ticks(0.0, max(top, 1.0), 5)[-1]
    return plots.bar_chart([metric_name(m) for m in metrics], series, title="Systems: scores (95% CI)",
                           x_max=x_max, value_fmt=".1f", bar_h=14)


def training_figure(report: Mapping[str, Any]) -> str | None:
    """train_loss / eval_loss (any *loss* key) over steps from ``training.history``."""
    tr = report.get("training") or {}
    curves: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(r for r in tr.get("history") or [] if isinstance(r, Mapping)):
        for key, v in row.items():
            if "loss" in key and _is_num(v) and _is_num(x := row.get("step", i)):
                curves.setdefault(key, []).append((float(x), float(v)))
    if not curves:
        return None
    series = [Series(k, [v for _, v in pts_], [x for x, _ in pts_]) for k, pts_ in curves.items()]
    best = tr.get("best_step") if _is_num(tr.get("best_step")) else None
    return plots.line_chart(series, title="Training curve", y_label="loss", y_min=0.0, marker_x=best)


# ----------------------------------------------------------------------------- examples


def prompt_parts(prompt: Any) -> tuple[str, str]:
    """(last user turn, full prompt text) of a string, a message list or {"messages": [...]}."""
    if isinstance(prompt, Mapping) and "messages" in prompt:
        prompt = prompt["messages"]
    if isinstance(prompt, list) and all(isinstance(m, Mapping) for m in prompt):
        users = [str(m.get("content", "")) for m in prompt if m.get("role") == "user"]
        full = "\n\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in prompt)
        return (users[-1] if users else full), full
    text = "" if prompt is None else str(prompt)
    return text, text


def example_groups(report: Mapping[str, Any]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """(group, examples): best / worst / random first, then other groups; a bare list is one group."""
    ex = report.get("examples")
    ex = {"examples": ex} if isinstance(ex, list) else ex if isinstance(ex, Mapping) else {}
    keys = [k for k in ("best", "worst", "random") if k in ex] + [k for k in ex if k not in EXAMPLE_GROUPS]
    return [(k, [e for e in ex[k] if isinstance(e, Mapping)]) for k in keys if isinstance(ex[k], list) and ex[k]]


def _group_title(group: str, metric: str) -> str:
    return EXAMPLE_GROUPS[group].replace("{m}", metric) if group in EXAMPLE_GROUPS else group.replace("_", " ")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _examples_md(report: Mapping[str, Any]) -> list[str]:
    m, lines = metric_name(main_metric(report)), []
    for group, examples in example_groups(report):
        lines += [f"## {_md(_group_title(group, m))}", ""]
        for i, ex in enumerate(examples, 1):
            last, _ = prompt_parts(ex.get("prompt"))
            lines += [f"### {i}. {_md(m)} {_fmt(ex.get('score'), '.1f')}", "",
                      f"- **prompt**: {_md(_clip(last, PROMPT_CHARS))}"]
            lines += [f"- **{label}**: {_md(_clip(str(ex[key]) or '(empty)', MD_TEXT_CHARS))}"
                      for key, label in OUTPUT_COLUMNS if key in ex]
            lines.append("")
    return lines


def _text_html(text: str, limit: int, full: str | None = None) -> str:
    """Escaped text block, clipped to ``limit`` characters; the full text folds out below when clipped."""
    full = text if full is None else full
    block = f'<div class="txt">{_h(_clip(text, limit))}</div>'
    if len(text) > limit or full != text:
        block += (f'<details><summary>full text ({len(full):,} chars)</summary>'
                  f'<div class="txt">{_h(full)}</div></details>')
    return block


def _example_html(i: int, ex: Mapping[str, Any], metric: str) -> str:
    last, full = prompt_parts(ex.get("prompt"))
    cols = "".join(f'<div><h4>{_h(label)}</h4>{_text_html(str(ex[key]) or "(empty)", TEXT_CHARS)}</div>'
                   for key, label in OUTPUT_COLUMNS if key in ex)
    return (f'<div class="ex"><div class="exhead">#{i} · {_h(metric)} {_h(_fmt(ex.get("score"), ".1f"))}</div>'
            f"<h4>prompt (last user turn)</h4>{_text_html(last, PROMPT_CHARS, full)}"
            f'<div class="cols">{cols}</div></div>')


def _examples_html(report: Mapping[str, Any]) -> str:
    m = metric_name(main_metric(report))
    return "".join(f'<section id="examples-{_h(group)}"><h2>{_h(_group_title(group, m))}</h2>'
                   + "".join(_example_html(i, ex, m) for i, ex in enumerate(examples, 1)) + "</section>"
                   for group, examples in example_groups(report))


# ----------------------------------------------------------------------------- renderers


def _md_line(line: str) -> str:
    """Our own text (tables, headline) in Markdown: escaped, but CI brackets stay bare when no link can form."""
    plain = line.replace("\\[", "[").replace("\\]", "]")
    return line if "](" in plain or "][" in plain else plain


def _title(report: Mapping[str, Any]) -> str:
    model = report.get("model")
    return str(report.get("title") or (f"Generative evaluation: {model}" if model else "Generative evaluation"))


def render_markdown(report: Mapping[str, Any]) -> str:
    """The readable summary: headline sentences, every section table, then the side-by-side examples."""
    report = to_jsonable(report)
    flag = regression_text(report)
    lines = [f"# {_md(_title(report))}", "", _md(subtitle(report)), ""]
    lines += [_md_line(f"- {_md(line)}") for line, _ in headlines(report)]
    lines += [f"- **{_md(flag)}**"] * bool(flag) + [""]
    for t in build_tables(report):
        lines += [_md_line(x) for x in _md_table(t)]
        if t.key == "forgetting" and flag:
            lines += [f"**{_md(flag)}**", ""]
    lines += _examples_md(report)
    return "\n".join(lines).rstrip() + "\n"


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS and SVG, no external references, no timestamp)."""
    report = to_jsonable(report)
    flag = regression_text(report)
    flag_html = f'<p class="regression">{_h(flag)}</p>' if flag else ""
    figs = {"systems": [systems_figure(report)], "training": [training_figure(report)]}
    heads = [f'<li class="{v if v in ("better", "worse") else ""}">{_h(line)}</li>' for line, v in headlines(report)]
    # each section as hone.eval.report renders it; the forgetting one gets the red flag appended inside
    sections = [_html_table(t, [f for f in figs.get(t.key, []) if f]).removesuffix("</section>")
                + flag_html * (t.key == "forgetting") + "</section>" for t in build_tables(report)]
    title = _title(report)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_h(title)}</title><style>{_CSS}{_GEN_CSS}</style></head><body>"
        f'<h1>{_h(title)}</h1><p class="sub">{_h(subtitle(report))}</p>'
        f'<ul class="gains">{"".join(heads)}</ul>{flag_html}{"".join(sections)}{_examples_html(report)}'
        "</body></html>\n"
    )


def write_generator_reports(out_dir: str | Path, report: Mapping[str, Any]) -> dict[str, Path]:
    """report.json, report.md and report.html of a generator report, written atomically; returns their paths."""
    if not isinstance(report.get("systems"), Mapping) or not report["systems"]:
        raise ValueError("generator report needs non-empty 'systems'")
    files = {kind: Path(out_dir) / name for kind, name in REPORT_FILES.items()}
    clean = to_jsonable(report)
    atomic_write_json(files["json"], clean)
    atomic_write_text(files["md"], render_markdown(clean))
    atomic_write_text(files["html"], render_html(clean))
    return files
