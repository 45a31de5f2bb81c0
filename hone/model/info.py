"""``hone model info``: what a base model is, what each method trains, and what an epoch costs here.

The time and memory estimate is measured, not guessed: a few steps of hone's own training loop on this machine
(full fine-tuning with ``train``'s defaults: its precision, CPU kernels, sparse embeddings and AdamW), on a sample
of the given data or on synthetic text, then extrapolated to an epoch.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

from hone.config import FreezeMethod, FullMethod, HeadMethod, Ia3Method, LoraMethod
from hone.model.methods import apply_method, count_params, layer_groups, lora_targets

WARMUP_STEPS = 4
MEASURED_STEPS = 6


def model_info(name: str, *, n_examples: int | None = None, texts: list[str] | None = None, batch_size: int = 32,
               max_length: int = 128, num_labels: int = 10) -> dict[str, Any]:
    from hone.train.classify import build_classifier

    model, tok, path = build_classifier(name, [f"label_{i}" for i in range(num_labels)], multi_label=False)
    cfg = model.config
    info: dict[str, Any] = {
        "name": name, "path": path, "architecture": (cfg.architectures or [type(model).__name__])[0],
        "model_type": cfg.model_type, "layers": len(layer_groups(model)),
        "hidden_size": getattr(cfg, "hidden_size", None), "vocab_size": getattr(cfg, "vocab_size", None),
        "max_positions": getattr(cfg, "max_position_embeddings", None), "tokenizer": type(tok).__name__,
        "tokenizer_max_length": tok.model_max_length if tok.model_max_length < 1e9 else None,
        "adapter_targets": lora_targets(model),
    }
    info["parameters"] = {}
    for method in (FullMethod(), HeadMethod(), FreezeMethod(layers=max(0, info["layers"] // 2)), LoraMethod(), Ia3Method()):
        m, _, _ = build_classifier(name, [f"label_{i}" for i in range(num_labels)], multi_label=False)
        pc = count_params(apply_method(m, method))
        info["parameters"][method.name] = {"total": pc.total, "trainable": pc.trainable}
    if n_examples or texts:
        info["estimate"] = _estimate(model, tok, texts, n_examples or len(texts or []), batch_size, max_length,
                                     num_labels)
    return info


def _estimate(model, tok, texts, n: int, batch_size: int, max_length: int, num_labels: int) -> dict[str, Any]:
    """Time :data:`MEASURED_STEPS` steps of hone's training loop (after :data:`WARMUP_STEPS`, which build the native
    kernels and warm the caches) on a seeded sample of ``texts``, then extrapolate to ``n`` examples.  It used to time
    plain fp32 steps of torch's AdamW, a path hone never trains on: on a 2-core AMX CPU it said 4.0 s per MiniLM step
    on BANKING77's train set; now 0.104 s, where a real epoch of ``configs/banking77_full.yaml`` ran 0.098 s a step
    (``bench/RESULTS.md``, session 27)."""
    import random
    import tempfile
    from pathlib import Path

    from hone.config import TrainConfig
    from hone.data.batches import encode
    from hone.model.fast import first_token_only
    from hone.train.loop import resolve_precision, train
    from hone.train.objectives import ClassificationObjective

    steps = WARMUP_STEPS + MEASURED_STEPS
    if not texts:
        texts = ["my internet has been down since yesterday and nobody called me back"]
    rng = random.Random(0)
    sample = [texts[rng.randrange(len(texts))] for _ in range(steps * batch_size)]
    labels = torch.randint(num_labels, (len(sample),), generator=torch.Generator().manual_seed(0))
    data = encode(tok, sample, labels, max_length)
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=1e-5)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hone-info-") as tmp, first_token_only(model):
        t0 = time.perf_counter()
        train(model, data, None, cfg, objective=ClassificationObjective(), run_dir=Path(tmp), seed=0,
              method=FullMethod(), progress=False, on_step=lambda _: times.append(time.perf_counter()))
    marks = [t0, *times]
    step_s = (marks[-1] - marks[WARMUP_STEPS]) / MEASURED_STEPS  # a mean: the sampled batches' lengths vary
    per_epoch = -(-n // batch_size)
    mixed = resolve_precision(cfg.precision, lambda _: None)
    precision = "fp32" if mixed == "no" else mixed
    return {"measured_steps": MEASURED_STEPS, "batch_size": batch_size, "seconds_per_step": round(step_s, 4),
            "steps_per_epoch": per_epoch, "seconds_per_epoch": round(step_s * per_epoch, 1),
            "precision": precision, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "method": "full", "note": f"hone's training loop timed over {MEASURED_STEPS} steps on this machine "
                                      f"({precision}) and extrapolated; LoRA is usually faster; lengths in real data "
                                      "vary, so treat it as an estimate"}
