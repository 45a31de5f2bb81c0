"""Generative specialists end to end: prepared splits -> lint -> model + method -> the loop -> artifact.

One entry point for SFT (chat / prompt-completion / instruction data, prompt masking), DAPT
(raw text, packed), DPO (preference pairs) and distillation (logit KD, or sequence-level KD
where the teacher's replies replace the targets).  Config sections stop here.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hone import artifacts
from hone.config import RunConfig
from hone.data.chat import Example, encode_text, end_of_turn_ids, setup_tokenizer, to_messages
from hone.data.lint import LintReport, lint_conversations, raise_on_errors
from hone.data.lm import LMData, PairData, chunk_text, from_examples, pack
from hone.errors import ConfigError, DataError, ModelError
from hone.model.load import set_dropout
from hone.model.methods import apply_method, count_params, is_adapter
from hone.serve.generator import seq2seq_source
from hone.train.loop import TrainResult, train
from hone.train.objectives import OBJECTIVES

CHAT_SCHEMAS = ("chat", "prompt_completion", "instruction")
_DEFAULT_OBJECTIVE = {"chat": "sft", "prompt_completion": "sft", "instruction": "sft", "text": "dapt",
                      "preference": "dpo"}
ENCODER_ONLY = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2", "mpnet")


@dataclass
class GeneratorRun:
    model: Any
    tokenizer: Any
    objective: str
    result: TrainResult
    splits: dict[str, list[dict[str, Any]]]
    metadata: dict[str, Any]
    artifact: Path
    lint: LintReport | None
    base_path: str


def resolve_objective(requested: str, schema: str) -> str:
    if requested == "auto":
        if schema not in _DEFAULT_OBJECTIVE:
            raise DataError(f"no generative objective trains on {schema} data")
        return _DEFAULT_OBJECTIVE[schema]
    need = {"sft": CHAT_SCHEMAS, "distill": CHAT_SCHEMAS, "dapt": ("text", *CHAT_SCHEMAS), "dpo": ("preference",)}
    if requested in need and schema not in need[requested]:
        raise ConfigError(f"train.objective={requested} needs {' / '.join(need[requested])} data, got {schema}")
    return requested


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def load_base(cfg: RunConfig, log=lambda _: None):
    """(model, tokenizer, local path) of the base LM, quantized for qlora; fails for encoders."""
    from hone.model.load import load_lm, resolve_model_path

    m = cfg.model
    path = resolve_model_path(m.name, revision=m.revision)
    if cfg.method.name == "qlora":
        from hone.model.load import load_tokenizer
        from hone.model.quant import load_quantized_causal_lm

        model = load_quantized_causal_lm(path, bits=cfg.method.bits, backend=cfg.method.backend,
                                         trust_remote_code=m.trust_remote_code)
        tok = load_tokenizer(m.name, revision=m.revision, trust_remote_code=m.trust_remote_code)
        log(f"base loaded in 4 bits ({model.hone_quantization})")
    else:
        model, tok = load_lm(m.name, revision=m.revision, trust_remote_code=m.trust_remote_code)
    if getattr(model.config, "model_type", "") in ENCODER_ONLY:
        raise ModelError(f"{m.name} is an encoder ({model.config.model_type}); generation needs a causal LM "
                         "(e.g. smollm2) or a seq2seq LM (T5 / BART)")
    return model, tok, path


def eval_pairs(rows: list[dict[str, Any]], schema: str) -> list[tuple[list[dict[str, Any]], str]]:
    """(prompt messages, reference reply) for every trained assistant turn of each row."""
    pairs = []
    for row in rows:
        msgs = to_messages(row, schema)
        for i, m in enumerate(msgs):
            if m["role"] == "assistant" and m.get("weight", 1) != 0 and i:
                pairs.append((msgs[:i], m["content"]))
    return pairs


def _seq2seq_examples(tok, rows, schema: str, max_length: int) -> list[Example]:
    out = []
    for prompt, ref in eval_pairs(rows, schema):
        src = tok(seq2seq_source(prompt), truncation=True, max_length=max_length)["input_ids"]
        tgt = tok(text_target=ref, truncation=True, max_length=max_length - 1)["input_ids"]
        if not tgt or tgt[-1] != tok.eos_token_id:  # T5 / BART tokenizers add it; others may not
            tgt = [*tgt, tok.eos_token_id]
        out.append(Example(src, tgt, length=len(src)))
    return out


def encode_split(tok, rows, schema: str, objective: str, cfg: RunConfig, *, seq2seq: bool, label: str,
                 notes: list[str]) -> tuple[Any, LintReport | None]:
    """Rows of one split -> trainable data (LMData / PairData) and the lint report (chat data)."""
    n = cfg.model.max_length
    if seq2seq:
        ex = _seq2seq_examples(tok, rows, schema, n)
        return LMData([e.input_ids for e in ex], [e.labels for e in ex], tok.pad_token_id, encoder_decoder=True), None
    if objective == "dpo":
        return _pairs(tok, rows, n, cfg.gen.train_on, label, notes)
    if schema == "text":
        ex = [c for r in rows for c in chunk_text(encode_text(tok, r["text"]), n)]
        return pack(ex, n, tok.pad_token_id), None
    convs = [to_messages(r, schema) for r in rows]
    train_on = "all" if objective == "dapt" else cfg.gen.train_on
    rep, ex = lint_conversations(tok, convs, max_length=n, train_on=train_on,
                                 where=[f"{label} example {k + 1}" for k in range(len(rows))], notes=notes)
    raise_on_errors(rep, label)
    return (pack(ex, n, tok.pad_token_id) if cfg.gen.packing else from_examples(ex, tok.pad_token_id)), rep


def _as_messages(x: Any, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": x}] if isinstance(x, str) else list(x)


def _pairs(tok, rows, n: int, train_on: str, label: str, notes) -> tuple[PairData, LintReport]:
    chosen, rejected, where = [], [], []
    for k, r in enumerate(rows):
        prompt = _as_messages(r["prompt"], "user")
        chosen.append(prompt + _as_messages(r["chosen"], "assistant"))
        rejected.append(prompt + _as_messages(r["rejected"], "assistant"))
        where.append(f"{label} example {k + 1}")
    for conv in (chosen, rejected):  # the prompt never trains in DPO: only the replies are scored
        for msgs in conv:
            for m in msgs:
                if m["role"] == "assistant" and m is not msgs[-1]:
                    m["weight"] = 0
    rep, ex_c = lint_conversations(tok, chosen, max_length=n, train_on=train_on, where=where, notes=notes)
    rep_r, ex_r = lint_conversations(tok, rejected, max_length=n, train_on=train_on, where=where)
    rep.errors += rep_r.errors
    raise_on_errors(rep, label)
    if len(ex_c) != len(ex_r):
        raise DataError(f"{label}: {abs(len(ex_c) - len(ex_r))} preference pairs lose a side to truncation; "
                        f"raise model.max_length above {n}")
    return PairData(from_examples(ex_c, tok.pad_token_id), from_examples(ex_r, tok.pad_token_id)), rep


def load_teacher(name: str):
    """A teacher: a hone generator artifact, or any model name / directory hone can load."""
    from hone.model.load import load_lm
    from hone.serve.generator import Generator

    if (Path(name) / artifacts.MANIFEST).is_file():
        return Generator.load(name)
    model, tok = load_lm(name)
    setup_tokenizer(tok, None if getattr(tok, "chat_template", None) else "plain", where=name)
    return Generator(model, tok)


def _sequence_kd(rows, schema: str, cfg: RunConfig, log) -> list[dict[str, Any]]:
    """Sequence-level KD: the teacher's greedy replies replace every trained assistant turn."""
    teacher = load_teacher(cfg.gen.distill.teacher)
    convs = [to_messages(r, schema) for r in rows]
    slots = [(c, i) for c, msgs in enumerate(convs) for i, m in enumerate(msgs)
             if m["role"] == "assistant" and m.get("weight", 1) != 0 and i]
    log(f"sequence-level distillation: the teacher writes {len(slots)} replies")
    gens = teacher.generate([convs[c][:i] for c, i in slots], max_new_tokens=cfg.gen.distill.max_new_tokens,
                            batch_size=cfg.gen.batch_size)
    convs = [[dict(m) for m in msgs] for msgs in convs]
    for (c, i), g in zip(slots, gens, strict=True):
        convs[c][i]["content"] = g.text or convs[c][i]["content"]
    return [{"messages": msgs} for msgs in convs]


