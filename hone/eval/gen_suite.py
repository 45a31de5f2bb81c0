"""Base vs tuned for generative specialists: the report :mod:`hone.eval.gen_report` renders.

On the same test pairs (prompt -> reference reply), with greedy decoding: the tuned model,
the base model zero-shot and the base model few-shot (k training pairs as earlier turns).
Scores carry bootstrap CIs, gains are paired bootstraps (neither with ``eval.bootstrap: 0``).
Perplexity of the references, stop rate, lengths, generation time.  Forgetting: perplexity of
base vs tuned on general text and a small general multiple-choice probe; a regression above
``eval.forgetting_threshold`` is flagged.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from importlib import resources
from typing import Any

from hone.config import RunConfig
from hone.data.chat import setup_tokenizer
from hone.eval import gen_metrics as gm
from hone.serve.generator import Generator
from hone.train.loop import inference_dtype, to_inference_device
from hone.train.objectives import CausalLMObjective

METRICS = {"sft": ["rougeL", "bleu", "chrf", "rouge1", "rouge2", "exact_match"],
           "distill": ["rougeL", "bleu", "chrf", "rouge1", "rouge2", "exact_match"], "dpo": ["rougeL", "bleu", "chrf"]}
N_EXAMPLES = 3  # per best / worst / random group
SHORT_ANSWER_WORDS = 8  # exact match is reported when the median reference is at most this long


def load_base_generator(run, cfg: RunConfig) -> Generator:
    """The untuned base model with the same template, pad token and stop ids as the tuned one."""
    from hone.model.load import load_lm

    model, tok = load_lm(cfg.model.name, dtype=inference_dtype(cfg.gen.precision), revision=cfg.model.revision,
                         trust_remote_code=cfg.model.trust_remote_code)
    model = to_inference_device(model)
    if not getattr(model.config, "is_encoder_decoder", False):  # the template training used (see _template_notes)
        template = cfg.gen.template if cfg.gen.template or tok.chat_template else "plain"
        setup_tokenizer(tok, template, where=cfg.model.name)
    return Generator(model, tok, max_new_tokens=cfg.gen.max_new_tokens, repetition_penalty=cfg.gen.repetition_penalty)


def test_pairs(run, cfg: RunConfig) -> list[tuple[list[dict[str, Any]], str]]:
    from hone.train.generative import eval_pairs

    schema = run.metadata["schema"]
    rows = run.splits.get("test") or []
    if schema == "preference":
        pairs = [(_as_msgs(r["prompt"]), r["chosen"] if isinstance(r["chosen"], str) else r["chosen"][-1]["content"])
                 for r in rows]
    else:
        pairs = eval_pairs(rows, schema)
    if cfg.eval.max_examples and len(pairs) > cfg.eval.max_examples:
        pairs = random.Random(cfg.seed).sample(pairs, cfg.eval.max_examples)
    return pairs


def _as_msgs(x) -> list[dict[str, Any]]:
    return [{"role": "user", "content": x}] if isinstance(x, str) else list(x)


def few_shot_prompt(shots: list[tuple[list[dict[str, Any]], str]], prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system turn (if any), then each shot as a user / assistant exchange, then the prompt."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    rest = prompt[len(system):]
    turns = []
    for p, ref in shots:
        user = next((m["content"] for m in reversed(p) if m["role"] == "user"), p[-1]["content"])
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": ref}]
    return system + turns + rest


def _system_scores(gens, refs, metrics, cfg: RunConfig, seconds: float) -> dict[str, Any]:
    texts = [g.text for g in gens]
    scores = {}
    for m in metrics:
        if cfg.eval.bootstrap > 0:
            v, lo, hi = gm.bootstrap_ci(texts, refs, m, n=cfg.eval.bootstrap, seed=cfg.seed)
        else:  # eval.bootstrap=0: no interval (one resample's score is no interval around the point)
            v, lo, hi = gm.corpus_scores(texts, refs, [m])[m], None, None
        scores[m] = {"value": v, "low": lo, "high": hi}
    return {"scores": scores, "stats": gm.generation_stats(texts, [g.stopped for g in gens], [g.tokens for g in gens]),
            "seconds": round(seconds, 2)}


def _generate(gen: Generator, prompts, cfg: RunConfig, max_prompt_tokens: int | None = None):
    t0 = time.perf_counter()
    out = gen.generate(prompts, max_new_tokens=cfg.gen.max_new_tokens, batch_size=cfg.gen.batch_size,
                       max_prompt_tokens=max_prompt_tokens)
    return out, time.perf_counter() - t0


def _perplexity(gen: Generator, data) -> float | None:
    if data is None or not len(data):
        return None
    return CausalLMObjective().evaluate(gen.model, data, batch_size=8, autocast=contextlib.nullcontext)["perplexity"]


def _test_data(run, cfg: RunConfig, tok):
    from hone.train.generative import encode_split

    schema = run.metadata["schema"]
    rows = run.splits.get("test") or (run.splits.get("validation") if schema == "text" else None) or []
    if not rows or schema == "preference":
        return None
    seq2seq = bool(getattr(run.model.config, "is_encoder_decoder", False))
    obj = "dapt" if schema == "text" else "sft"
    return encode_split(tok, rows, schema, obj, cfg, seq2seq=seq2seq, label="test split", notes=[])[0]


def _examples(pairs, systems: dict[str, list], per: list[float], seed: int) -> dict[str, list[dict[str, Any]]]:
    def row(i: int) -> dict[str, Any]:
        prompt = next((m["content"] for m in reversed(pairs[i][0]) if m["role"] == "user"), "")
        out = {"prompt": prompt, "reference": pairs[i][1], "score": round(float(per[i]), 2)}
        out.update({name: gens[i].text for name, gens in systems.items()})
        return out
    order = sorted(range(len(pairs)), key=lambda i: per[i])
    rnd = random.Random(seed).sample(range(len(pairs)), min(N_EXAMPLES, len(pairs)))
    return {"best": [row(i) for i in order[::-1][:N_EXAMPLES]], "worst": [row(i) for i in order[:N_EXAMPLES]],
            "random": [row(i) for i in rnd]}


def general_text() -> list[str]:
    """General (non-domain) sentences: the forgetting probe's paraphrase pairs, both sides."""
    path = resources.files("hone.eval") / "data" / "general_paraphrases.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r[k] for r in rows for k in ("a", "b")]


