"""Export a generative artifact as a merged transformers checkpoint, ONNX or GGUF, each verified.

``export(artifact, out, formats=...)`` builds ``out`` in a staging directory renamed into place:
``transformers`` writes a float32 safetensors checkpoint + tokenizer (chat template included) +
a ``manifest.json`` copy (``"format": "transformers"``, ``"merged_from"``), LoRA/IA3 adapters
merged by peft's ``merge_and_unload`` (into the *unquantized* base when training used a 4-bit
one; ``merge=False`` copies an adapter as it is); ``onnx`` writes ``onnx/model.onnx``, one graph
with past key values made by transformers' own ``OnnxExporter`` and run on ONNX Runtime (extra
``hone[export]``); ``gguf`` writes ``model.gguf`` (f32/f16, Llama + byte-level BPE only) the way
llama.cpp's ``convert_hf_to_gguf.py`` does, read back through transformers' GGUF loader.

**Round-trip check**: chat-template prompts are decoded greedily (16 tokens, stopping at the
manifest's EOS ids) by the original artifact and by each export re-loaded from disk with its own
tokenizer; prompt ids, generated ids and "stopped with EOS" flags must match.  Where outputs first
differ at step ``k`` and *both* models rank the two tokens within :data:`TIE_TOLERANCE` (a near-tie
that float rounding decides, common in tiny random models) the prompt passes as ``"ok (tie at
...)"`` with ``k`` tokens compared; else an ArtifactError shows both outputs.  One greedy loop (KV
cache, no ``generation_config``) decodes every format.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hone.artifacts import (ADAPTER_CONFIG, EXPORT_GGUF, EXPORT_ONNX_DIR, EXPORT_REPORT, MANIFEST,
                            atomic_write_json, staged_dir)
from hone.errors import ArtifactError, HoneError
from hone.model.load import _quiet_transformers, adapter_base, is_hub_id
from hone.model.methods import import_peft

FORMATS = ("transformers", "onnx", "gguf")
DEFAULT_PROMPTS: list[Any] = ["Hello! What can you help me with?", "My internet is slow, what should I do?"]
MAX_NEW_TOKENS = 16
# Largest logit gap (checked in both models) at which a differing greedy choice still counts as a tie.
TIE_TOLERANCE = {"f32": 1e-4, "f16": 5e-2}
_PROMPT_LEARNING = {"PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "MULTITASK_PROMPT_TUNING", "CPT"}
_ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime", "transformers.exporters")
_MERGED_TMP = ".merged"  # the merged checkpoint when only ONNX / GGUF were asked for (removed at the end)


@dataclass
class _Gen:
    """One greedy decode: prompt ids, generated ids, the logits at each step and the EOS flag."""
    prompt_ids: list[int]
    tokens: list[int]
    logits: list[Any]
    stopped: bool = False


def export(artifact: Path, out: Path, *, merge: bool = True, formats: Sequence[str] = ("transformers",),
           check: bool = True, prompts: list | None = None, gguf_dtype: str = "f32", overwrite: bool = False,
           log: Callable[[str], Any] = print) -> dict:
    """Export ``artifact`` into ``out``; return ``{format: {"path", "round_trip", "tokens_compared", "seconds"}}``.

    ``prompts``: strings (one user message each) or message lists.  Raises :class:`ArtifactError`
    when something cannot be exported or does not round-trip, leaving ``out`` untouched.
    """
    import torch

    artifact, out, formats = Path(artifact).resolve(), Path(out).resolve(), list(dict.fromkeys(formats))
    man = _read_json(artifact / MANIFEST)
    if out == artifact or out.is_relative_to(artifact) or artifact.is_relative_to(out):
        raise ArtifactError(f"export directory {out} overlaps the artifact {artifact} (replacing it would delete the "
                            "artifact, or the export would copy itself): choose a directory outside the artifact")
    if man.get("kind") != "generator" or man.get("format") not in ("peft", "transformers"):
        raise ArtifactError(f"{artifact}: only generator artifacts in peft or transformers format can be exported "
                            f"(this one: kind {man.get('kind')!r}, format {man.get('format')!r})")
    if not formats or set(formats) - set(FORMATS):
        raise ArtifactError(f"unknown export format(s) {formats}: choose from {', '.join(FORMATS)}")
    if gguf_dtype not in TIE_TOLERANCE:
        raise ArtifactError(f"gguf_dtype must be 'f32' or 'f16', not {gguf_dtype!r}")
    is_peft = man.get("format") == "peft"
    if is_peft and not merge and formats != ["transformers"]:
        raise ArtifactError("ONNX and GGUF exports need the adapter merged into the base: drop --no-merge")
    base_dir = _base_dir(man, artifact, log) if is_peft else None
    _preflight(formats, man, artifact, base_dir, is_peft and merge)
    with torch.no_grad(), _quiet_transformers(), staged_dir(out, overwrite=overwrite) as stage:
        model, tok = _load(artifact, man, base_dir)
        eos = [int(i) for i in (man.get("generation") or {}).get("eos_token_ids") or [tok.eos_token_id]
               if i is not None]
        rendered = _render_all(tok, prompts)
        ref = [_decode(_stepper(model), ids, eos) for ids in rendered] if check else []
        new_man = dict(man, exported_from=str(artifact))
        if is_peft and merge:
            log(f"merging the {man.get('method') or 'peft'} adapter into {base_dir}")
            try:
                model = model.merge_and_unload()
            except (AttributeError, ValueError, NotImplementedError) as e:
                raise ArtifactError(f"peft cannot merge this adapter ({e}); export it with --no-merge") from e
            if (artifact / "generation_config.json").is_file():  # the artifact's, not the base's
                from transformers import GenerationConfig

                model.generation_config = GenerationConfig.from_pretrained(artifact)
            model.generation_config.eos_token_id = eos if len(eos) != 1 else eos[0]
            new_man.update(format="transformers", merged_from={"artifact": str(artifact), "format": "peft",
                                                               "method": man.get("method")})
            if man.get("quantized"):
                new_man.update(quantized=None, dequantized_from=man["quantized"])
        src = stage if "transformers" in formats else stage / _MERGED_TMP
        if is_peft and not merge:
            shutil.copytree(artifact, stage, dirs_exist_ok=True)
        else:
            _write_transformers(model, tok, src)
        atomic_write_json(src / MANIFEST, new_man)
        del model
        report: dict[str, dict] = {}
        for fmt in formats:
            t1 = time.perf_counter()
            if fmt == "onnx":
                _write_onnx(src, stage / EXPORT_ONNX_DIR, tok, rendered[0])
            elif fmt == "gguf":
                _write_gguf(src, stage / EXPORT_GGUF, man, gguf_dtype, log)
            rel = {"transformers": "", "onnx": EXPORT_ONNX_DIR, "gguf": EXPORT_GGUF}[fmt]
            entry: dict[str, Any] = {"path": str(out / rel), "round_trip": "skipped", "tokens_compared": 0}
            if check:
                got = _exported_decodes(fmt, stage, new_man, base_dir, prompts, eos)
                tol = TIE_TOLERANCE[gguf_dtype if fmt == "gguf" else "f32"]
                entry["round_trip"], entry["tokens_compared"] = _compare(fmt, ref, got, tok, tol)
                if man.get("quantized") and merge:
                    entry["compared_with"] = (f"the adapter on the dequantized float32 base, not the {man['quantized']}"
                                              " model that hone serves (close to it, not bit-identical)")
                log(f"{fmt}: round trip {entry['round_trip']} ({entry['tokens_compared']} tokens compared)")
            report[fmt] = {**entry, "seconds": round(time.perf_counter() - t1, 1)}
        shutil.rmtree(stage / _MERGED_TMP, ignore_errors=True)
        atomic_write_json(stage / EXPORT_REPORT, {"artifact": str(artifact), "formats": report, "check": check,
                                                  "merged": is_peft and merge})
    log(f"exported {artifact} -> {out} ({', '.join(formats)})")
    return report


def _read_json(path: Path) -> dict:
    """A JSON file of the artifact, or an ArtifactError saying which one cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read {path} ({e}): is {path.parent} a hone artifact directory?") from e