def build_objective(name: str, cfg: RunConfig, model):
    if name == "dpo":
        ref = None if is_adapter(model) else copy.deepcopy(model).eval().requires_grad_(False)
        return OBJECTIVES[name](beta=cfg.gen.dpo_beta, reference=ref)
    if name == "distill" and cfg.gen.distill.mode == "logits":
        teacher = load_teacher(cfg.gen.distill.teacher).model.requires_grad_(False)
        return OBJECTIVES[name](teacher=teacher, temperature=cfg.gen.distill.temperature, alpha=cfg.gen.distill.alpha)
    return OBJECTIVES["sft"]()


def train_generator(cfg: RunConfig, run_dir: Path, *, log=lambda _: None, stop_after: int | None = None,
                    progress: bool = True) -> GeneratorRun:
    """Prepare the data (once per run directory), lint, train with ``cfg.method``, save the artifact."""
    from hone.data.prepare import prepare_once

    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, meta = prepare_once(cfg, run_dir, log=log)
    schema = meta["schema"]
    objective = resolve_objective(cfg.train.objective, schema)
    splits = {s: read_rows(data_dir / f) for s, f in artifacts.SPLIT_FILES.items()}
    torch.manual_seed(cfg.seed)  # adapter / soft-prompt initial weights are part of the run
    model, tok, base_path = load_base(cfg, log)
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    if seq2seq and objective in ("dpo", "dapt"):
        raise ConfigError(f"train.objective={objective} is not supported for a seq2seq model ({cfg.model.name}): it "
                          "trains on source / target pairs (sft, distill); use a causal LM for this objective")
    if seq2seq:  # options of the causal path that a seq2seq model has no use for
        unused = [k for k, on in (("gen.packing=true", cfg.gen.packing), ("gen.train_on=all", cfg.gen.train_on == "all"))
                  if on]
        if unused:
            log(f"note: {', '.join(unused)} has no effect on a seq2seq model (it trains on the targets, unpacked)")
    notes = [] if seq2seq else _template_notes(tok, cfg, objective)
    if objective == "distill" and cfg.gen.distill.mode == "sequence":
        splits["train"] = _sequence_kd(splits["train"], schema, cfg, log)
        schema = "chat"
    if cfg.model.dropout is not None:
        set_dropout(model, cfg.model.dropout)
        log(f"dropout set to {cfg.model.dropout:g} in every layer of the base model")
    model = apply_method(model, cfg.method)
    pc = count_params(model)
    log(f"model {cfg.model.name}: {pc.total:,} parameters, {pc.trainable:,} trainable ({pc.share:.1%}) "
        f"with method {cfg.method.name}, objective {objective}")
    data, lint = {}, None
    for split in ("train", "validation"):
        if splits[split]:
            data[split], rep = encode_split(tok, splits[split], schema, objective, cfg, seq2seq=seq2seq,
                                            label=f"{split} split", notes=notes)
            lint = lint or rep
    if lint is not None:
        artifacts.atomic_write_json(run_dir / artifacts.RUN_LINT_JSON, lint.to_dict())
        artifacts.atomic_write_text(run_dir / artifacts.RUN_LINT_MD, lint.to_markdown())
        log(f"lint: {lint.examples} examples ok, {lint.truncated} truncated, {len(lint.dropped)} dropped; "
            f"{lint.trained_share:.0%} of tokens train")
    obj = build_objective(objective, cfg, model)
    result = train(model, data["train"], data.get("validation"), cfg.train, objective=obj, run_dir=run_dir,
                   seed=cfg.seed, method=cfg.method, log=log, stop_after=stop_after, progress=progress)
    artifacts.atomic_write_json(run_dir / artifacts.RUN_TRAIN_RESULT, result.to_dict())
    art = run_dir / artifacts.RUN_ARTIFACT
    save_generator(model, tok, art, cfg=cfg, base_path=base_path, objective=objective, seq2seq=seq2seq,
                   data_sha256=meta.get("data_sha256"), result=result, params=pc)
    return GeneratorRun(model, tok, objective, result, splits, meta, art, lint, base_path)


