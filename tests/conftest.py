"""Test-session settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one torch thread each, or OpenMP threads fight for the cores
    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(params=["native", "torch"])
def native_path(request, monkeypatch):
    """Run a test with hone's native kernels (skipped where they cannot be built) and with torch's ops and numpy's
    masks instead."""
    from hone.model import native

    if request.param == "native":
        if native.library() is None:
            pytest.skip("the native kernels are unavailable here (no C compiler, or HONE_NATIVE_KERNELS=0)")
    else:
        monkeypatch.setitem(native._STATE, "lib", None)
    return request.param
