"""Run-directory layout, manifests and atomic writes.

This is the only module that knows file names inside a run or prepared-data directory.
Every file is written to a temporary file in the same directory, fsync'ed and renamed, and
whole output directories are built in a sibling staging directory and renamed into place,
so a failed job never leaves a half-written result and never destroys an earlier one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from hone.errors import ArtifactError

# Prepared-data directory layout.
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}
DATA_REPORT = "data_report.json"
DATA_METADATA = "metadata.json"
MANIFEST = "manifest.json"
RESOLVED_CONFIG = "config.yaml"

# Run directory layout.
RUN_DATA = "data"  # the prepared dataset (the layout above)
RUN_ARTIFACT = "artifact"  # transformers / PEFT format, loads without hone
RUN_METRICS = "metrics.jsonl"
RUN_TRAIN_RESULT = "train_result.json"
RUN_LINT_JSON = "lint.json"  # chat-data lint of the training data (generative runs)
RUN_LINT_MD = "lint.md"
ADAPTER_CONFIG = "adapter_config.json"

_TRACKED_PACKAGES = (
    "hone", "torch", "transformers", "tokenizers", "peft", "accelerate", "safetensors",
    "pydantic", "presidio-analyzer", "datasketch", "ftfy", "numpy",
)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600

REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'ed
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Stable JSON (sorted keys, UTF-8, trailing newline) so reruns are byte-identical."""
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    lines = (json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    atomic_write_text(path, "".join(lines))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    native = sys.modules.get("hone.model.native")  # whether this process ran hone's compiled CPU kernels
    if native is not None and native.used() is not None:
        out["hone_native_kernels"] = native.used()
    return out


_UMASK = os.umask(0o022)  # the process's umask, read once at import (reading it means setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def staged_dir(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory that becomes ``final`` only if the block succeeds.

    On any exception the staging directory is removed and ``final`` is untouched.  With
    ``overwrite`` an existing ``final`` is replaced (moved aside, then deleted after the new
    one is in place); without it an existing non-empty ``final`` is an error.
    """
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise ArtifactError(f"{final} already exists and is not empty; pass --overwrite (in Python, "
                            "overwrite=True) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    stage.chmod(0o777 & ~_UMASK)  # as a plain mkdir would make it (mkdtemp's 0700 kept the team out)
    try:
        yield stage
        for f in stage.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        backup = None
        if final.exists():
            backup = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, backup)
        os.replace(stage, final)
        _fsync_dir(final.parent)
        if backup is not None:
            if backup.is_dir():
                shutil.rmtree(backup, ignore_errors=True)
            else:  # (a file was in the way)
                backup.unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


# --- export layout (hone.export) -------------------------------------------------------------
EXPORT_ONNX_DIR = "onnx"  # ONNX graph (transformers' exporter) + config + tokenizer
EXPORT_GGUF = "model.gguf"  # llama.cpp file (Llama architecture only)
EXPORT_REPORT = "export_report.json"  # what was exported and how each round trip went
