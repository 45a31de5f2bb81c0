"""Packing vs padded (length-bucketed) batches for SFT: padding share, rows, and measured tokens/s.

    python bench/packing.py ../hone-bench-data/sgd/train.jsonl --steps 6 --batch 8 --max-length 256

Tokenizes the chat file with the embedded SmolLM2 tokenizer and prompt masking, then compares
hone's two batchings over the same examples: bucketed dynamic padding (``gen.packing: false``)
and first-fit-decreasing packing (``gen.packing: true``).  ``--steps N`` also times N training
steps of SmolLM2 + LoRA in each mode (real, non-padding tokens per second).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def padding_share(data, batches) -> tuple[float, int]:
    real = total = 0
    for b in batches:
        lens = [data.lengths[i] for i in b]
        real += sum(lens)
        total += max(lens) * len(lens)
    return 1 - real / max(total, 1), real


def time_steps(data, batches, steps: int) -> float:
    import torch

    from hone.config import LoraMethod
    from hone.model.load import load_causal_lm
    from hone.model.methods import apply_method
    from hone.train.objectives import CausalLMObjective

    torch.manual_seed(0)
    model, _ = load_causal_lm("smollm2")
    model = apply_method(model, LoraMethod(r=16, alpha=32, dropout=0.0,
                                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                           "gate_proj", "up_proj", "down_proj"])).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    obj, tokens, t0 = CausalLMObjective(), 0, None
    for k, idx in enumerate(batches[:steps + 1]):
        if k == 1:  # the first step warms up allocators and kernels
            t0, tokens = time.perf_counter(), 0
        b = data.batch(idx)
        obj.loss(model, b).backward()
        opt.step()
        opt.zero_grad()
        tokens += b["num_tokens"]
    return tokens / (time.perf_counter() - t0)


def main() -> int:
    from hone.data.batches import epoch_order
    from hone.data.chat import setup_tokenizer
    from hone.data.lint import lint_conversations
    from hone.data.lm import from_examples, pack
    from hone.model.load import load_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=0)
    a = ap.parse_args()
    tok = load_tokenizer("smollm2")
    setup_tokenizer(tok, None)
    convs = [json.loads(x)["messages"] for x in a.file.read_text().splitlines() if x.strip()]
    _, ex = lint_conversations(tok, convs, max_length=a.max_length)
    padded, packed = from_examples(ex, tok.pad_token_id), pack(ex, a.max_length, tok.pad_token_id)
    out = {"examples": len(ex), "batch": a.batch, "max_length": a.max_length}
    for name, data in (("padded", padded), ("packed", packed)):
        batches = epoch_order(len(data), a.batch, 0, 0, data.lengths)
        share, real = padding_share(data, batches)
        out[name] = {"rows": len(data), "steps_per_epoch": len(batches), "padding_share": round(share, 4),
                     "real_tokens": real}
        if a.steps:
            out[name]["real_tokens_per_s"] = round(time_steps(data, batches, a.steps), 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
