"""Test-session settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one torch thread each, or OpenMP threads fight for the cores
    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(params=["native", "torch"])
def attention_path(request, monkeypatch):
    """Run a test with the short attention computed by the native kernel (skipped where it cannot be built) and by
    torch's ops."""
    from hone.model import native

    if request.param == "native":
        if native.library() is None:
            pytest.skip("the native kernels are unavailable here (no C compiler, or HONE_NATIVE_KERNELS=0)")
    else:
        monkeypatch.setitem(native._STATE, "lib", None)
    return request.param
