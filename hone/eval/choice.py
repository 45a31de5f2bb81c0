"""Multiple-choice scoring of causal LMs by the log-likelihood of each option.

For an item ``{"question": str, "options": [str, ...], "answer": int}`` the prompt is
``template(item)`` (default ``question + "\\nAnswer:"``) and each option is scored by the
log-probability the model gives its tokens after the prompt, summed (``normalize="sum"``)
or averaged per token (``"mean"``, the default, which does not favour short options). The
prediction is the arg-max option (the first on ties).

Prompt/option token boundary: every option of an item is conditioned on the *same* prompt
ids, ``tokenizer(prompt)`` (with the tokenizer's special tokens, e.g. BOS). The option is
joined with a single space (unless the prompt already ends, or the option starts, with
whitespace). Its ids are the tail of ``tokenizer(prompt + " " + option)`` when that
tokenisation starts with the prompt ids, which is the usual case (byte-level BPE keeps the
space with the next word; SentencePiece keeps "▁word"). If a merge across the boundary
changes the prompt's last tokens, the option is tokenised alone (``" " + option``, no
special tokens) and its ids are concatenated to the prompt ids, so the prompt stays fixed
across options. Sequences are never truncated.

Batches hold ``batch_size`` (prompt + option) sequences, sorted by length, right-padded
with an attention mask (pad id: the tokenizer's pad token, else EOS, else 0); with right
padding the real tokens keep positions 0..L-1, so batched and single-sequence scores agree
to float precision. Runs under ``torch.inference_mode`` with dropout off; the model's
train/eval state is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from hone.model.embed import eval_mode

Template = Callable[[dict[str, Any]], str]
Normalize = Literal["mean", "sum"]


def default_template(item: dict[str, Any]) -> str:
    """``question + "\\nAnswer:"``."""
    return f"{item['question']}\nAnswer:"


def option_token_ids(tokenizer: Any, prompt: str, option: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, option_ids)`` with the boundary rule described in the module docstring."""
    prompt_ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    sep = "" if prompt[-1:].isspace() or option[:1].isspace() else " "
    full = list(tokenizer(prompt + sep + option, add_special_tokens=True)["input_ids"])
    if full[:len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return prompt_ids, full[len(prompt_ids):]
    return prompt_ids, list(tokenizer(sep + option, add_special_tokens=False)["input_ids"])


def _pad_id(tokenizer: Any) -> int:
    for tid in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(tid, int):
            return tid
    return 0


def _encode(tokenizer: Any, items: Sequence[dict[str, Any]], template: Template) -> list[tuple[list[int], int]]:
    """One ``(ids, n_prompt)`` per (item, option), items in order, options in order."""
    seqs: list[tuple[list[int], int]] = []
    for i, item in enumerate(items):
        options = item.get("options")
        if not isinstance(options, (list, tuple)) or not options:
            raise ValueError(f"items[{i}]: 'options' must be a non-empty list")
        prompt = template(item)
        for j, opt in enumerate(options):
            prompt_ids, option_ids = option_token_ids(tokenizer, prompt, str(opt))
            if not prompt_ids or not option_ids:
                raise ValueError(f"items[{i}]: prompt or option {j} tokenises to nothing")
            seqs.append((prompt_ids + option_ids, len(prompt_ids)))
    return seqs


def _score_batch(model: Any, seqs: Sequence[tuple[list[int], int]], pad_id: int) -> list[float]:
    """Summed log-probability of the option tokens of each right-padded sequence."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
    rows, cols = [], []
    for b, (ids, n_prompt) in enumerate(seqs):
        input_ids[b, :len(ids)] = torch.tensor(ids)
        mask[b, :len(ids)] = 1
        rows += [b] * (len(ids) - n_prompt)
        cols += range(n_prompt - 1, len(ids) - 1)  # position p predicts token p + 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    logits = model(input_ids=input_ids, attention_mask=mask).logits  # (B, T, V)
    r, c = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
    logp = torch.log_softmax(logits[r, c].float(), dim=-1)  # (M, V): only the option positions
    token_lp = logp.gather(1, input_ids[r, c + 1].unsqueeze(1)).squeeze(1)  # (M,)
    return [float(x.sum()) for x in torch.split(token_lp, [len(ids) - n for ids, n in seqs])]


def score_choices(
    model: Any,
    tokenizer: Any,
    items: Sequence[dict[str, Any]],
    *,
    batch_size: int = 8,
    normalize: Normalize = "mean",
    template: Template | None = None,
) -> list[dict[str, Any]]:
    """Score every option of every item; one ``{"pred", "scores", "correct", "n_tokens"}`` per item.

    ``scores[j]`` is option j's log-likelihood (mean per token or sum, see ``normalize``),
    ``n_tokens[j]`` its token count; ``correct`` is ``pred == item["answer"]``, or None when the
    item has no ``answer``.
    """
    import torch

    if normalize not in ("mean", "sum"):
        raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    seqs = _encode(tokenizer, items, template or default_template)
    order = sorted(range(len(seqs)), key=lambda k: -len(seqs[k][0]))  # similar lengths share a batch
    totals = [0.0] * len(seqs)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for k, s in zip(chunk, _score_batch(model, [seqs[k] for k in chunk], _pad_id(tokenizer)), strict=True):
                totals[k] = s
    return _collect(items, seqs, totals, normalize)


def _collect(items: Sequence[dict[str, Any]], seqs: Sequence[tuple[list[int], int]], totals: Sequence[float],
             normalize: Normalize) -> list[dict[str, Any]]:
    """Regroup flat per-option totals into per-item results."""
    out, k = [], 0
    for item in items:
        n_opt = len(item["options"])
        counts = [len(ids) - n for ids, n in seqs[k:k + n_opt]]
        scores = [t / c if normalize == "mean" else t for t, c in zip(totals[k:k + n_opt], counts, strict=True)]
        k += n_opt
        pred = max(range(n_opt), key=lambda j: (scores[j], -j))
        answer = item.get("answer")
        out.append({"pred": pred, "scores": scores, "n_tokens": counts,
                    "correct": None if answer is None else pred == int(answer)})
    return out


def choice_accuracy(results: Sequence[dict[str, Any]]) -> float:
    """Share (0-1) of results whose ``correct`` is True, over those with a known answer."""
    known = [r["correct"] for r in results if r.get("correct") is not None]
    if not known:
        raise ValueError("no results with a known answer")
    return sum(bool(c) for c in known) / len(known)
