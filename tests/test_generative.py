"""Generative specialists on tiny random models: masking, packing, lint, every method and objective."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from _tiny import build_tiny_llama, build_tokenizer
from hone.config import load_config
from hone.data.chat import IGNORE, encode_messages, setup_tokenizer, to_messages
from hone.data.lint import lint_conversations
from hone.data.lm import from_examples, pack
from hone.errors import DataError, ModelError
from hone.serve.generator import Generator

FIX = Path(__file__).parent / "fixtures" / "valid"
CONV = [{"role": "system", "content": "please cancel"}, {"role": "user", "content": "my phone bill"},
        {"role": "assistant", "content": "the internet is slow"}, {"role": "user", "content": "roaming charges"},
        {"role": "assistant", "content": "i want to upgrade", "weight": 1}, {"role": "user", "content": "today"},
        {"role": "assistant", "content": "the signal is weak", "weight": 0}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _cfg(tiny: Path, data: Path, *over: str):
    return load_config(None, [f"model.name={tiny}", f"data.path={data}", "model.max_length=128",
                              "train.batch_size=4", "train.max_steps=4", "train.lr=5e-3", "data.pii.enabled=false",
                              "data.dedupe.near=false", "data.split.train=0.7", "data.split.validation=0.15",
                              "data.split.test=0.15", "data.split.stratify=false", "seed=3", *over])


# ---------------------------------------------------------------- rendering and masking

def test_golden_trained_positions_multi_turn():
    """Assistant replies + their end-of-turn token train; system/user turns, headers and weight-0 replies do not."""
    tok = build_tokenizer()
    ex = encode_messages(tok, CONV, 512)
    toks = tok.convert_ids_to_tokens(ex.input_ids)
    trained = [(i, t) for i, (t, lab) in enumerate(zip(toks, ex.labels, strict=True)) if lab != IGNORE]
    assert trained == [(13, "the"), (14, "internet"), (15, "is"), (16, "slow"), (17, "</s>"),
                       (25, "i"), (26, "want"), (27, "to"), (28, "upgrade"), (29, "</s>")]
    assert all(ex.labels[i] == ex.input_ids[i] for i, _ in trained)
    everything = encode_messages(tok, CONV, 512, train_on="all")
    assert everything.n_trained == len(everything.input_ids)


def test_truncation_keeps_the_left_and_reports():
    tok = build_tokenizer()
    ex = encode_messages(tok, CONV, 20)
    assert len(ex.input_ids) == 20 and ex.truncated and ex.length == 41
    assert ex.n_trained == 5  # only the first reply survives


def test_schemas_become_conversations():
    assert to_messages({"prompt": "p", "completion": "c"}, "prompt_completion")[1] == {"role": "assistant", "content": "c"}
    assert to_messages({"instruction": "i", "input": "x", "output": "o"}, "instruction")[0]["content"] == "i\n\nx"


def test_setup_tokenizer_template_and_pad():
    tok = build_tokenizer(pad=False, chat_template=False)
    with pytest.raises(ModelError, match="no chat template"):
        setup_tokenizer(tok, None)
    with pytest.raises(ModelError, match="unknown chat template"):
        setup_tokenizer(tok, "nope")
    with pytest.raises(ModelError, match="has no"):
        setup_tokenizer(tok, "chatml")  # needs <|im_start|> tokens this tokenizer lacks
    notes = setup_tokenizer(tok, "plain")
    assert tok.pad_token == tok.eos_token and any("pad token" in n for n in notes)
    ex = encode_messages(tok, CONV[:3], 512)
    assert tok.convert_ids_to_tokens([t for t in ex.labels if t != IGNORE])[-1] == "</s>"


# ---------------------------------------------------------------- lint

def test_lint_reports_problems_with_example_numbers():
    tok = build_tokenizer()
    convs = [CONV[:3], [{"role": "user", "content": "my bill"}, {"role": "assistant", "content": " "}],
             [{"role": "user", "content": "a"}, {"role": "system", "content": "late"},
              {"role": "assistant", "content": "the bill"}],
             [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 0}]]
    rep, kept = lint_conversations(tok, convs, max_length=64, where=[f"f.jsonl:{i + 1}" for i in range(4)])
    text = "\n".join(rep.errors)
    assert "f.jsonl:2: messages[1] (assistant) is empty" in text
    assert "f.jsonl:3: messages[1] is a system message after the first turn" in text
    assert "f.jsonl:4: no assistant message trains" in text
    assert not rep.ok and "[[" in rep.rendered


def test_lint_catches_untrained_eos_and_doubled_bos():
    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"  # no end of turn
    rep, _ = lint_conversations(tok, [CONV[:3]], max_length=64)
    assert any("end-of-turn/EOS token is not trained" in e for e in rep.errors)
    tok.chat_template = "<s><s>{% for m in messages %}{{ m['content'] }}</s>{% endfor %}"
    rep, _ = lint_conversations(tok, [CONV[:3]], max_length=64)
    assert any("BOS token doubled" in e for e in rep.errors)


def test_lint_drops_examples_with_nothing_left_to_train():
    tok = build_tokenizer()
    rep, kept = lint_conversations(tok, [CONV, CONV[:3]], max_length=8)
    assert rep.dropped == [1, 2] and "no example keeps a trained token" in rep.errors


# ---------------------------------------------------------------- packing

def test_packed_logits_equal_separate_logits(tiny):
    from transformers import AutoModelForCausalLM

    from hone.data.chat import Example

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    exs = [Example([2, 5, 6, 7, 8], [IGNORE, 5, 6, 7, 8]), Example([2, 9, 10, 11], [IGNORE, 9, 10, 11]),
           Example([2, 12, 13], [IGNORE, 12, 13])]
    packed = pack(exs, 16, pad_id=1)
    assert len(packed) == 1 and packed.segments == [[0, 5, 9]]
    b = packed.batch([0])
    with torch.no_grad():
        lp = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"]).logits
        for start, ex in zip([0, 5, 9], exs, strict=True):
            alone = model(input_ids=torch.tensor([ex.input_ids])).logits
            assert torch.allclose(lp[0, start:start + len(ex.input_ids)], alone[0], atol=1e-5)
    assert b["labels"][0].tolist() == [IGNORE, 5, 6, 7, 8, IGNORE, 9, 10, 11, IGNORE, 12, 13]
    # every query sees a key (the padding its own: hone's CPU attention kernel takes such masks), none the future,
    # and no real token sees the padding
    two = pack(exs, 8, pad_id=1).batch([0, 1])
    assert two["input_ids"][1].tolist() == [2, 9, 10, 11, 1, 1, 1, 1]
    allowed = two["attention_mask"][:, 0] == 0
    assert allowed.any(-1).all() and not allowed.triu(1).any() and not allowed[1, :4, 4:].any()
    assert allowed[1, 4:, 4:].equal(torch.ones(4, 4, dtype=torch.bool).tril())


def test_pack_fills_rows_first_fit():
    from hone.data.chat import Example

    exs = [Example([1] * n, [1] * n) for n in (6, 5, 4, 3, 2)]
    packed = pack(exs, 8, pad_id=0)
    assert sorted(packed.lengths) == [4, 8, 8] and sum(packed.lengths) == 20


# ---------------------------------------------------------------- training

def _train(tiny, tmp_path, data, *over):
    from hone.train.generative import train_generator

    cfg = _cfg(tiny, data, *over)
    return train_generator(cfg, tmp_path / "run", progress=False)


def test_seeded_sft_pins_losses(tiny, tmp_path):
    """A seeded 4-step full SFT run reproduces its per-step training losses (in fp32: ``precision: auto``
    trains in bf16 on a CPU with native bf16, whose losses differ in the third decimal)."""
    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=full", "train.log_every=1", "train.precision=fp32")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["train_loss"] for x in lines if "train_loss" in x]
    assert losses == pytest.approx([3.80873, 3.58889, 3.37222, 3.23614], abs=2e-4)
    assert run.result.steps == 4 and run.objective == "sft"


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "ia3", "qlora", "prompt_tuning", "prefix_tuning"])
def test_every_method_trains_and_saves_a_loadable_artifact(tiny, tmp_path, method):
    over = [f"method.name={method}"] + (["method.layers=1"] if method == "freeze" else []) + (
        ["method.target_modules=[q_proj,v_proj]", "method.feedforward_modules=[]"] if method == "ia3" else [])
    run = _train(tiny, tmp_path, FIX / "chat.jsonl", *over)
    man = json.loads((run.artifact / "manifest.json").read_text())
    assert man["kind"] == "generator" and man["method"] == method
    assert (man["quantized"] == "bitsandbytes-4bit") == (method == "qlora")
    assert man["format"] == ("transformers" if method in ("full", "freeze") else "peft")
    gen = Generator.load(run.artifact)
    out = gen.generate(["my phone bill is too high"], max_new_tokens=5)
    assert len(out) == 1 and out[0].tokens <= 5
    # the saved weights are the trained ones: same logits as the in-memory model
    ids = torch.tensor([gen.prompt_ids("my phone bill")])
    with torch.no_grad():
        a = gen.model(input_ids=ids).logits[:, -1]
        b = run.model.eval()(input_ids=ids).logits[:, -1]
    assert torch.allclose(a, b, atol=1e-4)
    # loaded in bf16 for evaluation (gen.precision): every layer in one dtype (peft would load the adapters in fp32),
    # the same artifact to bf16 rounding
    half = Generator.load(run.artifact, dtype=torch.bfloat16)
    if method != "qlora":
        assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        c = half.model(input_ids=ids).logits[:, -1].float()
    assert (c - a).abs().max() <= 0.05 * a.abs().max()
    assert len(half.generate(["my phone bill is too high"], max_new_tokens=5)) == 1


def test_packing_trains(tiny, tmp_path):
    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "gen.packing=true", "method.name=full")
    assert math.isfinite(run.result.history[-1].get("eval_loss", 0.0))


def test_dapt_on_raw_text(tiny, tmp_path):
    run = _train(tiny, tmp_path, FIX / "text.txt", "method.name=full")
    assert run.objective == "dapt"
    evals = [h["eval_perplexity"] for h in run.result.history if "eval_perplexity" in h]
    assert evals and all(math.isfinite(e) for e in evals)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_raises_the_margin(tiny, tmp_path, method):
    run = _train(tiny, tmp_path, FIX / "preference.jsonl", f"method.name={method}", "train.max_steps=8",
                 "train.eval_every=4", "gen.dpo_beta=0.5", "data.split.validation=0.3", "data.split.test=0.0",
                 "data.split.train=0.7")
    margins = [h["eval_reward_margin"] for h in run.result.history if "eval_reward_margin" in h]
    assert run.objective == "dpo" and margins[-1] > margins[0]


@pytest.mark.parametrize("shape", ["openai", "conversations"])
def test_dpo_trains_on_openai_and_whole_conversation_preference_rows(tiny, tmp_path, shape):
    """OpenAI's DPO format, and rows whose chosen / rejected hold the whole conversation with the prompt repeated
    (UltraFeedback's shape): the user turn is in each training pair once (it was twice in the latter)."""
    from hone.train.generative import _pairs
    from transformers import AutoTokenizer

    rows = [json.loads(x) for x in (FIX / "preference.jsonl").read_text().splitlines()]
    user = lambda r: {"role": "user", "content": r["prompt"]}  # noqa: E731
    reply = lambda t: [{"role": "assistant", "content": t}]  # noqa: E731
    if shape == "openai":
        rows = [{"input": {"messages": [user(r)]}, "preferred_output": reply(r["chosen"]),
                 "non_preferred_output": reply(r["rejected"])} for r in rows]
    else:
        rows = [{"prompt": r["prompt"], "chosen": [user(r), *reply(r["chosen"])],
                 "rejected": [user(r), *reply(r["rejected"])]} for r in rows]
    write = tmp_path / "pref.jsonl"
    write.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = _train(tiny, tmp_path, write, "method.name=lora", "train.max_steps=2")
    assert run.objective == "dpo"
    row = run.splits["train"][0]
    assert row["prompt"] == [row["prompt"][0]] and row["prompt"][0]["role"] == "user"
    assert [m["role"] for m in row["chosen"]] == ["assistant"]
    tok = AutoTokenizer.from_pretrained(run.artifact)
    pairs, _ = _pairs(tok, run.splits["train"][:1], 256, "assistant", "train", [])
    text = tok.decode(pairs.chosen.input_ids[0])  # (the tiny tokenizer's words are mostly <unk>)
    assert text.count("<s> user") == 1 and text.count("<s> assistant") == 1


def test_distillation_logits_and_sequence(tiny, tmp_path):
    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "train.objective=distill", f"gen.distill.teacher={tiny}",
                 "method.name=lora")
    assert run.objective == "distill" and math.isfinite(run.result.history[-1]["eval_loss"])
    run2 = _train(tiny, tmp_path / "seq", FIX / "chat.jsonl", "train.objective=distill", f"gen.distill.teacher={tiny}",
                  "gen.distill.mode=sequence", "gen.distill.max_new_tokens=4", "method.name=lora")
    assert run2.splits["train"][0]["messages"] != run.splits["train"][0]["messages"]  # the teacher's replies


