"""AdamW with decoupled weight decay (none on biases and norms) and a warm-up schedule.

The optimizer is torch's fused AdamW (one pass over each tensor instead of a dozen elementwise
kernels: measured 37% more samples/s for MiniLM on a 2-core CPU), on a CPU with hone's native kernels the same
arithmetic in one parallel pass over every dense fp32 parameter (:meth:`AdamW._native_step`), plus lazy row
updates for an input embedding trained with sparse gradients (:func:`use_sparse_embeddings`): only the rows of
the tokens in the batch are read and written, instead of the whole vocabulary x width matrix
(half of MiniLM's parameters) on every step.
"""

from __future__ import annotations

import ctypes
import math

import torch
from torch import nn

from hone.model import native, trained_casts
from hone.model.methods import _is_head

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_f.weight", "layernorm.weight")


def param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr: float | None) -> list[dict]:
    """Four groups: (body | head) x (decay | no decay); frozen parameters are left out."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or name.endswith(NO_DECAY))
        groups.setdefault((_is_head(name), decay), []).append(p)
    out = []
    for (is_head, decay), params in sorted(groups.items()):
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                    "lr": (head_lr or lr) if is_head else lr})
    return out


def all_param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr: float | None) -> list[dict]:
    """Like :func:`param_groups` but with frozen parameters too (progressive unfreezing opens them later)."""
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad = True
    try:
        return param_groups(model, weight_decay, lr, head_lr)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad = saved[n]


class AdamW(torch.optim.AdamW):
    """torch's AdamW for dense gradients; lazy AdamW for sparse ones (embedding rows of the batch).

    A sparse gradient's rows get the same update as AdamW would give them (moments, bias
    correction with the parameter's own step count, decoupled weight decay); rows not in the
    batch keep their weights and moments, as in TensorFlow's LazyAdam.  The state keys are
    AdamW's, so checkpoints and resume work unchanged.
    """

    def scale_next_step(self, coef: torch.Tensor) -> bool:
        """Have the next :meth:`step` use the dense gradients multiplied by ``coef`` (gradient clipping)
        without a pass of its own over them: the fused kernel divides them by ``1 / coef`` as it reads
        them (its ``grad_scale``, the hook ``GradScaler`` uses).  False (nothing deferred) when this
        optimizer is not the fused one.  hone's native step leaves the gradients as they are; torch's fused kernel
        writes the scaled ones back into ``.grad`` as it reads them."""
        if not self.defaults.get("fused"):
            return False
        self._deferred_scale = (1.0 / coef.float()).reshape(())
        return True

    @torch.no_grad()
    def step(self, closure=None):
        scale = self.__dict__.pop("_deferred_scale", None)
        # under a GradScaler (its found_inf set for this step) torch's kernel steps: it reads the scale and skips
        # the step on an inf, which the native one does not
        lib = (native.library() if closure is None and self.defaults.get("fused") and "found_inf" not in self.__dict__
               else None)
        done = self._native_step(lib, scale) if lib is not None else []
        stepped = {id(p) for p in done}
        sparse, rest = [], False
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is not None and id(p) not in stepped:
                    if g.is_sparse:
                        sparse.append((group, p))
                    else:
                        rest = True
        # torch's step only for what the native one left (none of it on a CPU with the kernels built)
        loss = self._torch_step(closure, scale, done + [p for _, p in sparse]) if rest or closure is not None else None
        for group, p in sparse:
            self._lazy_update(group, p)
        return loss

    def _torch_step(self, closure, scale: torch.Tensor | None, hide: list[torch.Tensor]):
        """torch's fused AdamW for the parameters with a gradient, but ``hide``'s (stepped otherwise)."""
        hidden = [(p, p.grad) for p in hide]
        for p in hide:
            p.grad = None
        # a GradScaler (fp16 on CUDA) sets its own grad_scale (None once unscaled) and found_inf around this step and
        # deletes them after it: the clipping's factor joins its scale, and its attributes are left for it to delete
        had = "grad_scale" in self.__dict__
        outer = self.__dict__.get("grad_scale")
        if scale is not None:  # read by torch's fused AdamW for this step only
            self.grad_scale = scale if outer is None else outer * scale.to(outer.device, outer.dtype)
        try:
            loss = super().step(closure)
            # torch's fused kernel writes the weights it stepped without bumping their version counters, by which a
            # kept bf16 copy knows it is stale (hone.model.trained_casts)
            torch.autograd.graph.increment_version([p for g in self.param_groups for p in g["params"]
                                                    if p.grad is not None])
        finally:
            if scale is not None and had:
                self.grad_scale = outer
            elif scale is not None:
                del self.grad_scale
            for p, grad in hidden:
                p.grad = grad
        return loss

    def _native_step(self, lib, scale: torch.Tensor | None) -> list[torch.Tensor]:
        """The step for the dense fp32 CPU parameters by hone's native AdamW (``hone_adamw``: the arithmetic of
        torch's fused kernel, in one parallel pass over all of them instead of one per tensor, the gradients left
        unscaled; 1.02x per SmolLM2-135M full SFT step); returns the parameters it stepped.  The state is torch's
        (``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints and the torch path take over unchanged; a parameter
        whose state is laid out otherwise (another dtype, strides) is left to torch.  Weights a bf16 forward asked
        for (:mod:`hone.model.trained_casts`) get their bf16 copy written in the same pass.

        What was checked is kept (:class:`_NativePlan`) and reused while the parameters, their gradients' presence
        and layout, their state tensors and step counts are as it found them: checking and gathering 100 tensors
        anew took 1.4 ms of each 50 ms MiniLM step."""
        plan = self.__dict__.get("_native_plan")
        if plan is None or not plan.holds(self):
            plan = self.__dict__["_native_plan"] = _NativePlan(self)
        if not plan.params:
            return []
        inv = 0.0 if scale is None else float(scale)
        casts, claimed = trained_casts.claim(plan.params)
        for run in plan.runs:
            group, n = self.param_groups[run.group], len(run.params)
            (b1, b2), lr, step = group["betas"], float(group["lr"]), run.count + 1
            grads = (ctypes.c_void_p * n)(*(p.grad.data_ptr() for p in run.params))
            outs = (ctypes.c_void_p * n)(*(None if (c := casts.get(id(p))) is None else c.data_ptr()
                                           for p in run.params))
            if lib.hone_adamw(n, run.weights, grads, run.exp_avgs, run.exp_avg_sqs, outs, run.sizes, run.steps, lr,
                              b1, b2, group["weight_decay"], group["eps"], 1 - b1 ** step, math.sqrt(1 - b2 ** step),
                              inv):
                raise MemoryError("hone_adamw could not allocate its chunk table")
            run.count = step
        torch.autograd.graph.increment_version(plan.params + plan.steps)  # written in place behind torch's back
        plan.versions = [t._version for t in plan.steps]
        trained_casts.commit(claimed)
        return plan.params

    def _lazy_update(self, group: dict, p: torch.Tensor) -> None:
        grad = p.grad.coalesce()
        rows, g = grad.indices()[0], grad.values()
        st = self.state[p]
        if not st:
            _init_state(st, p)
        (b1, b2), lr, eps, wd = group["betas"], float(group["lr"]), group["eps"], group["weight_decay"]
        m_all, v_all = st["exp_avg"], st["exp_avg_sq"]
        st["step"] += 1
        lib = native.library() if self.defaults.get("fused") else None
        if (lib is not None and p.dim() == 2 and len(rows) and all(
                x.is_cpu and x.dtype == torch.float32 and x.is_contiguous() for x in (p, g, m_all, v_all))
                and g.shape[1:] == p.shape[1:] and m_all.shape == v_all.shape == p.shape):
            # the rows updated where they are (hone_adamw_rows, hone_adamw's arithmetic): on MiniLM 0.49 ms of each
            # step went to the gathers, the fused kernel and the scatters below
            t = float(st["step"])
            rows = rows.contiguous()
            lib.hone_adamw_rows(len(rows), rows.data_ptr(), p.shape[1], p.data_ptr(), g.data_ptr(), m_all.data_ptr(),
                                v_all.data_ptr(), lr, b1, b2, wd, eps, 1 - b1 ** t, math.sqrt(1 - b2 ** t))
            torch.autograd.graph.increment_version(p)  # written in place behind torch's back
            return
        w, m, v = p.index_select(0, rows), m_all.index_select(0, rows), v_all.index_select(0, rows)
        if (self.defaults.get("fused") and g.dtype == p.dtype and g.is_contiguous()
                and st["step"].device == p.device):
            # the batch's rows through the same fused kernel as the dense weights: one pass instead of a dozen
            # elementwise ops (on MiniLM's 512-token batches 1.1 ms of each step went to this update before)
            torch._fused_adamw_([w], [g], [m], [v], [], [st["step"]], amsgrad=False, lr=lr, beta1=b1, beta2=b2,
                                weight_decay=wd, eps=eps, maximize=False)
        else:
            t = float(st["step"])
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            if wd:
                w.mul_(1 - lr * wd)
            denom = (v / (1 - b2 ** t)).sqrt_().add_(eps)
            w.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
        p.index_copy_(0, rows, w)
        m_all.index_copy_(0, rows, m)
        v_all.index_copy_(0, rows, v)


def _init_state(st: dict, p: torch.Tensor) -> None:
    """A parameter's AdamW state as torch's fused AdamW initialises it."""
    st["step"] = torch.tensor(0.0, dtype=torch.float32)
    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class _Run:
    """Parameters of one group at one step count, with the pointer arrays ``hone_adamw`` takes."""

    def __init__(self, group: int, count: float, params: list[torch.Tensor], state: list[dict]):
        n = len(params)

        def ptrs(ts):
            return (ctypes.c_void_p * n)(*(t.data_ptr() for t in ts))

        self.group, self.count, self.params = group, count, params
        self.weights, self.sizes = ptrs(params), (ctypes.c_int64 * n)(*(p.numel() for p in params))
        self.exp_avgs, self.exp_avg_sqs = ptrs([s["exp_avg"] for s in state]), ptrs([s["exp_avg_sq"] for s in state])
        self.steps = ptrs([s["step"] for s in state])


class _NativePlan:
    """The dense fp32 CPU parameters :meth:`AdamW._native_step` takes, checked once: their state (initialised as
    torch's fused AdamW initialises it), grouped by param group and step count, with their pointers.  It holds while
    the param groups, the state dict, each parameter's gradient presence and layout, its state tensors and storage,
    and its step tensor's version counter (bumped by any other in-place change: torch's step, a loaded value) are as
    recorded."""

    def __init__(self, opt: AdamW):
        self.groups = [(g["params"], len(g["params"])) for g in opt.param_groups]
        self.state = opt.state
        runs: dict[tuple[int, float], list[torch.Tensor]] = {}
        self.checked = []  # (parameter, its data pointer, its state dict and the three state tensors in it)
        for gi, group in enumerate(opt.param_groups):
            if (group["amsgrad"] or group["maximize"] or group.get("capturable") or group.get("differentiable")
                    or torch.is_tensor(group["lr"])):
                continue
            for p in group["params"]:
                if not self._takes(p):
                    continue
                st = opt.state[p]
                if not st:
                    _init_state(st, p)
                elif not (torch.is_tensor(st.get("step")) and st["step"].dtype == torch.float32
                          and st["step"].numel() == 1 and st["step"].is_cpu and st["step"].is_contiguous()
                          and all(torch.is_tensor(st.get(k)) and st[k].is_cpu and st[k].dtype == torch.float32
                                  and st[k].shape == p.shape and st[k].stride() == p.stride()
                                  for k in ("exp_avg", "exp_avg_sq"))):
                    continue
                self.checked.append((p, p.data_ptr(), st, st["exp_avg"], st["exp_avg_sq"], st["step"]))
                runs.setdefault((gi, float(st["step"])), []).append(p)
        self.runs = [_Run(gi, count, ps, [opt.state[p] for p in ps]) for (gi, count), ps in runs.items()]
        self.params = [p for run in self.runs for p in run.params]
        self.ids = {id(p) for p in self.params}
        self.steps = [c[5] for c in self.checked]  # the step counts, incremented by the kernel
        self.versions = [t._version for t in self.steps]

    @staticmethod
    def _takes(p: torch.Tensor) -> bool:
        g = p.grad
        return (g is not None and g.layout == torch.strided and p.is_cpu and p.dtype == torch.float32
                and g.dtype == torch.float32 and p.is_contiguous() and g.is_contiguous() and g.shape == p.shape)

    def holds(self, opt: AdamW) -> bool:
        if opt.state is not self.state or len(opt.param_groups) != len(self.groups) or any(
                g["params"] is not ps or len(ps) != n for g, (ps, n) in zip(opt.param_groups, self.groups)):
            return False
        ids, strided = self.ids, torch.strided
        for g in opt.param_groups:
            for p in g["params"]:
                if id(p) in ids:  # a gradient's dtype and shape are the parameter's (autograd and .grad's setter check)
                    grad = p.grad
                    if grad is None or grad.layout != strided or not grad.is_contiguous():
                        return False
                elif p.grad is not None and self._takes(p):
                    return False
        state = opt.state
        for (p, ptr, st, m, v, t), version in zip(self.checked, self.versions):
            if (state.get(p) is not st or st.get("exp_avg") is not m or st.get("exp_avg_sq") is not v
                    or st.get("step") is not t or t._version != version or p.data_ptr() != ptr):
                return False
        return True


def make_optimizer(groups: list[dict]) -> torch.optim.Optimizer:
    """Fused AdamW where the parameters' device has the kernel (CPU, CUDA), else the foreach one."""
    try:
        return AdamW(groups, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, ValueError):
        return AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=True)