def _template_notes(tok, cfg: RunConfig, objective: str) -> list[str]:
    try:
        return setup_tokenizer(tok, cfg.gen.template, where=cfg.model.name)
    except ModelError:
        if objective != "dapt":
            raise
        return setup_tokenizer(tok, "plain", where=cfg.model.name)  # raw text needs no template to train


def save_generator(model, tok, out: Path, *, cfg: RunConfig, base_path: str, objective: str, seq2seq: bool,
                   data_sha256: str | None, result: TrainResult, params) -> Path:
    """PEFT format (adapters, soft prompts) or transformers format (full), tokenizer with its chat template."""
    from transformers import GenerationConfig

    eos = end_of_turn_ids(tok)
    quant = getattr(getattr(model, "base_model", model), "hone_quantization", None) or getattr(
        model, "hone_quantization", None)
    with artifacts.staged_dir(out, overwrite=True) as stage:
        model.save_pretrained(stage, safe_serialization=True)
        side, init_side = tok.padding_side, tok.init_kwargs.get("padding_side")
        if not seq2seq:  # a decoder generates a batch left-padded: plain `generate` on the saved tokenizer too
            tok.padding_side = tok.init_kwargs["padding_side"] = "left"  # (save_pretrained writes init_kwargs)
        try:
            tok.save_pretrained(stage)
        finally:
            tok.padding_side = side
            if init_side is None:
                tok.init_kwargs.pop("padding_side", None)
            else:
                tok.init_kwargs["padding_side"] = init_side
        GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         max_new_tokens=cfg.gen.max_new_tokens, do_sample=False,
                         repetition_penalty=cfg.gen.repetition_penalty).save_pretrained(stage)  # plain generate() too
        artifacts.atomic_write_text(stage / artifacts.RESOLVED_CONFIG, cfg.to_yaml())
        artifacts.atomic_write_json(stage / artifacts.MANIFEST, {
            "kind": "generator", "task": "generation", "format": "peft" if is_adapter(model) else "transformers",
            "architecture": "seq2seq" if seq2seq else "causal", "objective": objective,
            "base_model": cfg.model.name, "base_model_path": base_path, "revision": cfg.model.revision,
            "method": cfg.method.name, "quantized": quant, "template": cfg.gen.template,
            "max_length": cfg.model.max_length,
            "generation": {"max_new_tokens": cfg.gen.max_new_tokens, "eos_token_ids": eos,
                           "repetition_penalty": cfg.gen.repetition_penalty},
            "data_sha256": data_sha256, "parameters": {"total": params.total, "trainable": params.trainable},
            "training": {k: v for k, v in result.to_dict().items() if k != "history"},
            "versions": artifacts.library_versions(),
        })
    return out
