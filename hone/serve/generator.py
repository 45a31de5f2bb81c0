"""Generation from a base model or a hone artifact: batched (left padding, KV cache) or streamed.

Prompts are rendered with the same chat template the model was trained with
(:func:`hone.data.chat.encode_prompt`), so training and inference text never drift apart.
A plain string is one user turn.  Decoding stops at any end-of-turn id; a generation that
ends that way has ``stopped=True`` (the evaluation's stop rate), one that runs into
``max_new_tokens`` has ``stopped=False``.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hone import artifacts
from hone.data.chat import encode_prompt, end_of_turn_ids
from hone.errors import ArtifactError, RequestError
from hone.model.methods import import_peft
from hone.train.heap import heap_reuse

Prompt = str | list[dict[str, Any]]


@dataclass
class Generation:
    text: str
    stopped: bool  # ended with an end-of-turn token before max_new_tokens
    tokens: int  # generated tokens (without the end-of-turn token)


def _messages(p: Prompt) -> list[dict[str, Any]]:
    """A prompt as messages: a string is one user turn.  Content given as OpenAI's list of parts is joined from its
    text parts; anything else (no text, images, tool calls) is a :class:`RequestError`, not a template crash."""
    if isinstance(p, str):
        return [{"role": "user", "content": p}]
    msgs = list(p)
    if not msgs:
        raise RequestError("a conversation needs at least one message")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}]: must be an object with a role and a content")
        content = m.get("content")
        if isinstance(content, list):
            if not all(isinstance(x, dict) and x.get("type") == "text" and isinstance(x.get("text"), str)
                       for x in content):
                raise RequestError(f"messages[{i}].content: only text parts ({{\"type\": \"text\", \"text\": ...}}) "
                                   "are supported")
            m = {**m, "content": "\n".join(x["text"] for x in content)}
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content: must be text (tool calls and other content are not "
                               f"supported), got {type(content).__name__}")
        out.append(m)
    return out


def _check_decoding(max_new: Any, temperature: Any, top_p: Any) -> None:
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
        raise RequestError(f"max_new_tokens must be a whole number of at least 1, got {max_new!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise RequestError(f"temperature must be 0 (greedy) or more, got {temperature!r}")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise RequestError(f"top_p must be in (0, 1], got {top_p!r}")


def seq2seq_source(messages: list[dict[str, Any]]) -> str:
    """Encoder input for seq2seq models (no chat template): one user turn as is, else role-prefixed lines."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


