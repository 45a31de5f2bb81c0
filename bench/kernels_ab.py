"""A/B of ``train.cpu_kernels`` (hone/model/cpu_kernels.py), ``train.heap_reuse`` (hone/train/heap.py) or
``train.sparse_embeddings`` (hone/train/optim.py) inside one process, alternating blocks.

    python bench/kernels_ab.py classify [--rounds 4] [--steps 15]   # MiniLM-L6 classifier, batch 64 x 16 tokens
    python bench/kernels_ab.py lora [--rounds 2] [--steps 5]        # SmolLM2-135M-shape Llama, LoRA r16 every linear,
                                                                    # dropout 0.05, batch 16 x 22 tokens
    python bench/kernels_ab.py full ...                             # the same Llama, full fine-tuning
    python bench/kernels_ab.py lora --switch heap                   # A/B heap_reuse instead (kernels on in both;
                                                                    # heap reuse is on in both arms of a kernels A/B)
    python bench/kernels_ab.py full --switch sparse                 # sparse gradients for the (tied) input embedding
                                                                    # (kernels and heap reuse on in both)
    python bench/kernels_ab.py classify --switch native --bf16      # hone's compiled kernels (hone/model/native.c:
                                                                    # attention, masks, norms, AdamW, ...) vs torch's
                                                                    # ops and numpy's masks (kernels on in both)

Random token ids (the speed of a step does not depend on them), fused AdamW, 2 threads.  Each
round times ``--steps`` optimizer steps with the kernels on, then off (one untimed warm-up step
each), on the same model and optimizer; the medians of the rounds are printed.  ``--profile``
adds a torch.profiler table of a few steps with the kernels on.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch


def build(task: str):
    from hone.model.load import minilm_dir

    if task == "classify":
        from transformers import BertForSequenceClassification

        model = BertForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=77,
                                                              attn_implementation="sdpa")
        batch = {"input_ids": torch.randint(1000, 20000, (64, 16)), "labels": torch.randint(0, 77, (64,))}
        return model, batch, 64
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    ids = torch.randint(0, 30000, (16, 22))
    if task == "full":
        return LlamaForCausalLM(cfg), {"input_ids": ids, "labels": ids}, 16
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    return model, {"input_ids": ids, "labels": ids}, 16


def main() -> None:
    from hone.model import native
    from hone.model.cpu_kernels import cpu_kernels
    from hone.model.fast import first_token_only
    from hone.train.heap import heap_reuse
    from hone.train.optim import AdamW, clip_grad_norm, use_sparse_embeddings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=["classify", "lora", "full"])
    ap.add_argument("--switch", choices=["kernels", "heap", "sparse", "native"], default="kernels",
                    help="what the A/B turns on and off")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="steps under CPU bf16 autocast, with hone's gradient "
                    "clipping (max norm 1), as hone's training loop runs them")
    a = ap.parse_args()
    rounds = a.rounds or (4 if a.task == "classify" else 2)

    lib = native.library()
    if a.switch == "native" and lib is None:
        raise SystemExit("the native kernels are unavailable here (no C compiler, or HONE_NATIVE_KERNELS=0)")

    def switched(on: bool):  # the other switches stay on, as in hone's training loop
        stack = contextlib.ExitStack()
        if a.switch == "native":
            native._STATE["lib"] = lib if on else None
        stack.enter_context(cpu_kernels(model) if on or a.switch != "kernels" else contextlib.nullcontext())
        stack.enter_context(heap_reuse(on or a.switch != "heap"))
        if a.switch == "sparse":
            emb.sparse = on
        return stack

    steps = a.steps or (15 if a.task == "classify" else 5)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    model, batch, bs = build(a.task)
    model.train()
    emb = use_sparse_embeddings(model) if a.switch == "sparse" else None
    if a.switch == "sparse" and emb is None:
        raise SystemExit(f"{a.task}: no trainable input embedding to switch")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=1e-4, fused=True)  # takes sparse gradients

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(**batch).loss
        loss.backward()
        if a.bf16:
            clip_grad_norm(params, 1.0, opt)
        opt.step()
        opt.zero_grad(set_to_none=True)

    rates: dict[bool, list[float]] = {True: [], False: []}
    with first_token_only(model):  # as in hone's classifier training (a no-op for the Llama)
        for _ in range(rounds):
            for on in (True, False):
                with switched(on):
                    step()
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        step()
                    rates[on].append(bs * steps / (time.perf_counter() - t0))
        for on in (True, False):
            print(f"{a.switch} {'on ' if on else 'off'}: samples/s median {statistics.median(rates[on]):.1f} "
                  f"(rounds: {', '.join(f'{r:.1f}' for r in rates[on])})")
        print(f"on / off: {statistics.median(rates[True]) / statistics.median(rates[False]):.3f}x")
        if a.profile:
            from torch.profiler import profile

            with cpu_kernels(model), profile() as prof:
                for _ in range(3):
                    step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