def use_sparse_embeddings(model: nn.Module) -> nn.Embedding | None:
    """Switch a trainable input embedding to sparse gradients; return it (None = left dense).

    The dense gradient of an embedding is a vocabulary x width matrix, nearly all zeros, that
    backward fills and AdamW then reads and writes in full on every step; a sparse one holds
    only the rows of the batch's tokens.  A tied embedding (an LM head sharing the matrix) gets
    a dense gradient from the head anyway: the input side's rows are added into it (in place
    where the head runs fused, see ``objectives._TiedLookup``; else by autograd, as a copy and
    a row-wise add), which saves zero-filling a second vocabulary x width gradient on every
    step and holding it in memory; AdamW sees an ordinary dense gradient.
    """
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if get else None
    if not isinstance(emb, nn.Embedding) or not emb.weight.requires_grad or emb.max_norm is not None:
        return None
    emb.sparse = True
    return emb


def _squared_norm(g: torch.Tensor) -> torch.Tensor:
    """The sum of squares of a dense gradient, in fp64.

    On a CPU, fp32 / fp64 tensors go through BLAS ``dot``: torch's ``vector_norm`` reduces on one
    thread there and accumulates naively (on 2 cores: 77 ms against 38-44 ms for SmolLM2-135M's
    135M gradients, and a relative error of 3e-3 on its 28M-element embedding where ``dot`` is at
    5e-5, both against an fp64 sum).  Anything else takes ``vector_norm`` in fp32."""
    if g.is_cpu and g.dtype in (torch.float32, torch.float64) and g.is_contiguous():
        v = g.view(-1)
        return torch.dot(v, v).double()
    return torch.linalg.vector_norm(g, dtype=torch.float32).double().square()