def general_qa() -> list[dict[str, Any]]:
    path = resources.files("hone.eval") / "data" / "general_qa.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def forgetting(base: Generator, tuned: Generator, threshold: float) -> dict[str, Any]:
    """Perplexity on general text and accuracy on a general multiple-choice probe, base vs tuned.

    Flagged when general perplexity rises by more than ``threshold`` (relative) or the probe's
    accuracy drops by more than ``threshold`` (absolute) and by more than 2 paired standard errors.
    """
    import numpy as np

    from hone.data.chat import Example, encode_text
    from hone.data.lm import from_examples
    from hone.eval.choice import score_choices

    out: dict[str, Any] = {"threshold": threshold}
    if base.seq2seq:
        return out
    ids = [encode_text(base.tokenizer, t) for t in general_text()]
    data = from_examples([Example(x, x) for x in ids], base.tokenizer.pad_token_id)
    pb, pt = _perplexity(base, data), _perplexity(tuned, data)
    out["general_perplexity"] = {"base": pb, "tuned": pt, "change": pt / pb - 1}
    items = general_qa()
    cb = np.array([r["correct"] for r in score_choices(base.model, base.tokenizer, items)], float)
    ct = np.array([r["correct"] for r in score_choices(tuned.model, tuned.tokenizer, items)], float)
    drop = float(cb.mean() - ct.mean())
    # 40 items: one question is 2.5 points, so a drop only counts beyond twice its paired standard error
    se = float((cb - ct).std(ddof=1) / np.sqrt(len(items))) if len(items) > 1 else 0.0
    out["general_qa"] = {"base": float(cb.mean()), "tuned": float(ct.mean()), "change": -drop,
                         "items": len(items), "se": se}
    out["flagged"] = bool(out["general_perplexity"]["change"] > threshold or (drop > threshold and drop > 2 * se))
    return out


def read_choices(path: str) -> list[dict[str, Any]]:
    """Multiple-choice items, each checked: a question, >= 2 options and an answer index in range."""
    from hone.errors import DataError

    from hone.data.read import json_lines

    items = []
    for n, it in json_lines(path):
        ok = (isinstance(it, dict) and isinstance(it.get("question"), str) and isinstance(it.get("options"), list)
              and len(it["options"]) >= 2 and isinstance(it.get("answer"), int) and 0 <= it["answer"] < len(it["options"]))
        if not ok:
            raise DataError(f"{path}:{n}: a multiple-choice item needs question (str), options (>= 2) and answer "
                            "(an index into options)")
        items.append(it)
    return items


