"""``hone run`` / ``hone quickstart``: prepare -> train -> evaluate -> report, in one run directory.

The evaluation loads the artifact back from disk, so a report always describes exactly what
was saved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hone import artifacts
from hone.config import RunConfig, load_config
from hone.settings import get_settings

QUICKSTART = Path(__file__).parent / "samples" / "quickstart.yaml"
QUICKSTARTS = {"intent": QUICKSTART, "reply": Path(__file__).parent / "samples" / "quickstart_reply.yaml"}


def default_run_dir(name: str) -> Path:
    return get_settings().runs_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def quickstart_config(overrides: list[str] | tuple[str, ...] = (), task: str = "intent") -> RunConfig:
    return load_config(QUICKSTARTS[task], overrides)


def resolve_task(cfg: RunConfig, run_dir: Path, log=lambda _: None) -> str:
    """classify or generate: from ``cfg.task``, else the objective, else the prepared data's schema."""
    from hone.data.prepare import prepare_once

    if cfg.task != "auto":
        return cfg.task
    if cfg.train.objective != "auto":
        return "classify" if cfg.train.objective == "classification" else "generate"
    schema = prepare_once(cfg, run_dir, log=log)[1]["schema"]
    return "classify" if schema == "classification" else "generate"


def _no_eval_data(cfg: RunConfig) -> str | None:
    """Why the run would have nothing to evaluate on (None when it has)."""
    files, split = cfg.data.files or {}, cfg.data.split
    if "test" in files or split.test > 0:
        return None
    if "validation" in files or split.validation > 0:
        return None  # a classifier is scored on the validation split then, raw text by its perplexity
    return ("nothing to evaluate on: data.split.test and data.split.validation are 0 and there is no test or "
            "validation file — give data.files.test or a test share (data.split.test), or use `hone train` to "
            "train without evaluation")


def run(cfg: RunConfig, run_dir: Path, *, log=lambda _: None, progress: bool = True) -> dict[str, Path]:
    """Train and evaluate; returns the report files (json, md, html)."""
    from hone.errors import ConfigError

    why = _no_eval_data(cfg)
    if why:
        raise ConfigError(why)  # before preparing or training, not after it
    if resolve_task(cfg, run_dir, log) == "generate":
        return run_generator(cfg, run_dir, log=log, progress=progress)
    return run_classifier(cfg, run_dir, log=log, progress=progress)


def run_generator(cfg: RunConfig, run_dir: Path, *, log=lambda _: None, progress: bool = True) -> dict[str, Path]:
    """SFT / DAPT / DPO / distillation, then base-vs-tuned evaluation of the artifact as saved."""
    from hone.eval.gen_suite import evaluate_generator
    from hone.eval.report import write_reports
    from hone.serve.generator import Generator
    from hone.train.generative import train_generator
    from hone.train.loop import inference_dtype

    grun = train_generator(cfg, run_dir, log=log, progress=progress)
    saved = Generator.load(grun.artifact, dtype=inference_dtype(cfg.gen.precision))
    grun.model, grun.tokenizer = saved.model, saved.tokenizer
    report = evaluate_generator(grun, cfg, log=log)
    if not report["systems"]:
        from hone.errors import DataError

        raise DataError(f"the test split has no usable rows, so nothing was evaluated; the trained artifact is "
                        f"saved in {grun.artifact}")
    report["title"] = f"{cfg.model.name} + {cfg.method.name} ({grun.objective}) on {_data_name(cfg)}"
    report["artifact"] = str(grun.artifact)
    main = report.get("main_metric")
    if main:
        _add_to_manifest(grun.artifact, {"metrics": report["systems"]["fine_tuned"]["scores"]})
    return write_reports(run_dir, report)


