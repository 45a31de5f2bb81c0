"""THE training loop: one loop for every method and objective, driven through accelerate.

Read it top to bottom: set up (threads, seeds, optimizer, schedule), resume if a checkpoint
exists, then per optimizer step: accumulate micro-batches, clip, step, schedule, log; evaluate
every ``eval_every`` steps (or each epoch) with early stopping on a metric; checkpoint every
``save_every`` steps; finally restore the best weights.  Methods differ only in which
parameters are trainable (``hone.model.methods``), never in this code.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hone.config import TrainConfig
from hone.data.batches import epoch_order
from hone.errors import TrainError
from hone.model import native
from hone.model.cpu_kernels import cpu_kernels
from hone.model.fused_bert import packs_padded_batches
from hone.model.methods import ProgressiveUnfreezer, trainable_state
from hone.train import checkpoint as ckpt
from hone.train.heap import heap_reuse
from hone.train.objectives import to_device
from hone.train.optim import (all_param_groups, clip_grad_norm, make_optimizer, make_scheduler, param_groups,
                              use_sparse_embeddings)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    wall_time_s: float
    samples_per_s: float
    tokens_per_s: float
    best_step: int | None = None
    best_metric: dict[str, Any] | None = None
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    micro: int = 0  # next micro-batch of the epoch
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    bucket: bool | None = None  # length-bucketed batches (train.bucket, auto resolved at the run's start)
    running: list[float] = field(default_factory=list)  # train losses since the last log line
    history: list[dict[str, Any]] = field(default_factory=list)
    grad_scaler: dict[str, Any] | None = None  # fp16 on a GPU: the loss scale and its growth count


def inference_device() -> str:
    """Where evaluation and serving run a model: the CUDA GPU when there is one (as training does), else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _moved(model, device: torch.device | str):
    """``model`` on ``device``; a quantized model (integer weights) stays where its loader put it, the GPU already
    (bitsandbytes models cannot be moved)."""
    device = torch.device(device)
    params = list(model.parameters())
    if params and all(p.is_floating_point() for p in params) and (
            params[0].device.type != device.type or device.index not in (None, params[0].device.index)):
        model = model.to(device)
    return model


def to_inference_device(model):
    """``model`` moved to :func:`inference_device`, where evaluation and serving load it (see :func:`_moved`)."""
    return _moved(model, inference_device())