def multiple_choice(base: Generator, tuned: Generator, cfg: RunConfig, log) -> dict[str, Any]:
    """Accuracy by option log-likelihood, base vs tuned, with bootstrap CIs and the paired gain."""
    import numpy as np

    from hone.eval.choice import score_choices

    items = read_choices(cfg.eval.choice_file)
    if cfg.eval.choice_items and len(items) > cfg.eval.choice_items:
        items = random.Random(cfg.seed).sample(items, cfg.eval.choice_items)
    log(f"multiple choice: {len(items)} items from {cfg.eval.choice_file}, base vs tuned")
    out: dict[str, Any] = {"items": len(items)}
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, len(items), size=(cfg.eval.bootstrap, len(items)))  # (B, N); B=0: no intervals

    def interval(samples: np.ndarray) -> dict[str, float | None]:
        if not len(samples):
            return {"low": None, "high": None}
        return {"low": float(np.percentile(samples, 2.5)), "high": float(np.percentile(samples, 97.5))}

    correct = {}
    for name, g in (("base", base), ("tuned", tuned)):
        t0 = time.perf_counter()
        correct[name] = np.array([r["correct"] for r in score_choices(g.model, g.tokenizer, items, batch_size=16)], float)
        out[name] = {"accuracy": float(correct[name].mean()), **interval(correct[name][idx].mean(1)),
                     "seconds": round(time.perf_counter() - t0, 1)}
    out["gain"] = {"gain": float(correct["tuned"].mean() - correct["base"].mean()),
                   **interval((correct["tuned"] - correct["base"])[idx].mean(1))}
    return out


def preference_accuracy(gen: Generator, run, cfg: RunConfig) -> float | None:
    """Share of test pairs where the model gives the chosen reply a higher log-likelihood."""
    import torch

    from hone.train.generative import encode_split
    from hone.train.objectives import sequence_logps, trained_logits, to_device

    rows = run.splits.get("test") or []
    if not rows:
        return None
    data = encode_split(gen.tokenizer, rows, "preference", "dpo", cfg, seq2seq=False, label="test split", notes=[])[0]
    wins = 0
    with torch.inference_mode():
        for s in range(0, len(data), 8):
            idx = list(range(s, min(s + 8, len(data))))
            b = to_device(data.batch(idx), gen.model.device)
            lp = sequence_logps(*trained_logits(gen.model, b), b["input_ids"].shape[0])
            wins += int((lp[:len(idx)] > lp[len(idx):]).sum())
    return wins / len(data)


def evaluate_generator(run, cfg: RunConfig, *, log=lambda _: None) -> dict[str, Any]:
    """Generate on the test split with the tuned and base models and compare; returns the report dict."""
    tuned = Generator(run.model, run.tokenizer, max_new_tokens=cfg.gen.max_new_tokens,
                      repetition_penalty=cfg.gen.repetition_penalty)
    base = load_base_generator(run, cfg)
    report: dict[str, Any] = {"kind": "generator", "model": cfg.model.name, "method": cfg.method.name,
                              "decoding": {"max_new_tokens": cfg.gen.max_new_tokens, "greedy": True,
                                           "repetition_penalty": cfg.gen.repetition_penalty,
                                           "dtype": str(tuned.model.dtype).removeprefix("torch.")},
                              "objective": run.objective}
    if run.result is not None:
        report["training"] = run.result.to_dict()
    if run.lint is not None:
        report["lint"] = {"examples": run.lint.examples, "truncated": run.lint.truncated,
                          "dropped": len(run.lint.dropped), "trained_share": run.lint.trained_share}
    pairs = test_pairs(run, cfg) if run.metadata["schema"] != "text" else []
    test_data = _test_data(run, cfg, run.tokenizer)
    report["systems"] = {}
    if pairs:
        report.update(_compare(run, cfg, pairs, tuned, base, log))
    elif test_data is not None:
        report["systems"] = {"fine_tuned": {"scores": {}}, "zero_shot": {"scores": {}}}
    if test_data is not None:
        report["systems"]["fine_tuned"]["perplexity"] = _perplexity(tuned, test_data)
        if "zero_shot" in report["systems"]:  # not without the zero_shot baseline (--no-baselines)
            report["systems"]["zero_shot"]["perplexity"] = _perplexity(base, test_data)
    if run.metadata["schema"] == "preference":
        report["preference"] = {"base": preference_accuracy(base, run, cfg),
                                "tuned": preference_accuracy(tuned, run, cfg), "pairs": len(run.splits["test"])}
    if cfg.eval.choice_file and not tuned.seq2seq:
        report["choice"] = multiple_choice(base, tuned, cfg, log)
    if cfg.eval.forgetting:
        log("forgetting probe: general text perplexity and general Q&A, base vs tuned")
        report["forgetting"] = forgetting(base, tuned, cfg.eval.forgetting_threshold)
    return report


