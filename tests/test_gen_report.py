"""Generative report (hone.eval.gen_report): headline, tables, charts, flags, escaping, optional sections."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hone.eval import gen_report as gr
from hone.eval.report import REPORT_FILES, to_jsonable, write_reports

HOSTILE = "<script>alert('x')</script> & co | pipe"


def _scores(rouge: float, bleu: float, chrf: float) -> dict[str, dict[str, float]]:
    return {m: {"value": v, "low": v - 2.1, "high": v + 1.9} for m, v in
            (("rougeL", rouge), ("bleu", bleu), ("chrf", chrf))}


def _system(rouge: float, bleu: float, chrf: float, stop: float, ppl: float, secs: float) -> dict[str, Any]:
    return {"scores": _scores(rouge, bleu, chrf), "perplexity": ppl, "seconds": secs,
            "stats": {"stop_rate": stop, "mean_tokens": 24.1, "mean_words": 18.0, "empty_rate": 0.0}}


def _gain(g: float, p: float) -> dict[str, float]:
    return {"gain": g, "low": g - 2.7, "high": g + 2.5, "p_better": p}


def gen_report(flagged: bool = False) -> dict[str, Any]:
    """A realistic generator report: three systems, gains, forgetting, choice, preference, lint, examples."""
    history = [{"step": s, "train_loss": 2.4 * np.exp(-s / 30) + 0.8} for s in range(5, 55, 5)]
    history += [{"step": s, "eval_loss": 2.5 * np.exp(-s / 35) + 0.9} for s in (10, 20, 30, 40, 50)]
    long_prompt = "Please summarise the following support ticket. " + "The router keeps dropping. " * 30
    return {
        "kind": "generator", "model": "SmolLM2-135M-Instruct", "method": "lora", "objective": "sft",
        "test_examples": 200, "metrics": ["rougeL", "bleu", "chrf"], "main_metric": "rougeL",
        "systems": {"zero_shot": _system(18.4, 6.2, 30.5, 0.71, 9.8, 39.0),
                    "fine_tuned": _system(31.2, 14.9, 45.0, 0.97, 6.1, 41.2),
                    "few_shot": {**_system(22.0, 8.1, 34.2, 0.8, 9.8, 60.3), "k": 2}},
        "gains": {"zero_shot": {"rougeL": _gain(12.8, 1.0), "bleu": _gain(8.7, 1.0), "chrf": _gain(14.5, 1.0)},
                  "few_shot": {"rougeL": _gain(9.2, 0.998), "bleu": _gain(6.8, 0.99), "chrf": _gain(10.8, 1.0)}},
        "forgetting": {"general_perplexity": {"base": 12.0, "tuned": 14.4 if flagged else 12.6,
                                              "change": 0.2 if flagged else 0.05},
                       "general_qa": {"base": 0.6, "tuned": 0.575, "change": -0.025},
                       "threshold": 0.1, "flagged": flagged},
        "choice": {"base": {"accuracy": 0.31, "low": 0.29, "high": 0.33},
                   "tuned": {"accuracy": 0.36, "low": 0.34, "high": 0.38}, "items": 2000},
        "preference": {"base": 0.52, "tuned": 0.81, "pairs": 50},
        "lint": {"examples": 261, "truncated": 17, "dropped": 0, "trained_share": 0.61},
        "training": {"wall_time_s": 100.0, "steps": 50, "samples_per_s": 3.1, "tokens_per_s": 800.0,
                     "history": history},
        "examples": {
            "best": [{"prompt": [{"role": "system", "content": "You are terse."},
                                 {"role": "user", "content": "Summarise: the bill doubled."}],
                      "reference": "Customer's bill doubled.", "fine_tuned": "The bill doubled.",
                      "zero_shot": "Sure! Here is a summary...", "score": 55.0}],
            "worst": [{"prompt": HOSTILE, "reference": "ref <b>bold</b>", "fine_tuned": HOSTILE,
                       "zero_shot": "", "score": 0.0}],
            "random": [{"prompt": long_prompt, "reference": "Router drops.", "fine_tuned": "Router keeps dropping.",
                        "zero_shot": "I cannot help.", "score": 40.0}]},
        "generation_seconds_per_example": 0.4,
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    report = gen_report()
    return report, write_reports(tmp_path_factory.mktemp("gen"), report)


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


def test_write_reports_dispatches_and_writes_three_files(written) -> None:
    report, files = written
    assert set(files) == set(REPORT_FILES) and all(p.is_file() for p in files.values())
    assert json.loads(files["json"].read_text(encoding="utf-8")) == to_jsonable(report)
    assert files["md"].read_text(encoding="utf-8") == gr.render_markdown(report)
    assert files["html"].read_text(encoding="utf-8") == gr.render_html(report)


def test_markdown_headline_and_systems_table(written) -> None:
    md = written[1]["md"].read_text(encoding="utf-8")
    assert md.startswith("# Generative evaluation: SmolLM2-135M-Instruct")
    assert "model: SmolLM2-135M-Instruct · method: lora · objective: sft · 200 test examples" in md
    assert "training wall time 1 min 40.0 s" in md
    assert "- fine-tuned ROUGE-L 31.2 vs base zero-shot 18.4 (+12.8, 95% CI [10.1, 15.3])" in md
    assert "- fine-tuned ROUGE-L 31.2 vs base few-shot (k=2) 22.0 (+9.2, 95% CI [6.5, 11.7])" in md
    assert "| system | ROUGE-L (95% CI) | BLEU (95% CI) | chrF (95% CI) | stop rate | mean tokens |" in md
    rows = [r for r in md.split("## Systems on the test set")[1].split("## ")[0].splitlines() if r.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| fine-tuned", "| base zero-shot", "| base few-shot (k=2)"]
    assert "| fine-tuned | 31.2 [29.1, 33.1] | 14.9 [12.8, 16.8] | 45.0 [42.9, 46.9] | 97.0% | 24.1 | 6.10 | " \
           "41.2 s |" in md
    assert "| base zero-shot | ROUGE-L | +12.8 | [10.1, 15.3] | 1.000 | better |" in md
    for heading in ("Gain of the fine-tuned model", "Training", "Forgetting", "Multiple-choice accuracy",
                    "Preference accuracy", "Training data lint", "Best examples", "Worst examples", "Random examples"):
        assert f"## {heading}" in md
    assert "| general-text perplexity (lower is better) | 12 | 12.6 | +5.0% |" in md
    assert "| general Q&A accuracy | 60.0% | 57.5% | -2.5 pts |" in md
    assert "| fine-tuned | 36.0% | 34.0 – 38.0% |" in md and "| fine-tuned | 81.0% |" in md
    assert "| share of tokens trained on | 61.0% |" in md and "<svg" not in md


def test_markdown_examples_are_escaped_and_clipped(written) -> None:
    md = written[1]["md"].read_text(encoding="utf-8")
    assert "<script" not in md.replace("\\<script", "") and "\\<script>" in md and "\\| pipe" in md
    assert "- **prompt**: Summarise: the bill doubled." in md  # last user turn only
    assert "You are terse" not in md
    prompt_line = next(x for x in md.split("## Random examples")[1].splitlines() if x.startswith("- **prompt**"))
    assert prompt_line.endswith("…") and len(prompt_line) < gr.PROMPT_CHARS + 40
    assert "- **fine-tuned**: Router keeps dropping." in md and "### 1. ROUGE-L 40.0" in md
    assert "- **base zero-shot**: (empty)" in md  # an empty output is said, not left blank


def test_html_is_self_contained_escaped_with_charts(written) -> None:
    page = written[1]["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page and "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page and "<b>bold" not in page
    svgs = _svgs(page)
    assert len(svgs) == 2  # systems bars and training curve
    for svg in svgs:
        ET.fromstring(svg)
    assert "Systems: scores (95% CI)" in page and "Training curve" in page
    assert "train_loss" in page and "eval_loss" in page
    assert 'class="better">fine-tuned ROUGE-L 31.2 vs base zero-shot 18.4 (+12.8, 95% CI [10.1, 15.3])' in page


def test_html_examples_side_by_side_with_folded_full_prompt(written) -> None:
    page = written[1]["html"].read_text(encoding="utf-8")
    assert page.count('<div class="ex">') == 3 and page.count('<div class="cols">') == 3
    for label in ("reference", "fine-tuned", "base zero-shot"):
        assert f"<h4>{label}</h4>" in page
    random = page.split('id="examples-random"')[1]
    assert "<details><summary>full text (" in random  # long prompt clipped, full text folded away
    best = page.split('id="examples-best"')[1].split("</section>")[0]
    assert "system: You are terse." in best  # the whole conversation behind the last user turn


def test_regression_flag_only_when_flagged(written, tmp_path: Path) -> None:
    assert "REGRESSION" not in written[1]["md"].read_text(encoding="utf-8")
    assert "REGRESSION" not in written[1]["html"].read_text(encoding="utf-8")
    files = write_reports(tmp_path, gen_report(flagged=True))
    md, page = files["md"].read_text(encoding="utf-8"), files["html"].read_text(encoding="utf-8")
    assert "**REGRESSION: general ability of the fine-tuned model worsened" in md
    assert '<p class="regression">REGRESSION' in page
    forgetting = page.split('id="forgetting"')[1].split("</section>")[0]
    assert "REGRESSION" in forgetting and "+20.0%" in forgetting


def test_optional_sections_are_omitted(tmp_path: Path) -> None:
    report = {"kind": "generator", "systems": {"fine_tuned": {"scores": {"rougeL": 30.0}},
                                               "zero_shot": {"scores": {"rougeL": {"value": 20.0}}}}}
    files = write_reports(tmp_path, report)
    md, page = files["md"].read_text(encoding="utf-8"), files["html"].read_text(encoding="utf-8")
    assert "fine-tuned ROUGE-L 30.0 vs base zero-shot 20.0 (+10.0, unpaired; no bootstrap CI supplied)" in md
    for heading in ("Gain", "Training", "Forgetting", "Multiple-choice", "Preference", "lint", "Best examples"):
        assert f"## {heading}" not in md and f"<h2>{heading}" not in page
    assert "<section" in page and 'id="examples-' not in page and 'class="ex"' not in page
    assert len(_svgs(page)) == 1 and "REGRESSION" not in page
    partial = gen_report()
    for key in ("choice", "preference", "lint", "gains"):
        partial.pop(key)
    partial["examples"] = {"best": partial["examples"]["best"]}
    partial["forgetting"] = {"general_qa": {"base": 0.6, "tuned": 0.6, "change": 0.0}}
    md = gr.render_markdown(partial)
    assert "## Best examples" in md and "## Worst examples" not in md and "## Multiple-choice" not in md
    assert "## Forgetting" in md and "perplexity (lower" not in md


def test_numpy_values_and_missing_systems(tmp_path: Path) -> None:
    report = copy.deepcopy(gen_report())
    report["systems"]["fine_tuned"]["perplexity"] = np.float32(float("nan"))
    report["test_examples"] = np.int64(200)
    files = write_reports(tmp_path, report)
    assert json.loads(files["json"].read_text(encoding="utf-8"))["systems"]["fine_tuned"]["perplexity"] is None
    assert "200 test examples" in files["md"].read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="systems"):
        write_reports(tmp_path, {"kind": "generator", "systems": {}})
    with pytest.raises(ValueError, match="labels"):  # classification path untouched
        write_reports(tmp_path, {"systems": {"a": {"accuracy": 0.5}}})


def test_prompt_parts() -> None:
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"}]
    assert gr.prompt_parts(msgs) == ("second", "user: first\n\nassistant: ok\n\nuser: second")
    assert gr.prompt_parts({"messages": msgs})[0] == "second"
    assert gr.prompt_parts("plain") == ("plain", "plain") and gr.prompt_parts(None) == ("", "")


def test_general_qa_items() -> None:
    text = resources.files("hone.eval").joinpath("data", "general_qa.jsonl").read_text(encoding="utf-8")
    items = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len(items) == 40
    for it in items:
        assert set(it) == {"question", "options", "answer", "topic"}
        assert isinstance(it["question"], str) and it["question"].strip() and isinstance(it["topic"], str)
        assert len(it["options"]) == 4 and len(set(it["options"])) == 4
        assert all(isinstance(o, str) and o.strip() for o in it["options"])
        assert isinstance(it["answer"], int) and 0 <= it["answer"] < 4
    counts = Counter(it["answer"] for it in items)
    assert all(8 <= counts[i] <= 12 for i in range(4)), counts
    assert len({it["question"] for it in items}) == 40 and len({it["topic"] for it in items}) >= 6


def test_markdown_brackets_bare_only_where_no_link_can_form() -> None:
    report = {"kind": "generator", "systems": {"fine_tuned": {"scores": {"rougeL": 30.0}},
                                               "[evil](http://x.test)": {"scores": {"rougeL": 20.0}}}}
    md = gr.render_markdown(report)
    assert "](http" not in md.replace("\\](http", "") and "\\[evil\\](http://x.test)" in md


def test_gains_column_says_share_better_not_p_value(written) -> None:
    """The generator's 'p(better)' (share of resamples better) read like the classifier's p-value, the opposite way."""
    md = written[1]["md"].read_text(encoding="utf-8")
    assert "| baseline | metric | gain | 95% CI | share of resamples better | verdict |" in md
    assert "p(better)" not in md and "not a p-value" in md


def test_without_bootstrap_no_intervals_and_the_headline_still_prints(tmp_path: Path) -> None:
    """eval.bootstrap=0: scores and the multiple-choice gain have low/high None; the headline crashed on them."""
    from hone.pipeline import headline

    report = gen_report()
    for s in report["systems"].values():
        s["scores"] = {m: {**v, "low": None, "high": None} for m, v in s["scores"].items()}
    report["gains"] = {}
    report["choice"] = {"items": 12, "base": {"accuracy": 0.25, "low": None, "high": None},
                        "tuned": {"accuracy": 0.5, "low": None, "high": None},
                        "gain": {"gain": 0.25, "low": None, "high": None}}
    files = write_reports(tmp_path, report)
    lines = headline(files["json"])
    assert "    fine_tuned: bleu 14.9  chrf 45.0  rougeL 31.2  stop rate 97%  perplexity 6.10" in lines
    assert "multiple choice (12 items): base 25.0% -> tuned 50.0% (+25.0 pts)" in lines
    md = files["md"].read_text(encoding="utf-8")
    assert "| fine-tuned | 31.2 | 14.9 | 45.0 |" in md and "unpaired; no bootstrap CI supplied" in md