def _base_dir(man: dict, artifact: Path, log: Callable[[str], Any]) -> Path:
    """The local, unquantized base checkpoint an adapter is merged into (or loaded on): the one ``hone.load`` uses
    (:func:`hone.model.load.adapter_base`), a hub base as a local snapshot at the revision trained on."""
    why = " (the unquantized base is needed to dequantize)" if man.get("quantized") else ""
    try:
        src = adapter_base(man)
        p = _hub_snapshot(src, man.get("revision")) if is_hub_id(src) else Path(src)
    except HoneError as e:
        raise ArtifactError(f"{artifact}: the base model is not available{why}: {e}; restore it at base_model_path "
                            f"{man.get('base_model_path')!r} or fix base_model_path in manifest.json") from None
    if man.get("quantized"):
        if _read_json(p / "config.json").get("quantization_config"):
            raise ArtifactError(f"{artifact}: the adapter was trained on a {man['quantized']} base and {p} is itself "
                                "quantized; the unquantized base is needed to merge")
        log(f"dequantizing: the adapter was trained on a {man['quantized']} quantized base; merging it into the "
            f"unquantized float32 base from {p} (close to, not bit-identical with, the 4-bit model)")
    return p


def _hub_snapshot(repo: str, revision: str | None) -> Path:
    """A local copy of a hub base model: the files ``from_pretrained`` reads, from the cache or downloaded."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken", "*.py"]))
    except Exception as e:  # offline without a cached copy, unknown repo or revision
        raise ArtifactError(f"{repo}" + (f" at revision {revision}" if revision else "")
                            + f" cannot be loaded from the hub or its cache ({' '.join(str(e).split())[:300]})") from None


def _preflight(formats: list[str], man: dict, artifact: Path, base_dir: Path | None, merge: bool) -> None:
    """Refuse impossible exports before any model is loaded."""
    if merge:
        peft_type = str(_read_json(artifact / ADAPTER_CONFIG).get("peft_type"))
        if peft_type.upper() in _PROMPT_LEARNING:
            raise ArtifactError(f"{artifact}: a {peft_type} adapter (method {man.get('method')!r}) cannot be merged "
                                "into the model weights (peft merges LoRA-style and IA3 adapters only); export it "
                                "with --no-merge to the transformers format, which keeps it as an adapter")
    if man.get("architecture") == "seq2seq" and set(formats) - {"transformers"}:
        raise ArtifactError("ONNX and GGUF export support causal (decoder-only) models only; this one is seq2seq")
    if "onnx" in formats and any(importlib.util.find_spec(p) is None for p in _ONNX_PACKAGES):
        raise ArtifactError("ONNX export needs onnx, onnxscript, onnxruntime and a transformers with "
                            "transformers.exporters: pip install 'hone[export]'")
    cfg = _read_json((base_dir or artifact) / "config.json")
    rope = (cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}).get("rope_type", "default")
    plain_llama = cfg.get("model_type") == "llama" and rope == "default" and not cfg.get("attention_bias")
    if "gguf" in formats and not (plain_llama and not cfg.get("mlp_bias")):
        raise ArtifactError(f"hone writes GGUF for plain Llama models only (this is {cfg.get('model_type')!r}, rope "
                            f"{rope!r}): export to transformers, then use llama.cpp's convert_hf_to_gguf.py")


def _load(d: Path, man: dict, base_dir: Path | None):
    """``(model, tokenizer)`` of an artifact directory (peft on its base, or a full checkpoint), float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    auto = AutoModelForSeq2SeqLM if man.get("architecture") == "seq2seq" else AutoModelForCausalLM
    try:
        tok = AutoTokenizer.from_pretrained(d)
        if man.get("format") == "peft":
            import_peft()
            from peft import PeftModel
            model = auto.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True)
            if len(tok) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tok))
            model = PeftModel.from_pretrained(model, d)
        else:
            model = auto.from_pretrained(d, dtype=torch.float32, use_safetensors=True)
    except Exception as e:
        raise ArtifactError(f"cannot load the model in {d}: {' '.join(str(e).split())[:400]}") from e
    return model.eval(), tok