def run_classifier(cfg: RunConfig, run_dir: Path, *, log=lambda _: None, progress: bool = True) -> dict[str, Path]:
    """Intent classification: train, then evaluate against the baselines."""
    from hone.eval.report import write_reports
    from hone.eval.suite import evaluate_classifier
    from hone.serve.engine import Classifier
    from hone.train.classify import train_classifier

    crun = train_classifier(cfg, run_dir, log=log, progress=progress)
    clf = Classifier.load(crun.artifact)
    # without a test split the validation split is scored; it then must not also tune the out-of-scope threshold
    scored = "test" if crun.splits["test"].texts else "validation"
    test, val = crun.splits[scored], crun.splits["validation"]
    log(f"evaluating on {len(test.texts)} {scored} examples "
        f"(with baselines: {', '.join(cfg.eval.baselines) or 'none'})")
    report = evaluate_classifier(clf, test.texts, test.labels, cfg=cfg.eval, seed=cfg.seed, base_model=cfg.model.name,
                                 revision=cfg.model.revision,
                                 train=(crun.splits["train"].texts, crun.splits["train"].labels),
                                 val=(val.texts, val.labels) if val.texts and scored == "test" else None, log=log)
    res = crun.result
    report.update({
        "scored_split": scored,
        "title": f"{cfg.model.name} + {cfg.method.name} on {_data_name(cfg)}",
        "history": res.history,
        "training": {"method": cfg.method.name, "steps": res.steps, "epochs": res.epochs,
                     "wall_time_s": res.wall_time_s, "best_step": res.best_step, "best_metric": res.best_metric,
                     "samples_per_s": res.samples_per_s, "stopped_early": res.stopped_early},
        "data": {s: len(sp.texts) for s, sp in crun.splits.items()} | {"data_sha256": crun.metadata.get("data_sha256")},
        "model": {"base": cfg.model.name, "artifact": str(crun.artifact)},
    })
    if "oos" in report:  # the artifact abstains below the threshold chosen on validation
        _add_to_manifest(crun.artifact, {"oos": {"label": report["oos"]["label"],
                                                 "threshold": report["oos"]["threshold"]}})
    tuned = report["systems"]["fine_tuned"]
    keys = ("micro_f1", "micro_f1_ci", "macro_f1", "subset_accuracy") if "multi_label" in tuned else (
        "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci")  # multi-label: scored on every label
    _add_to_manifest(crun.artifact, {"metrics": {k: tuned.get("multi_label", tuned)[k] for k in keys}})
    return write_reports(run_dir, report)


def _add_to_manifest(art: Path, extra: dict[str, Any]) -> None:
    man = json.loads((art / artifacts.MANIFEST).read_text())
    artifacts.atomic_write_json(art / artifacts.MANIFEST, {**man, **extra})


def _data_name(cfg: RunConfig) -> str:
    """The input's file name for titles: data.path, else the train file of data.files."""
    return Path(cfg.data.path or (cfg.data.files or {}).get("train") or "data").name


def headline(report_json: Path) -> list[str]:
    """A few lines for the terminal: each system's accuracy and the fine-tuned model's gains."""
    rep = json.loads(report_json.read_text())
    if rep.get("kind") == "generator":
        return _gen_headline(rep)
    lines = []
    primary = rep.get("primary", "fine_tuned")
    for name, m in sorted(rep["systems"].items(), key=lambda kv: (kv[0] != primary, kv[0])):
        if "multi_label" in m:  # a multi-label model: scored on every label, not on each example's first one
            ml = m["multi_label"]
            lines.append(f"{name:>14}: micro-F1 {ml['micro_f1']:.3f}{_ci3(ml.get('micro_f1_ci'))}  "
                         f"macro-F1 {ml['macro_f1']:.3f}  subset accuracy {ml['subset_accuracy']:.3f}")
        else:
            lines.append(f"{name:>14}: accuracy {m['accuracy']:.3f}{_ci3(m.get('accuracy_ci'))}  "
                         f"macro-F1 {m['macro_f1']:.3f}")
    for name, g in rep.get("gains", {}).items():
        g = g.get("accuracy", g)
        ci = _gain_ci(*(g.get("gain_ci") or (None, None)), scale=100)
        lines.append(f"fine-tuned vs {name}: {g['gain'] * 100:+.1f} pts {g.get('metric', 'accuracy').replace('_', '-')}"
                     + (f" ({ci})" if ci else ""))
    if "oos" in rep:  # what predict will do: route the texts below the threshold to a human
        o = rep["oos"]
        parts = [f"abstains on {o['abstain_rate']:.1%} of {o['n']}"]
        parts += [f"{k.replace('oos_', 'out-of-scope ').replace('_', ' ')} {o[k]:.1%}"
                  for k in ("oos_recall", "oos_precision", "in_scope_accuracy") if o.get(k) is not None]
        lines.append(f"out-of-scope ({o['label']}): threshold {o['threshold']:.3f} chosen on "
                     f"{o.get('threshold_chosen_on', 'validation')}; " + ", ".join(parts))
    if "forgetting" in rep:
        f = rep["forgetting"]
        lines.append(f"forgetting ({f['proxy'][:40]}…): base {f['base']:.3f} -> tuned {f['tuned']:.3f}"
                     f"{'  REGRESSED' if f['regressed'] else ''}")
    return lines


