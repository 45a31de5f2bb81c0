"""Test-session settings."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two xdist workers on two cores: one torch thread each, or OpenMP threads fight for the cores
    torch.set_num_threads(1)