def clip_grad_norm(params, max_norm: float, optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
    """``clip_grad_norm_`` that also takes sparse gradients (torch's raises on them); returns the total norm.

    On a CPU the gradients are scaled only when the norm is above ``max_norm`` (torch always
    multiplies, by 1.0 when within bounds, to avoid a device sync that a CPU does not have).
    Given hone's fused :class:`AdamW` that is about to step, the dense gradients' scaling is left to
    it (:meth:`AdamW.scale_next_step`): one pass less over them, and they stay unscaled."""
    dense, sparse = [], []
    for p in params:
        if p.grad is not None:
            if p.grad.is_sparse:
                p.grad = p.grad.coalesce()  # duplicate rows summed, so the norm is of the real gradient
                sparse.append(p.grad)
            else:
                dense.append(p.grad)
    lib = native.library()
    if lib is not None and dense and all(g.is_cpu and g.dtype == torch.float32 and g.is_contiguous() for g in dense):
        # one parallel pass over all of them (MiniLM's 104 gradients: 0.9 ms against 2.2 ms of BLAS dots)
        squares = [torch.tensor(native.sum_squares(lib, dense), dtype=torch.float64)]
    else:
        squares = [_squared_norm(g) for g in dense]
    squares += [_squared_norm(g.values()) for g in sparse]
    if not squares:
        return torch.tensor(0.0)
    total = torch.stack(squares).sum().sqrt().float()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if all(g.is_cpu for g in dense + sparse) and coef.item() == 1.0:
        return total
    if dense and not (isinstance(optimizer, AdamW) and optimizer.scale_next_step(coef)):
        torch._foreach_mul_(dense, coef)
    for g in sparse:
        g.values().mul_(coef)
    return total


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the base lr at optimizer step ``s`` (0-based): linear warm-up, then decay."""
    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1 - progress)
    return f


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(schedule, warmup, total))