def native_bf16(device: str | None = None) -> bool:
    """Does ``device`` (default: the CUDA GPU if there is one, else the CPU) run bf16 matmuls natively: a CUDA GPU of
    compute capability 8 or later, or a CPU with AVX512-BF16 / AMX?  Not an older GPU, where torch only emulates
    bf16 (``torch.cuda.is_bf16_supported()`` counts emulation unless told otherwise)."""
    if (device or inference_device()) == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, log: Callable[[str], None]) -> str:
    """accelerate's mixed_precision for ``train.precision`` on this machine.

    Without native bf16 (e.g. an AVX2-only CPU) torch emulates bf16 matmuls: measured here
    20x slower than fp32, so ``auto`` picks fp32 there and an explicit ``bf16`` is warned about.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "no"
    if precision == "bf16" and not native_bf16():
        log("warning: train.precision=bf16 but this machine has no native bf16 (no AVX512-BF16/AMX or CUDA bf16); "
            "bf16 is emulated and much slower than fp32 here; use train.precision=auto")
    if precision == "fp16" and not torch.cuda.is_available():
        log("warning: train.precision=fp16 needs a CUDA GPU (a loss scaler); on this CPU it trains in fp32; use "
            "train.precision=auto (bf16 where the CPU has it)")
    return {"fp32": "no"}.get(precision, precision)


def inference_dtype(precision: str, device: str | None = None) -> torch.dtype:
    """The dtype ``gen.precision`` loads evaluation models in: bf16 for ``auto`` where :func:`native_bf16` on the
    device they run on (default :func:`inference_device`), else fp32.

    A bf16 model, not fp32 weights under autocast: on a 2-core AVX512-BF16 CPU, greedy decoding of 32 prompts with
    SmolLM2-135M took 3.05 s in bf16 against 5.5 s under autocast and 7.7 s in fp32 (``bench/RESULTS.md``)."""
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place_frozen_models(objective, device: torch.device) -> None:
    """The objective's frozen models (DPO's reference copy, a logit-distillation teacher) on the training device:
    they are built on the CPU beside the policy, and accelerate moves only the model it prepares."""
    for name in ("reference", "teacher"):
        m = getattr(objective, name, None)
        if isinstance(m, torch.nn.Module):
            _moved(m, device)  # (in place: Module.to moves a module's own parameters)


def train(model, train_data, val_data, cfg: TrainConfig, *, objective, run_dir: Path, seed: int,
          method: Any = None, log: Callable[[str], None] = lambda _: None, stop_after: int | None = None,
          progress: bool = True, on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train ``model`` in place; checkpoints and metrics.jsonl go under ``run_dir``.

    ``train_data`` / ``val_data`` have ``len()``, ``lengths`` and ``batch(indices) -> dict`` (with
    ``num_tokens``, the real tokens of the batch); ``objective`` has ``loss(model, batch)``,
    ``evaluate(model, data, batch_size=, autocast=)`` and a default ``metric``
    (:mod:`hone.train.objectives`).

    A run directory that already holds checkpoints is resumed from the latest one.
    ``stop_after`` stops after that many optimizer steps as if interrupted (for tests).  ``on_step`` is called with
    the step number after each optimizer step (``hone model info`` times the steps with it).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _check_metric(cfg, objective)  # before training, not at the first evaluation
    _seed_all(seed)
    mixed = resolve_precision(cfg.precision, log)
    shared = AcceleratorState._shared_state  # accelerate keeps one state per process and refuses a second precision;
    if shared and shared.get("_mixed_precision") != mixed:  # hone trains one run at a time, each with its own
        AcceleratorState._reset_state()
    acc = Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())
    n_micro = math.ceil(len(train_data) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_micro / cfg.grad_accum)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = cfg.warmup_steps or int(cfg.warmup_ratio * total)
    # progressive unfreezing opens frozen parameters later, so they join the optimizer from the start;
    # otherwise frozen (and quantized, non-float) parameters stay out of it entirely
    progressive = getattr(method, "name", None) == "progressive"
    groups = all_param_groups if progressive else param_groups
    # sparse embedding gradients: on CPU (where the dense update is memory-bound), never under fp16's
    # gradient scaler or progressive unfreezing (which flips requires_grad mid-run)
    sparse_emb = (use_sparse_embeddings(model) if cfg.sparse_embeddings and acc.device.type == "cpu"
                  and mixed != "fp16" and not progressive else None)
    optimizer = make_optimizer(groups(model, cfg.weight_decay, cfg.lr, cfg.head_lr))
    scheduler = make_scheduler(optimizer, cfg.schedule, warmup, total)
    model, optimizer = acc.prepare(model, optimizer)
    place_frozen_models(objective, acc.device)
    unfreezer = (ProgressiveUnfreezer(acc.unwrap_model(model), method.every, method.unit)
                 if getattr(method, "name", None) == "progressive" else None)
    ckpt_root, best_path = run_dir / "checkpoints", run_dir / "best"  # best/step-N.safetensors
    metrics_path = run_dir / "metrics.jsonl"
    st = _State()
    last = ckpt.latest_checkpoint(ckpt_root)
    if last is not None:
        saved = ckpt.load_checkpoint(last, acc.unwrap_model(model), optimizer, scheduler)
        saved.setdefault("bucket", cfg.bucket if isinstance(cfg.bucket, bool) else True)  # (checkpoints before auto)
        st = _State(**saved)
        if st.grad_scaler and acc.scaler is not None:  # fp16: resume at the loss scale reached, not the initial one
            acc.scaler.load_state_dict(st.grad_scaler)
        log(f"resumed from {last} (step {st.step}/{total})")
    elif best_path.exists():
        shutil.rmtree(best_path)  # stale bests from an earlier, unrelated run
    if unfreezer:
        unfreezer.update(st.step, st.epoch)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in st.history))

    def record(entry: dict[str, Any]) -> None:
        st.history.append(entry)
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    model.train()
    t0, start_step = time.perf_counter(), st.step
    counters = {"seen": 0, "tokens": 0, "t0": t0}
    stop = False
    bar = _progress(progress, total, st.step)
    on_cpu = acc.device.type == "cpu"
    kernels = cpu_kernels(model) if cfg.cpu_kernels and on_cpu else contextlib.nullcontext()
    try:
        with kernels as switched, heap_reuse(cfg.heap_reuse and on_cpu):
            if switched:
                log("CPU kernels: " + ", ".join(f"{n} {k}" for k, n in switched.items() if n)
                    + f"; native kernels {native.status()}")
            if st.bucket is None:  # decided once per run (a resumed run replays its batches)
                st.bucket = cfg.bucket if isinstance(cfg.bucket, bool) else not packs_padded_batches(
                    acc.unwrap_model(model))
                if cfg.bucket == "auto":
                    log("length-bucketed batches" if st.bucket else
                        "batches not bucketed by length: the packed encoder leaves their padding out")
            lengths = train_data.lengths if st.bucket else None
            stop = _loop(model, train_data, val_data, cfg, st, _Ctx(
                acc=acc, optimizer=optimizer, scheduler=scheduler, unfreezer=unfreezer, objective=objective,
                lengths=lengths, total=total, steps_per_epoch=steps_per_epoch, seed=seed,
                ckpt_root=ckpt_root, best_path=best_path, record=record, log=log, bar=bar, stop_after=stop_after,
                start_step=start_step, counters=counters, on_step=on_step,
                hone_clip=on_cpu and mixed != "fp16", params=list(model.parameters())))
    finally:
        bar(None, 0, 0, 0)
        if sparse_emb is not None:
            sparse_emb.sparse = False  # the saved / returned model behaves like any transformers model
        _drop_autocast_forward(acc.unwrap_model(model))
    seen, tokens = counters["seen"], counters["tokens"]
    wall = time.perf_counter() - t0
    if st.best_step is not None and (stop_after is None or st.step >= total or stop):
        _restore(acc.unwrap_model(model), _best_file(best_path, st.best_step))
        log(f"restored the best weights (step {st.best_step})")
    best = None if st.best_value is None else {
        "name": _metric(cfg, objective), "value": st.best_value}
    return TrainResult(steps=st.step, epochs=round(st.step / steps_per_epoch, 3), wall_time_s=round(wall, 2),
                       samples_per_s=round(seen / max(wall, 1e-9), 2), tokens_per_s=round(tokens / max(wall, 1e-9), 1),
                       best_step=st.best_step, best_metric=best, stopped_early=stop, history=st.history)


def _drop_autocast_forward(model) -> None:
    """Under mixed precision accelerate's ``prepare`` replaces the model's ``forward`` (an instance attribute)
    with one that runs in autocast and returns fp32 outputs.  The trained model gets its own forward back,
    so that later calls (evaluation, a check against the saved artifact) run it in its own dtype, as a
    loaded artifact does; the training loop's evaluations enter autocast themselves."""
    original = model.__dict__.pop("_original_forward", None)
    if original is None:
        return
    if getattr(original, "__self__", None) is model and getattr(original, "__func__", None) is type(model).forward:
        model.__dict__.pop("forward", None)  # the class's forward again
    else:
        model.forward = original


