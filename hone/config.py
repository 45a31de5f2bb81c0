"""Every run setting, defined and validated once: ``RunConfig{data, model, method, train, eval}``.

YAML files, dotted CLI overrides (``data.split.test=0.2``), the Python API and REST payloads
all go through :func:`load_config`.  Models use ``extra="forbid"`` so a typo is an error, and
all errors are reported together with their dotted key.  Configs are data only: no import
paths or code, since they may arrive over HTTP.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from hone.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- data

class SplitConfig(_Section):
    """Train / validation / test split by ratio, or taken from existing split files."""

    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    stratify: bool = True
    group_column: str | None = None  # conversation / customer id: no group spans two splits
    leakage: Literal["report", "drop"] = "report"  # near-duplicates across splits
    leakage_threshold: float = Field(0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must sum to 1, got {total:g}")
        if self.train <= 0:
            raise ValueError("train must be > 0")
        return self


def _check_regex(pattern: str, label: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{label} is not a valid regular expression: {e}") from None


class CleanConfig(_Section):
    """Text cleaning; each step is optional and reported with counts."""

    unicode: bool = True  # ftfy mojibake repair + NFC
    html: bool = True  # strip tags, unescape entities
    signatures: bool = True  # e-mail signatures and "Sent from my iPhone"
    boilerplate: list[str] = Field(default_factory=list)  # extra regexes to delete
    whitespace: bool = True
    normalize: dict[str, str] = Field(default_factory=dict)  # domain spelling map: "srvce": "service"
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, gt=0)
    languages: list[str] | None = None  # ISO 639-1 codes to keep, e.g. ["en"]; None = no filter

    @field_validator("boilerplate")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for i, pat in enumerate(v):
            _check_regex(pat, f"boilerplate[{i}]")
        return v


class DedupeConfig(_Section):
    exact: bool = True  # normalized-text hash
    near: bool = True  # MinHash LSH
    threshold: float = Field(0.85, gt=0, le=1)  # estimated Jaccard similarity of character shingles
    num_perm: int = Field(128, ge=16, le=1024)
    shingle: int = Field(5, ge=1, le=20)  # character n-gram size


class PiiConfig(_Section):
    enabled: bool = True
    entities: list[str] | None = None  # None = every type hone knows
    patterns: dict[str, str] = Field(default_factory=dict)  # extra TYPE: regex (account / order numbers)

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pat in v.items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                raise ValueError(f"pattern name {name!r} must be an upper-case entity type like ORDER_ID")
            _check_regex(pat, f"pattern {name}")
        return v


class AugmentConfig(_Section):
    enabled: bool = False
    methods: list[Literal["synonym", "neighbour", "swap", "delete", "insert", "paraphrase"]] = Field(
        default_factory=lambda: ["synonym", "swap"])
    per_example: int = Field(1, ge=1, le=20)  # cap of new rows made from one example
    p: float = Field(0.1, gt=0, le=1)  # share of words touched by word-level methods
    model: str = "smollm2"  # causal LM for paraphrasing
    max_new_tokens: int = Field(48, ge=4, le=512)


class BalanceConfig(_Section):
    strategy: Literal["none", "class_weights", "oversample", "undersample"] = "none"


class DataConfig(_Section):
    path: str | None = None  # one input file (or a folder of .txt documents)
    files: dict[Literal["train", "validation", "test"], str] | None = None  # existing split files
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "txt"] = "auto"
    schema_: Literal["auto", "classification", "chat", "sharegpt", "prompt_completion", "instruction",
                     "preference", "text"] = Field("auto", alias="schema")
    text_column: str | None = None
    label_column: str | None = None
    # a generator's input and target under other names (a ticket and its summary): read as prompt / completion
    prompt_column: str | None = None
    completion_column: str | None = None
    encoding: str = "utf-8"  # cp1252 / latin-1 only when asked
    txt_mode: Literal["line", "document"] = "line"
    multi_label_sep: str | None = None  # CSV: split the label column on this separator
    min_examples: int = Field(10, ge=1)  # OpenAI's floor
    shots: int | None = Field(None, ge=1)  # k-shot: keep at most this many train examples per label (seeded)
    tokenizer: str | None = None  # token-length statistics when given
    max_length: int = Field(512, ge=8)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.path and self.files:
            raise ValueError("give either data.path or data.files, not both")
        if self.files is not None and "train" not in self.files:
            raise ValueError("data.files needs a train file")
        return self


# ---------------------------------------------------------------- model, method, train, eval

class ModelConfig(_Section):
    name: str = "minilm"  # embedded default, local directory or hub id
    revision: str | None = None
    trust_remote_code: bool = False
    max_length: int = Field(128, ge=8, le=8192)  # tokens; longer inputs are truncated
    # classifiers: "cls" = transformers' [CLS] pooler head; "mean" = the masked mean of the last hidden
    # states (how sentence-transformers encoders such as minilm were trained; BERT encoders); "auto" =
    # mean for a BERT checkpoint whose sentence-transformers 1_Pooling/config.json says mean, else cls
    # auto is the default: a LoRA classifier on minilm's [CLS] pooler scored 0.54 where the mean head scored 0.84
    pooling: Literal["auto", "cls", "mean"] = "auto"
    # every dropout probability of the base model (hidden, attention, classifier head); None = the
    # checkpoint's own (0.1 for BERT encoders); LoRA's dropout is method.dropout
    dropout: float | None = Field(None, ge=0, lt=1)


class FullMethod(_Section):
    """Every weight trains."""

    name: Literal["full"] = "full"


class HeadMethod(_Section):
    """Linear probe: the body is frozen; the classification head (and pooler) train."""

    name: Literal["head"] = "head"


class FreezeMethod(_Section):
    """Embeddings and the lower ``layers`` transformer layers are frozen."""

    name: Literal["freeze"] = "freeze"
    layers: int = Field(2, ge=0)


class ProgressiveMethod(_Section):
    """Start with the head only; unfreeze one more layer group, from the top, every ``every`` steps/epochs."""

    name: Literal["progressive"] = "progressive"
    every: int = Field(50, ge=1)
    unit: Literal["steps", "epochs"] = "steps"


class LoraMethod(_Section):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None  # None = peft's default for the architecture


class Ia3Method(_Section):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None


class QloraMethod(_Section):
    """LoRA on a 4-bit quantized, frozen base (bitsandbytes on CUDA; a CPU backend otherwise)."""

    name: Literal["qlora"] = "qlora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None
    bits: Literal[4] = 4
    backend: str = "auto"  # auto = bitsandbytes on CUDA, the CPU backend otherwise (hone.model.quant)


class PromptTuningMethod(_Section):
    """Soft prompt: ``num_virtual_tokens`` trainable embeddings before the input; the model is frozen."""

    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: str | None = None  # initialise the soft prompt from this text's embeddings


class PrefixTuningMethod(_Section):
    """Trainable key/value prefixes in every attention layer; the model is frozen."""

    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512)


METHOD_NAMES = ("full", "head", "freeze", "progressive", "lora", "ia3", "qlora", "prompt_tuning", "prefix_tuning")
Method = Annotated[FullMethod | HeadMethod | FreezeMethod | ProgressiveMethod | LoraMethod | Ia3Method
                   | QloraMethod | PromptTuningMethod | PrefixTuningMethod,
                   Field(discriminator="name")]


class EarlyStopping(_Section):
    patience: int = Field(3, ge=1)  # evaluations without improvement before stopping
    metric: Literal["accuracy", "macro_f1", "loss"] | None = None  # None: macro_f1 (classification), loss (generation)
    min_delta: float = Field(0.0, ge=0)


class TrainConfig(_Section):
    # what the loss is: auto = from the data schema (classification -> classification; chat /
    # prompt_completion / instruction -> sft; text -> dapt; preference -> dpo); distill is explicit
    objective: Literal["auto", "classification", "sft", "dapt", "dpo", "distill"] = "auto"
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0)  # overrides epochs
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)  # default: lr
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it natively
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # weight the loss with the prepared data's class weights; None (unset): when data.balance.strategy is class_weights
    class_weights: bool | None = None
    eval_every: int | None = Field(None, gt=0)  # optimizer steps; None = once per epoch
    early_stopping: EarlyStopping | None = None
    save_every: int | None = Field(None, gt=0)  # checkpoint every N optimizer steps
    log_every: int = Field(10, ge=1)  # optimizer steps per train-loss line in metrics.jsonl
    keep_checkpoints: int = Field(2, ge=1)
    # length-bucketed batches with dynamic padding; auto: bucketed unless hone's CPU kernels leave the padding out of
    # the model's batches (an encoder run packed: hone.model.fused_bert), where bucketing only raises peak memory
    bucket: bool | Literal["auto"] = "auto"
    # a trainable input embedding gets sparse gradients (CPU, no fp16): untied, AdamW updates only the
    # rows of the batch's tokens; tied to the LM head, its rows are added into the head's dense gradient
    sparse_embeddings: bool = True
    # CPU kernels (hone.model.cpu_kernels): dropout masks from 16-bit uniforms instead of bernoulli_,
    # one fused autograd node per LoRA linear layer, per Llama-family RMSNorm and per BERT-family encoder
    # layer (hone.model.fused_bert), and attention for rows of at most 512 tokens (64 in decoders without the native
    # kernel, which recomputes a decoder's probabilities in the backward above 64) by hone's
    # native kernel (hone.model.native: compiled with the system's C compiler on first use; HONE_NATIVE_KERNELS=0
    # turns it off) or else by batched products; with the native kernels also Llama-family rotary embeddings, SwiGLU,
    # RMSNorm, LoRA's input dropout and BERT's add & norm in one pass each; the masks are a different random stream
    cpu_kernels: bool = True
    # keep freed memory in the heap while training on a CPU (glibc malloc: no mmap chunks, no trimming),
    # so each step's large buffers are reused instead of page-faulted in again (hone.train.heap)
    heap_reuse: bool = True
    threads: int | None = Field(None, ge=1)  # torch threads; None = all cores

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, v: int, info: ValidationInfo) -> int:
        max_steps = info.data.get("max_steps")
        if max_steps is not None and v >= max_steps:
            raise ValueError("must be < max_steps")
        return v


class DistillConfig(_Section):
    """Knowledge distillation from ``teacher`` (a model dir / embedded name / hone artifact)."""

    teacher: str
    mode: Literal["logits", "sequence"] = "logits"  # soft targets (shared vocabulary) or teacher generations
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)  # logits: weight of the KD term; 1 - alpha on the data's own loss
    max_new_tokens: int = Field(128, ge=1, le=4096)  # sequence mode: length of the teacher's replies


class GenConfig(_Section):
    """Generative tasks: chat rendering, prompt masking, packing, DPO / distillation and decoding."""

    template: str | None = None  # named chat template (hone.data.chat.TEMPLATES); None = the tokenizer's own
    train_on: Literal["assistant", "all"] = "assistant"  # prompt masking: loss on assistant tokens only
    packing: bool = False  # pack short examples into max_length sequences (attention kept per example)
    dpo_beta: float = Field(0.1, gt=0)
    distill: DistillConfig | None = None
    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0)  # 0 = greedy (evaluation is greedy)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0)  # > 1 discourages loops of small models (also in evaluation)
    batch_size: int = Field(16, ge=1)  # generation batch (left padding, KV cache)
    # dtype of the models the evaluation generates and scores with (tuned and base alike); auto = bf16 where the
    # hardware runs it natively (as train.precision), else fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class EvalConfig(_Section):
    baselines: list[Literal["zero_shot", "few_shot", "linear_probe"]] = Field(
        default_factory=lambda: ["zero_shot", "few_shot"])
    few_shot_k: int | None = Field(None, ge=1)  # None: 8 for classification, 2 for generation
    max_examples: int | None = Field(None, ge=1)  # generation: score at most this many test examples (seeded)
    choice_file: str | None = None  # generation: multiple-choice JSONL ({question, options, answer}) scored base vs tuned
    choice_items: int | None = Field(None, ge=1)  # score at most this many of its items (seeded)
    # generation: the metric of the headline and the gains' verdict; auto = exact_match when the references are short
    # answers (median <= 8 words: Q&A), else rougeL
    main_metric: Literal["auto", "rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match"] = "auto"
    oos_label: str | None = None  # a label marking out-of-scope examples ("oos")
    forgetting: bool = True
    forgetting_threshold: float = Field(0.05, ge=0)
    bootstrap: int = Field(1000, ge=0)
    label_descriptions: dict[str, str] = Field(default_factory=dict)  # for the zero-shot baseline


class RunConfig(_Section):
    seed: int = 42
    task: Literal["auto", "classify", "generate"] = "auto"  # auto: from the data schema
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: Method = Field(default_factory=FullMethod)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gen: GenConfig = Field(default_factory=GenConfig)

    @model_validator(mode="after")
    def _coherent(self) -> RunConfig:
        if self.train.objective == "distill" and self.gen.distill is None:
            raise ValueError("train.objective=distill needs a gen.distill section with a teacher")
        if self.gen.packing and self.method.name in ("prompt_tuning", "prefix_tuning"):
            raise ValueError("gen.packing does not work with prompt/prefix tuning (the virtual tokens "
                             "would be shared by every packed example); set gen.packing=false")
        if self.task == "classify" and self.train.objective not in ("auto", "classification"):
            raise ValueError(f"task classify cannot train with objective {self.train.objective}")
        es = self.train.early_stopping
        if es and es.metric in ("accuracy", "macro_f1") and self._generative():
            raise ValueError(f"train.early_stopping.metric={es.metric} is measured for classification only; a "
                             "generative run evaluates its validation loss: use metric: loss")
        return self

    def _generative(self) -> bool:
        """Known from the config alone to train a generator (else classify, or decided by the data)."""
        return (self.task == "generate" or self.train.objective not in ("auto", "classification")
                or self.data.schema_ not in ("auto", "classification"))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------- loading

def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``X | None``, a discriminated union, ``Annotated[...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) or () for m in _models_in(arg)]


# the names Hugging Face's TrainingArguments / peft's configs give hone's keys
_HF_NAMES = {"learning_rate": "train.lr", "num_train_epochs": "train.epochs", "per_device_train_batch_size":
             "train.batch_size", "gradient_accumulation_steps": "train.grad_accum", "lr_scheduler_type":
             "train.schedule", "eval_steps": "train.eval_every", "save_steps": "train.save_every", "logging_steps":
             "train.log_every", "bf16": "train.precision", "fp16": "train.precision", "seed": "seed",
             "max_seq_length": "model.max_length", "model_name_or_path": "model.name", "lora_r": "method.r",
             "lora_alpha": "method.alpha", "lora_dropout": "method.dropout", "num_virtual_tokens":
             "method.num_virtual_tokens", "early_stopping_patience": "train.early_stopping.patience"}


def _did_you_mean(loc: tuple[Any, ...], shown: list[str]) -> str:
    """' (did you mean data.label_column?)' for an unknown key close to a real one, else ''.  ``loc`` is pydantic's
    (with a union's tag: method.lora.r), ``shown`` the key as the error names it (method.r)."""
    import difflib

    if str(loc[-1]) in _HF_NAMES:
        return f" (hone calls it {_HF_NAMES[str(loc[-1])]})"

    models: list[type[BaseModel]] = [RunConfig]
    path = [str(p) for p in loc]
    for part in path[:-1]:
        named = [m for m in models if part in m.model_fields]
        if named:
            models = _models_in(named[0].model_fields[part].annotation)
        else:  # a discriminated union's tag (method.lora): the member whose name it is
            models = [m for m in models if getattr(m.model_fields.get("name"), "default", None) == part] or models
    known = {a for m in models for n, f in m.model_fields.items() for a in (n, f.alias) if a}
    close = difflib.get_close_matches(path[-1], sorted(known), n=1, cutoff=0.7)
    return f" (did you mean {'.'.join([*shown[:-1], close[0]])}?)" if close else ""


def _format_errors(err: ValidationError, method_tags: set[str]) -> list[str]:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        # drop discriminated-union tags ("method.lora.r" -> "method.r") and validator labels
        loc = [p for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "method" and p in method_tags)]
        loc = [p for p in loc if not p.startswith("function-")]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(e["loc"], loc)
        lines.append(f"{'.'.join(loc)}: {msg}" if loc else msg)  # a whole-config check names its keys itself
    return lines


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: cannot set a key inside {p!r}, which is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, Any]]:
    """``["data.split.test=0.2", "method.name=lora"]`` -> typed (key, value) pairs (values as YAML)."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. data.split.test=0.2")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        out.append((key, value))
    return out


def load_config(source: str | Path | dict[str, Any] | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Build a validated RunConfig from a YAML file, a dict or nothing (defaults), then overrides.

    Relative ``data.path`` / ``data.files`` in a YAML file are resolved against the file's folder.
    Raises ConfigError listing every problem with its dotted key.
    """
    base_dir: Path | None = None
    if source is None:
        tree: dict[str, Any] = {}
    elif isinstance(source, dict):
        tree = _deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(loaded).__name__}")
        tree, base_dir = loaded, path.parent
    for key, value in parse_overrides(overrides):
        method = tree.get("method")
        if key == "method.name" and isinstance(method, dict) and method.get("name", "full") != value:
            # another method: the file's method options (lora's r, alpha, ...) belong to the old one
            tree["method"] = {}
        _set_dotted(tree, key, value)
    try:
        cfg = RunConfig.model_validate(tree)
    except ValidationError as e:
        tags = set(METHOD_NAMES)
        lines = _format_errors(e, tags)
        label = f"{source}" if isinstance(source, (str, Path)) else "config"
        raise ConfigError(f"{label}: {len(lines)} error(s)\n  " + "\n  ".join(lines)) from None
    if base_dir is not None:
        _resolve_paths(cfg.data, base_dir)
        if cfg.eval.choice_file and not Path(cfg.eval.choice_file).expanduser().is_absolute():
            cfg.eval.choice_file = os.path.normpath(base_dir / cfg.eval.choice_file)
    return cfg


def _resolve_paths(data: DataConfig, base: Path) -> None:
    def res(p: str) -> str:
        q = Path(p).expanduser()
        return os.path.normpath(q if q.is_absolute() else (base / q))
    if data.path:
        data.path = res(data.path)
    if data.files:
        data.files = {k: res(v) for k, v in data.files.items()}


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
