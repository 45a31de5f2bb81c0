"""``hone model info``: what a base model is, what each method trains, and what an epoch costs here.

The time and memory estimate is measured, not guessed: a few steps of hone's own training loop on this machine
(with ``train``'s defaults: its precision, CPU kernels, sparse embeddings and AdamW), on a sample of the given data
or on synthetic text, then extrapolated to an epoch.  A classifier's base model (an encoder) is timed as a
classifier with full fine-tuning; a causal LM as a generator (SFT on the data's conversations, continued
pre-training on plain text) with LoRA, the method most runs of a decoder use.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch

from hone.config import FreezeMethod, FullMethod, HeadMethod, Ia3Method, LoraMethod, PromptTuningMethod
from hone.errors import ConfigError
from hone.model.methods import apply_method, count_params, layer_groups, lora_targets

SAMPLE_TEXT = "my internet has been down since yesterday and nobody called me back"  # timed without data
WARMUP_STEPS = 4
MEASURED_STEPS = 6


TASKS = ("auto", "classify", "generate")


def resolve_task(name: str, task: str = "auto") -> str:
    """``classify`` for an encoder, ``generate`` for a causal or seq2seq LM; an explicit ``task`` wins (a decoder
    can be a classifier's base model too)."""
    if task != "auto":
        if task not in TASKS:
            raise ConfigError(f"--task: expected one of {', '.join(TASKS)}, got {task!r}")
        return task
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from hone.model.load import _from_pretrained, resolve_model_path
    from hone.train.generative import ENCODER_ONLY

    cfg = _from_pretrained(AutoConfig.from_pretrained, name, resolve_model_path(name), "config")
    lm = getattr(cfg, "is_encoder_decoder", False) or (
        cfg.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and cfg.model_type not in ENCODER_ONLY)
    return "generate" if lm else "classify"


def model_info(name: str, *, task: str = "auto", n_examples: int | None = None, texts: list[str] | None = None,
               conversations: list[list[dict[str, Any]]] | None = None, batch_size: int | None = None,
               max_length: int | None = None, method: str | None = None, num_labels: int = 10) -> dict[str, Any]:
    """Architecture, trainable parameters per method and (given ``n_examples``, ``texts`` or ``conversations``)
    a measured time per epoch.  Defaults per task: a classifier is timed with full fine-tuning, batch 32, 128
    tokens; a generator with LoRA, batch 8, 512 tokens."""
    task = resolve_task(name, task)
    if task == "generate":
        return _generator_info(name, n_examples=n_examples, texts=texts, conversations=conversations,
                               batch_size=batch_size or 8, max_length=max_length or 512, method=method or "lora")
    from hone.train.classify import build_classifier

    model, tok, path = build_classifier(name, [f"label_{i}" for i in range(num_labels)], multi_label=False)
    info = _describe(name, path, model, tok, "classify")
    info["parameters"] = {}
    for m_cfg in _methods(info["layers"], ("full", "head", "freeze", "lora", "ia3")):
        m, _, _ = build_classifier(name, [f"label_{i}" for i in range(num_labels)], multi_label=False)
        pc = count_params(apply_method(m, m_cfg))
        info["parameters"][m_cfg.name] = {"total": pc.total, "trainable": pc.trainable}
    if n_examples or texts:
        info["estimate"] = _estimate(model, tok, texts, n_examples or len(texts or []), batch_size or 32,
                                     max_length or 128, num_labels, _methods(info["layers"], (method or "full",))[0])
    return info


def _describe(name: str, path: str, model, tok, task: str) -> dict[str, Any]:
    cfg = model.config
    return {
        "name": name, "task": task, "path": path, "architecture": (cfg.architectures or [type(model).__name__])[0],
        "model_type": cfg.model_type, "layers": len(layer_groups(model)),
        "hidden_size": getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
        "max_positions": getattr(cfg, "max_position_embeddings", None), "tokenizer": type(tok).__name__,
        "tokenizer_max_length": tok.model_max_length if tok.model_max_length < 1e9 else None,
        "adapter_targets": lora_targets(model),
    }


def _methods(layers: int, names: tuple[str, ...]) -> list[Any]:
    """Each method with ``train``'s defaults (freeze: the lower half of the layers)."""
    known = {"full": FullMethod, "head": HeadMethod, "freeze": lambda: FreezeMethod(layers=max(0, layers // 2)),
             "lora": LoraMethod, "ia3": Ia3Method, "prompt_tuning": PromptTuningMethod}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--method: expected one of {', '.join(known)}, got {unknown[0]!r}")
    return [known[n]() for n in names]


def _generator_info(name: str, *, n_examples, texts, conversations, batch_size: int, max_length: int,
                    method: str) -> dict[str, Any]:
    import copy

    from hone.model.load import load_lm, resolve_model_path

    model, tok = load_lm(name)
    info = _describe(name, resolve_model_path(name), model, tok, "generate")
    info["parameters"] = {}
    for m_cfg in _methods(info["layers"], ("full", "freeze", "lora", "ia3", "prompt_tuning")):
        pc = count_params(apply_method(copy.deepcopy(model), m_cfg))  # adapters are injected in place
        info["parameters"][m_cfg.name] = {"total": pc.total, "trainable": pc.trainable}
    if n_examples or texts or conversations:
        n = n_examples or len(conversations or texts or [])
        info["estimate"] = _estimate_generator(name, model, tok, conversations, texts, n, batch_size, max_length,
                                               _methods(info["layers"], (method,))[0])
    return info


def read_examples(path: Path) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """(conversations, texts) of a data file, read and validated as ``hone data check`` reads it: the
    conversations of chat / prompt-completion / instruction rows, else each row's text."""
    from hone.data.chat import to_messages
    from hone.data.check import read_valid
    from hone.data.records import joined_text

    recs, rep = read_valid(path)
    if rep.schema in ("chat", "prompt_completion", "instruction"):
        return [to_messages(r.data, rep.schema) for r in recs], []
    return [], [t for t in (joined_text(rep.schema, r.data) for r in recs) if t.strip()]


def _timed(model, data, objective, method, batch_size: int) -> tuple[float, str]:
    """Seconds per step of hone's loop (the mean of :data:`MEASURED_STEPS` after :data:`WARMUP_STEPS`) and the
    precision it trained in."""
    import tempfile

    from hone.config import TrainConfig
    from hone.train.loop import resolve_precision, train

    cfg = TrainConfig(max_steps=WARMUP_STEPS + MEASURED_STEPS, batch_size=batch_size, lr=1e-5)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hone-info-") as tmp:
        t0 = time.perf_counter()
        train(model, data, None, cfg, objective=objective, run_dir=Path(tmp), seed=0, method=method,
              progress=False, on_step=lambda _: times.append(time.perf_counter()))
    marks = [t0, *times]
    mixed = resolve_precision(cfg.precision, lambda _: None)
    # a mean: the sampled batches' lengths vary
    return (marks[-1] - marks[WARMUP_STEPS]) / MEASURED_STEPS, "fp32" if mixed == "no" else mixed


def _summary(step_s: float, n: int, batch_size: int, precision: str, method: str, what: str) -> dict[str, Any]:
    per_epoch = -(-n // batch_size)
    return {"measured_steps": MEASURED_STEPS, "batch_size": batch_size, "seconds_per_step": round(step_s, 4),
            "steps_per_epoch": per_epoch, "seconds_per_epoch": round(step_s * per_epoch, 1),
            "precision": precision, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "method": method, "trains": what,
            "note": f"hone's training loop timed over {MEASURED_STEPS} steps on this machine ({precision}, {method}) "
                    "and extrapolated; lengths in real data vary, so treat it as an estimate"}


def _estimate_generator(name: str, model, tok, convs, texts, n: int, batch_size: int, max_length: int,
                        method) -> dict[str, Any]:
    """Time a generator's steps: SFT on a seeded sample of ``convs`` (the loss on the assistant turns, as ``train``
    masks them), else continued pre-training on ``texts`` (every token; synthetic text without either)."""
    import random

    from hone.data.chat import encode_messages, encode_text, setup_tokenizer
    from hone.data.lm import LMData, chunk_text, from_examples
    from hone.train.generative import _seq2seq_examples
    from hone.train.objectives import OBJECTIVES

    rng = random.Random(0)
    steps = WARMUP_STEPS + MEASURED_STEPS
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    if not convs and not texts:
        texts = [SAMPLE_TEXT]
    pool = convs or texts
    sample = [pool[rng.randrange(len(pool))] for _ in range(steps * batch_size)]
    if seq2seq:  # source -> target: the last reply of a conversation, a text to itself
        rows = [{"messages": c if convs else [{"role": "user", "content": c}, {"role": "assistant", "content": c}]}
                for c in sample]
        ex = _seq2seq_examples(tok, rows, "chat", max_length)
        data = LMData([e.input_ids for e in ex], [e.labels for e in ex], tok.pad_token_id, encoder_decoder=True)
        what = "source -> target pairs"
    elif convs:
        setup_tokenizer(tok, None if getattr(tok, "chat_template", None) else "plain", where=name)
        data = from_examples([encode_messages(tok, c, max_length) for c in sample], tok.pad_token_id)
        what = "SFT: the loss on the assistant turns"
    else:
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        data = from_examples([chunk_text(encode_text(tok, t), max_length)[0] for t in sample], tok.pad_token_id)
        what = "continued pre-training: the loss on every token"
    model = apply_method(model, method)
    step_s, precision = _timed(model, data, OBJECTIVES["sft"](), method, batch_size)
    return _summary(step_s, n, batch_size, precision, method.name, what)


def _estimate(model, tok, texts, n: int, batch_size: int, max_length: int, num_labels: int, method) -> dict[str, Any]:
    """Time :data:`MEASURED_STEPS` steps of hone's training loop (after :data:`WARMUP_STEPS`, which build the native
    kernels and warm the caches) on a seeded sample of ``texts``, then extrapolate to ``n`` examples.  It used to time
    plain fp32 steps of torch's AdamW, a path hone never trains on: on a 2-core AMX CPU it said 4.0 s per MiniLM step
    on BANKING77's train set; now 0.104 s, where a real epoch of ``configs/banking77_full.yaml`` ran 0.098 s a step
    (``bench/RESULTS.md``, session 27)."""
    import random

    from hone.data.batches import encode
    from hone.model.fast import first_token_only
    from hone.train.objectives import ClassificationObjective

    if not texts:
        texts = [SAMPLE_TEXT]
    rng = random.Random(0)
    sample = [texts[rng.randrange(len(texts))] for _ in range((WARMUP_STEPS + MEASURED_STEPS) * batch_size)]
    labels = torch.randint(num_labels, (len(sample),), generator=torch.Generator().manual_seed(0))
    data = encode(tok, sample, labels, max_length)
    model = apply_method(model, method)
    with first_token_only(model):
        step_s, precision = _timed(model, data, ClassificationObjective(), method, batch_size)
    return _summary(step_s, n, batch_size, precision, method.name, "classification: the loss on the label")
