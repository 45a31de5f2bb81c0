"""Intent classification end to end: prepared splits -> model + method -> the loop -> artifact.

Config sections stop here; the loop and the model code take plain arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hone import artifacts
from hone.config import RunConfig
from hone.data.batches import Encoded, encode
from hone.errors import DataError, ModelError
from hone.model.fast import first_token_only
from hone.model.load import set_dropout
from hone.model.methods import apply_method, count_params, is_adapter
from hone.train.loop import TrainResult, train
from hone.train.objectives import ClassificationObjective


@dataclass
class Split:
    texts: list[str]
    labels: list[Any]  # str, or list[str] for multi-label


@dataclass
class ClassifierRun:
    model: Any
    tokenizer: Any
    labels: list[str]
    multi_label: bool
    result: TrainResult
    splits: dict[str, Split]
    metadata: dict[str, Any]
    artifact: Path


def read_split(path: Path) -> Split:
    texts, labels = [], []
    if not path.exists():
        return Split([], [])
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "text" not in row or "label" not in row:
            raise DataError(f"{path}:{n}: a classification row needs text and label")
        texts.append(row["text"])
        labels.append(row["label"])
    return Split(texts, labels)


def targets(labels: list[Any], label2id: dict[str, int], multi_label: bool) -> torch.Tensor:
    if multi_label:
        out = torch.zeros((len(labels), len(label2id)))
        for i, labs in enumerate(labels):
            for lab in (labs if isinstance(labs, list) else [labs]):
                out[i, label2id[lab]] = 1.0
        return out
    return torch.tensor([label2id[lab if not isinstance(lab, list) else lab[0]] for lab in labels], dtype=torch.long)


def classifier_class(config):
    """The model class of a classifier config: hone's mean-pooling BERT head when
    ``config.classifier_pooling`` is ``"mean"`` on a BERT encoder, else transformers' auto class."""
    from transformers import AutoModelForSequenceClassification

    if getattr(config, "classifier_pooling", None) == "mean" and config.model_type == "bert":
        from hone.model.pooling import BertMeanPoolingForSequenceClassification

        return BertMeanPoolingForSequenceClassification
    return AutoModelForSequenceClassification


