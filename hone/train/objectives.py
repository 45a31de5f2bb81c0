"""Training objectives: what the loop minimises and how it evaluates, one class per objective.

The loop only calls ``objective.loss(model, batch)`` and ``objective.evaluate(model, data, ...)``;
``metric`` names the evaluation value early stopping watches by default.  The model never
computes its own loss (``labels`` are not passed to causal LMs), so every objective sees the
same logits and masks.  Registry: :data:`OBJECTIVES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from hone.data.chat import IGNORE
from hone.model.fast import kept_positions_only
from hone.model.frozen_casts import amp_weights
from hone.train.heap import heap_reuse

MODEL_KEYS = ("input_ids", "attention_mask", "position_ids")


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _is_seq2seq(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


# Causal LMs whose logits are exactly ``lm_head(decoder(...).last_hidden_state)`` (no soft-capping or
# scaling in between), so the head can run on the trained positions only.
PLAIN_HEAD_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def _plain_causal(model):
    """The transformers model behind ``model`` when the lm_head can be applied selectively, else None."""
    if hasattr(model, "peft_config"):
        if model.peft_config[model.active_adapter].is_prompt_learning:
            return None  # virtual tokens are injected by PeftModel.forward
        model = model.get_base_model()
    ok = getattr(model.config, "model_type", None) in PLAIN_HEAD_TYPES and hasattr(model, "get_decoder")
    return model if ok else None


def _right_padded(inputs: dict[str, Any]) -> bool:
    """A 2-D mask of ones then zeros in every row, with default positions.  Under causal attention a real
    token only sees earlier positions, all real, so the mask changes nothing that is trained; without it
    the model takes its unmasked causal attention path (measured 3% faster per LoRA step on CPU)."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or "position_ids" in inputs:
        return False
    return bool(torch.equal(mask.cumprod(1), mask)) and bool(mask[:, 0].all())


def _tied_input(plain) -> torch.nn.Embedding | None:
    """The input embedding of ``plain`` when it is a plain ``nn.Embedding`` being trained whose matrix the
    plain linear output head shares (SmolLM2, Qwen2-0.5B, ...), else None: see :class:`_TiedLookup`."""
    emb, head = plain.get_input_embeddings(), plain.get_output_embeddings()
    ok = (torch.is_grad_enabled() and type(emb) is torch.nn.Embedding and type(head) is torch.nn.Linear
          and head.weight is emb.weight and emb.weight.requires_grad and emb.max_norm is None
          and not emb.scale_grad_by_freq)
    return emb if ok else None


class _TiedLookup(torch.autograd.Function):
    """``embedding(ids, weight)`` for an input embedding whose matrix the output head shares.

    When the head runs fused (:class:`_LinearNLL` given the same ``slot``), its backward leaves
    its dense weight gradient in ``slot`` instead of returning it.  This lookup's backward, which
    autograd runs last, adds the batch's rows into that buffer in place and returns it as the one
    gradient of the shared matrix.  Otherwise autograd sums the two uses itself: with a sparse
    input side (``train.sparse_embeddings``) as ``dense + sparse``, out of place: a copy of the
    vocabulary x width gradient on every step, 113 MB at the step's peak memory for SmolLM2-135M
    (full SFT at batch 16 x 26: peak RSS 3.02 vs 3.15 GB, and 20-40 ms of a 2.9 s step); with a
    dense one it zero-fills a second such gradient first.  With the slot empty (the head did not
    run fused) the gradient is the one ``nn.Embedding`` gives.
    """

    @staticmethod
    def forward(ctx, ids, weight, emb, slot):
        ctx.save_for_backward(ids)
        ctx.rows, ctx.slot = weight.shape[0], slot
        ctx.padding_idx, ctx.sparse = emb.padding_idx, emb.sparse
        return F.embedding(ids, weight, emb.padding_idx)

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        pad = -1 if ctx.padding_idx is None else ctx.padding_idx
        if not ctx.slot:
            return None, torch.ops.aten.embedding_backward(grad, ids, ctx.rows, pad, False, ctx.sparse), None, None
        rows = torch.ops.aten.embedding_backward(grad, ids, ctx.rows, pad, False, True)  # the batch's rows, sparse
        dense = ctx.slot.pop()
        return None, dense.add_(rows.to(dense.dtype)), None, None