def test_frozen_models_follow_the_policy_to_the_training_device(tiny, tmp_path, monkeypatch):
    """DPO's reference copy and a logit-distillation teacher are built on the CPU; accelerate moves only the policy,
    so on a GPU their inputs came on cuda:0 and they stayed on the CPU.  The loop places them with the policy."""
    from hone.train import loop
    from hone.train.objectives import DistillObjective, DPOObjective

    ref, teacher = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    quantized = torch.nn.Module()
    quantized.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.uint8), requires_grad=False)  # 4-bit storage
    loop.place_frozen_models(DPOObjective(beta=0.1, reference=ref), torch.device("meta"))
    loop.place_frozen_models(DistillObjective(teacher=teacher, temperature=2.0, alpha=0.5), torch.device("meta"))
    loop.place_frozen_models(DistillObjective(teacher=quantized, temperature=2.0, alpha=0.5), torch.device("meta"))
    loop.place_frozen_models(DPOObjective(beta=0.1), torch.device("meta"))  # adapters: no copy
    assert ref.weight.device.type == teacher.weight.device.type == "meta" and quantized.w.device.type == "cpu"

    seen, real = [], loop.place_frozen_models
    monkeypatch.setattr(loop, "place_frozen_models", lambda obj, dev: (seen.append((obj, dev)), real(obj, dev)))
    _train(tiny, tmp_path, FIX / "preference.jsonl", "method.name=full", "train.max_steps=2",
           "data.split.validation=0.3", "data.split.test=0.0", "data.split.train=0.7")
    [(obj, dev)] = seen
    assert isinstance(obj.reference, torch.nn.Module) and dev == torch.device("cpu")


def test_encoder_is_refused_for_generation(tmp_path):
    from hone.train.generative import train_generator

    cfg = load_config(None, ["model.name=minilm", f"data.path={FIX / 'chat.jsonl'}", "data.pii.enabled=false"])
    with pytest.raises(ModelError, match="encoder"):
        train_generator(cfg, tmp_path / "run", progress=False)


def test_objective_must_match_the_data(tiny, tmp_path):
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="dpo needs preference"):
        _train(tiny, tmp_path, FIX / "chat.jsonl", "train.objective=dpo")


# ---------------------------------------------------------------- generation

def test_batched_generation_equals_one_by_one(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    gen = Generator(AutoModelForCausalLM.from_pretrained(tiny), tok, max_new_tokens=6)
    prompts = ["my phone bill", "please cancel my contract today", [{"role": "user", "content": "the signal"}]]
    batched = gen.generate(prompts, batch_size=3)
    single = [gen.generate(p)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.stopped == (g.tokens < 6) or g.stopped for g in batched)
    assert "".join(gen.stream("my phone bill")).strip() == single[0].text


def test_decoding_gives_the_head_a_contiguous_input_and_cleans_up(tiny):
    """The prompt's last position reaches the output head as a strided view, which ``torch.matmul`` would meet by
    copying the head's weight once per row; while generating it gets a contiguous copy instead, with the same tokens,
    and the hook is gone afterwards (also after a failure)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hone.serve import generator as gmod

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    gen = Generator(model, tok, max_new_tokens=4)
    head = model.get_output_embeddings()
    seen = []
    spy = head.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    prompts = ["my phone bill is far too high", "cancel"]
    fixed = [g.text for g in gen.generate(prompts, batch_size=2)]
    assert seen and all(seen) and len(head._forward_pre_hooks) == 0
    seen.clear()
    with torch.inference_mode():  # the stock call: the prompt's last position as a strided view
        model.generate(input_ids=torch.tensor([gen.prompt_ids(prompts[0])] * 2), max_new_tokens=1, do_sample=False,
                       pad_token_id=tok.pad_token_id)
    assert seen[0] is False
    spy.remove()
    with gmod._decoding(model):
        with pytest.raises(RuntimeError):
            with gmod._decoding(model):
                assert len(head._forward_pre_hooks) == 2
                raise RuntimeError("boom")
        assert len(head._forward_pre_hooks) == 1
    assert len(head._forward_pre_hooks) == 0
    assert [g.text for g in gen.generate(prompts, batch_size=2)] == fixed


def test_selective_head_equals_full_logits(tiny, monkeypatch):
    """The lm_head-on-trained-positions fast path (right padding: no attention mask) gives the same loss and
    gradients as full logits with the mask."""
    from transformers import AutoModelForCausalLM

    from hone.train import objectives as ob

    tok = build_tokenizer()
    data = from_examples([encode_messages(tok, CONV, 64), encode_messages(tok, CONV[:3], 64)], tok.pad_token_id)
    batch = data.batch([0, 1])
    inputs = {k: batch[k] for k in ob.MODEL_KEYS if k in batch}
    assert (batch["attention_mask"] == 0).any() and ob._right_padded(inputs)  # the fast path also drops the mask
    assert not ob._right_padded({**inputs, "attention_mask": batch["attention_mask"].flip(1)})  # left padding
    assert not ob._right_padded({**inputs, "position_ids": torch.zeros_like(batch["input_ids"])})  # packed rows
    model = AutoModelForCausalLM.from_pretrained(tiny)
    fused = []
    monkeypatch.setattr(ob._LinearNLL, "forward", _spy(ob._LinearNLL.forward, fused))
    fast = ob.CausalLMObjective().loss(model, batch)
    fast.backward()
    assert fused == [True]  # the head and the cross entropy ran fused
    head = model.get_output_embeddings().weight
    g_fast = model.model.layers[0].self_attn.q_proj.weight.grad.clone(), head.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(ob, "PLAIN_HEAD_TYPES", ())
    slow = ob.CausalLMObjective().loss(model, batch)
    slow.backward()
    assert fused == [True]
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(g_fast[0], model.model.layers[0].self_attn.q_proj.weight.grad, atol=1e-6)
    assert torch.allclose(g_fast[1], head.grad, atol=1e-6)


def _spy(fn, calls):
    def wrapped(ctx, *args):
        calls.append(True)
        return fn(ctx, *args)
    return staticmethod(wrapped)


@pytest.mark.parametrize("chunk", [1 << 24, 7 * 50])  # one chunk, and 7 rows per chunk
@pytest.mark.parametrize("trainable", ["all", "hidden"])  # full fine-tuning, and a frozen head (LoRA)
def test_fused_head_cross_entropy(monkeypatch, chunk, trainable):
    """_LinearNLL: the summed cross entropy of a linear head and its gradients, chunked over rows, equal
    the unfused computation; under no_grad it only computes the loss."""
    import torch.nn.functional as F

    from hone.train import objectives as ob

    monkeypatch.setattr(ob, "_CE_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=trainable == "all")
    b = torch.randn(50, generator=g, requires_grad=trainable == "all")
    t = torch.randint(0, 50, (23,), generator=g)
    fused = ob._LinearNLL.apply(h, w, b, t)
    (fused / 23).backward()
    grads = [x.grad for x in (h, w, b)]
    for x in (h, w, b):
        x.grad = None
    ref = F.cross_entropy(F.linear(h, w, b), t, reduction="sum")
    (ref / 23).backward()
    assert torch.allclose(fused, ref, rtol=1e-6)
    for got, want in zip(grads, [x.grad for x in (h, w, b)], strict=True):
        assert (got is None) == (want is None)
        assert got is None or torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(ob._LinearNLL.apply(h, w, b, t), ref, rtol=1e-6)


def test_run_reports_tuned_vs_base_and_cli_generate(tiny, tmp_path):
    """hone run on chat data: artifact, lint, report with baselines / gains / forgetting; hone generate uses it."""
    from typer.testing import CliRunner

    from hone.cli import app

    cfg = tmp_path / "reply.yaml"
    cfg.write_text(f"seed: 3\ndata: {{path: {FIX / 'chat.jsonl'}, pii: {{enabled: false}}, "
                   "split: {train: 0.6, validation: 0.2, test: 0.2, stratify: false}}\n"
                   f"model: {{name: {tiny}, max_length: 128}}\nmethod: {{name: lora}}\n"
                   "train: {max_steps: 3, batch_size: 4, lr: 5.0e-3}\ngen: {max_new_tokens: 6}\n"
                   "eval: {few_shot_k: 1, bootstrap: 50}\n")
    res = CliRunner().invoke(app, ["run", str(cfg), "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["kind"] == "generator" and set(rep["systems"]) == {"fine_tuned", "zero_shot", "few_shot"}
    assert {"rougeL", "bleu", "chrf"} <= set(rep["systems"]["fine_tuned"]["scores"])
    assert "gain" in rep["gains"]["zero_shot"]["rougeL"]
    assert 0 <= rep["systems"]["fine_tuned"]["stats"]["stop_rate"] <= 1
    assert rep["systems"]["fine_tuned"]["perplexity"] > 1
    assert "general_perplexity" in rep["forgetting"] and "general_qa" in rep["forgetting"]
    assert (tmp_path / "run" / "report.html").read_text().count("<svg") >= 1
    assert (tmp_path / "run" / "lint.md").exists()
    assert "fine-tuned vs zero_shot" in res.output
    from hone.train.loop import native_bf16

    assert rep["decoding"]["dtype"] == ("bfloat16" if native_bf16() else "float32")  # gen.precision: auto
    art = tmp_path / "run" / "artifact"
    out = CliRunner().invoke(app, ["generate", str(art), "--prompt", "my phone bill", "--max-new-tokens", "4"])
    assert out.exit_code == 0, out.output
    for precision in ("fp32", "bf16"):
        out = CliRunner().invoke(app, ["generate", str(art), "--prompt", "my phone bill", "--max-new-tokens", "4",
                                       "--precision", precision])
        assert out.exit_code == 0, out.output
    out = CliRunner().invoke(app, ["generate", str(art), "--prompt", "x", "--precision", "half"])
    assert out.exit_code == 2 and "--precision" in out.output
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "please cancel"}]}) + "\n")
    out = CliRunner().invoke(app, ["generate", str(art), "--chat", str(chats), "--max-new-tokens", "4"])
    assert out.exit_code == 0, out.output
    line = out.stdout.strip().splitlines()[-1]
    assert out.exit_code == 0 and json.loads(line)["messages"][0]["content"] == "please cancel"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "nope"}\n')
    out = CliRunner().invoke(app, ["generate", str(art), "--chat", str(bad)])
    assert out.exit_code == 2 and "bad.jsonl:1: messages" in out.output


def test_hone_load_returns_a_generator(tiny, tmp_path):
    import hone

    run = _train(tiny, tmp_path, FIX / "prompt_completion.jsonl", "method.name=lora")
    gen = hone.load(run.artifact)
    assert isinstance(gen, Generator) and len(gen.generate(["a", "b"], max_new_tokens=3)) == 2


def test_artifacts_load_onto_the_inference_device(tiny, tmp_path, monkeypatch):
    """After training on a GPU, evaluation and serving load the artifact onto it too (they stayed on the CPU, in the
    dtype the GPU's capability picked).  "meta" stands in for "cuda" here; an integer-weight (quantized) model is left
    where its loader put it."""
    import hone
    from hone.train import loop

    run = _train(tiny, tmp_path, FIX / "prompt_completion.jsonl", "method.name=lora")
    assert next(hone.load(run.artifact).model.parameters()).device.type == "cpu"
    monkeypatch.setattr(loop, "inference_device", lambda: "meta")
    assert {p.device.type for p in hone.load(run.artifact).model.parameters()} == {"meta"}
    quantized = torch.nn.Module()
    quantized.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.uint8), requires_grad=False)
    assert loop.to_inference_device(quantized).w.device.type == "cpu"


def test_data_lint_cli(tiny, tmp_path):
    from typer.testing import CliRunner

    from hone.cli import app

    out = CliRunner().invoke(app, ["data", "lint", str(FIX / "chat.jsonl"), "--model", str(tiny), "--max-length", "64"])
    assert out.exit_code == 0, out.output
    assert "Chat-data lint: 12 examples" in out.output and "[[" in out.output


def test_seq2seq_t5_trains_generates_and_reports(tmp_path):
    """A T5-family model: source = prompt, target = reply + EOS, through the same loop and report."""
    from _tiny import build_tiny_t5
    from hone.pipeline import run

    t5 = build_tiny_t5(tmp_path / "t5")
    cfg = _cfg(t5, FIX / "prompt_completion.jsonl", "method.name=lora", "method.target_modules=[q,v]",
               "train.max_steps=3", "gen.max_new_tokens=4", "eval.bootstrap=20")
    files = run(cfg, tmp_path / "run", progress=False)
    rep = json.loads(files["json"].read_text())
    assert json.loads((tmp_path / "run" / "artifact" / "manifest.json").read_text())["architecture"] == "seq2seq"
    assert rep["systems"]["fine_tuned"]["stats"]["mean_tokens"] <= 4
    gen = Generator.load(tmp_path / "run" / "artifact")
    assert gen.seq2seq and len(gen.generate(["my phone bill"], max_new_tokens=3)) == 1
    # saved as a seq2seq adapter (it said CAUSAL_LM, so AutoPeftModelForSeq2SeqLM refused it)
    adapter = json.loads((tmp_path / "run" / "artifact" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_2_SEQ_LM"
    from peft import AutoPeftModelForSeq2SeqLM

    assert AutoPeftModelForSeq2SeqLM.from_pretrained(str(tmp_path / "run" / "artifact")) is not None


def test_prompt_tuning_of_a_seq2seq_model_trains_and_generates(tmp_path):
    # peft prepended the virtual tokens as for a causal LM and training failed on a mask shape
    from _tiny import build_tiny_t5
    from hone.train.generative import train_generator

    t5 = build_tiny_t5(tmp_path / "t5")
    run = train_generator(_cfg(t5, FIX / "prompt_completion.jsonl", "method.name=prompt_tuning",
                               "method.num_virtual_tokens=4", "train.max_steps=2"), tmp_path / "run", progress=False)
    assert run.result.steps == 2
    gen = Generator.load(run.artifact)
    assert gen.seq2seq and len(gen.generate(["my phone bill"], max_new_tokens=3)) == 1


def test_a_classification_metric_for_early_stopping_a_generator_fails_before_training(tiny, tmp_path):
    from hone.errors import TrainError

    with pytest.raises(TrainError, match="early_stopping.metric=accuracy is not measured by the CausalLMObjective"):
        _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=lora", "train.early_stopping={metric: accuracy}")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # it failed at the first evaluation, after training


def test_seq2seq_refuses_dpo_and_dapt_and_notes_unused_options(tmp_path):
    from _tiny import build_tiny_t5

    from hone.errors import ConfigError
    from hone.train.generative import train_generator

    t5 = build_tiny_t5(tmp_path / "t5")
    for data, name in ((FIX / "preference.jsonl", "dpo"), (FIX / "text.txt", "dapt")):
        with pytest.raises(ConfigError, match=f"train.objective={name} is not supported for a seq2seq model"):
            train_generator(_cfg(t5, data, "method.name=full"), tmp_path / name, progress=False)
    logged = []
    train_generator(_cfg(t5, FIX / "prompt_completion.jsonl", "method.name=full", "train.max_steps=1",
                         "gen.packing=true", "gen.train_on=all"), tmp_path / "sft", log=logged.append, progress=False)
    assert any("gen.packing=true, gen.train_on=all has no effect on a seq2seq model" in x for x in logged)


def test_dapt_run_reports_perplexity_and_multiple_choice(tiny, tmp_path):
    from hone.pipeline import headline, run

    qa = Path(__file__).parents[1] / "hone" / "eval" / "data" / "general_qa.jsonl"
    cfg = _cfg(tiny, FIX / "text.txt", "method.name=lora", "data.split.test=0.0", "data.split.validation=0.3",
               f"eval.choice_file={qa}", "eval.choice_items=12", "eval.bootstrap=50")
    files = run(cfg, tmp_path / "run", progress=False)
    rep = json.loads(files["json"].read_text())
    assert rep["objective"] == "dapt" and rep["systems"]["fine_tuned"]["perplexity"] > 1
    assert rep["choice"]["items"] == 12 and 0 <= rep["choice"]["tuned"]["accuracy"] <= 1
    assert rep["choice"]["base"]["low"] <= rep["choice"]["base"]["accuracy"] <= rep["choice"]["base"]["high"]
    assert any(line.startswith("multiple choice (12 items)") for line in headline(files["json"]))


def test_bad_choice_file_names_the_line(tmp_path):
    from hone.eval.gen_suite import read_choices

    bad = tmp_path / "mc.jsonl"
    bad.write_text('{"question": "q", "options": ["a", "b"], "answer": 1}\n{"question": "q", "options": ["a"], "answer": 3}\n')
    with pytest.raises(DataError, match="mc.jsonl:2: a multiple-choice item"):
        read_choices(str(bad))


def test_export_cli_merges_a_trained_adapter(tiny, tmp_path):
    from typer.testing import CliRunner

    from hone.cli import app

    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=lora")
    out = CliRunner().invoke(app, ["export", str(run.artifact), "-o", str(tmp_path / "merged")])
    assert out.exit_code == 0, out.output
    assert "round trip ok" in out.output
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert Generator(*_plain(tmp_path / "merged")).generate(["my phone bill"], max_new_tokens=3)
    bad = CliRunner().invoke(app, ["export", str(run.artifact), "-o", str(tmp_path / "x"), "--format", "gguf"])
    assert bad.exit_code == 2 and "GGUF" in bad.output and not (tmp_path / "x").exists()


def _plain(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_eval_cli_on_a_generator_artifact(tiny, tmp_path):
    from typer.testing import CliRunner

    from hone.cli import app

    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=lora", "gen.max_new_tokens=4")
    out = CliRunner().invoke(app, ["eval", str(run.artifact), "--data", str(FIX / "prompt_completion.jsonl"),
                                   "-o", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["test_examples"] == 11 and set(rep["systems"]) == {"fine_tuned", "zero_shot"}
    bad = CliRunner().invoke(app, ["eval", str(run.artifact), "--data", str(FIX / "classification.jsonl")])
    assert bad.exit_code == 2 and "chat / prompt_completion" in bad.output
    from hone.eval.gen_suite import evaluate_artifact

    for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        rep = evaluate_artifact(run.artifact, FIX / "prompt_completion.jsonl", max_examples=3,
                                overrides=[f"gen.precision={precision}"])
        assert rep["decoding"]["dtype"] == dtype and rep["test_examples"] == 3


def test_generator_eval_without_zero_shot_or_without_bootstrap(tiny, tmp_path):
    """Without the zero_shot baseline the evaluation crashed (KeyError 'zero_shot', after training in `hone run`);
    eval.bootstrap=0 ran one resample and called its score a 95% CI."""
    from hone.eval.gen_suite import evaluate_artifact
    from hone.eval.report import write_reports
    from hone.pipeline import headline

    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=lora", "gen.max_new_tokens=4")
    rep = evaluate_artifact(run.artifact, FIX / "prompt_completion.jsonl", max_examples=3, baselines=False)
    assert list(rep["systems"]) == ["fine_tuned"] and rep["systems"]["fine_tuned"]["perplexity"] > 1
    qa = Path(__file__).parents[1] / "hone" / "eval" / "data" / "general_qa.jsonl"
    rep = evaluate_artifact(run.artifact, FIX / "prompt_completion.jsonl", max_examples=3,
                            overrides=["eval.bootstrap=0", f"eval.choice_file={qa}", "eval.choice_items=4"])
    assert rep["gains"] == {} and set(rep["systems"]) == {"fine_tuned", "zero_shot"}
    assert all(v["low"] is None and v["high"] is None for s in rep["systems"].values() for v in s["scores"].values())
    assert rep["choice"]["gain"]["low"] is None and rep["choice"]["tuned"]["high"] is None
    lines = headline(write_reports(tmp_path / "ev", rep)["json"])
    assert any(x.startswith("multiple choice (4 items)") for x in lines) and not any("[" in x for x in lines)


def test_inference_dtype(monkeypatch):
    from hone.train import loop

    for native, auto in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(loop, "native_bf16", lambda device=None, native=native: native)
        assert loop.inference_dtype("auto") == auto
        assert loop.inference_dtype("fp32") == torch.float32 and loop.inference_dtype("bf16") == torch.bfloat16


def test_native_bf16_asks_the_gpu_without_emulation(monkeypatch):
    """A GPU before compute capability 8 (T4, V100) emulates bf16: torch's is_bf16_supported() says True unless told
    to leave emulation out, and ``precision: auto`` then trained and evaluated in a slow bf16."""
    from hone.train import loop

    asked = []

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation  # an emulating GPU

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert loop.inference_device() == "cuda"
    assert not loop.native_bf16() and asked == [False]
    assert loop.resolve_precision("auto", print) == "no" and loop.inference_dtype("auto") == torch.float32
    cpu_native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert loop.native_bf16("cpu") is cpu_native  # the CPU answers for a model kept on it


def _bounded(fn, seconds=60):
    """fn() in a thread; what it returned or raised, or a failure if it is still running after ``seconds``."""
    import threading

    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "still running: the stream hangs"
    return box


def test_stream_ends_and_raises_when_generation_fails(tiny, monkeypatch):
    """An error in the generating thread left the reader of stream() waiting for ever."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = Generator(AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny), max_new_tokens=4)
    assert isinstance("".join(gen.stream("my bill")), str)  # streams as before

    def broken(**kw):
        kw["streamer"].put(kw["input_ids"][0])
        raise RuntimeError("out of memory in the middle")
    monkeypatch.setattr(gen.model, "generate", broken)
    box = _bounded(lambda: "".join(gen.stream("my bill")))
    assert isinstance(box.get("error"), RuntimeError) and "out of memory" in str(box["error"])


def test_bad_requests_are_request_errors_not_crashes_or_silent_defaults(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hone.errors import RequestError

    gen = Generator(AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny), max_new_tokens=6)
    parts = [{"role": "user", "content": [{"type": "text", "text": "my bill"}, {"type": "text", "text": "is wrong"}]}]
    assert gen.prompt_ids(parts) == gen.prompt_ids([{"role": "user", "content": "my bill\nis wrong"}])  # OpenAI's parts
    bad = [
        (dict(prompts=[{"role": "user", "content": None, "tool_calls": []}]), r"messages\[0\]\.content: must be text"),
        (dict(prompts=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), "only text parts"),
        (dict(prompts=[[]]), "at least one message"),
        (dict(prompts="hi", max_new_tokens=0), "max_new_tokens"),  # it gave the default 6 tokens
        (dict(prompts="hi", temperature=float("nan")), "temperature"),  # it decoded greedily
        (dict(prompts="hi", temperature=-1.0), "temperature"),
        (dict(prompts="hi", temperature=0.7, top_p=2.0), "top_p"),
    ]
    for kw, msg in bad:
        with pytest.raises(RequestError, match=msg):
            gen.generate(kw.pop("prompts"), **kw)
    box = _bounded(lambda: list(gen.stream("hi", temperature=0.7, top_p=-0.5)))
    assert isinstance(box.get("error"), RequestError)  # it hung: generate raised in the thread


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_prompt_learning_adapters_generate_what_their_forward_computes(tiny, kind):
    """peft hands prompt / prefix tuning's virtual tokens to generate() as past_key_values, which transformers 5.25
    ignores: a prefix-tuned SmolLM2 generated the base model's text, a prompt-tuned one garbage.  hone decodes these
    adapters step by step through their forward."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    cfg = (PrefixTuningConfig if kind == "prefix" else PromptTuningConfig)(task_type="CAUSAL_LM", num_virtual_tokens=4)
    model, tok = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), cfg), AutoTokenizer.from_pretrained(tiny)
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.mul_(0).add_(torch.randn_like(p) * 3)  # an adapter that changes the output
    gen = Generator(model, tok, max_new_tokens=6, eos_ids=[-1])
    assert gen.stepwise
    ids = gen.prompt_ids("my phone bill")
    seq = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    want = tok.decode(seq[0, len(ids):], skip_special_tokens=True).strip()
    assert gen.generate(["my phone bill", "a longer prompt about roaming"])[0].text == want
    assert "".join(gen.stream("my phone bill")).strip() == want


def test_repetition_penalty_breaks_loops(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    plain = Generator(model, tok, max_new_tokens=12).generate("my phone bill")[0]
    penalised = Generator(model, tok, max_new_tokens=12, repetition_penalty=100.0).generate("my phone bill")[0]
    assert len(set(penalised.text.split())) > len(set(plain.text.split()))


@pytest.mark.parametrize("chunk", [1 << 24, 7 * 50])
def test_fused_head_cross_entropy_under_autocast(monkeypatch, chunk):
    """Under bf16 autocast _LinearNLL runs its products in bf16, as autocast runs the unfused head: as
    close to the fp32 loss and gradients as the unfused head under autocast, gradients in fp32."""
    import torch.nn.functional as F

    from hone.train import objectives as ob

    monkeypatch.setattr(ob, "_CE_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    b = torch.randn(50, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (23,), generator=g)

    def run(fn, amp):
        for x in (h, w, b):
            x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = fn()
        loss.backward()
        return loss.detach(), [x.grad for x in (h, w, b)]

    ref, ref_g = run(lambda: F.cross_entropy(F.linear(h, w, b), t, reduction="sum"), False)
    stock, stock_g = run(lambda: F.cross_entropy(F.linear(h, w, b).float(), t, reduction="sum"), True)
    fused, fused_g = run(lambda: ob._LinearNLL.apply(h, w, b, t, None, torch.bfloat16), True)
    assert all(x.dtype == torch.float32 for x in fused_g)
    assert 0 < abs(fused - ref) <= 2 * abs(stock - ref) + 1e-3
    for got, st, want in zip(fused_g, stock_g, ref_g, strict=True):
        err = ((got - want).norm() / want.norm()).item()
        assert 0 < err <= max(1.5 * ((st - want).norm() / want.norm()).item(), 0.01)


def test_short_answers_are_headlined_by_exact_match(tiny, tmp_path):
    # a Q&A model was judged "better" on ROUGE-L (it learned the answer's format) while exact match stayed low
    from _util import write_jsonl
    from hone.eval.gen_suite import evaluate_artifact

    run = _train(tiny, tmp_path, FIX / "chat.jsonl", "method.name=lora", "gen.max_new_tokens=4")
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": f"question {i}: which option?", "completion": f"option {i % 4}"}
                                             for i in range(12)])
    rep = evaluate_artifact(run.artifact, qa, max_examples=6, baselines=False, overrides=["eval.bootstrap=20"])
    assert rep["main_metric"] == "exact_match" and rep["metrics"][0] == "exact_match" and "rougeL" in rep["metrics"]
    rep = evaluate_artifact(run.artifact, qa, max_examples=6, baselines=False,
                            overrides=["eval.bootstrap=20", "eval.main_metric=chrf"])
    assert rep["main_metric"] == "chrf" and "exact_match" in rep["metrics"]
    rep = evaluate_artifact(run.artifact, FIX / "chat.jsonl", max_examples=4, baselines=False,
                            overrides=["eval.bootstrap=20"])  # long replies: ROUGE-L, no exact match
    assert rep["main_metric"] == "rougeL" and "exact_match" not in rep["metrics"]


def test_a_summarizer_trains_and_evaluates_on_its_own_column_names(tiny, tmp_path):
    from _util import write_jsonl
    from hone.eval.gen_suite import evaluate_artifact

    rows = [{"dialogue": f"Customer: my phone bill is too high this month {i}\nAgent: let me check",
             "summary": "bill too high"} for i in range(20)]
    data = write_jsonl(tmp_path / "ds.jsonl", rows)
    run = _train(tiny, tmp_path, data, "method.name=lora", "data.prompt_column=dialogue",
                 "data.completion_column=summary", "train.max_steps=2", "gen.max_new_tokens=4")
    assert run.metadata["schema"] == "prompt_completion"
    rep = evaluate_artifact(run.artifact, data, max_examples=4, baselines=False, overrides=["eval.bootstrap=10"])
    assert rep["test_examples"] == 4 and rep["main_metric"] == "exact_match"  # (three-word summaries)
