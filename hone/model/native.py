"""Native CPU kernels, compiled on first use with the system's C compiler: dropout masks, the gradients' sum of
squares for clipping, short-row attention, AdamW, the BERT layer's add & norm, and the Llama family's rotary
embeddings, SwiGLU, RMSNorm and LoRA input dropout.

hone ships their C source, ``native.c`` beside this module (its callers: :func:`hone.model.cpu_kernels.keep_mask`,
:func:`hone.model.cpu_kernels.attend`, the rotary, SwiGLU, RMSNorm and LoRA nodes in :mod:`hone.model.cpu_kernels`,
:mod:`hone.model.fused_bert`'s add & norm, :func:`hone.train.optim.clip_grad_norm` and :class:`hone.train.optim.AdamW`),
and builds it the first time a
run needs it, with ``gcc -O3 -march=native -fopenmp``, into ``$HONE_HOME/cache/kernels/<key>/``.  The key hashes the
source, the compiler's version, this CPU's model and flags and the OpenMP runtime's file, so a home directory shared
by different machines never loads a library built for another CPU.  The build writes to a temporary name and renames
it, so concurrent runs never load half a file; a damaged file is built again.  Where there is no compiler, the build
fails, torch runs another OpenMP runtime, or ``HONE_NATIVE_KERNELS=0`` is set, :func:`library` returns None, the
callers keep their torch path, and :func:`status` (``hone version``) says why.

The library is linked against the very ``libgomp`` file torch loaded (``libgomp.so.1``, or a renamed copy in some
wheels), so its parallel loops run on torch's thread pool with torch's thread count, rather than starting a second
pool that would fight torch's spinning threads for the cores.  Its vectors are one register wide for the CPU it is
built for (16 floats under AVX-512, 8 under AVX2, 4 otherwise); the attention kernel is used from
:data:`ATTENTION_MIN_LANES` up.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("native.c")
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-std=gnu11", "-ffp-contract=fast"]
_LOCK = threading.Lock()
# the attention kernel is used for vectors of this many floats and more (AVX2, AVX-512): built for 4-lane vectors
# (SSE, NEON) it was slower than torch's batched products (829 / 1724 against 528 / 633 µs)
ATTENTION_MIN_LANES = 8
_STATE: dict[str, object] = {}  # "lib": the loaded library, or None once tried; "why": what status() says


class View(ctypes.Structure):
    """A tensor as the C code takes it: base pointer, element strides of its (batch, head, token) dimensions (the
    last dimension contiguous) and whether it is bf16 (else fp32)."""

    _fields_ = [("p", ctypes.c_void_p), ("sb", ctypes.c_int64), ("sh", ctypes.c_int64), ("st", ctypes.c_int64),
                ("bf16", ctypes.c_int)]


def view(x: torch.Tensor, token_dim: int = 2) -> View:
    """A (batch, head, token, dim) tensor as a :class:`View`; ``token_dim`` 1 for one laid out as (batch, token, head,
    dim)."""
    head_dim = 3 - token_dim
    return View(x.data_ptr(), x.stride(0), x.stride(head_dim), x.stride(token_dim), int(x.dtype == torch.bfloat16))


def _cpu_key() -> str:
    """This CPU's model name and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _compiler() -> str | None:
    """``$CC``, else gcc (its ``-fopenmp`` links libgomp, the runtime torch's Linux wheels use), else ``cc``."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def _torch_libgomp() -> str | None:
    """The file of the GNU OpenMP runtime loaded with torch, or None (:func:`_pick_libgomp`)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return _pick_libgomp(maps, Path(torch.__file__).parent)