def _trained_hidden(model, inputs: dict[str, Any], targets: torch.Tensor, slot: list | None = None):
    """For a plain causal LM: the last hidden states of the trained positions ``(N, H)`` and the output
    head, run without a key/value cache (and without the attention mask of a right-padded batch), and
    whether a tied input embedding was looked up through :class:`_TiedLookup` with ``slot`` (a list
    for the fused head's weight gradient; None = never); else None."""
    plain = _plain_causal(model)
    if plain is None:
        return None
    if _right_padded(inputs):  # causal attention never reaches padding on the right
        inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
    trained = targets != IGNORE
    keep = None  # the positions whose last hidden state is read; the last layer computes only those
    if "attention_mask" not in inputs and "position_ids" not in inputs:
        keep = torch.cat([trained, trained.new_zeros(trained.shape[0], 1)], 1)
    emb = _tied_input(plain) if slot is not None and "input_ids" in inputs else None
    if emb is not None:
        inputs = dict(inputs)
        inputs["inputs_embeds"] = _TiedLookup.apply(inputs.pop("input_ids"), emb.weight, emb, slot)
    decoder = plain.get_decoder()
    with kept_positions_only(decoder, keep):
        hidden = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1]  # (B, T-1, H)
    return hidden[trained], plain.get_output_embeddings(), emb is not None


