"""4-bit quantized frozen bases for QLoRA: LoRA adapters trained on top of a quantized model.

Backends (:data:`QUANT_BACKENDS`, name -> loader):

- ``bitsandbytes`` (the default everywhere): NF4 with double quantization through transformers'
  ``BitsAndBytesConfig``; peft puts its ``lora.bnb.Linear4bit`` on the layers.  On CUDA it is
  the classic QLoRA recipe (bf16 compute).  bitsandbytes >= 0.47 also runs NF4 on the CPU
  (pure PyTorch dequantize on AVX2, C++ kernels on AVX512); there the compute dtype is fp32,
  because bf16 matmuls on a CPU without AVX512-BF16 are ~15x slower (measured).
- ``hqq``: Half-Quadratic Quantization, pure PyTorch (no compiled library), 2/3/4/8 bits.  The
  Linear layers are swapped for ``HQQLinear`` after loading (transformers 5 cannot load HQQ
  itself yet).  The HQQ optimizer runs on CUDA only; on the CPU it is plain round-to-nearest,
  since the optimizer takes ~1 min per 100M parameters there.

``resolve_backend`` turns ``"auto"`` into a backend and explains, as a :class:`ModelError`,
what to install or why a backend cannot work here.  Saved adapters are standard PEFT adapters
(``adapter_config.json`` + ``adapter_model.safetensors``) that load onto the unquantized base;
to merge them, load the unquantized base first (never merge into the 4-bit weights).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from hone.errors import ConfigError, ModelError
from hone.model.methods import import_peft

CPU_DEFAULT = "bitsandbytes"  # the backend "auto" picks without CUDA
GPU_DEFAULT = "bitsandbytes"  # ... and with CUDA
BNB_MIN_CPU = (0, 47)  # first bitsandbytes release tested with NF4 training on the CPU
PIP = {"bitsandbytes": 'pip install "bitsandbytes>=0.47"  (or: pip install "hone[qlora]")',
       "hqq": 'pip install "hqq>=0.2.8"'}
HQQ_GROUP_SIZE = 64

# Backends peft knows but that cannot give a trainable 4-bit base here: the reason, verbatim.
UNSUPPORTED = {
    "torchao": "torchao int4 cannot be used: its Int4 weight layouts need a CUDA, XPU or NPU device (none runs "
               "on the CPU), peft's LoRA layer for torchao accepts int8 weights only, and its CPU-capable int4 "
               "variant (IntxWeightOnly) stores every 4-bit value in a full byte, so nothing is saved over int8",
    "quanto": "optimum-quanto cannot be used: peft has no LoRA layer for quanto's QLinear (it would be treated "
              "as a plain Linear, and merging would corrupt it)",
}


def _cuda() -> bool:
    return torch.cuda.is_available()


def _version(mod: Any) -> tuple[int, ...]:
    parts = []
    for p in str(getattr(mod, "__version__", "0")).split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _import(backend: str) -> Any:
    """Import a backend's package or raise a ModelError that names the pip line."""
    try:
        return importlib.import_module(backend)
    except ImportError as e:
        raise ModelError(f"the {backend} quantization backend is not installed ({e}): {PIP[backend]}") from None


def resolve_backend(requested: str) -> str:
    """Turn ``requested`` (``"auto"`` or a backend name) into a usable backend name.

    ``"auto"`` is bitsandbytes with CUDA and :data:`CPU_DEFAULT` without.  The backend's
    package is imported to check it is there; a ModelError says what to install, or why the
    backend cannot work on this device.
    """
    name = (requested or "auto").strip().lower().replace("-", "_")
    name = {"bnb": "bitsandbytes", "optimum_quanto": "quanto"}.get(name, name)
    if name == "auto":
        name = GPU_DEFAULT if _cuda() else CPU_DEFAULT
    if name in UNSUPPORTED:
        raise ModelError(f"quantization backend {requested!r}: {UNSUPPORTED[name]}; use bitsandbytes")
    if name not in QUANT_BACKENDS:
        raise ModelError(f"unknown quantization backend {requested!r}; known: auto, {', '.join(QUANT_BACKENDS)}")
    mod = _import(name)
    if name == "bitsandbytes" and not _cuda() and _version(mod) < BNB_MIN_CPU:
        raise ModelError(f"bitsandbytes {mod.__version__} has no CPU 4-bit backend (CUDA is not available "
                         f"here): upgrade it with {PIP['bitsandbytes']}")
    return name