def _render_all(tok, prompts: list | None) -> list[list[int]]:
    """Token ids of each prompt, rendered with the chat template (generation prompt added)."""
    out = []
    for p in prompts or DEFAULT_PROMPTS:
        msgs = [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
        text = (tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) if tok.chat_template
                else "\n".join(m["content"] for m in msgs))
        out.append(list(tok(text, add_special_tokens=not tok.chat_template)["input_ids"]))
    return out


def _stepper(call: Any, names: Any = None, past: Any = None) -> Callable[[list[int], list[int]], Any]:
    """``(prompt, new_ids) -> last logits`` with a KV cache, for a torch model or (with ``names``) an ONNX runner."""
    import torch
    encoder = start = None
    if names is None:  # transformers 5.25 renamed the forward's ``past_key_values`` to ``cache``
        params = inspect.signature(getattr(call, "get_base_model", lambda: call)().forward).parameters
        cache = "cache" if "cache" in params else "past_key_values"
        names = {"input_ids", cache, "use_cache"}
        if getattr(call.config, "is_encoder_decoder", False):  # seq2seq: encode once, decode
            names = {"encoder_outputs", "decoder_input_ids", cache, "use_cache"}
            encoder, start = call.get_encoder(), call.config.decoder_start_token_id
    cache = "cache" if "cache" in names else "past_key_values"
    state: dict[str, Any] = {"past": past, "pos": 0, "enc": None}

    def step(prompt: list[int], new: list[int]):
        if encoder is not None and state["enc"] is None:
            state["enc"], new = encoder(input_ids=torch.tensor([prompt])), [start]
        p0, p1, ids = state["pos"], state["pos"] + len(new), torch.tensor([new])
        kw = {"input_ids": ids, "decoder_input_ids": ids, "encoder_outputs": state["enc"], "use_cache": True,
              "position_ids": torch.arange(p0, p1)[None], "cache_position": torch.arange(p0, p1),
              "attention_mask": torch.ones(1, p1, dtype=torch.long), cache: state["past"]}
        o = call(**{k: v for k, v in kw.items() if k in names})
        state["past"], state["pos"] = o["cache"] if "cache" in o else o.past_key_values, p1
        return o.logits[0, -1].float()
    return step


