"""report.json / report.md / report.html: complete, self-contained, escaped, tolerant of gaps."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from _report_fixture import synthetic_report

from hone.eval.metrics import classification_metrics, multilabel_metrics, paired_multilabel_gain
from hone.eval.report import REPORT_FILES, to_jsonable, write_reports

HOSTILE = "<script>alert('x')</script> & co"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, Path]]:
    report = synthetic_report(26)
    return report, write_reports(tmp_path_factory.mktemp("full"), report)


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


def test_writes_three_files_and_json_roundtrips(full) -> None:
    report, files = full
    assert set(files) == set(REPORT_FILES) and all(p.is_file() for p in files.values())
    assert json.loads(files["json"].read_text(encoding="utf-8")) == to_jsonable(report)
    text = files["json"].read_text(encoding="utf-8")
    assert text.index('"data"') < text.index('"labels"') < text.index('"systems"')  # sorted keys


def test_html_is_self_contained_with_all_plots(full) -> None:
    page = full[1]["html"].read_text(encoding="utf-8")
    svgs = _svgs(page)
    # systems bars, per-class bars, confusion heat map, loss, validation metrics, learning rate
    assert len(svgs) == 6
    for svg in svgs:
        ET.fromstring(svg)  # each chart is well-formed XML, i.e. every label was escaped
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    for title in ("Loss", "Validation metrics", "Per-class F1", "Confusion matrix", "accuracy and macro-F1"):
        assert title in page


def test_labels_and_texts_are_escaped(full) -> None:
    _, files = full
    page = files["html"].read_text(encoding="utf-8")
    assert "<script" not in page and "<b>twice" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    md = files["md"].read_text(encoding="utf-8")
    assert "<script" not in md.replace("\\<script", "") and "\\<script>" in md
    assert "\\|" in md  # a pipe in an example text cannot break the table


def test_markdown_has_headline_gains_and_sections(full) -> None:
    report, files = full
    md = files["md"].read_text(encoding="utf-8")
    for baseline in ("zero_shot", "few_shot"):
        g = report["gains"][baseline]
        line = next(x for x in md.splitlines() if x.startswith(f"- fine_tuned vs {baseline} (accuracy)"))
        assert f"gain {g['gain'] * 100:+.1f} pts" in line and line.endswith(": better")
    for heading in ("Systems on the test set", "Gain of fine_tuned over each baseline", "Out-of-scope detection",
                    "Forgetting", "Training", "Per-class scores of fine_tuned", "Most frequent confusions"):
        assert f"## {heading}" in md
    assert "| fine_tuned (primary) | tuned |" in md
    assert "| wall time | 2 min 0.5 s |" in md and "| best step | 250 |" in md
    assert "| out-of-scope recall | 80.0% |" in md
    per_class = md.split("## Per-class")[1].split("## ")[0]
    rows = [r for r in per_class.splitlines() if r.startswith("| ") and "%" in r]
    f1 = [float(r.split(" | ")[1].rstrip("%")) for r in rows]
    assert len(rows) == 15 and f1 == sorted(f1)  # worst 15, worst first
    assert "Worst 15 of 26 classes shown" in md


def test_rerun_is_byte_identical(full, tmp_path: Path) -> None:
    report, _ = full
    first = {k: p.read_bytes() for k, p in write_reports(tmp_path, report).items()}
    again = write_reports(tmp_path, report)
    assert {k: p.read_bytes() for k, p in again.items()} == first


def test_minimal_report_only_systems_and_labels(tmp_path: Path) -> None:
    labels = ["a", "b", "c"]
    m = classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], labels, n_boot=20)
    files = write_reports(tmp_path, {"labels": labels, "systems": {"tuned": m, "bare": {"accuracy": 0.5}}})
    md, page = files["md"].read_text(encoding="utf-8"), files["html"].read_text(encoding="utf-8")
    assert md.startswith("# Evaluation report")
    assert "tuned vs bare (accuracy): tuned 75.0% vs bare 50.0%, difference +25.0 pts (unpaired" in md
    assert "## Training" not in md and "Out-of-scope" not in md
    assert len(_svgs(page)) == 3  # systems, per-class, confusion; no history
    assert json.loads(files["json"].read_text(encoding="utf-8"))["systems"]["bare"] == {"accuracy": 0.5}


def test_numpy_nan_and_nested_gains_are_handled(tmp_path: Path) -> None:
    report = synthetic_report(5, n=60, n_boot=20)
    report["training"]["wall_time_s"] = np.float32(12.0)
    report["forgetting"]["delta"] = float("nan")
    report["forgetting"]["regressed"] = np.bool_(True)
    report["gains"] = {"zero_shot": {"accuracy": report["gains"]["zero_shot"], "macro_f1": {
        **report["gains"]["zero_shot"], "metric": "macro_f1"}}}
    files = write_reports(tmp_path, report)
    data = json.loads(files["json"].read_text(encoding="utf-8"), parse_constant=pytest.fail)
    assert data["forgetting"]["delta"] is None and data["training"]["wall_time_s"] == 12.0
    md = files["md"].read_text(encoding="utf-8")
    assert "fine_tuned vs zero_shot (macro-f1)" in md and "fine_tuned vs zero_shot (accuracy)" in md
    assert "WARNING: general ability regressed" in md


def test_many_classes_fold_long_tables(tmp_path: Path) -> None:
    files = write_reports(tmp_path, synthetic_report(77, n=770, n_boot=20))
    page = files["html"].read_text(encoding="utf-8")
    assert "<details><summary>all 77 rows</summary>" in page
    assert page.count('<text x="') > 3 * 77  # every class named on both heat-map axes and the F1 bars


def test_missing_systems_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="systems"):
        write_reports(tmp_path, {"labels": ["a"]})
    with pytest.raises(ValueError, match="systems"):
        write_reports(tmp_path, {"labels": ["a"], "systems": {}})


def test_per_class_leaves_out_classes_without_examples_and_predictions(tmp_path: Path) -> None:
    """A class absent from the test set and never predicted was listed first, as the worst, with F1 0.0%."""
    labels = ["billing", "outage", "roaming", "refund"]
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 0], labels, n_boot=20)
    md = write_reports(tmp_path, {"labels": labels, "systems": {"fine_tuned": m}})["md"].read_text(encoding="utf-8")
    per_class = md.split("## Per-class")[1].split("## ")[0]
    assert "| refund" not in per_class and "| roaming | 66.7%" in per_class
    assert "1 class(es) with no test examples and no predictions left out" in per_class and "refund." in per_class
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 3, 1, 1, 2, 2], labels, n_boot=20)  # refund predicted once
    md = write_reports(tmp_path, {"labels": labels, "systems": {"fine_tuned": m}})["md"].read_text(encoding="utf-8")
    assert "| refund | 0.0%" in md.split("## Per-class")[1] and "left out" not in md


def _multi_label_report(n_boot: int = 30) -> dict:
    """What evaluate_classifier returns for a multi-label model with a zero-shot baseline."""
    from hone.eval.metrics import multilabel_ci

    rng = np.random.default_rng(1)
    labels = ["billing", "outage", "roaming"]
    truth = (rng.random((30, 3)) < 0.45).astype(int)
    truth[truth.sum(1) == 0, 0] = 1
    tuned = np.where(rng.random((30, 3)) < 0.9, truth, 1 - truth)
    base = np.eye(3, dtype=int)[rng.integers(0, 3, 30)]
    first = truth.argmax(1)
    systems = {}
    for name, pred in (("fine_tuned", tuned), ("zero_shot", base)):
        ml = {**multilabel_metrics(truth, pred, labels), "micro_f1_ci": multilabel_ci(truth, pred, n_boot=n_boot)}
        systems[name] = {**classification_metrics(first, pred.argmax(1), labels, n_boot=n_boot), "multi_label": ml,
                         "kind": "baseline" if name != "fine_tuned" else "fine-tuned"}
    gains = {"zero_shot": paired_multilabel_gain(truth, base, tuned, n_boot=n_boot)} if n_boot else {}
    return {"task": "classification", "labels": labels, "primary": "fine_tuned", "systems": systems, "gains": gains,
            "multi_label": {"threshold": 0.5, **systems["fine_tuned"]["multi_label"]}}


def test_multi_label_report_shows_every_label_scores_and_gains_on_micro_f1(tmp_path: Path) -> None:
    """A multi-label model's report had only first-label accuracy; micro-F1 / subset accuracy were in report.json."""
    from hone.pipeline import headline

    report = _multi_label_report()
    files = write_reports(tmp_path, report)
    md, page = files["md"].read_text(encoding="utf-8"), files["html"].read_text(encoding="utf-8")
    ml = report["systems"]["fine_tuned"]["multi_label"]
    assert md.index("## Multi-label scores on the test set") < md.index("## Single-label view")
    row = next(x for x in md.splitlines() if x.startswith("| fine_tuned (primary) | 30 |"))
    assert f"| {ml['micro_f1']:.1%} |" in row and f"| {ml['subset_accuracy']:.1%} |" in row
    assert "subset accuracy" in md and "multi-label" in md.split("\n")[2]
    g = report["gains"]["zero_shot"]
    assert f"- fine_tuned vs zero_shot (micro-f1): fine_tuned {g['b']:.1%} vs zero_shot {g['a']:.1%}" in md
    assert "Multi-label scores" in page and "micro-F1 and macro-F1" in page
    lines = headline(files["json"])
    assert lines[0].strip().startswith(f"fine_tuned: micro-F1 {ml['micro_f1']:.3f} [")
    assert any(x.startswith("fine-tuned vs zero_shot:") and "pts micro-f1" in x for x in lines)
    no_boot = write_reports(tmp_path / "b0", _multi_label_report(n_boot=0))["md"].read_text(encoding="utf-8")
    assert "(micro-f1): fine_tuned" in no_boot and "unpaired; no bootstrap CI supplied" in no_boot