def _pick_libgomp(maps: str, torch_dir: Path) -> str | None:
    """torch's libgomp among the libraries of a ``/proc/self/maps`` text: the one in torch's own folders (some wheels
    rename it ``libgomp-<hash>.so.1``), else the system's ``libgomp.so.1`` its libraries name; other wheels bring their
    own renamed copies (scikit-learn's ``libgomp-<hash>.so``), which are not it.  None when torch runs another OpenMP
    runtime (Intel's or LLVM's, as in some conda builds) or none: the kernels' loops would then start a second thread
    pool beside torch's, so they stay off."""
    if "libiomp" in maps or "libomp.so" in maps:
        return None
    paths = sorted({line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/libgomp" in line})
    roots = (f"{torch_dir}{os.sep}", f"{torch_dir}.libs{os.sep}")
    ours = [p for p in paths if p.startswith(roots)] or [p for p in paths if Path(p).name.startswith("libgomp.so.1")]
    return ours[0] if len(ours) == 1 else None


def _build(cc: str, directory: Path, libgomp: str) -> Path:
    """Compile with ``-fopenmp`` but link against the very file of ``libgomp`` that torch loaded (not the
    compiler's ``-lgomp``), so that the library needs the soname already in the process and shares its pool."""
    target = directory / "native.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    obj = tmp[:-3] + ".o"
    try:
        run = functools.partial(subprocess.run, check=True, capture_output=True, text=True, timeout=120)
        run([cc, *_FLAGS, "-c", "-o", obj, str(_SOURCE)])
        run([cc, "-shared", "-o", tmp, obj, libgomp])
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, obj):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return target


def _off(why: str) -> None:
    _STATE["why"] = why
    return None


def _load() -> ctypes.CDLL | None:
    """Build (or find) and load the library; None, with the reason in ``_STATE["why"]``, where it cannot be used."""
    from hone.settings import get_settings

    settings = get_settings()
    if not settings.native_kernels:
        return _off("off: HONE_NATIVE_KERNELS=0")
    if platform.system() != "Linux":
        return _off(f"off: built on Linux only (this is {platform.system()})")
    libgomp = _torch_libgomp()
    if libgomp is None:
        return _off("off: torch does not run GNU OpenMP (libgomp) here")
    cc = _compiler()
    if cc is None:
        log.info("no C compiler found: hone's native CPU kernels are off (torch kernels are used)")
        return _off("off: no C compiler (install gcc, or set CC)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
        key = hashlib.sha256("\0".join([_SOURCE.read_text(), version, " ".join(_FLAGS), _cpu_key(),
                                         platform.machine(), libgomp]).encode()).hexdigest()[:16]
        path = _build(cc, settings.cache_dir / "kernels" / key, libgomp)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # a damaged file (another tool, a full disk before hone wrote atomically): built again, once
            path.unlink(missing_ok=True)
            lib = ctypes.CDLL(str(_build(cc, path.parent, libgomp)))
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = (getattr(exc, "stderr", "") or "").strip()
        log.warning("could not build hone's native CPU kernels (torch kernels are used instead): %s",
                    (stderr or str(exc))[:500])
        return _off(f"off: the build with {cc} failed" + (f": {stderr.splitlines()[-1][:200]}" if stderr else ""))
    ints = [ctypes.c_int] * 6
    dropout = [ctypes.c_uint64, ctypes.c_int, ctypes.c_float]  # seed, dropped (p * 65536), keep scale
    packed = [ctypes.c_void_p, ctypes.c_int]  # sequences' token offsets (or NULL), queries packed too
    lib.hone_attend.argtypes = [*ints, View, View, View, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_float, *dropout, ctypes.c_void_p, View, *packed]
    lib.hone_attend_backward.argtypes = [*ints, View, View, View, View, ctypes.c_void_p, ctypes.c_void_p,
                                         ctypes.c_void_p, ctypes.c_int, *dropout,
                                         ctypes.c_float, View, View, View, *packed]
    lib.hone_attend.restype = lib.hone_attend_backward.restype = ctypes.c_int
    lib.hone_keep_mask.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int]
    lib.hone_keep_mask.restype = None
    lib.hone_sum_squares.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.hone_sum_squares.restype = ctypes.c_double
    lib.hone_swiglu.argtypes = [ctypes.c_int64, *[ctypes.c_void_p] * 3, ctypes.c_int]
    lib.hone_swiglu_backward.argtypes = [ctypes.c_int64, *[ctypes.c_void_p] * 5, ctypes.c_int]
    lib.hone_swiglu.restype = lib.hone_swiglu_backward.restype = None
    mask = [ctypes.c_uint64, ctypes.c_int]  # seed, dropped
    lib.hone_mask_cast.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_int, *mask]
    lib.hone_masked_add.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                    ctypes.c_int, *mask]
    lib.hone_mask_cast.restype = lib.hone_masked_add.restype = None
    lib.hone_adamw.argtypes = [ctypes.c_int, *[ctypes.c_void_p] * 7, *[ctypes.c_double] * 7, ctypes.c_float]
    lib.hone_adamw.restype = ctypes.c_int
    lib.hone_adamw_rows.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 4,
                                    *[ctypes.c_double] * 7]
    lib.hone_adamw_rows.restype = None
    ptr, i64, c_int, c_float = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.hone_add_layer_norm.argtypes = [i64, c_int, ptr, i64, ptr, c_int, *dropout, ptr, ptr, c_float, *[ptr] * 6]
    lib.hone_layer_norm_backward.argtypes = [i64, c_int, *[ptr] * 5, *dropout, ptr, ptr, c_int, ptr, ptr, ptr]
    lib.hone_add_layer_norm.restype = lib.hone_layer_norm_backward.restype = ctypes.c_int
    lib.hone_rms_norm.argtypes = [i64, c_int, ptr, ptr, c_float, ptr, ptr]
    lib.hone_rms_norm_backward.argtypes = [i64, c_int, *[ptr] * 6]
    lib.hone_rms_norm.restype = lib.hone_rms_norm_backward.restype = ctypes.c_int
    lib.hone_rotary.argtypes = [*[ctypes.c_int] * 7, ctypes.c_void_p, ctypes.c_void_p, View, View, View, View]
    lib.hone_rotary.restype = ctypes.c_int
    lib.hone_vector_width.restype = ctypes.c_int
    lib.vector_width = lib.hone_vector_width()
    attention = "on" if lib.vector_width >= ATTENTION_MIN_LANES else "off: the batched products are faster here"
    _STATE["why"] = f"on: {path} ({lib.vector_width}-float vectors; attention {attention})"
    return lib