def _ci3(ci: list[float] | None) -> str:
    """' [0.812, 0.871]', or '' when no interval was measured (eval.bootstrap=0)."""
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _ci1(lo: float | None, hi: float | None) -> str:
    """' [61.2, 64.0]', or '' when no interval was measured (eval.bootstrap=0)."""
    return "" if lo is None or hi is None else f" [{lo:.1f}, {hi:.1f}]"


def _gain_ci(lo: float | None, hi: float | None, scale: float = 1.0) -> str:
    """'95% CI +1.0 to +3.2', or '' when no interval was measured (eval.bootstrap=0)."""
    return "" if lo is None or hi is None else f"95% CI {lo * scale:+.1f} to {hi * scale:+.1f}"


def _gen_headline(rep: dict[str, Any]) -> list[str]:
    lines, main = [], rep.get("main_metric")
    for name, m in rep.get("systems", {}).items():
        parts = [f"{k} {v['value']:.1f}{_ci1(v.get('low'), v.get('high'))}" for k, v in m.get("scores", {}).items()
                 if k in (main, "rougeL", "bleu", "chrf")]
        if "stats" in m:
            parts.append(f"stop rate {m['stats']['stop_rate']:.0%}")
        if m.get("perplexity") is not None:
            parts.append(f"perplexity {m['perplexity']:.2f}")
        lines.append(f"{name:>14}: " + "  ".join(parts))
    for name, g in rep.get("gains", {}).items():
        if main in g:
            x = g[main]
            ci = _gain_ci(x.get("low"), x.get("high"))
            lines.append(f"fine-tuned vs {name}: {x['gain']:+.1f} {main}" + (f" ({ci})" if ci else ""))
    if "choice" in rep:
        c, g = rep["choice"], rep["choice"]["gain"]
        lines.append(f"multiple choice ({c['items']} items): base {c['base']['accuracy']:.1%} -> tuned "
                     f"{c['tuned']['accuracy']:.1%} ({g['gain'] * 100:+.1f} pts"
                     + (f", {ci})" if (ci := _gain_ci(g.get("low"), g.get("high"), 100)) else ")"))
    if "preference" in rep:
        p = rep["preference"]
        lines.append(f"prefers the chosen reply: base {p['base']:.0%} -> tuned {p['tuned']:.0%} of {p['pairs']} pairs")
    f = rep.get("forgetting", {})
    if "general_perplexity" in f:
        gp, qa = f["general_perplexity"], f.get("general_qa", {})
        lines.append(f"forgetting: general perplexity {gp['base']:.2f} -> {gp['tuned']:.2f} ({gp['change']:+.1%}), "
                     f"general Q&A {qa.get('base', 0):.0%} -> {qa.get('tuned', 0):.0%}"
                     f"{'  REGRESSED' if f.get('flagged') else ''}")
    return lines