class Generator:
    """A generative model + tokenizer + how to stop; ``hone.load(artifact)`` returns one."""

    def __init__(self, model, tokenizer, *, eos_ids: Sequence[int] | None = None, max_new_tokens: int = 128,
                 repetition_penalty: float = 1.0, manifest: dict[str, Any] | None = None) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.eos_ids = list(eos_ids or end_of_turn_ids(tokenizer))
        self.max_new_tokens = max_new_tokens
        self.repetition_penalty = repetition_penalty  # > 1 discourages repeating tokens (CTRL-style)
        self.manifest = manifest or {}
        self.seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        # peft's prompt / prefix tuning hand their virtual tokens to generate() as past_key_values, which
        # transformers 5.25 ignores (it reads ``cache``): the tuned model generated the base model's text, or garbage
        # once the cache was used.  Those adapters decode step by step through the forward they trained with.
        config = getattr(model, "active_peft_config", None)
        self.stepwise = bool(getattr(config, "is_prompt_learning", False)) and not self.seq2seq

    @classmethod
    def load(cls, path: str | Path, *, dtype: Any = None) -> Generator:
        """A hone generative artifact (adapter or full model), on the GPU when there is one
        (:func:`hone.train.loop.to_inference_device`)."""
        from hone.train.loop import to_inference_device

        path = Path(path)
        man_path = path / artifacts.MANIFEST
        if not man_path.is_file():
            raise ArtifactError(f"{path}: not a hone artifact (no {artifacts.MANIFEST})")
        manifest = json.loads(man_path.read_text())
        if manifest.get("kind") != "generator":
            raise ArtifactError(f"{path}: a {manifest.get('kind')} artifact, not a generator")
        model, tok = _load_artifact_model(path, manifest, dtype)
        model = to_inference_device(model)
        gen = manifest.get("generation", {})
        return cls(model, tok, eos_ids=gen.get("eos_token_ids"), max_new_tokens=gen.get("max_new_tokens", 128),
                   repetition_penalty=gen.get("repetition_penalty", 1.0),
                   manifest=manifest)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        msgs = _messages(prompt)
        if self.seq2seq:
            return self.tokenizer(seq2seq_source(msgs))["input_ids"]
        return encode_prompt(self.tokenizer, msgs)

    def _decode(self, new: list[int], max_new: int) -> Generation:
        stop_at = next((i for i, t in enumerate(new) if t in self.eos_ids), None)
        body = new if stop_at is None else new[:stop_at]
        text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
        return Generation(text, stop_at is not None and stop_at < max_new, len(body))

    def _kwargs(self, max_new: int, temperature: float, top_p: float) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": max_new, "eos_token_id": self.eos_ids,
                              "repetition_penalty": self.repetition_penalty,
                              "pad_token_id": self.tokenizer.pad_token_id, "do_sample": temperature > 0}
        if temperature > 0:
            kw.update(temperature=temperature, top_p=top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def generate(self, prompts: Prompt | Sequence[Prompt], *, max_new_tokens: int | None = None,
                 batch_size: int = 16, temperature: float = 0.0, top_p: float = 1.0,
                 max_prompt_tokens: int | None = None) -> list[Generation]:
        """Generate for every prompt, batched by length with left padding; order is preserved."""
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
        items = [prompts] if single else list(prompts)
        max_new = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        _check_decoding(max_new, temperature, top_p)
        ids = [self.prompt_ids(p) for p in items]
        if max_prompt_tokens:
            ids = [x[-max_prompt_tokens:] for x in ids]  # keep the end: the latest turns matter most
        if self.stepwise:
            with torch.inference_mode(), _decoding(self.model):
                return [self._decode(list(_stepwise_tokens(self, x, max_new, temperature, top_p)), max_new)
                        for x in ids]
        out: list[Generation | None] = [None] * len(items)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        dev = next(self.model.parameters()).device
        with torch.inference_mode(), _decoding(self.model):
            for s in range(0, len(order), batch_size):
                chunk = order[s:s + batch_size]
                inp, mask = _left_pad([ids[i] for i in chunk], self.tokenizer.pad_token_id)
                res = self.model.generate(input_ids=inp.to(dev), attention_mask=mask.to(dev),
                                          **self._kwargs(max_new, temperature, top_p))
                start = 0 if self.seq2seq else inp.shape[1]
                for row, i in zip(res.tolist(), chunk, strict=True):
                    new = row[start:]
                    if self.seq2seq and new and new[0] == self.model.config.decoder_start_token_id:
                        new = new[1:]
                    out[i] = self._decode(new, max_new)
        return out  # type: ignore[return-value]

    def stream(self, prompt: Prompt, *, max_new_tokens: int | None = None, temperature: float = 0.0,
               top_p: float = 1.0) -> Iterator[str]:
        """Yield text pieces as they are generated (transformers' TextIteratorStreamer).  An error in the generating
        thread ends the stream and is raised here (it left the reader waiting for ever)."""
        from transformers import TextIteratorStreamer

        max_new = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        _check_decoding(max_new, temperature, top_p)
        if self.stepwise:
            yield from self._stream_stepwise(self.prompt_ids(prompt), max_new, temperature, top_p)
            return
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=not self.seq2seq, skip_special_tokens=True)
        inp = torch.tensor([self.prompt_ids(prompt)], device=next(self.model.parameters()).device)
        kw = self._kwargs(max_new, temperature, top_p)
        failed: list[BaseException] = []

        def run() -> None:  # inference mode is per thread: set where generate runs
            try:
                with torch.inference_mode(), _decoding(self.model):
                    self.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), streamer=streamer, **kw)
            except BaseException as e:  # noqa: BLE001 - handed to the reader below
                failed.append(e)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if failed:
            raise failed[0]

    def _stream_stepwise(self, ids: list[int], max_new: int, temperature: float, top_p: float) -> Iterator[str]:
        with torch.inference_mode(), _decoding(self.model):
            yield from _stream_pieces(self, _stepwise_tokens(self, ids, max_new, temperature, top_p))