def trained_logits(model, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of the trained positions only: ``(N, V)``, their targets ``(N,)`` and batch rows ``(N,)``.

    Causal LMs predict ``labels[:, i + 1]`` from position i.  Where the architecture allows, the
    output head runs only on those N positions: a (B, T, V) logits tensor is never built, which
    saves most of the activation memory of a 50k-token vocabulary and the head's FLOPs on prompts;
    and a right-padded batch runs without its attention mask (:func:`_right_padded`).
    """
    inputs = {k: batch[k] for k in MODEL_KEYS if k in batch}
    labels = batch["labels"]
    if _is_seq2seq(model):
        logits, targets = model(**inputs, labels=labels).logits, labels
    else:
        targets = labels[:, 1:]
        sel = _trained_hidden(model, inputs, targets)
        if sel is not None:
            mask = targets != IGNORE
            return sel[1](sel[0]), targets[mask], mask.nonzero()[:, 0]
        logits = model(**inputs).logits
        logits = logits[:, -labels.shape[1]:][:, :-1]  # prompt tuning prepends virtual-token positions
    mask = targets != IGNORE
    return logits[mask], targets[mask], mask.nonzero()[:, 0]


# logits materialised at a time by the fused head + cross entropy: 128 MB of fp32 (682 rows of a 49k vocabulary)
_CE_CHUNK_ELEMENTS = 1 << 25


class _LinearNLL(torch.autograd.Function):
    """Summed cross entropy of ``hidden @ weight.T + bias`` against ``targets``, over row chunks.

    The (N, V) logits of all N rows never exist at once.  Each chunk's log-softmax becomes
    ``softmax - onehot`` in place, the gradient of the loss with respect to its logits.  When the
    rows fit in one chunk (SFT's completion tokens, usually), that buffer is kept and backward runs
    the two gradient products, scaled through it.  Otherwise forward computes each chunk's share of
    the gradients of the hidden states, the weight and the bias right away (a training forward is
    always followed by its backward), and backward only scales them.  Same loss and gradients as
    ``F.cross_entropy(F.linear(...), reduction="sum")`` up to float rounding, without the separate
    log-softmax output and zero-filled (N, V) gradient of the unfused path: for continued
    pre-training on all 8,192 positions of a 16 x 512 batch with a 49k vocabulary, each of those is
    a 1.6 GB buffer, against two 128 MB chunks here.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, slot=None, amp=None):
        """``amp``: autocast's dtype when the loss runs under autocast: the three products run in it, as
        autocast runs the unfused head, and the gradients come back in the inputs' dtypes."""
        with torch.autocast(hidden.device.type, enabled=False):
            return _LinearNLL._forward(ctx, hidden, weight, bias, targets, slot, amp)

    @staticmethod
    def _forward(ctx, hidden, weight, bias, targets, slot, amp):
        grads = ctx.needs_input_grad  # all False under no_grad / inference_mode
        need = any(grads[:3])
        dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        if amp is not None:  # cast once for all chunks, as autocast would for the unfused head
            hidden, weight = hidden.to(amp), weight.to(amp)
            bias = None if bias is None else bias.to(amp)
        step = max(1, _CE_CHUNK_ELEMENTS // weight.shape[0])
        single = hidden.shape[0] <= step
        grad_h = torch.empty_like(hidden) if grads[0] and not single else None
        grad_w = grad_b = None
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, hidden.shape[0], step):
            h, t = hidden[s:s + step], targets[s:s + step]
            z = torch.log_softmax(F.linear(h, weight, bias).float(), -1)  # (C, V)
            total -= z.gather(1, t[:, None]).sum()
            if not need:
                continue
            z.exp_()  # softmax
            z[torch.arange(z.shape[0], device=z.device), t] -= 1  # d loss / d logits
            z = z.to(hidden.dtype)
            if single:
                ctx.save_for_backward(z, hidden, weight)
                break
            if grad_h is not None:
                torch.mm(z, weight, out=grad_h[s:s + step])
            if grads[1]:  # the first chunk writes the weight's gradient (in its own dtype), later ones add to it
                if grad_w is None:
                    grad_w = torch.mm(z.t(), h).to(dtypes[1])
                elif grad_w.dtype == z.dtype:
                    grad_w.addmm_(z.t(), h)
                else:
                    grad_w.add_(torch.mm(z.t(), h))
            if grads[2]:
                zb = z.sum(0).to(dtypes[2])
                grad_b = zb if grad_b is None else grad_b.add_(zb)
        if grad_h is not None:
            grad_h = grad_h.to(dtypes[0])
        ctx.single, ctx.grads, ctx.slot, ctx.dtypes = single, (grad_h, grad_w, grad_b), slot, dtypes
        return total

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad
        if ctx.single:  # scale the (N, V) buffer, then the products give scaled gradients
            z, hidden, weight = ctx.saved_tensors
            z = z.mul_(grad.to(z.dtype))
            h_dtype, w_dtype, b_dtype = ctx.dtypes
            grad_h = torch.mm(z, weight).to(h_dtype) if needs[0] else None
            grad_w = torch.mm(z.t(), hidden).to(w_dtype) if needs[1] else None
            grad_b = z.sum(0).to(b_dtype) if needs[2] else None
        else:
            grad_h, grad_w, grad_b = (None if g is None else g.mul_(grad) for g in ctx.grads)
            ctx.grads = None
        if ctx.slot is not None and grad_w is not None:  # a tied input embedding adds its rows (_TiedLookup)
            ctx.slot.append(grad_w)
            grad_w = None
        return grad_h, grad_w, grad_b, None, None, None


def trained_nll(model, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the trained positions and their count.

    For a plain causal LM with a plain linear head the head and the cross entropy run fused
    (:class:`_LinearNLL`, in autocast's dtype under autocast); otherwise through :func:`trained_logits`.
    """
    inputs = {k: batch[k] for k in MODEL_KEYS if k in batch}
    device = batch["input_ids"].device.type
    amp = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if not _is_seq2seq(model) and amp in (None, torch.bfloat16):  # (fp16 autocast: the unfused head, as before)
        targets = batch["labels"][:, 1:]
        slot: list = []
        sel = _trained_hidden(model, inputs, targets, slot)
        if sel is not None:
            hidden, head, tied = sel
            targets = targets[targets != IGNORE]
            n = int(targets.numel())
            if type(head) is torch.nn.Linear and n and hidden.dtype == head.weight.dtype:
                # a frozen head (LoRA) under the CPU kernels: its weight cast once, not at every step
                weight, bias = amp_weights(head, amp)
                return _LinearNLL.apply(hidden, weight, bias, targets, slot if tied else None, amp), n
            return token_nll(head(hidden), targets)
    logits, targets, _ = trained_logits(model, batch)
    return token_nll(logits, targets)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the trained positions and their count. logits (N, V)."""
    n = int(targets.numel())
    if n == 0:
        return logits.sum() * 0.0, 0
    return F.cross_entropy(logits.float(), targets, reduction="sum"), n


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Summed log-probability of each row's trained tokens: (n_rows,)."""
    logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (N,)
    return torch.zeros(n_rows, device=logp.device, dtype=logp.dtype).index_add(0, rows, logp)


# ---------------------------------------------------------------- classification

def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, class_weights: torch.Tensor | None,
                        label_smoothing: float, multi_label: bool) -> torch.Tensor:
    """Cross entropy (optionally class-weighted and label-smoothed), or BCE for multi-label.

    logits: (B, C); labels: (B,) class ids, or (B, C) multi-hot floats.
    """
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=None)
    return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing)


