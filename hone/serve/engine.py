"""Load an artifact and use it: batched classification with top-k (generation comes later).

An artifact is either a transformers checkpoint or a PEFT adapter directory; its
``manifest.json`` says which, plus the labels and an optional out-of-scope threshold.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hone import artifacts
from hone.errors import ArtifactError, RequestError
from hone.model.cpu_kernels import cpu_kernels
from hone.model.fast import first_token_only
from hone.model.methods import import_peft


# below this many texts the plain model: setting up the CPU kernels' block takes about 3 ms (MiniLM, 2 cores: 1 text
# 5.6 ms plain against 8.8 with the kernels, 4 texts 11.3 against 13.5, 16 texts 39.4 against 27.9, 64 texts 170
# against 95)
KERNELS_MIN_TEXTS = 8


class Classifier:
    """A fine-tuned intent classifier: ``Classifier.load(path).predict(["text", ...])``."""

    def __init__(self, model, tokenizer, manifest: dict[str, Any]):
        self.model, self.tokenizer, self.manifest = model.eval(), tokenizer, manifest
        self.labels: list[str] = manifest["labels"]
        self.multi_label = bool(manifest.get("multi_label"))
        self.max_length = int(manifest.get("max_length", 128))
        oos = manifest.get("oos") or {}
        self.threshold: float | None = oos.get("threshold")
        self.abstain_label: str = oos.get("label") or "out_of_scope"
        # scoring patches the model's forwards for its duration (first_token_only, the CPU kernels); two threads at
        # once each restored the other's patch, leaving the model computing the first position only
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        from transformers import AutoConfig, AutoTokenizer

        from hone.train.classify import classifier_class

        path = Path(path)
        man_path = path / artifacts.MANIFEST
        if not man_path.is_file():
            raise ArtifactError(f"{path}: not a hone artifact (no {artifacts.MANIFEST}); "
                                "pass the run's artifact/ directory")
        manifest = json.loads(man_path.read_text())
        if manifest.get("task") != "classification":
            raise ArtifactError(f"{path}: a {manifest.get('task')} artifact cannot classify")
        tok = AutoTokenizer.from_pretrained(str(path))
        config = AutoConfig.from_pretrained(str(path))  # picks the class (mean-pooling head or transformers')
        if (path / artifacts.ADAPTER_CONFIG).is_file():
            import_peft()
            from peft import PeftModel

            from hone.model.load import _quiet_transformers, adapter_base

            base_path = adapter_base(manifest)
            try:
                with _quiet_transformers():  # its load report calls the head "MISSING": the adapter brings it
                    base = classifier_class(config).from_pretrained(base_path, config=config, use_safetensors=True,
                                                                    revision=manifest.get("revision"))
            except OSError as e:
                raise ArtifactError(f"{path}: cannot load the base model {base_path}: {e}") from None
            model = PeftModel.from_pretrained(base, str(path))
        else:
            model = classifier_class(config).from_pretrained(str(path), config=config, use_safetensors=True)
        from hone.train.loop import to_inference_device

        return cls(to_inference_device(model), tok, manifest)

    def scores(self, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """(N, C) probabilities (softmax, or sigmoid for multi-label), in input order.

        On a CPU the model runs with hone's CPU kernels (:func:`hone.model.cpu_kernels.cpu_kernels`: a BERT-family
        encoder's layers as fused nodes, its padded batches packed) for :data:`KERNELS_MIN_TEXTS` texts or more: the
        same probabilities to float rounding, 1.36x the texts per second of the plain model on 1,000 BANKING77 test
        texts (``bench/RESULTS.md``, session 23)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.empty((len(texts), len(self.labels)))
        if not texts:
            return out
        with self._lock:
            return self._scores(texts, out, batch_size)

    def _scores(self, texts: list[str], out: torch.Tensor, batch_size: int) -> torch.Tensor:
        # tokenized once, batched by token count: by characters BANKING77's test texts were 25% padding, by tokens 10%
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        kernels = len(texts) >= KERNELS_MIN_TEXTS and all(p.device.type == "cpu" for p in self.model.parameters())
        device = next(self.model.parameters()).device
        with torch.inference_mode(), (cpu_kernels(self.model) if kernels else contextlib.nullcontext()), \
                first_token_only(self.model):
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = self.tokenizer.pad({k: [v[i] for i in idx] for k, v in encoded.items()}, return_tensors="pt")
                logits = self.model(**enc.to(device)).logits.float()
                out[idx] = (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).cpu()
        return out

    def predict(self, texts: Sequence[str], *, top_k: int = 3, batch_size: int = 64) -> list[dict[str, Any]]:
        """One dict per text: label, score and the top-k labels with scores.

        With an out-of-scope threshold in the manifest, a text whose best score is below it is
        labelled ``abstain_label`` (route it to a human); ``abstained`` says so.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise RequestError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)  # one text, not its characters
        probs = self.scores(texts, batch_size=batch_size)
        k = min(top_k, len(self.labels))
        results = []
        for text, p in zip(texts, probs, strict=True):
            vals, idx = p.topk(k)
            top = [{"label": self.labels[i], "score": round(float(v), 5)} for v, i in zip(vals, idx, strict=True)]
            res: dict[str, Any] = {"text": text, "label": top[0]["label"], "score": top[0]["score"], "top_k": top}
            if self.multi_label:
                res["labels"] = [self.labels[i] for i in range(len(self.labels)) if p[i] >= 0.5]
            if self.threshold is not None and float(vals[0]) < self.threshold:  # unrounded, as evaluation compares
                res["label"], res["abstained"] = self.abstain_label, True
            results.append(res)
        return results


def load(path: str | Path):
    """Load any hone artifact for use (``hone.load``): a Classifier or a Generator."""
    man = Path(path) / artifacts.MANIFEST
    task = json.loads(man.read_text()).get("task") if man.is_file() else None
    if task in (None, "classification"):
        return Classifier.load(path)
    if task == "generation":
        from hone.serve.generator import Generator

        return Generator.load(path)
    raise ArtifactError(f"{path}: artifacts of task {task!r} are not supported")