def _compare(run, cfg: RunConfig, pairs, tuned: Generator, base: Generator, log) -> dict[str, Any]:
    metrics = METRICS.get(run.objective, METRICS["sft"])
    prompts, refs = [p for p, _ in pairs], [r for _, r in pairs]
    short = sorted(len(r.split()) for r in refs)[len(refs) // 2] <= SHORT_ANSWER_WORDS
    main = cfg.eval.main_metric
    if main == "auto":  # short answers (Q&A): whether the answer is right, not how many of its words overlap
        main = "exact_match" if short and "exact_match" in metrics else metrics[0]
    if not short and main != "exact_match":
        metrics = [m for m in metrics if m != "exact_match"]  # exact match only means something for short answers
    metrics = [main, *(m for m in metrics if m != main)]
    log(f"generating {len(pairs)} test replies with the fine-tuned model")
    gens = {"fine_tuned": _generate(tuned, prompts, cfg)}
    if "zero_shot" in cfg.eval.baselines:
        log("... and with the base model zero-shot")
        gens["zero_shot"] = _generate(base, prompts, cfg)
    k = cfg.eval.few_shot_k or 2
    if "few_shot" in cfg.eval.baselines and run.splits.get("train"):
        from hone.train.generative import eval_pairs

        pool = eval_pairs(run.splits["train"], run.metadata["schema"]) if run.metadata["schema"] != "preference" else []
        if pool:
            shots = random.Random(cfg.seed).sample(pool, min(k, len(pool)))
            k = len(shots)  # (the report gives the shots the prompts had: fewer when the train split is small)
            log(f"... and with the base model few-shot (k={len(shots)})")
            gens["few_shot"] = _generate(base, [few_shot_prompt(shots, p) for p in prompts], cfg,
                                         max_prompt_tokens=4 * cfg.model.max_length)
    systems = {name: _system_scores(g, refs, metrics, cfg, sec) for name, (g, sec) in gens.items()}
    if "few_shot" in systems:
        systems["few_shot"]["k"] = k
    gains = {name: {m: gm.paired_gain([x.text for x in gens["fine_tuned"][0]], [x.text for x in g], refs, m,
                                      n=cfg.eval.bootstrap, seed=cfg.seed) for m in metrics}
             for name, (g, _) in gens.items() if name != "fine_tuned" and cfg.eval.bootstrap > 0}
    per = gm.per_example_scores([g.text for g in gens["fine_tuned"][0]], refs, [metrics[0]])[metrics[0]]
    return {"test_examples": len(pairs), "metrics": metrics, "main_metric": metrics[0], "systems": systems,
            "gains": gains, "examples": _examples(pairs, {n: g for n, (g, _) in gens.items()}, list(per), cfg.seed),
            "generation_seconds_per_example": round(gens["fine_tuned"][1] / len(pairs), 3)}


def evaluate_artifact(artifact, data_file, *, max_examples: int | None = None, baselines: bool = True,
                      overrides: list[str] | tuple[str, ...] = (), log=lambda _: None) -> dict[str, Any]:
    """``hone eval`` for a generator: its test-time behaviour on any chat / prompt-completion file."""
    from pathlib import Path
    from types import SimpleNamespace

    from hone import artifacts
    from hone.config import load_config
    from hone.data.check import read_valid
    from hone.data.read import columns_present
    from hone.errors import DataError

    cfg = load_config(Path(artifact) / artifacts.RESOLVED_CONFIG, overrides)
    cfg.eval.max_examples = max_examples
    cfg.eval.baselines = ["zero_shot"] if baselines else []
    cfg.eval.forgetting = False
    # the columns it was trained on, where the file has them (else hone's own field names)
    cols = columns_present(data_file, {"prompt_column": cfg.data.prompt_column,
                                       "completion_column": cfg.data.completion_column})
    recs, rep = read_valid(data_file, **cols)
    if rep.schema not in ("chat", "prompt_completion", "instruction"):
        raise DataError(f"{data_file}: a generator is evaluated on chat / prompt_completion / instruction data, "
                        f"got {rep.schema}")
    gen = Generator.load(artifact, dtype=inference_dtype(cfg.gen.precision))
    run = SimpleNamespace(model=gen.model, tokenizer=gen.tokenizer, objective="sft", result=None, lint=None,
                          metadata={"schema": rep.schema}, splits={"test": [r.data for r in recs], "train": []})
    return evaluate_generator(run, cfg, log=log)