def sentence_pooling(path: str, *, revision: str | None = None) -> str | None:
    """The pooling a sentence-transformers checkpoint was trained with (``"mean"``, ``"cls"``, ...),
    from its ``1_Pooling/config.json``; None for a plain transformers checkpoint (or when unreadable)."""
    from transformers.utils import cached_file

    try:
        f = cached_file(path, "1_Pooling/config.json", revision=revision,
                        _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    if not f:
        return None
    try:
        conf = json.loads(Path(f).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if conf.get("pooling_mode"):  # newer sentence-transformers write the mode by name
        return str(conf["pooling_mode"]).removesuffix("_tokens").removesuffix("_token")
    modes = [m for m in ("mean", "cls", "max") if conf.get(f"pooling_mode_{m}_tokens") or conf.get(f"pooling_mode_{m}_token")]
    return modes[0] if len(modes) == 1 else None


def build_classifier(name: str, labels: list[str], *, multi_label: bool, revision: str | None = None,
                     trust_remote_code: bool = False, pooling: str = "cls"):
    """A sequence classifier on top of the base model, with hone's label map in its config.

    ``pooling="mean"`` puts the head on the masked mean of the last hidden states
    (:mod:`hone.model.pooling`, BERT encoders) instead of the [CLS] pooler; ``"auto"`` picks mean
    for a BERT sentence-transformers checkpoint trained with mean pooling (such as minilm), else cls."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hone.model.load import load_tokenizer, resolve_model_path

    path = resolve_model_path(name, revision=revision)
    tok = load_tokenizer(name, revision=revision, trust_remote_code=trust_remote_code)
    head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {lab: i for i, lab in enumerate(labels)},
            "problem_type": "multi_label_classification" if multi_label else "single_label_classification"}
    try:
        if pooling in ("auto", "mean"):
            config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, **head)
        if pooling == "auto":
            bert_mean = config.model_type == "bert" and sentence_pooling(path, revision=revision) == "mean"
            pooling = "mean" if bert_mean else "cls"
        if pooling == "mean":
            if config.model_type != "bert":
                raise ModelError(f"model.pooling: mean is built for BERT encoders (model_type bert, such as minilm); "
                                 f"{name} is {config.model_type!r}: use model.pooling: cls")
            config.classifier_pooling = "mean"
            model = classifier_class(config).from_pretrained(path, config=config, use_safetensors=True,
                                                             revision=revision)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, use_safetensors=True, revision=revision, trust_remote_code=trust_remote_code, **head)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot build a classifier from {name}: {e}") from None
    if model.config.pad_token_id is None and tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok, path


def train_classifier(cfg: RunConfig, run_dir: Path, *, log=lambda _: None, stop_after: int | None = None,
                     progress: bool = True) -> ClassifierRun:
    """Prepare the data (once per run directory), train with ``cfg.method``, save the artifact."""
    from hone.data.prepare import prepare_once

    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, meta = prepare_once(cfg, run_dir, log=log)
    if meta["schema"] != "classification":
        raise DataError(f"{cfg.data.path or cfg.data.files}: intent classification needs classification data, "
                        f"got {meta['schema']}")
    labels, multi = meta["labels"], bool(meta["multi_label"])
    splits = {s: read_split(data_dir / f) for s, f in artifacts.SPLIT_FILES.items()}
    torch.manual_seed(cfg.seed)  # the new head's (and an adapter's) initial weights are part of the run
    model, tok, base_path = build_classifier(cfg.model.name, labels, multi_label=multi, revision=cfg.model.revision,
                                             trust_remote_code=cfg.model.trust_remote_code, pooling=cfg.model.pooling)
    if cfg.model.dropout is not None:
        set_dropout(model, cfg.model.dropout)
        log(f"dropout set to {cfg.model.dropout:g} in every layer of the base model")
    model = apply_method(model, cfg.method)
    pc = count_params(model)
    log(f"model {cfg.model.name}: {pc.total:,} parameters, {pc.trainable:,} trainable ({pc.share:.1%}) "
        f"with method {cfg.method.name}")
    label2id = {lab: i for i, lab in enumerate(labels)}
    enc: dict[str, Encoded] = {
        s: encode(tok, sp.texts, targets(sp.labels, label2id, multi), cfg.model.max_length)
        for s, sp in splits.items() if sp.texts}
    weights = None
    weighted = cfg.train.class_weights
    if weighted is None:  # unset: choosing the class_weights strategy is asking for a weighted loss
        weighted = cfg.data.balance.strategy == "class_weights"
    if weighted and multi:
        log("note: class weights apply to single-label classification; this multi-label run trains unweighted")
    if weighted and not multi:
        cw = meta.get("class_weights") or _balanced(splits["train"].labels, labels)
        weights = torch.tensor([cw.get(lab, 1.0) for lab in labels], dtype=torch.float)
    objective = ClassificationObjective(class_weights=weights, label_smoothing=cfg.train.label_smoothing,
                                        multi_label=multi)
    with first_token_only(model):  # exact: the head reads position 0 only (hone.model.fast)
        result = train(model, enc["train"], enc.get("validation"), cfg.train, objective=objective, run_dir=run_dir,
                       seed=cfg.seed, method=cfg.method, log=log, stop_after=stop_after, progress=progress)
    artifacts.atomic_write_json(run_dir / artifacts.RUN_TRAIN_RESULT, result.to_dict())
    art = run_dir / artifacts.RUN_ARTIFACT
    save_artifact(model, tok, art, cfg=cfg, base_path=base_path, labels=labels, multi_label=multi,
                  data_sha256=meta.get("data_sha256"), result=result, params=pc)
    return ClassifierRun(model, tok, labels, multi, result, splits, meta, art)


def _balanced(train_labels: list[Any], labels: list[str]) -> dict[str, float]:
    from collections import Counter

    c = Counter(lab if not isinstance(lab, list) else lab[0] for lab in train_labels)
    return {lab: len(train_labels) / (len(labels) * c[lab]) if c[lab] else 1.0 for lab in labels}


def save_artifact(model, tok, out: Path, *, cfg: RunConfig, base_path: str, labels: list[str], multi_label: bool,
                  data_sha256: str | None, result: TrainResult, params) -> Path:
    """transformers format (full models) or PEFT format (adapters), tokenizer, manifest, config."""
    with artifacts.staged_dir(out, overwrite=True) as stage:
        model.save_pretrained(stage, safe_serialization=True)
        if is_adapter(model):  # the label map and head shape, so vanilla peft can rebuild the base
            base = model.get_base_model()
            if getattr(base, "_auto_class", None):  # hone's mean-pooling head: its modeling file + auto_map
                from transformers.dynamic_module_utils import custom_object_save

                custom_object_save(base, stage, config=base.config)
            base.config.save_pretrained(stage)
        tok.model_max_length = cfg.model.max_length  # where hone truncates: a plain pipeline(truncation=True) too
        tok.save_pretrained(stage)
        artifacts.atomic_write_text(stage / artifacts.RESOLVED_CONFIG, cfg.to_yaml())
        artifacts.atomic_write_json(stage / artifacts.MANIFEST, {
            "kind": "classifier", "task": "classification", "format": "peft" if is_adapter(model) else "transformers",
            "base_model": cfg.model.name, "base_model_path": base_path, "revision": cfg.model.revision,
            "method": cfg.method.name, "labels": labels, "multi_label": multi_label, "max_length": cfg.model.max_length,
            "data_sha256": data_sha256, "parameters": {"total": params.total, "trainable": params.trainable},
            "training": {k: v for k, v in result.to_dict().items() if k != "history"},
            "versions": artifacts.library_versions(),
        })
    return out