@dataclass
class _Ctx:
    """What the step loop needs from the set-up in :func:`train` (built once per run)."""

    acc: Any
    optimizer: Any
    scheduler: Any
    unfreezer: ProgressiveUnfreezer | None
    objective: Any  # hone.train.objectives: loss(model, batch), evaluate(...), metric
    lengths: list[int] | None  # example lengths for bucketing
    total: int  # optimizer steps in the whole run
    steps_per_epoch: int
    seed: int
    ckpt_root: Path
    best_path: Path
    record: Callable[[dict[str, Any]], None]
    log: Callable[[str], None]
    bar: Callable[..., None]
    stop_after: int | None
    start_step: int
    counters: dict[str, Any]  # samples and tokens seen, start time
    on_step: Callable[[int], None] | None
    params: list  # the model's parameters, listed once: walking the module tree took 0.5 ms of each MiniLM step
    # clipped by hone's clip_grad_norm (on CPU without fp16's gradient scaler: it takes sparse gradients, a BLAS
    # norm, and leaves the scale to fused AdamW), else by accelerate's
    hone_clip: bool = False


def _loop(model, train_data, val_data, cfg: TrainConfig, st: _State, c: _Ctx) -> bool:
    """Optimizer steps until the schedule ends, early stopping fires or ``stop_after`` is reached."""
    acc, optimizer, scheduler, unfreezer, objective = c.acc, c.optimizer, c.scheduler, c.unfreezer, c.objective
    lengths, total, steps_per_epoch, seed = c.lengths, c.total, c.steps_per_epoch, c.seed
    ckpt_root, best_path, record, log, bar = c.ckpt_root, c.best_path, c.record, c.log, c.bar
    stop_after, start_step, counters = c.stop_after, c.start_step, c.counters
    es = cfg.early_stopping  # a checkpoint written at the stopping step: the run is over, not resumed
    stop = bool(es and val_data is not None and st.bad_evals >= es.patience)
    if stop:
        log(f"early stopping had ended this run at step {st.step}: not training on")
    while st.step < total and not stop:
        epoch, batches = st.epoch, epoch_order(len(train_data), cfg.batch_size, seed, st.epoch, lengths)
        # this epoch's batches only: the next epoch draws its own order, as a run resumed in it does (the loop went
        # on through the first epoch's order again, which a resumed run did not: it ended with other weights)
        while st.epoch == epoch and st.step < total:
            group = batches[st.micro:st.micro + cfg.grad_accum]
            loss_value = 0.0
            for idx in group:
                b = to_device(train_data.batch(idx), acc.device)
                with acc.autocast():
                    loss = objective.loss(model, b)
                if not torch.isfinite(loss):
                    raise TrainError(f"the loss became {loss.item()} at step {st.step + 1} (epoch {st.epoch + 1}, "
                                     f"lr {scheduler.get_last_lr()[0]:.2e}); lower train.lr, use "
                                     "train.precision=fp32, or check the data. The run did not succeed.")
                acc.backward(loss / len(group))
                loss_value += loss.item() / len(group)
                counters["seen"] += len(idx)
                counters["tokens"] += b["num_tokens"]
            if cfg.max_grad_norm:
                if c.hone_clip:
                    clip_grad_norm(c.params, cfg.max_grad_norm, getattr(optimizer, "optimizer", optimizer))
                else:
                    acc.clip_grad_norm_(c.params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            st.step += 1
            if c.on_step is not None:
                c.on_step(st.step)
            st.micro += len(group)
            if st.micro >= len(batches):
                st.epoch, st.micro = st.epoch + 1, 0
            if unfreezer and unfreezer.update(st.step, st.epoch):
                log(f"step {st.step}: unfroze layer group {unfreezer.opened}/{len(unfreezer.groups)}")
            st.running.append(loss_value)
            if st.step % cfg.log_every == 0 or st.step == total:
                record({"step": st.step, "epoch": round(st.step / steps_per_epoch, 3),
                        "train_loss": round(float(np.mean(st.running)), 5), "lr": scheduler.get_last_lr()[0]})
                st.running = []
            elapsed = time.perf_counter() - counters["t0"]
            bar(st.step, loss_value, scheduler.get_last_lr()[0], counters["seen"] / max(elapsed, 1e-9))
            epoch_done = st.micro == 0
            if val_data is not None and ((cfg.eval_every and st.step % cfg.eval_every == 0)
                                         or (not cfg.eval_every and epoch_done) or st.step == total):
                stop = _eval_step(model, val_data, cfg, st, objective, acc, best_path, record, log, unfreezer)
            if cfg.save_every and st.step % cfg.save_every == 0:
                st.grad_scaler = acc.scaler.state_dict() if acc.scaler is not None else None
                ckpt.save_checkpoint(ckpt_root, st.step, weights=trainable_state(acc.unwrap_model(model)),
                                     optimizer=optimizer, scheduler=scheduler, state=asdict(st),
                                     keep=cfg.keep_checkpoints)
            if stop or (stop_after is not None and st.step - start_step >= stop_after):
                break
        if stop_after is not None and st.step - start_step >= stop_after:
            break
    return stop


def _check_metric(cfg: TrainConfig, objective) -> None:
    """The early-stopping metric is one the objective measures (``objective.metrics``)."""
    metric, measured = _metric(cfg, objective), getattr(objective, "metrics", None)
    if measured is not None and metric not in measured:
        accepted = [m for m in measured if m in ("accuracy", "macro_f1", "loss")]  # (what the config takes)
        raise TrainError(f"train.early_stopping.metric={metric} is not measured by the {type(objective).__name__} "
                         f"objective; choose one of {accepted}")


def _metric(cfg: TrainConfig, objective) -> str:
    es = cfg.early_stopping
    return (es.metric if es and es.metric else None) or objective.metric


def _eval_step(model, val_data, cfg: TrainConfig, st: _State, objective, acc, best_path: Path,
               record, log, unfreezer: ProgressiveUnfreezer | None = None) -> bool:
    """Evaluate, track the best weights and decide on early stopping (True = stop)."""
    model.eval()
    try:
        res = objective.evaluate(model, val_data, batch_size=cfg.batch_size * 2, autocast=acc.autocast)
    finally:
        model.train()
    entry = {"step": st.step, "epoch_index": st.epoch}
    entry.update({f"eval_{k}": round(v, 5) for k, v in res.items() if isinstance(v, float)})
    record(entry)
    es = cfg.early_stopping
    metric = _metric(cfg, objective)
    value = res[metric]
    sign = -1 if metric == "loss" else 1
    min_delta = es.min_delta if es else 0.0
    if st.best_value is None or sign * (value - st.best_value) > min_delta:
        st.best_value, st.best_step, st.bad_evals = value, st.step, 0
        best_path.mkdir(exist_ok=True)
        ckpt.save_weights(_best_file(best_path, st.step), _best_state(acc.unwrap_model(model), unfreezer))
        _prune_bests(best_path, st.step, best_path.parent / "checkpoints")
    else:
        st.bad_evals += 1
    log(f"step {st.step}: eval {metric} {value:.4f} (best {st.best_value:.4f} at step {st.best_step})")
    if es and st.bad_evals >= es.patience:
        log(f"early stopping: no improvement in {es.patience} evaluations")
        return True
    return False


def _best_state(model, unfreezer: ProgressiveUnfreezer | None) -> dict[str, torch.Tensor]:
    """What restoring the best must put back: the trainable weights, and under progressive unfreezing also the
    layers still frozen then (opened later, they would keep their last values: the restored model mixed two
    steps, and evaluated as neither)."""
    state = trainable_state(model)
    if unfreezer is not None:
        later = {id(p) for group in unfreezer.groups for p in group}
        state.update({n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()
                      if id(p) in later and n not in state})
    return state


def _best_file(best_dir: Path, step: int) -> Path:
    return best_dir / f"step-{step:07d}.safetensors"


def _prune_bests(best_dir: Path, current: int, ckpt_root: Path) -> None:
    """Keep the current best and any best a checkpoint on disk still refers to (for exact resume)."""
    keep = {current}
    for state in ckpt_root.glob("step-*/" + ckpt.STATE):
        step = json.loads(state.read_text()).get("best_step")
        if step is not None:
            keep.add(step)
    for f in best_dir.glob("step-*.safetensors"):
        if int(f.stem.split("-")[1]) not in keep:
            f.unlink()


def _restore(model, path: Path) -> None:
    from safetensors.torch import load_file

    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in load_file(str(path)).items():
            params[k].copy_(v)


def _progress(enabled: bool, total: int, start: int):
    """A rich progress bar with loss / lr / throughput; returns an update function (None = close)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        return lambda *a: None
    prog = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeRemainingColumn(), transient=True)
    task = prog.add_task("train", total=total, completed=start, info="")
    prog.start()

    def update(step, loss, lr, sps):
        if step is None:
            prog.stop()
            return
        prog.update(task, completed=step, info=f"loss {loss:.4f}  lr {lr:.2e}  {sps:.0f} samples/s")
    return update