class ClassificationObjective:
    metric = "macro_f1"
    metrics = ("loss", "accuracy", "macro_f1")  # what evaluate() measures

    def __init__(self, *, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 multi_label: bool = False) -> None:
        self.class_weights, self.label_smoothing, self.multi_label = class_weights, label_smoothing, multi_label

    def loss(self, model, batch: dict[str, Any]) -> torch.Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        w = self.class_weights.to(out.logits.device) if self.class_weights is not None else None
        return classification_loss(out.logits, batch["labels"], class_weights=w,
                                   label_smoothing=self.label_smoothing, multi_label=self.multi_label)

    def evaluate(self, model, data, *, batch_size: int, autocast: Callable) -> dict[str, Any]:
        """Loss, logits, accuracy and macro-F1 of ``model`` on ``data`` (multi-label: labels at or above 0.5, and
        accuracy the share of examples with every label right; the default metric was missing there, so a
        multi-label run stopped at its first evaluation)."""
        from sklearn.metrics import f1_score

        from hone.data.batches import eval_batches

        chunks: dict[int, torch.Tensor] = {}
        dev = next(model.parameters()).device
        with torch.inference_mode(), autocast():
            for idx in eval_batches(data, batch_size):
                b = to_device(data.batch(idx), dev)
                out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                for k, row in zip(idx, out.logits.float().cpu(), strict=True):
                    chunks[k] = row
        logits = torch.stack([chunks[i] for i in range(len(data))])
        loss = classification_loss(logits, data.labels, class_weights=None, label_smoothing=0.0,
                                   multi_label=self.multi_label).item()
        res: dict[str, Any] = {"loss": loss, "logits": logits}
        if self.multi_label:  # every label at or above 0.5; accuracy counts an example right when all its labels are
            pred, true = (torch.sigmoid(logits) >= 0.5).int().numpy(), (data.labels >= 0.5).int().numpy()
            res["accuracy"] = float((pred == true).all(-1).mean())
        else:
            pred, true = logits.argmax(-1).numpy(), data.labels.numpy()
            res["accuracy"] = float((pred == true).mean())
        res["macro_f1"] = float(f1_score(true, pred, average="macro", zero_division=0))  # (the default metric)
        return res


# ---------------------------------------------------------------- language modelling

def _eval_loop(data, batch_size: int, model, autocast, fn) -> None:
    dev = next(model.parameters()).device
    order = sorted(range(len(data)), key=lambda i: data.lengths[i])
    # freed activations stay in the heap: without, 350k-460k page faults and 10% of a perplexity pass over hone's
    # general text with SmolLM2-135M
    with torch.inference_mode(), autocast(), heap_reuse(True):
        for s in range(0, len(order), batch_size):
            fn(to_device(data.batch(order[s:s + batch_size]), dev))


