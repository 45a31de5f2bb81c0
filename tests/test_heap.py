"""hone.train.heap: large CPU buffers come from (and return to) the heap during training."""

from __future__ import annotations

import pytest

from hone.train import heap
from hone.train.heap import heap_reuse, user_tuned

glibc = pytest.mark.skipif(heap._libc() is None or user_tuned(), reason="needs glibc malloc, untuned")


# Each check runs in a fresh process: malloc looks for a free block in the heap before it maps new
# memory, so in a process where other tests ran the outcome would depend on their leftovers.
_PROBE = """
import ctypes, json, resource, sys, torch
from hone.train.heap import heap_reuse

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def mmap_growth(n_bytes):  # mmapped bytes added by a buffer of n_bytes (never touched)
    before = libc.mallinfo2().hblkhd
    x = torch.empty(n_bytes // 4)
    return libc.mallinfo2().hblkhd - before

def fewest_faults():  # a training step's pattern: the same 64 MB buffer allocated, filled, freed
    counts = []
    for _ in range(12):  # glibc may take a few rounds to settle on one block
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 << 20)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts)

MB = 1 << 20
out = {"before": mmap_growth(64 * MB), "faults_off": fewest_faults()}
with heap_reuse(sys.argv[1] == "on") as on:
    out["on"] = on
    out["inside"] = mmap_growth(64 * MB)
    with heap_reuse(sys.argv[1] == "on"):
        pass
    out["after_nested"] = mmap_growth(64 * MB)
    out["faults_inside"] = fewest_faults()
out["after"] = mmap_growth(1024 * MB)  # larger than any free block the block left in the heap
print(json.dumps(out))
"""


def _probe(mode: str) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@glibc
def test_inside_the_block_large_buffers_come_from_the_heap_and_are_reused():
    libc = heap._libc()
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc < 2.33 has no mallinfo2")
    r = _probe("on")
    mb = 1 << 20
    assert r["before"] >= 64 * mb and r["faults_off"] >= 16000  # glibc's default: mapped afresh every time
    assert r["on"] and r["inside"] == 0 and r["after_nested"] == 0  # a nested block does not restore
    assert r["faults_inside"] < 200  # 16,384 pages of 4 kB if it were mapped afresh
    assert r["after"] >= 1024 * mb  # large blocks are mapped again


@glibc
def test_disabled_changes_nothing():
    if not hasattr(heap._libc(), "mallinfo2"):
        pytest.skip("glibc < 2.33 has no mallinfo2")
    r = _probe("off")
    assert not r["on"] and r["inside"] >= 64 << 20 and r["faults_inside"] >= 16000


# After training, an evaluation allocates, fills and frees buffers of a few MB.  glibc's dynamic mmap threshold
# serves them from the heap once one was freed; the block's mallopt calls turn that adjustment off for good, so
# restoring its 128 kB start would map and fault every one of them in afresh on each use (products 3x, casts 5x
# slower after a training run).  Nothing above 2 MB is allocated before, so no free block in the heap can serve them.
_AFTER = """
import json, resource, sys, torch
from hone.train.heap import heap_reuse

def fewest_faults(n):
    counts = []
    for _ in range(12):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(n)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts)

with heap_reuse(sys.argv[1] == "on") as on:
    torch.ones(1 << 19)  # a step's 2 MB buffer
print(json.dumps({"on": on, "faults": fewest_faults(2 << 20)}))  # 8 MB: 2,048 pages if mapped afresh
"""


@glibc
@pytest.mark.parametrize("mode", ["on", "off"])
def test_after_the_block_buffers_of_a_few_mb_still_come_from_the_heap(mode):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _AFTER, mode], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["on"] is (mode == "on")
    assert r["faults"] < 100


@pytest.mark.parametrize(("env", "tuned"), [
    ({}, False),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, True),
    ({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"}, False),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, True),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, True),
])
def test_user_tuning_is_respected(env, tuned):
    assert user_tuned(env) is tuned


def test_user_tuning_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    with heap_reuse() as on:
        assert not on