def _splitmix64(seed: int, n: int) -> np.ndarray:
    """splitmix64's outputs for counters 0 .. n-1 of the stream ``seed`` (``draw`` in ``native.c``)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def reference_keep_mask(seed: int, dropped: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The dropout mask the native kernels draw for ``seed`` (True = keep: ``hone_keep_mask``, and the attention's
    on its (batch, heads, queries, keys) probabilities), computed here in numpy: four 16-bit uniforms per splitmix64
    output, lowest bits first."""
    n = math.prod(shape)
    uniforms = _splitmix64(seed, (n + 3) // 4).view(np.uint16)[:n]  # little-endian: lowest 16 bits first
    return torch.from_numpy(uniforms.astype(np.int64) >= dropped).view(shape)


def sum_squares(lib: ctypes.CDLL, tensors: list[torch.Tensor]) -> float:
    """The sum of the squares of every element of contiguous fp32 CPU ``tensors``, accumulated in double by
    ``hone_sum_squares`` (independent of the thread count)."""
    n = len(tensors)
    ptrs = (ctypes.c_void_p * n)(*(t.data_ptr() for t in tensors))
    sizes = (ctypes.c_int64 * n)(*(t.numel() for t in tensors))
    total = lib.hone_sum_squares(n, ptrs, sizes)
    if total < 0:
        raise MemoryError("hone_sum_squares could not allocate its chunk table")
    return total


def used() -> str | None:
    """"on" or "off" once this process has tried to load the library (it then records which in manifests), else
    None; never builds it."""
    return None if "lib" not in _STATE else "on" if _STATE["lib"] is not None else "off"


def status() -> str:
    """Whether the native kernels are on (building them if needed), and where, or why they are off."""
    library()
    return str(_STATE.get("why", used()))


def library() -> ctypes.CDLL | None:
    """The native kernels' library, built and loaded on the first call; None where they are unavailable."""
    if "lib" not in _STATE:
        with _LOCK:
            if "lib" not in _STATE:
                _STATE["lib"] = _load()
    return _STATE["lib"]  # type: ignore[return-value]