class CausalLMObjective:
    """Token-level cross entropy on trained positions (SFT with prompt masking, DAPT, seq2seq)."""

    metric = "loss"
    metrics = ("loss", "perplexity")

    def loss(self, model, batch: dict[str, Any]) -> torch.Tensor:
        nll, n = trained_nll(model, batch)
        return nll / max(n, 1)

    def evaluate(self, model, data, *, batch_size: int, autocast: Callable) -> dict[str, Any]:
        tot = {"nll": 0.0, "n": 0}

        def step(b):
            nll, n = trained_nll(model, b)
            tot["nll"] += float(nll)
            tot["n"] += n
        _eval_loop(data, batch_size, model, autocast, step)
        loss = tot["nll"] / max(tot["n"], 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tot["n"]}


class DPOObjective:
    """Direct preference optimisation (Rafailov et al. 2023) against a frozen reference.

    ``reference=None`` means the policy is a PEFT model and the reference is the same model
    with its adapters disabled (no second copy in memory).
    """

    metric = "loss"
    metrics = ("loss", "reward_accuracy", "reward_margin")

    def __init__(self, *, beta: float, reference=None) -> None:
        self.beta, self.reference = beta, reference

    def _logps(self, model, batch) -> torch.Tensor:
        return sequence_logps(*trained_logits(model, batch), batch["input_ids"].shape[0])

    def _ref_logps(self, model, batch) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                return self._logps(self.reference, batch)
            with model.disable_adapter():
                return self._logps(model, batch)

    def terms(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pair loss (B,) and implicit reward margins (B,)."""
        pol, ref = self._logps(model, batch), self._ref_logps(model, batch)
        b = pol.shape[0] // 2
        margin = self.beta * ((pol[:b] - ref[:b]) - (pol[b:] - ref[b:]))
        return -F.logsigmoid(margin), margin.detach()

    def loss(self, model, batch: dict[str, Any]) -> torch.Tensor:
        return self.terms(model, batch)[0].mean()

    def evaluate(self, model, data, *, batch_size: int, autocast: Callable) -> dict[str, Any]:
        losses, margins = [], []

        def step(b):
            loss, margin = self.terms(model, b)
            losses.append(loss.float().cpu())
            margins.append(margin.float().cpu())
        _eval_loop(data, batch_size, model, autocast, step)
        loss_t, m = torch.cat(losses), torch.cat(margins)
        return {"loss": float(loss_t.mean()), "reward_accuracy": float((m > 0).float().mean()),
                "reward_margin": float(m.mean())}


class DistillObjective(CausalLMObjective):
    """Logit knowledge distillation: ``alpha`` * T² · KL(teacher_T || student_T) + (1 - alpha) * CE.

    The KL runs over the trained positions only and over the shared vocabulary (a teacher
    whose vocabulary is only padded larger is cut to the student's size).
    """

    def __init__(self, *, teacher, temperature: float, alpha: float) -> None:
        self.teacher, self.t, self.alpha = teacher, temperature, alpha

    def kd(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        s_logits, targets, _ = trained_logits(model, batch)  # (N, V): the same N positions for both
        with torch.no_grad():
            t_logits = trained_logits(self.teacher, batch)[0]
        v = min(s_logits.shape[-1], t_logits.shape[-1])
        s = torch.log_softmax(s_logits[:, :v].float() / self.t, -1)
        t = torch.log_softmax(t_logits[:, :v].float() / self.t, -1)
        kl = F.kl_div(s, t, log_target=True, reduction="batchmean") * self.t ** 2
        nll, n = token_nll(s_logits, targets)
        return kl, nll / max(n, 1)

    def loss(self, model, batch: dict[str, Any]) -> torch.Tensor:
        kl, ce = self.kd(model, batch)
        return self.alpha * kl + (1 - self.alpha) * ce


OBJECTIVES = {"classification": ClassificationObjective, "sft": CausalLMObjective, "dapt": CausalLMObjective,
              "dpo": DPOObjective, "distill": DistillObjective}
