"""hone.eval.choice: option log-likelihoods on the tiny Llama, checked against a manual computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny import CORPUS, build_tiny_llama

from hone.eval.choice import choice_accuracy, option_token_ids, score_choices

ITEMS = [
    {"question": "my phone bill is", "options": ["too high this month", "broken", "slow again and the router"],
     "answer": 0},
    {"question": "please cancel my", "options": ["contract today", "plan to unlimited data"], "answer": 0},
    {"question": "the signal is weak and", "options": ["calls drop all the time", "roaming charges", "the",
                                                       "keeps restarting"], "answer": 0},
    {"question": "i want to upgrade", "options": ["handset", "my plan to unlimited data"], "answer": 1},
]


def PLAIN(item: dict[str, Any]) -> str:
    """Prompt = the sentence prefix itself."""
    return item["question"]


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Any, Any]:
    return _load(build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama"))


def _manual_sum(model: Any, tokenizer: Any, prompt: str, option: str) -> float:
    """Log-probability of the option's tokens from one unpadded forward pass over prompt + option."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + " " + option)["input_ids"]
    assert full[:len(prompt_ids)] == prompt_ids  # word-level tokenizer: no merge across the boundary
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)  # (T, V)
    return sum(float(logp[p - 1, full[p]]) for p in range(len(prompt_ids), len(full)))


@pytest.mark.parametrize("template", [None, PLAIN])
def test_batched_equals_unbatched(tiny, template) -> None:
    model, tok = tiny
    batched = score_choices(model, tok, ITEMS, batch_size=8, template=template)
    for item, got in zip(ITEMS, batched):
        alone = score_choices(model, tok, [item], batch_size=1, template=template)[0]
        assert got["pred"] == alone["pred"]
        assert got["scores"] == pytest.approx(alone["scores"], abs=1e-4)
        assert got["n_tokens"] == alone["n_tokens"] and len(got["scores"]) == len(item["options"])


def test_scores_equal_manual_full_sequence_logprob(tiny) -> None:
    model, tok = tiny
    summed = score_choices(model, tok, ITEMS, batch_size=3, normalize="sum")
    mean = score_choices(model, tok, ITEMS, batch_size=3, normalize="mean")
    for item, s, m in zip(ITEMS, summed, mean):
        prompt = item["question"] + "\nAnswer:"
        manual = [_manual_sum(model, tok, prompt, o) for o in item["options"]]
        assert s["scores"] == pytest.approx(manual, abs=1e-4)
        assert m["scores"] == pytest.approx([v / n for v, n in zip(manual, m["n_tokens"])], abs=1e-4)
        assert m["n_tokens"] == [len(tok(" " + o, add_special_tokens=False)["input_ids"]) for o in item["options"]]
        assert s["pred"] == max(range(len(manual)), key=lambda j: manual[j])
        assert all(v < 0 for v in s["scores"])


def test_trained_model_picks_the_memorised_continuation(tmp_path) -> None:
    model, tok = _load(build_tiny_llama(tmp_path / "llama", seed=1))
    before = choice_accuracy(score_choices(model, tok, ITEMS, template=PLAIN))
    batch = tok(CORPUS, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):  # memorise the corpus sentences the items continue
        opt.zero_grad()
        model(**batch, labels=labels).loss.backward()
        opt.step()
    model.train()
    results = score_choices(model, tok, ITEMS, template=PLAIN, normalize="sum")
    assert model.training  # the caller's mode is restored
    assert [r["pred"] for r in results] == [it["answer"] for it in ITEMS]
    assert choice_accuracy(results) == 1.0 and before < 1.0
    for r in results:  # the memorised continuation wins by a wide margin
        assert r["scores"][r["pred"]] > max(v for j, v in enumerate(r["scores"]) if j != r["pred"]) + 2.0


def test_tokenizer_without_pad_token_uses_eos(tmp_path) -> None:
    model, tok = _load(build_tiny_llama(tmp_path / "nopad", pad=False))
    assert tok.pad_token_id is None
    batched = score_choices(model, tok, ITEMS, batch_size=16)
    for item, got in zip(ITEMS, batched):
        assert got["scores"] == pytest.approx(score_choices(model, tok, [item], batch_size=1)[0]["scores"], abs=1e-4)


class _MergingTokenizer:
    """Characters as ids, except that ": " becomes one token (a merge across the boundary)."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids, i = ([1] if add_special_tokens else []), 0
        while i < len(text):
            if text.startswith(": ", i):
                ids.append(999)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return {"input_ids": ids}


def test_option_ids_boundary_rules() -> None:
    tok = _MergingTokenizer()
    prompt_ids, option_ids = option_token_ids(tok, "Q?\nAnswer:", "Yes")
    assert prompt_ids == [1, *map(ord, "Q?\nAnswer:")]  # the prompt ids stay the prompt's own
    assert option_ids == [ord(" "), *map(ord, "Yes")]  # " Yes" tokenised alone, no BOS
    prompt_ids, option_ids = option_token_ids(tok, "Q?", "Yes")  # no merge: tail of the joint encoding
    assert option_ids == [ord(" "), *map(ord, "Yes")] and prompt_ids == [1, ord("Q"), ord("?")]
    assert option_token_ids(tok, "Q? ", "Yes")[1] == list(map(ord, "Yes"))  # no second space


def test_choice_accuracy_and_validation(tiny) -> None:
    assert choice_accuracy([{"correct": True}, {"correct": False}, {"correct": None}]) == 0.5
    with pytest.raises(ValueError):
        choice_accuracy([{"correct": None}])
    model, tok = tiny
    unlabelled = score_choices(model, tok, [{"question": "q", "options": ["a", "b"]}])
    assert unlabelled[0]["correct"] is None
    with pytest.raises(ValueError, match="normalize"):
        score_choices(model, tok, ITEMS, normalize="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="options"):
        score_choices(model, tok, [{"question": "q", "options": []}])