def _freeze_and_prepare(model: nn.Module, gradient_checkpointing: bool) -> nn.Module:
    """peft's k-bit preparation: freeze everything, fp32 norms, checkpointing when asked.

    Its only cast (fp16/bf16 -> fp32 for the non-quantized tensors) costs nothing on the CPU,
    where the model is loaded in fp32 anyway; on CUDA it is the standard QLoRA recipe.
    """
    import_peft()
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})


def _from_pretrained(path: str, **kw: Any) -> nn.Module:
    from transformers import AutoModelForCausalLM

    from hone.model.load import _from_pretrained as load
    from hone.model.load import resolve_model_path

    return load(AutoModelForCausalLM.from_pretrained, path, resolve_model_path(path), "quantized causal LM",
                use_safetensors=True, **kw)


def _load_bitsandbytes(path: str, bits: int, compute_dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    """NF4 (4-bit, double-quantized) or LLM.int8 (8-bit, CUDA only) through transformers."""
    from transformers import BitsAndBytesConfig

    if bits == 4:
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                               bnb_4bit_use_double_quant=True)
    elif bits == 8 and _cuda():
        q = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ConfigError(f"quantization bits={bits}: bitsandbytes trains 4-bit (NF4) bases"
                          + (" and 8-bit ones on CUDA" if _cuda() else "; its 8-bit matmul does not train on "
                             "the CPU (use bits=4)"))
    device_map: Any = {"": torch.cuda.current_device()} if _cuda() else "cpu"
    return _from_pretrained(path, quantization_config=q, device_map=device_map, dtype=compute_dtype,
                            trust_remote_code=trust_remote_code)


