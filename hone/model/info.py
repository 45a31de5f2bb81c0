"""``hone model info``: what a base model is, what each method trains, and what an epoch costs here.

The time and memory estimate is measured, not guessed: a few real training steps on this
machine (on the given data, or on synthetic text of the given length), then extrapolated.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

from hone.config import FreezeMethod, FullMethod, HeadMethod, Ia3Method, LoraMethod
from hone.model.methods import apply_method, count_params, layer_groups, lora_targets

MEASURED_STEPS = 3


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
        info["estimate"] = _estimate(model, tok, texts, n_examples or len(texts or []), batch_size, max_length)
    return info


def _estimate(model, tok, texts, n: int, batch_size: int, max_length: int) -> dict[str, Any]:
    """Time a few full-fine-tuning steps at this batch size, then extrapolate to one epoch."""
    if not texts:
        texts = ["my internet has been down since yesterday and nobody called me back"] * batch_size
    batch = tok((texts * batch_size)[:batch_size], truncation=True, max_length=max_length, padding=True,
                return_tensors="pt")
    labels = torch.zeros(batch_size, dtype=torch.long)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for _ in range(MEASURED_STEPS + 1):  # the first step warms up kernels and is not counted
        t = time.perf_counter()
        out = model(**batch, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    step_s = sorted(times[1:])[len(times[1:]) // 2]
    steps = -(-n // batch_size)
    return {"measured_steps": MEASURED_STEPS, "batch_size": batch_size, "seconds_per_step": round(step_s, 3),
            "steps_per_epoch": steps, "seconds_per_epoch": round(step_s * steps, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "method": "full", "note": f"measured {MEASURED_STEPS} training steps on this machine and extrapolated; "
                                      "lengths in real data vary, so treat it as an order of magnitude"}