def test_gain_lines_give_values_in_the_names_order_and_name_the_p_value(full) -> None:
    """'fine_tuned vs few_shot: 77.8% → 33.3%' printed the baseline's value first."""
    report, files = full
    md = files["md"].read_text(encoding="utf-8")
    g = report["gains"]["few_shot"]
    assert g["b"] != g["a"]
    line = next(x for x in md.splitlines() if x.startswith("- fine_tuned vs few_shot (accuracy)"))
    assert line.startswith(f"- fine_tuned vs few_shot (accuracy): fine_tuned {g['b']:.1%} vs few_shot {g['a']:.1%},")
    assert "one-sided p" in line
    assert "| baseline | metric | baseline score | fine_tuned score | gain | 95% CI | p-value (not better) |" in md


def test_without_bootstrap_no_intervals_and_the_headline_still_prints(tmp_path: Path) -> None:
    """eval.bootstrap=0 gave [score, score] 'intervals' (and crashed with baselines)."""
    from hone.pipeline import headline

    labels = ["a", "b", "c"]
    systems = {n: {**classification_metrics([0, 1, 2, 2], p, labels, n_boot=0), "kind": "k"}
               for n, p in (("fine_tuned", [0, 1, 2, 2]), ("zero_shot", [0, 1, 1, 1]))}
    assert systems["fine_tuned"]["accuracy_ci"] is None
    files = write_reports(tmp_path, {"labels": labels, "systems": systems, "primary": "fine_tuned"})
    md = files["md"].read_text(encoding="utf-8")
    assert "| fine_tuned (primary) | k |  | 4 | 100.0% | — | 100.0% | — |" in md
    assert "difference +50.0 pts (unpaired; no bootstrap CI supplied)" in md
    assert headline(files["json"])[0].strip() == "fine_tuned: accuracy 1.000  macro-F1 1.000"