def _decode(step, prompt: list[int], eos: list[int]) -> _Gen:
    """Greedy decoding of ``MAX_NEW_TOKENS`` tokens (fewer when an EOS id comes)."""
    g, new = _Gen(prompt, [], []), prompt
    while len(g.tokens) < MAX_NEW_TOKENS and not g.stopped:
        g.logits.append(step(prompt, new))
        new = [int(g.logits[-1].argmax())]
        g.tokens += new
        g.stopped = new[0] in eos
    return g


def _compare(fmt: str, ref: list[_Gen], got: list[_Gen], tok, tol: float) -> tuple[str, int]:
    """``(status, tokens compared)`` of two lists of decodes; raise ArtifactError at the first real mismatch."""
    n, ties = 0, []
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        if r.prompt_ids != g.prompt_ids:
            raise ArtifactError(f"{fmt} export does not round-trip: its tokenizer renders prompt {i + 1} as "
                                f"{g.prompt_ids}, the original as {r.prompt_ids}")
        k = next((j for j, (a, b) in enumerate(zip(r.tokens, g.tokens, strict=False)) if a != b), None)
        if k is None and (r.tokens, r.stopped) == (g.tokens, g.stopped):
            n += len(r.tokens)
            continue
        if k is not None:
            a, b = r.tokens[k], g.tokens[k]
            if float(r.logits[k][a] - r.logits[k][b]) <= tol and float(g.logits[k][b] - g.logits[k][a]) <= tol:
                ties.append(f"prompt {i + 1} position {k}")
                n += k
                continue
        k = min(len(r.tokens), len(g.tokens)) if k is None else k
        show = [f"{x.tokens} {tok.decode(x.tokens)!r} (stopped with EOS: {x.stopped})" for x in (r, g)]
        raise ArtifactError(f"{fmt} export does not round-trip: prompt {i + 1} {tok.decode(r.prompt_ids)!r} first "
                            f"differs at generated position {k}; original: {show[0]}; exported: {show[1]}")
    return ("ok" if not ties else f"ok (tie at {', '.join(ties)})"), n


