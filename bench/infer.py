"""Inference throughput: hone's batched ``predict`` / ``generate`` vs a per-example transformers pipeline.

    python bench/infer.py classify [--n 1000] [--batch-size 64]   # MiniLM-L6, 77 labels, BANKING77 test texts
                                   [--data-dir DIR --max-length 128] # or DIR/test.csv's texts (text, category)
    python bench/infer.py generate [--n 32] [--max-new-tokens 32]  # SmolLM2-135M, banking-support prompts (also
                                                                   # hone in bf16, gen.precision's choice on a CPU
                                                                   # with native bf16)

Both sides use the same model object, weights and threads; the baseline is what a user writes
first: ``pipeline(task)(text)`` once per example.  A batched pipeline call (``batch_size=``) is
measured too, because it is the baseline's best flag.  Outputs are compared (same labels /
same greedy tokens) so speed never hides a different answer.  Each measurement runs twice in
the order baseline, hone, baseline, hone; the table shows the faster of each.  Texts: BANKING77's
test file from ../shared (classify); generation prompts are written here.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

PROMPTS = [  # written for this benchmark: short banking-support turns
    "I want to move 200 dollars from checking to savings.", "What is the balance of my savings account?",
    "Can you cancel the transfer I made this morning?", "My card was declined at the grocery store.",
    "How do I order a new debit card?", "Please send 50 dollars to Maria.",
    "Is there a fee for international transfers?", "When will my refund arrive?",
]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def classify(a) -> dict:
    from transformers import pipeline

    from hone.serve.engine import Classifier
    from hone.train.classify import build_classifier

    test = Path(a.data_dir) / "test.csv" if a.data_dir else SHARED / "data" / "banking77" / "test.csv"
    if not test.exists():
        sys.exit(f"{test} is missing" + ("" if a.data_dir else " (the shared BANKING77 data)"))
    rows = list(csv.DictReader(test.open()))
    labels = sorted({r["category"] for r in rows})
    texts = [r["text"] for r in rows[:a.n]]
    torch.manual_seed(0)
    model, tok, _ = build_classifier(a.model, labels, multi_label=False)
    model.eval()
    hone_clf = Classifier(model, tok, {"labels": labels, "max_length": a.max_length})
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1, truncation=True,
                    max_length=a.max_length)
    runs: dict[str, list[float]] = {"pipeline, one call per text": [], f"pipeline, batch_size={a.batch_size}": [],
                                    f"hone predict, batch_size={a.batch_size}": []}
    outs = {}
    for _ in range(2):
        dt, outs["pipe1"] = _timed(lambda: [pipe(t)[0]["label"] for t in texts])
        runs["pipeline, one call per text"].append(dt)
        dt, outs["pipeb"] = _timed(lambda: [o["label"] for o in pipe(texts, batch_size=a.batch_size)])
        runs[f"pipeline, batch_size={a.batch_size}"].append(dt)
        dt, outs["hone"] = _timed(lambda: [p["label"] for p in hone_clf.predict(texts, batch_size=a.batch_size)])
        runs[f"hone predict, batch_size={a.batch_size}"].append(dt)
    agree = sum(x == y for x, y in zip(outs["pipe1"], outs["hone"], strict=True)) / len(texts)
    return {"n": len(texts), "seconds": {k: round(min(v), 3) for k, v in runs.items()},
            "per_s": {k: round(len(texts) / min(v), 1) for k, v in runs.items()}, "same_label_share": agree}


def generate(a) -> dict:
    from transformers import pipeline

    from hone.data.chat import setup_tokenizer
    from hone.model.load import load_lm
    from hone.serve.generator import Generator

    model, tok = load_lm(a.model)
    setup_tokenizer(tok, None)
    model.eval()
    prompts = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (request {i})") for i in range(a.n)]
    gen = Generator(model, tok, max_new_tokens=a.max_new_tokens)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    pipe = pipeline("text-generation", model=model, tokenizer=tok, device=-1)
    kw = {"max_new_tokens": a.max_new_tokens, "do_sample": False, "temperature": None, "top_p": None,
          "top_k": None, "pad_token_id": tok.pad_token_id, "eos_token_id": gen.eos_ids}
    # the same weights in bf16, as hone's evaluation and `hone generate` load them where the CPU runs bf16 natively
    # (gen.precision: auto)
    half = Generator(copy.deepcopy(model).to(torch.bfloat16), tok, max_new_tokens=a.max_new_tokens)
    names = {"pipe": "pipeline, one call per prompt", "hone": f"hone generate, batch_size={a.batch_size}",
             "bf16": f"hone generate, batch_size={a.batch_size}, bf16"}
    runs: dict[str, list[float]] = {k: [] for k in names.values()}
    outs = {}
    for _ in range(2):
        dt, outs["pipe"] = _timed(lambda: [pipe(c, **kw)[0]["generated_text"][-1]["content"] for c in chats])
        runs[names["pipe"]].append(dt)
        for key, g in (("hone", gen), ("bf16", half)):
            dt, outs[key] = _timed(lambda g=g: [x.text for x in g.generate(chats, batch_size=a.batch_size)])
            runs[names[key]].append(dt)

    def same(key: str) -> float:
        return sum(x.strip() == y.strip() for x, y in zip(outs["pipe"], outs[key], strict=True)) / len(prompts)

    return {"n": len(prompts), "max_new_tokens": a.max_new_tokens, "seconds": {k: round(min(v), 2) for k, v in runs.items()},
            "per_s": {k: round(len(prompts) / min(v), 2) for k, v in runs.items()}, "same_text_share": same("hone"),
            "same_text_share_bf16": same("bf16")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["classify", "generate"])
    ap.add_argument("--n", type=int, default=None, help="examples (default 1000 classify, 32 generate)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 classify, 16 generate")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--data-dir", default=None, help="classify: a folder whose test.csv (text, category) gives the "
                                                     "texts, instead of BANKING77's")
    ap.add_argument("--max-length", type=int, default=64, help="classify: tokens per text (truncated)")
    ap.add_argument("--model", default=None, help="default minilm / smollm2 (embedded)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clf = a.what == "classify"
    a.n = a.n or (1000 if clf else 32)
    a.batch_size = a.batch_size or (64 if clf else 16)
    a.model = a.model or ("minilm" if clf else "smollm2")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.machine()} torch {torch.__version__} "
          f"threads {torch.get_num_threads()} ({torch.backends.cpu.get_cpu_capability()})")
    res = classify(a) if clf else generate(a)
    res["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
