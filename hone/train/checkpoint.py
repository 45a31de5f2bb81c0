"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, step and data
position, early-stopping state and every RNG state, written atomically.

Frozen weights never change, so only trainable tensors are stored; together with the base
model they rebuild the exact training state.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hone import artifacts
from hone.errors import ArtifactError

WEIGHTS, OPTIM, SCHED, STATE, RNG = "trainable.safetensors", "optimizer.pt", "scheduler.pt", "state.json", "rng.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def save_checkpoint(ckpt_root: Path, step: int, *, weights: dict[str, torch.Tensor], optimizer, scheduler,
                    state: dict[str, Any], keep: int) -> Path:
    final = ckpt_root / f"step-{step:07d}"
    with artifacts.staged_dir(final, overwrite=True) as stage:
        save_weights(stage / WEIGHTS, weights)
        torch.save(optimizer.state_dict(), stage / OPTIM)
        torch.save(scheduler.state_dict(), stage / SCHED)
        torch.save(rng_state(), stage / RNG)
        artifacts.atomic_write_json(stage / STATE, state)
    for old in sorted(ckpt_root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    done = [p for p in sorted(ckpt_root.glob("step-*")) if (p / STATE).is_file()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything into the given objects; returns the loop state."""
    missing = [f for f in (WEIGHTS, OPTIM, SCHED, STATE, RNG) if not (path / f).is_file()]
    if missing:
        raise ArtifactError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    state = json.loads((path / STATE).read_text())
    weights = load_file(str(path / WEIGHTS))
    params = dict(model.named_parameters())
    unknown = [k for k in weights if k not in params]
    if unknown:
        raise ArtifactError(f"{path}: checkpoint does not match the model (e.g. {unknown[0]}); "
                            "was the config changed since it was written?")
    with torch.no_grad():
        for k, v in weights.items():
            params[k].requires_grad = True
            params[k].copy_(v)
    # trusted: files hone itself wrote into this run directory; read onto the CPU, so that a run checkpointed on a
    # GPU resumes on a machine without one (the optimizer moves its state to each parameter's device)
    optimizer.load_state_dict(torch.load(path / OPTIM, weights_only=False, map_location="cpu"))
    scheduler.load_state_dict(torch.load(path / SCHED, weights_only=False, map_location="cpu"))
    set_rng_state(torch.load(path / RNG, weights_only=False, map_location="cpu"))
    return state
