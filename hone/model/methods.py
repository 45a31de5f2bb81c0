"""Fine-tuning methods: which parameters train and what is saved.

A registry of name -> ``apply(model, cfg) -> model``; the training loop never branches on
the method.  peft is imported through :func:`import_peft` (here and where artifacts are loaded).  Methods for a sequence classifier
keep the classification head trainable in every case (for LoRA / IA3 through peft's
``modules_to_save``, so the head is saved beside the adapter).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from hone.errors import ConfigError

HEAD_NAMES = ("classifier", "score", "pooler")  # head modules of *ForSequenceClassification models
_BNB_CPU_LOG = "bitsandbytes.backends.cpu.ops"


def import_peft() -> ModuleType:
    """peft, imported with bitsandbytes kept off the Hugging Face Hub.

    ``peft.helpers`` imports bitsandbytes whenever it is installed (hone's ``qlora`` and ``dev`` extras), and on a
    CPU with AVX512-BF16 bitsandbytes' import asks the Hub for a compiled 4-bit kernel (``kernels.get_kernel``): a
    network call in every run that imports peft, LoRA without quantization too, and offline a warning about
    ``trust_remote_code``.  So bitsandbytes is imported first with ``kernels`` hidden and that logger quiet; it
    then uses its own CPU kernels, as it does offline.  A QLoRA run loads bitsandbytes through transformers
    first, and this changes nothing there."""
    if "peft" not in sys.modules and "bitsandbytes" not in sys.modules \
            and importlib.util.find_spec("bitsandbytes") is not None:
        kernels, log = sys.modules.get("kernels"), logging.getLogger(_BNB_CPU_LOG)
        level, sys.modules["kernels"] = log.level, None  # type: ignore[assignment]  # None: ImportError
        log.setLevel(logging.ERROR)
        try:
            import bitsandbytes  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken bitsandbytes: peft's own try/except decides
            pass
        finally:
            log.setLevel(level)
            if kernels is None:
                sys.modules.pop("kernels", None)
            else:
                sys.modules["kernels"] = kernels
    import peft

    return peft


@dataclass
class ParamCount:
    total: int
    trainable: int

    @property
    def share(self) -> float:
        return self.trainable / max(self.total, 1)


def count_params(model: nn.Module) -> ParamCount:
    total = sum(p.numel() for p in model.parameters())
    return ParamCount(total, sum(p.numel() for p in model.parameters() if p.requires_grad))


def _is_head(name: str) -> bool:
    return any(part in HEAD_NAMES for part in name.split("."))


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The transformer layers of the encoder, bottom to top (``*.layer.N.*`` / ``*.layers.N.*``)."""
    groups: dict[int, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in ("layer", "layers", "h", "block") and parts[i + 1].isdigit():
                groups.setdefault(int(parts[i + 1]), []).append(p)
                break
    return [groups[k] for k in sorted(groups)]


def _freeze_all_but_head(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = _is_head(name)


def full(model: nn.Module, cfg: Any) -> nn.Module:
    for p in model.parameters():
        p.requires_grad = True
    return model


def head(model: nn.Module, cfg: Any) -> nn.Module:
    _freeze_all_but_head(model)
    return model


def freeze(model: nn.Module, cfg: Any) -> nn.Module:
    groups = layer_groups(model)
    if cfg.layers > len(groups):
        raise ConfigError(f"method.layers: {cfg.layers} is more than the model's {len(groups)} layers")
    frozen = {id(p) for g in groups[:cfg.layers] for p in g}
    for name, p in model.named_parameters():
        p.requires_grad = not (id(p) in frozen or "embeddings" in name.split(".") or "embed_tokens" in name)
    return model


def progressive(model: nn.Module, cfg: Any) -> nn.Module:
    """Head only at first; :class:`ProgressiveUnfreezer` opens layer groups during training."""
    _freeze_all_but_head(model)
    return model


class ProgressiveUnfreezer:
    """Unfreeze one more layer group from the top every ``every`` steps or epochs (ULMFiT-style)."""

    def __init__(self, model: nn.Module, every: int, unit: str):
        self.groups = layer_groups(model)[::-1]  # top first
        self.every, self.unit = every, unit
        self.opened = 0

    def update(self, step: int, epoch: int) -> bool:
        """Open the groups due by now (idempotent, so a resumed run reaches the same state)."""
        due = min(len(self.groups), (step if self.unit == "steps" else epoch) // self.every)
        changed = due > self.opened
        while self.opened < due:
            for p in self.groups[self.opened]:
                p.requires_grad = True
            self.opened += 1
        return changed


def _peft_task(model: nn.Module) -> str:
    import_peft()
    from peft import TaskType

    arch = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    if "SequenceClassification" in type(model).__name__ or "SequenceClassification" in arch:
        return TaskType.SEQ_CLS
    if getattr(model.config, "is_encoder_decoder", False):  # T5 / BART: *ForConditionalGeneration
        return TaskType.SEQ_2_SEQ_LM
    return TaskType.CAUSAL_LM


def lora(model: nn.Module, cfg: Any) -> nn.Module:
    import_peft()
    from peft import LoraConfig, get_peft_model

    pc = LoraConfig(task_type=_peft_task(model), r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                    target_modules=cfg.target_modules)
    try:
        return get_peft_model(model, pc)
    except ValueError as e:
        raise ConfigError(f"method.target_modules: {e}") from None


def ia3(model: nn.Module, cfg: Any) -> nn.Module:
    import_peft()
    from peft import IA3Config, get_peft_model

    pc = IA3Config(task_type=_peft_task(model), target_modules=cfg.target_modules,
                   feedforward_modules=cfg.feedforward_modules)
    try:
        return get_peft_model(model, pc)
    except ValueError as e:
        raise ConfigError(f"method.target_modules: {e}") from None


def prompt_tuning(model: nn.Module, cfg: Any) -> nn.Module:
    """Soft prompt (Lester et al. 2021): ``num_virtual_tokens`` trainable input embeddings."""
    import_peft()
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    kw: dict[str, Any] = {}
    if cfg.init_text:
        kw = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": cfg.init_text,
              "tokenizer_name_or_path": model.config._name_or_path}
    return get_peft_model(model, PromptTuningConfig(task_type=_peft_task(model),
                                                    num_virtual_tokens=cfg.num_virtual_tokens, **kw))


def _takes_past_key_values(model: nn.Module) -> bool:
    """Does the classifier (or its backbone) take ``past_key_values``, where peft's prefix tuning puts the prefixes?"""
    import inspect

    if "past_key_values" in inspect.signature(model.forward).parameters:
        return True
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return isinstance(backbone, nn.Module) and "past_key_values" in inspect.signature(backbone.forward).parameters


def prefix_tuning(model: nn.Module, cfg: Any) -> nn.Module:
    """Prefix tuning (Li & Liang 2021): trainable key/value prefixes in every attention layer."""
    import_peft()
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    task = _peft_task(model)
    if task == TaskType.SEQ_CLS and not _takes_past_key_values(model):
        # peft would raise only at the first forward, deep inside training
        raise ConfigError(f"method.name: prefix_tuning needs a model that takes past key values for its prefixes; "
                          f"{type(model).__name__} does not (transformers' encoder classifiers take none): use "
                          "prompt_tuning, lora or ia3 for this classifier")
    return get_peft_model(model, PrefixTuningConfig(task_type=task, num_virtual_tokens=cfg.num_virtual_tokens))


def qlora(model: nn.Module, cfg: Any) -> nn.Module:
    """LoRA on a base that :func:`hone.model.quant.load_quantized_causal_lm` loaded in 4 bits."""
    from hone.model.quant import lora_on_quantized

    if getattr(model, "hone_quantization", None) is None:
        raise ConfigError("method qlora needs the base loaded quantized (hone.model.quant); "
                          "it is available for generative models")
    return lora_on_quantized(model, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout,
                             target_modules=cfg.target_modules or "all-linear")


METHODS: dict[str, Callable[[nn.Module, Any], nn.Module]] = {
    "full": full, "head": head, "freeze": freeze, "progressive": progressive, "lora": lora, "ia3": ia3,
    "qlora": qlora, "prompt_tuning": prompt_tuning, "prefix_tuning": prefix_tuning,
}


def apply_method(model: nn.Module, cfg: Any) -> nn.Module:
    """Make the right parameters trainable (or wrap with an adapter) for ``cfg.name``."""
    if cfg.name not in METHODS:
        raise ConfigError(f"method.name: unknown method {cfg.name!r}; known: {', '.join(METHODS)}")
    model = METHODS[cfg.name](model, cfg)
    if count_params(model).trainable == 0:
        raise ConfigError(f"method {cfg.name}: no parameter is trainable for this model")
    return model


def is_adapter(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def lora_targets(model: nn.Module) -> list[str]:
    """Names of the Linear modules an adapter can target (the last name part, deduplicated)."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None  # an LM's head
    names = {n.split(".")[-1] for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and not _is_head(n) and m is not out}
    return sorted(names)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors only: what a checkpoint must hold to resume (frozen ones never change).  Copied to the
    CPU, where they are saved from: a GPU run would otherwise hold a second copy of them in GPU memory meanwhile."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