def _exported_decodes(fmt: str, stage: Path, man: dict, base_dir: Path | None, prompts: list | None,
                      eos: list[int]) -> list[_Gen]:
    """Re-load the exported model from disk and decode the prompts, rendered with its own tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if fmt == "onnx":  # the graph wants a cache from the first step: zero-length keys and values
        from transformers import DynamicCache
        from transformers.exporters import ExportedModel
        d = stage / EXPORT_ONNX_DIR
        tok, em = AutoTokenizer.from_pretrained(d), ExportedModel.from_pretrained(d)
        cfg, run = em.config, em.runners["model"]
        shape = (1, cfg.num_key_value_heads or cfg.num_attention_heads, 0,
                 getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        kv0, names = [(torch.zeros(shape), torch.zeros(shape))] * cfg.num_hidden_layers, run.metadata.kwargs
        return [_decode(_stepper(run, names, DynamicCache(kv0)), ids, eos) for ids in _render_all(tok, prompts)]
    if fmt == "transformers":
        model, tok = _load(stage, man, base_dir)
    else:
        with tempfile.TemporaryDirectory(dir=stage) as tmp:  # a directory holding only the GGUF file
            os.symlink((stage / EXPORT_GGUF).resolve(), Path(tmp) / EXPORT_GGUF)  # (relative, it dangled)
            tok = AutoTokenizer.from_pretrained(tmp, gguf_file=EXPORT_GGUF)
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=EXPORT_GGUF, dtype=torch.float32).eval()
    return [_decode(_stepper(model), ids, eos) for ids in _render_all(tok, prompts)]


def _write_transformers(model, tok, dest: Path) -> None:
    """A plain float32 safetensors checkpoint plus tokenizer (chat template included)."""
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def _write_onnx(src: Path, dest: Path, tok, sample: list[int]) -> None:
    """One ONNX graph: the multi-token decode step (a prefill when its cache is empty)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.exporters import OnnxConfig, OnnxExporter
    from transformers.exporters.utils import decompose_for_generation
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, use_safetensors=True).eval()
    ids, quiet = torch.tensor([sample]), logging.root.manager.disable
    logging.disable(logging.WARNING)  # torch.export / torch.onnx log dozens of harmless warnings
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ... and print their progress
            stages = decompose_for_generation(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                              multi_token_decode=True)
            exported = OnnxExporter().export(*stages["decode"], OnnxConfig(dynamic=True))
    except Exception as e:
        raise ArtifactError(f"ONNX export failed: {' '.join(str(e).split())[:400]}") from e
    finally:
        logging.disable(quiet)
    exported.generation_config = model.generation_config
    exported.save_pretrained(dest)
    tok.save_pretrained(dest)