def _load_hqq(path: str, bits: int, compute_dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    """Load in ``compute_dtype``, then swap every Linear but the output head for an HQQLinear."""
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    if bits not in (2, 3, 4, 8):
        raise ConfigError(f"quantization bits={bits}: hqq supports 2, 3, 4 or 8 bits")
    device = f"cuda:{torch.cuda.current_device()}" if _cuda() else "cpu"
    model = _from_pretrained(path, dtype=compute_dtype, trust_remote_code=trust_remote_code).to(device)
    qc = BaseQuantizeConfig(nbits=bits, group_size=HQQ_GROUP_SIZE)
    qc["weight_quant_params"]["optimize"] = _cuda()
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child is not head:
                if child.weight.numel() % HQQ_GROUP_SIZE:
                    continue  # HQQ groups the flattened weight; leave odd-sized layers in full precision
                setattr(parent, name, HQQLinear(child, qc, compute_dtype=compute_dtype, device=device,
                                                del_orig=True))
    model.hqq_quantized = True  # how peft recognises an HQQ model
    return model


QUANT_BACKENDS: dict[str, Callable[[str, int, torch.dtype, bool], nn.Module]] = {
    "bitsandbytes": _load_bitsandbytes,
    "hqq": _load_hqq,
}


def default_compute_dtype() -> torch.dtype:
    """bf16 on a CUDA GPU that has it (else fp16); fp32 on the CPU (bf16 matmuls are slow there)."""
    if _cuda():
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


def load_quantized_causal_lm(path: str, *, bits: int = 4, backend: str = "auto", compute_dtype: Any = None,
                             trust_remote_code: bool = False, gradient_checkpointing: bool = True) -> nn.Module:
    """Load a causal LM with its Linear weights quantized, frozen, ready for LoRA.

    ``path`` is a local transformers checkpoint (or any name :func:`resolve_model_path` takes).

    The output head (tied to the embeddings in most small models) and the norms stay in
    ``compute_dtype``; every base parameter is frozen.  ``gradient_checkpointing`` (peft's
    QLoRA default) cut peak training memory by 40% for a 135M model on the CPU for ~20% more
    time per step.  The model comes back in eval mode with ``model.hone_quantization`` set
    to ``"<backend>-<bits>bit"`` (e.g. ``"bitsandbytes-4bit"``) for the manifest.
    """
    name = resolve_backend(backend)
    if isinstance(compute_dtype, str):
        compute_dtype = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                         "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}.get(compute_dtype)
        if compute_dtype is None:
            raise ConfigError("quantization compute_dtype: use float32, bfloat16 or float16")
    dtype = compute_dtype or default_compute_dtype()
    model = QUANT_BACKENDS[name](path, int(bits), dtype, trust_remote_code)
    _cpu_kernel_in_compute_dtype(model, dtype)
    model = _freeze_and_prepare(model, gradient_checkpointing)
    model.eval()
    model.hone_quantization = f"{name}-{int(bits)}bit"
    return model


def _cpu_kernel_in_compute_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    """bitsandbytes runs a 4-bit layer without gradients (evaluation, generation) through its AVX512-BF16
    CPU kernel where the CPU has one: it repacks the weight and computes in bf16, whatever the compute
    dtype, and the repacking fails (a reshape to ``[out, 0]``) when ``in_features`` is not a multiple of
    the quantization block.  Unless the compute dtype is bf16 and the blocks fit, a layer keeps the
    generic path, so that evaluation measures the model that trained, in its compute dtype."""
    for m in model.modules():
        state = getattr(getattr(m, "weight", None), "quant_state", None)
        if getattr(m, "support_avx512bf16_for_cpu", False) and state is not None and (
                dtype != torch.bfloat16 or getattr(m, "in_features", 0) % int(getattr(state, "blocksize", 1) or 1)):
            m.support_avx512bf16_for_cpu = False


def quantized_linear_types() -> tuple[type, ...]:
    """The Linear classes of the installed backends (to check a model really is quantized)."""
    found: list[type] = []
    try:
        import bitsandbytes as bnb

        found += [bnb.nn.Linear4bit, bnb.nn.Linear8bitLt]
    except ImportError:
        pass
    try:
        from hqq.core.quantize import HQQLinear

        found.append(HQQLinear)
    except ImportError:
        pass
    return tuple(found)


def lora_on_quantized(model: nn.Module, r: int, alpha: float, dropout: float,
                      target_modules: str | Sequence[str]) -> nn.Module:
    """Wrap a model from :func:`load_quantized_causal_lm` with fp32 LoRA adapters (a PeftModel).

    ``target_modules`` is a list of module names or ``"all-linear"``.  Only the adapters
    train; peft keeps them in fp32 whatever the compute dtype.
    """
    import_peft()
    from peft import LoraConfig, TaskType, get_peft_model

    if not getattr(model, "hone_quantization", None):
        raise ModelError("lora_on_quantized needs a model from load_quantized_causal_lm (no quantized base found)")
    if target_modules == "all-linear":  # peft's own expansion does not know HQQLinear
        head = model.get_output_embeddings()
        kinds = (nn.Linear, *quantized_linear_types())
        targets: str | list[str] = sorted({n.split(".")[-1] for n, m in model.named_modules()
                                           if isinstance(m, kinds) and m is not head})
    else:
        targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    pc = LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=alpha, lora_dropout=dropout,
                    target_modules=targets)
    try:
        peft_model = get_peft_model(model, pc, autocast_adapter_dtype=True)
    except ValueError as e:
        raise ConfigError(f"method.target_modules: {e}") from None
    return peft_model
