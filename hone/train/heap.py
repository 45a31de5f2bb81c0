"""Keep freed memory in the process heap while training on a CPU (glibc's malloc only).

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it on ``free``, and it gives the top of the heap back to the OS once more than its trim
threshold is free.  A training step frees and re-allocates the same buffers every time (the
gradient of a 30k x 576 tied embedding is 70 MB; activations of a few MB each), so each step
page-faults all of that memory in again: the kernel zeroes it one 4 kB page at a time.  A
profile of a full SFT step of a SmolLM2-135M-shaped Llama showed the tied embedding's gradient
``add`` at 204 ms, its ``fill_`` at 189 ms and the LM-head weight-gradient GEMM at 153 ms
(20 ms of FLOPs) per 3.5 s step, all mostly page faults.

:func:`heap_reuse` sets ``M_MMAP_MAX = 0`` (no mmap chunks: large blocks come from the heap and
are reused after ``free``) and a 2 GB ``M_TRIM_THRESHOLD`` for the duration of a training run,
then puts back glibc's behaviour (:func:`_restore`) and returns the free heap with ``malloc_trim(0)``.  Peak RSS is
unchanged (the same buffers are live at the peak); RSS stays near the peak until the end of the
block.  Nothing is done off glibc, or when the user tuned malloc themselves (``GLIBC_TUNABLES``
with a malloc setting, ``MALLOC_*_`` variables, or a preloaded jemalloc / tcmalloc).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default (malloc/malloc.c)
# The largest mmap threshold glibc's dynamic adjustment reaches (DEFAULT_MMAP_THRESHOLD_MAX: 32 MB on 64-bit); the
# adjustment keeps the trim threshold at twice the mmap threshold.
_DYNAMIC_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)
_KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int

_lock = threading.Lock()
_active = 0


def user_tuned(env: dict[str, str] | None = None) -> bool:
    """True when the environment already chooses how malloc behaves."""
    env = os.environ if env is None else env
    if "malloc" in env.get("GLIBC_TUNABLES", ""):
        return True
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return True
    preload = env.get("LD_PRELOAD", "")
    return "jemalloc" in preload or "tcmalloc" in preload or "mimalloc" in preload


@cache
def _libc():
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def heap_reuse(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed memory stays in the heap for the next allocation.  Yields whether
    the setting is in effect.  Nested and concurrent blocks share it; the last one out restores."""
    global _active
    libc = _libc() if enabled and not user_tuned() else None
    if libc is None:
        yield False
        return
    with _lock:
        ok = _active > 0 or (libc.mallopt(M_MMAP_MAX, 0) == 1
                             and libc.mallopt(M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD) == 1)
        if ok:
            _active += 1
        else:  # an unusual libc: put back whatever may have been set
            _restore(libc)
    if not ok:
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _restore(libc)
                libc.malloc_trim(0)


def _restore(libc) -> None:
    """glibc's behaviour after the block, as near as mallopt can set it.  Any mallopt of these thresholds turns
    glibc's dynamic mmap threshold off for good, and with it at its 128 kB start every buffer above that was mapped
    afresh and page-faulted in on each use: after a training run a bf16 product of 352 x 576 x 576 took 380 µs
    instead of 130, a 4 MB cast 710 µs instead of 150, for the rest of the process (the evaluation, serving).  So the
    thresholds are set where the dynamic adjustment settles once a large buffer has been freed, which a torch process
    reaches within its first steps: blocks under 32 MB come from the heap, and free memory above 64 MB at its top goes
    back to the OS."""
    libc.mallopt(M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(M_MMAP_THRESHOLD, _DYNAMIC_MMAP_THRESHOLD_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, 2 * _DYNAMIC_MMAP_THRESHOLD_MAX)