def _write_gguf(src: Path, dest: Path, man: dict, dtype: str, log: Callable[[str], Any]) -> None:
    """``model.gguf``: llama hyperparameters, tensors in llama.cpp naming, tokenizer metadata."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, use_safetensors=True)
    tok, cfg = AutoTokenizer.from_pretrained(src), model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    n_head, n_vocab = cfg.num_attention_heads, model.get_input_embeddings().num_embeddings
    n_kv, head_dim = cfg.num_key_value_heads or n_head, getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    w = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    hparams = [(w.add_name, str(man.get("base_model") or "hone")), (w.add_context_length, cfg.max_position_embeddings),
               (w.add_embedding_length, cfg.hidden_size), (w.add_block_count, cfg.num_hidden_layers),
               (w.add_feed_forward_length, cfg.intermediate_size), (w.add_head_count, n_head),
               (w.add_head_count_kv, n_kv), (w.add_rope_dimension_count, head_dim),
               (w.add_rope_freq_base, float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))),
               (w.add_layer_norm_rms_eps, cfg.rms_norm_eps), (w.add_vocab_size, n_vocab),
               (w.add_file_type, gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)]
    if head_dim != cfg.hidden_size // n_head:
        hparams += [(w.add_key_length, head_dim), (w.add_value_length, head_dim)]
    for add, value in hparams:
        add(value)
    _gguf_tokenizer(w, tok, n_vocab)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        stem, suffix = name.rsplit(".", 1)
        if (g := names.get_name(stem)) is None:
            raise ArtifactError(f"GGUF export: no llama.cpp name for tensor {name}; use convert_hf_to_gguf.py")
        a = t.detach().float().numpy()
        if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):  # llama.cpp's permute
            n = n_head if ".q_proj." in name else n_kv
            a = a.reshape(n, 2, a.shape[0] // n // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)
        w.add_tensor(f"{g}.{suffix}", np.ascontiguousarray(a.astype(np.float16) if dtype == "f16" and a.ndim > 1
                                                           else a))  # norms stay f32, as in llama.cpp
    for write in (w.write_header_to_file, w.write_kv_data_to_file, w.write_tensors_to_file, w.close):
        write()
    log(f"gguf: wrote {dest.name} ({dtype}, {dest.stat().st_size / 2**20:.1f} MiB)")


def _gguf_tokenizer(w, tok, n_vocab: int) -> None:
    """Byte-level BPE tokenizer metadata (``tokenizer.ggml.model = "gpt2"``) and the chat template."""
    import gguf
    js = json.loads(tok.backend_tokenizer.to_str())
    model, pre = js.get("model") or {}, js.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if model.get("type") != "BPE" or not any(p.get("type") == "ByteLevel" for p in pres):
        raise ArtifactError(f"GGUF export supports byte-level BPE tokenizers (GPT-2 / Llama-3 style); this one is "
                            f"{model.get('type')} with pre-tokenizer {pre.get('type')}: use llama.cpp's "
                            "convert_hf_to_gguf.py on the exported transformers checkpoint")
    added = {int(a["id"]): a for a in js.get("added_tokens", [])}
    vocab = {int(i): t for t, i in model["vocab"].items()} | {i: a["content"] for i, a in added.items()}
    if max(vocab) >= n_vocab:
        raise ArtifactError(f"the tokenizer has ids up to {max(vocab)} but the model only {n_vocab} embeddings")
    tokens = [vocab.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED if i not in vocab else gguf.TokenType.NORMAL if i not in added
             else gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED
             for i in range(n_vocab)]
    splits: dict[str, str] = {}
    with contextlib.suppress(ImportError):  # the split regexes transformers' GGUF reader knows, by llama.cpp name
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as splits
    regex = next(((p.get("pattern") or {}).get("Regex") for p in pres if p.get("type") == "Split"), None)
    pre_name = "gpt-2" if regex is None else next((k for k, v in splits.items() if v == regex), "default")
    probe = list(tok("a")["input_ids"])
    meta = [(w.add_tokenizer_model, "gpt2"), (w.add_tokenizer_pre, pre_name), (w.add_token_list, tokens),
            (w.add_token_types, types), (w.add_token_merges, [m if isinstance(m, str) else " ".join(m)
                                                               for m in model.get("merges", [])]),
            (w.add_bos_token_id, tok.bos_token_id), (w.add_eos_token_id, tok.eos_token_id),
            (w.add_pad_token_id, tok.pad_token_id), (w.add_unk_token_id, tok.unk_token_id),
            (w.add_add_bos_token, tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id]),
            (w.add_add_eos_token, tok.eos_token_id is not None and probe[-1:] == [tok.eos_token_id]),
            (w.add_chat_template, tok.chat_template if isinstance(tok.chat_template, str) else None)]
    for add, value in meta:
        if value is not None:
            add(value)