def _stepwise_tokens(gen: Generator, ids: list[int], max_new: int, temperature: float, top_p: float) -> Iterator[int]:
    """New token ids one at a time, each from a whole forward over the sequence so far (no key / value cache):
    what the model trained on, whatever its adapter does to the inputs.  Sampling as generate() samples."""
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                              TopPLogitsWarper)

    procs = LogitsProcessorList()
    if gen.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(gen.repetition_penalty))
    if temperature > 0:
        procs.append(TemperatureLogitsWarper(temperature))
        if top_p < 1:
            procs.append(TopPLogitsWarper(top_p))
    seq = torch.tensor([ids], device=next(gen.model.parameters()).device)
    for _ in range(max_new):
        logits = gen.model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1].float()
        scores = procs(seq, logits)
        nxt = torch.multinomial(scores.softmax(-1), 1) if temperature > 0 else scores.argmax(-1, keepdim=True)
        yield int(nxt)
        if int(nxt) in gen.eos_ids:
            return
        seq = torch.cat([seq, nxt.view(1, 1).to(seq.dtype)], 1)


def _stream_pieces(gen: Generator, tokens: Iterator[int]) -> Iterator[str]:
    """Text pieces of a token stream: the decoded text's growth at each token (end-of-turn tokens are left out)."""
    new: list[int] = []
    shown = ""
    for t in tokens:
        if t in gen.eos_ids:
            return
        new.append(t)
        text = gen.tokenizer.decode(new, skip_special_tokens=True)
        if len(text) > len(shown) and not text.endswith("\ufffd"):  # (a partial multi-byte character waits)
            yield text[len(shown):]
            shown = text


def _contiguous_input(module, args):
    return (args[0].contiguous(), *args[1:]) if args and torch.is_tensor(args[0]) else None


@contextlib.contextmanager
def _decoding(model) -> Iterator[None]:
    """What decoding runs inside.  Freed memory stays in the heap (:func:`hone.train.heap.heap_reuse`): the key /
    value cache grows by a ``torch.cat`` per layer and token, and each new buffer was a fresh ``mmap`` (1.3M page
    faults for the quickstart's 30 test replies, 30k with it).  And the output head gets a contiguous input:
    transformers gives it the last position of the prompt as a strided (batch, 1, hidden) view, which ``torch.matmul``
    cannot fold into one product, so in bf16 it expanded the head's weight to (batch, hidden, vocabulary) and copied
    it (16 x 576 x 49,152 for SmolLM2) once per batch of prompts.  The outputs are the same; the quickstart's 30
    replies in bf16 took 9.5 s against 10.8-11.6 s, 32 short prompts 2.56 s against 2.78 s (in-process A/Bs)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    hook = head.register_forward_pre_hook(_contiguous_input) if isinstance(head, torch.nn.Module) else None
    try:
        with heap_reuse(True):
            yield
    finally:
        if hook is not None:
            hook.remove()


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, width - len(r):] = torch.tensor(r)
        mask[k, width - len(r):] = 1
    return ids, mask


def _load_artifact_model(path: Path, manifest: dict[str, Any], dtype: Any):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForSeq2SeqLM if manifest.get("architecture") == "seq2seq" else AutoModelForCausalLM
    tok = AutoTokenizer.from_pretrained(path)
    kw = {"dtype": dtype or torch.float32, "use_safetensors": True}
    try:
        if manifest.get("format") == "peft":
            import_peft()
            from peft import PeftModel

            from hone.model.load import adapter_base

            base_path = adapter_base(manifest)
            if manifest.get("quantized"):  # serve on the same 4-bit base the adapter was trained on
                from hone.model.quant import load_quantized_causal_lm

                backend, bits = manifest["quantized"].rsplit("-", 1)
                base = load_quantized_causal_lm(base_path, bits=int(bits.removesuffix("bit")), backend=backend,
                                                gradient_checkpointing=False)
            else:
                base = auto.from_pretrained(base_path, revision=manifest.get("revision"), **kw)
            model = PeftModel.from_pretrained(base, path)
            if dtype is not None and not manifest.get("quantized"):
                model = model.to(dtype)  # peft loads adapters in fp32 onto any base: one dtype for every layer
        else:
            model = auto.from_pretrained(path, **kw)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot load the model: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok
