"""Exact speed-ups: the first-token-only last layer, sparse embedding rows (lazy AdamW), fused AdamW."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hone.model import native
from hone.model.fast import first_token_only
from hone.train import optim
from hone.train.optim import (
    AdamW,
    clip_grad_norm,
    make_optimizer,
    use_sparse_embeddings,
)


def _classifier(kind: str, attn: str = "sdpa", dropout: float = 0.0):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    common = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64, num_labels=5, hidden_dropout_prob=dropout,
                  attention_probs_dropout_prob=dropout, attn_implementation=attn)
    cls = {"bert": (BertConfig, BertForSequenceClassification),
           "roberta": (RobertaConfig, RobertaForSequenceClassification),
           "electra": (ElectraConfig, ElectraForSequenceClassification)}[kind]
    torch.manual_seed(0)
    if kind == "roberta":
        common["pad_token_id"] = 1
    return cls[1](cls[0](**common))


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 3:] = 0
    ids[mask == 0] = 1
    return ids, mask, torch.tensor([0, 3, 4, 1])


def _loss_and_grads(model, ids, mask, labels):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, attention_mask=mask)
    loss = nn.functional.cross_entropy(out.logits, labels)
    loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind,attn", [("bert", "sdpa"), ("bert", "eager"), ("roberta", "sdpa"), ("electra", "sdpa")])
def test_first_token_only_is_exact(kind, attn):
    model = _classifier(kind, attn)
    model.train()
    ids, mask, labels = _batch()
    ref_logits, ref_grads = _loss_and_grads(model, ids, mask, labels)
    keys = list(model.state_dict())
    with first_token_only(model) as active:
        assert active
        logits, grads = _loss_and_grads(model, ids, mask, labels)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)
    # the last layer really ran for one position only, and the model is restored afterwards
    last = model.base_model.encoder.layer[-1]
    seen = []
    h = last.intermediate.dense.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    with first_token_only(model):
        model(input_ids=ids, attention_mask=mask)
    model(input_ids=ids, attention_mask=mask)
    h.remove()
    assert seen == [1, ids.shape[1]]
    assert list(model.state_dict()) == keys and "forward" not in vars(last)


def test_first_token_only_with_lora_and_refusals():
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    model = get_peft_model(_classifier("bert"), LoraConfig(r=4, target_modules=["query", "value"],
                                                           modules_to_save=["classifier"], lora_dropout=0.0))
    for p in model.parameters():  # give LoRA's B non-zero values so its path matters
        if p.requires_grad:
            nn.init.normal_(p, std=0.05)
    ids, mask, labels = _batch()
    ref_logits, ref_grads = _loss_and_grads(model, ids, mask, labels)
    with first_token_only(model) as active:
        assert active
        logits, grads = _loss_and_grads(model, ids, mask, labels)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-5, rtol=1e-4, msg=n)
    # a bare encoder (every position is an output) is left alone
    bare = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    with first_token_only(bare) as active:
        assert not active


def _embedding_model(vocab=10, dim=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(vocab, dim), nn.Linear(dim, 3))


def _step(model, opt, ids, clip=None, clip_fn=clip_grad_norm):
    out = model(ids).sum(1)
    loss = nn.functional.cross_entropy(out, torch.zeros(ids.shape[0], dtype=torch.long))
    loss.backward()
    if clip:
        clip_fn(model.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def _lazy_path(path: str, monkeypatch) -> tuple[bool, list]:
    """How the batch's rows are updated: "native" (hone_adamw_rows on the rows where they are), "fused" (gathered,
    torch's fused kernel, scattered back) or "elementwise"; returns AdamW's ``fused`` and the row counts of the
    native calls."""
    calls: list[int] = []
    if path == "native":
        lib = native.library()
        if lib is None:
            pytest.skip("hone's native kernels are unavailable here")
        real = lib.hone_adamw_rows
        monkeypatch.setattr(lib, "hone_adamw_rows", lambda n, *a: calls.append(n) or real(n, *a), raising=False)
    if path == "fused":
        monkeypatch.setattr(optim.native, "library", lambda: None)
    return path != "elementwise", calls


@pytest.mark.parametrize("path", ["elementwise", "fused", "native"])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_lazy_adamw_equals_adamw_when_every_row_is_in_the_batch(clip, path, monkeypatch):
    dense, sparse = _embedding_model(), _embedding_model()
    sparse[0].sparse = True
    opt_d = torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=0.1)
    fused, calls = _lazy_path(path, monkeypatch)
    opt_s = AdamW(sparse.parameters(), lr=0.05, weight_decay=0.1, fused=fused)
    for s in range(4):
        ids = torch.stack([torch.randperm(10, generator=torch.Generator().manual_seed(s)) for _ in range(2)])
        ids = torch.cat([ids, ids[:, :3]], 1)  # duplicates: their gradients must be summed
        _step(dense, opt_d, ids, clip, torch.nn.utils.clip_grad_norm_)
        _step(sparse, opt_s, ids, clip)
    for (n, a), b in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=n)
    st = opt_s.state[sparse[0].weight]
    torch.testing.assert_close(st["exp_avg_sq"], opt_d.state[dense[0].weight]["exp_avg_sq"])
    assert calls == ([10] * 4 if path == "native" else [])  # the embedding's 10 rows, one call per step


def _grads(seed, scale):
    g = torch.Generator().manual_seed(seed)
    shapes = [(300, 40), (40,), (7, 5)]
    params = [nn.Parameter(torch.zeros(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale
    params[2].grad = params[2].grad.t().contiguous().t()  # a non-contiguous gradient takes the fallback
    return params


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_clip_grad_norm_equals_torch_and_leaves_small_gradients_alone(scale):
    ours, ref = _grads(0, scale), _grads(0, scale)
    before = [p.grad for p in ours]
    kept = [p.grad.clone() for p in ours]
    total = clip_grad_norm(ours, 1.0)
    ref_total = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    torch.testing.assert_close(total, ref_total, rtol=1e-5, atol=0)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-9)
    assert all(p.grad is g for p, g in zip(ours, before))  # scaled in place, never replaced
    if scale < 1:  # within bounds: not a single value changed
        assert all(torch.equal(p.grad, k) for p, k in zip(ours, kept))
    else:
        assert torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in ours]).double()) == pytest.approx(1.0, rel=1e-5)


def test_clipping_deferred_into_fused_adamw_equals_clipping_first():
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 5), nn.Linear(5, 3))
    ref, ours = model(), model()
    ours[0].sparse = True  # a sparse gradient is scaled directly, the dense ones by the fused kernel
    opt_r = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.1)
    opt_o = AdamW(ours.parameters(), lr=0.05, weight_decay=0.1, fused=True)
    ids = torch.stack([torch.randperm(10, generator=torch.Generator().manual_seed(s)) for s in range(3)])  # every row
    for s, clip in enumerate([0.05, 0.05, 1e6, 0.05]):  # the third step is within bounds: no scale may linger
        for m in (ref, ours):
            m(ids).sum(1).pow(2).sum().mul(s + 1).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        unscaled = ours[1].weight.grad.clone()
        clip_grad_norm(ours.parameters(), clip, opt_o)
        if clip < 1:
            assert torch.equal(ours[1].weight.grad, unscaled)  # left to the optimizer
        opt_r.step(), opt_o.step()
        assert not hasattr(opt_o, "grad_scale")
        opt_r.zero_grad(), opt_o.zero_grad()
        for (n, a), b in zip(ref.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=f"step {s}: {n}")


def test_clip_grad_norm_is_accurate_on_a_large_gradient():
    p = nn.Parameter(torch.zeros(4_000_000))
    p.grad = torch.randn(4_000_000, generator=torch.Generator().manual_seed(1)) + 3.0
    exact = p.grad.double().square().sum().sqrt().item()
    assert clip_grad_norm([p], 1e12).item() == pytest.approx(exact, rel=2e-6)


@pytest.mark.parametrize("path", ["elementwise", "fused", "native"])
def test_lazy_adamw_leaves_rows_outside_the_batch_alone_and_resumes(path, monkeypatch):
    fused, _ = _lazy_path(path, monkeypatch)
    model = _embedding_model()
    model[0].sparse = True
    opt = AdamW(model.parameters(), lr=0.05, weight_decay=0.1, fused=fused)
    before = model[0].weight.detach().clone()
    _step(model, opt, torch.tensor([[1, 2, 2]]))
    w = model[0].weight.detach()
    assert torch.equal(w[[0, 3, 4, 5, 6, 7, 8, 9]], before[[0, 3, 4, 5, 6, 7, 8, 9]])
    assert not torch.equal(w[[1, 2]], before[[1, 2]])
    assert opt.state[model[0].weight]["exp_avg"][5].abs().sum() == 0
    # the state dict round-trips: a resumed optimizer continues identically
    clone = _embedding_model()
    clone.load_state_dict(model.state_dict())
    clone[0].sparse = True
    opt2 = AdamW(clone.parameters(), lr=0.05, weight_decay=0.1, fused=fused)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as a checkpoint on disk would be
    _step(model, opt, torch.tensor([[2, 3]]))
    _step(clone, opt2, torch.tensor([[2, 3]]))
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b)


def test_sparse_embeddings_only_for_trainable_inputs():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    assert use_sparse_embeddings(model) is model.get_input_embeddings()
    assert model.get_input_embeddings().sparse
    frozen = BertForSequenceClassification(model.config)
    frozen.get_input_embeddings().weight.requires_grad_(False)
    assert use_sparse_embeddings(frozen) is None


@pytest.mark.parametrize("chunk", [1 << 24, 5 * 64])  # the fused head in one chunk, and in 5-row chunks
def test_tied_embedding_gradient_equals_autograd_sum(monkeypatch, chunk):
    """Tied to the LM head, the input side's rows are added into the fused head's dense gradient in place
    (_TiedLookup), sparse or dense input side: the gradient is dense and equals autograd's own sum of the
    two uses, the padding row gets none from the input side, also over two micro-batches."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hone.train import objectives as ob

    monkeypatch.setattr(ob, "_CE_CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                                         pad_token_id=0))
    emb = model.get_input_embeddings()
    assert model.get_output_embeddings().weight is emb.weight and emb.padding_idx == 0
    ids = torch.randint(1, 64, (3, 7))
    ids[0, 5:] = 0  # right padding
    labels = ids.clone()
    labels[:, :4] = -100
    labels[0, 5:] = -100
    mask = (ids != 0).long()
    ids[1, 2] = 0  # the padding id inside a prompt: nn.Embedding gives its row no gradient
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    used = []
    backward = ob._TiedLookup.backward
    monkeypatch.setattr(ob._TiedLookup, "backward", staticmethod(
        lambda ctx, g: (used.append(bool(ctx.slot)), backward(ctx, g))[1]))

    def grad(sparse: bool, tied: bool) -> torch.Tensor:
        emb.sparse = sparse
        with monkeypatch.context() as m:
            if not tied:
                m.setattr(ob, "_tied_input", lambda plain: None)
            model.zero_grad(set_to_none=True)
            for _ in range(2):  # a second micro-batch accumulates into the first one's gradient
                ob.CausalLMObjective().loss(model, batch).backward()
        assert not emb.weight.grad.is_sparse
        return emb.weight.grad.clone()

    want = grad(False, False)
    assert used == []
    for sparse in (False, True):
        torch.testing.assert_close(grad(sparse, True), want)
    assert used == [True] * 4  # every backward took the fused head's gradient and added the rows in place
    torch.testing.assert_close(grad(True, False), want)  # autograd's out-of-place dense + sparse
    assert used == [True] * 4
    assert want[40:].abs().sum() > 0  # rows of tokens not in the batch get the head's gradient


def _tiny_decoder(kind: str, **extra):
    import transformers as tf

    names = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral"}[kind]
    cfg = getattr(tf, f"{names}Config")(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=8, **extra)
    return getattr(tf, f"{names}ForCausalLM")(cfg)


def _causal_loss_and_grads(model, batch, monkeypatch, *, kept: bool):
    from hone.model import fast
    from hone.train import objectives as ob

    model.zero_grad(set_to_none=True)
    with monkeypatch.context() as m:
        if not kept:
            m.setattr(fast, "MAX_KEPT_SHARE", -1.0)
        loss = ob.CausalLMObjective().loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "mistral"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_last_layer_on_kept_positions_is_exact(kind, method, monkeypatch):
    """An SFT batch (right padding, a few trained positions per row): with the last decoder layer computed at
    the trained positions only, the loss and every gradient equal the full layer's; the path was taken, and the
    no-grad evaluation loss is equal too.  Grouped-query attention (4 query, 2 key / value heads), Qwen2's
    biases, Qwen3's q / k norms, Mistral's sliding window (wider than the rows)."""
    from hone.model import fast

    torch.manual_seed(0)
    model = _tiny_decoder(kind)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1)  # so that A's gradients are not zero
    model.train()
    ids = torch.randint(1, 100, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 8:] = ids[0, 8:]
    labels[1, 4:7] = ids[1, 4:7]  # then padding
    labels[2, 11] = ids[2, 11]
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    calls = []
    forward = fast._kept_positions_forward
    monkeypatch.setattr(fast, "_kept_positions_forward", lambda *a, **k: (calls.append(1), forward(*a, **k))[1])
    got, got_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=True)
    assert calls == [1]
    want, want_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=False)
    assert calls == [1]
    torch.testing.assert_close(got, want)
    assert set(got_g) == set(want_g) and len(want_g) > 4
    for name, g in want_g.items():
        torch.testing.assert_close(got_g[name], g, atol=1e-6, rtol=1e-5, msg=name)
    base = model.get_base_model() if method == "lora" else model
    assert not hasattr(base.model.layers[-1], "_hone_keep") and "forward" not in vars(base.model.layers[-1])
    from hone.train import objectives as ob

    with torch.no_grad():
        torch.testing.assert_close(ob.trained_nll(model, batch)[0], want * (labels != -100)[:, 1:].sum())


@pytest.mark.parametrize("reentrant", [False, True])
def test_last_layer_on_kept_positions_under_gradient_checkpointing(reentrant, monkeypatch):
    """With gradient checkpointing on (QLoRA's default), the kept-positions layer still gives the full layer's
    loss and gradients (it runs outside the checkpoint, whose recompute would otherwise find it gone)."""
    torch.manual_seed(0)
    model = _tiny_decoder("llama")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.train()
    ids = torch.randint(1, 100, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 9:] = ids[:, 9:]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    from hone.model import fast

    calls = []
    forward = fast._kept_positions_forward
    monkeypatch.setattr(fast, "_kept_positions_forward", lambda *a, **k: (calls.append(1), forward(*a, **k))[1])
    got, got_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=True)
    want, want_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=False)
    assert calls == [1]
    torch.testing.assert_close(got, want)
    assert set(got_g) == set(want_g)
    for name, g in want_g.items():
        torch.testing.assert_close(got_g[name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_last_layer_on_kept_positions_refusals(monkeypatch):
    """The full layer runs where the shortcut would not be exact or would not pay: most positions trained
    (continued pre-training), left padding (an attention mask), a sliding window shorter than the rows,
    attention dropout in training, and architectures outside the list."""
    from hone.model import fast

    calls = []
    forward = fast._kept_positions_forward
    monkeypatch.setattr(fast, "_kept_positions_forward", lambda *a, **k: (calls.append(1), forward(*a, **k))[1])
    ids = torch.randint(1, 100, (2, 10))
    few = torch.full_like(ids, -100)
    few[:, 8:] = ids[:, 8:]

    def taken(model, labels, mask=None) -> bool:
        calls.clear()
        batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids) if mask is None else mask}
        from hone.train import objectives as ob

        ob.CausalLMObjective().loss(model, batch).backward()
        return calls == [1]

    torch.manual_seed(0)
    model = _tiny_decoder("llama")
    assert taken(model, few)
    assert not taken(model, ids.clone())  # every position trained
    left = torch.ones_like(ids)
    left[0, :2] = 0
    assert not taken(model, few, left)  # left padding keeps its mask: not purely causal
    assert not taken(_tiny_decoder("mistral", sliding_window=6), few)
    assert taken(_tiny_decoder("mistral", sliding_window=10), few)
    assert not taken(_tiny_decoder("llama", attention_dropout=0.1), few)
    from transformers import GPT2Config, GPT2LMHeadModel

    from hone.train import objectives as ob

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2))
    ob.CausalLMObjective().loss(gpt2, {"input_ids": ids, "labels": few, "attention_mask": torch.ones_like(ids)})
    assert calls == []  # not a plain causal head type: the whole model runs


def test_make_optimizer_is_fused_on_cpu():
    opt = make_optimizer([{"params": [nn.Parameter(torch.zeros(3))]}])
    assert isinstance(opt, AdamW) and opt.defaults["fused"]



def test_training_loop_uses_sparse_rows_and_restores_the_model(tmp_path):
    from hone.config import TrainConfig
    from hone.data.batches import Encoded
    from hone.train.loop import train
    from hone.train.objectives import ClassificationObjective

    model = _classifier("bert", dropout=0.1)
    emb = model.get_input_embeddings()
    before = emb.weight.detach().clone()
    g = torch.Generator().manual_seed(3)
    ids = [torch.randint(5, 60, (int(n),), generator=g).tolist() for n in torch.randint(3, 9, (24,), generator=g)]
    data = Encoded(ids, torch.tensor([i % 5 for i in range(24)]), 0)
    seen = sorted({t for row in ids for t in row})
    res = train(model, data, None, TrainConfig(max_steps=4, batch_size=8, lr=1e-2), objective=ClassificationObjective(),
                run_dir=tmp_path, seed=0, progress=False)
    assert res.steps == 4 and not emb.sparse
    after = emb.weight.detach()
    assert torch.equal(after[60:], before[60:])  # tokens never in a batch: untouched (no decay, no momentum)
    assert not torch.equal(after[seen], before[seen])
    dense = _classifier("bert", dropout=0.1)
    train(dense, data, None, TrainConfig(max_steps=4, batch_size=8, lr=1e-2, sparse_embeddings=False),
          objective=ClassificationObjective(), run_dir=tmp_path / "dense", seed=0, progress=False)
    assert not torch.equal(dense.get_input_embeddings().weight[60:], before[60:])  # dense AdamW decays every row


def test_training_loop_clips_inside_fused_adamw_on_cpu(tmp_path, monkeypatch):
    """On CPU the loop clips with hone's clip_grad_norm, which leaves the scale to the fused AdamW step."""
    from hone.config import TrainConfig
    from hone.data.batches import Encoded
    from hone.train import optim
    from hone.train.loop import train
    from hone.train.objectives import ClassificationObjective

    deferred = []
    real = optim.AdamW.scale_next_step

    def spy(self, coef):
        deferred.append(real(self, coef))
        return deferred[-1]

    monkeypatch.setattr(optim.AdamW, "scale_next_step", spy)
    g = torch.Generator().manual_seed(4)
    ids = [torch.randint(5, 60, (6,), generator=g).tolist() for _ in range(16)]
    data = Encoded(ids, torch.tensor([i % 5 for i in range(16)]), 0)
    res = train(_classifier("bert", dropout=0.0), data, None,
                TrainConfig(max_steps=3, batch_size=8, lr=1e-2, max_grad_norm=1e-3),
                objective=ClassificationObjective(), run_dir=tmp_path, seed=0, progress=False)
    assert res.steps == 3 and deferred == [True, True, True]  # every step clipped, each time by the fused kernel


def test_sft_on_long_rows_through_the_native_attention_equals_the_stock_path(monkeypatch):
    """An SFT batch of rows longer than SHORT_ATTENTION_MAX (right padding, the last layer on the trained positions
    only): within cpu_kernels the other layers' attention takes the native kernel with its probabilities recomputed in the
    backward, and the loss and every gradient equal the stock path's (SDPA, no kernels); the last layer's
    attention on the trained positions is its own (hone.model.fast)."""
    from hone.model import cpu_kernels as ck
    from hone.model import native
    from hone.model.cpu_kernels import cpu_kernels

    if native.library() is None or native.library().vector_width < native.ATTENTION_MIN_LANES:
        pytest.skip("no native attention kernel here")
    torch.manual_seed(0)
    model = _tiny_decoder("llama").train()
    t = ck.SHORT_ATTENTION_MAX + 60
    ids = torch.randint(1, 100, (2, t))
    labels = torch.full_like(ids, -100)
    labels[0, t - 20:] = ids[0, t - 20:]
    labels[1, t - 40:t - 10] = ids[1, t - 40:t - 10]  # then padding
    mask = torch.ones_like(ids)
    mask[1, t - 10:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    want, want_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=True)
    seen = []
    real = ck.attend
    monkeypatch.setattr(ck, "attend", lambda *a, **k: (seen.append(a[8] if len(a) > 8 else k.get("keep_probs")),
                                                       real(*a, **k))[1])
    with cpu_kernels(model):
        got, got_g = _causal_loss_and_grads(model, batch, monkeypatch, kept=True)
    assert seen == [False]  # the first layer's (the last, on the trained positions, computes its own)
    torch.testing.assert_close(got, want)
    assert set(got_g) == set(want_g)
    for name, g in want_g.items():
        torch.testing.assert_close(got_g[name], g, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("clip", [None, 0.05])
@pytest.mark.parametrize("unscale", [False, True])
def test_fused_adamw_under_a_grad_scaler_steps_as_torch_does(clip, unscale, native_path):
    """fp16 on CUDA: accelerate's GradScaler sets ``grad_scale`` (None once unscaled) and ``found_inf`` on a fused
    optimizer around its step and deletes them after it (here on CPU: torch's GradScaler takes a CPU device too)."""
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    ref, ours = model(), model()
    opt_r = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.1, fused=True)
    opt_o = AdamW(ours.parameters(), lr=0.05, weight_decay=0.1, fused=True)
    scalers = [torch.amp.GradScaler("cpu", init_scale=1024.0) for _ in range(2)]
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    for s in range(4):
        for m, opt, sc in zip((ref, ours), (opt_r, opt_o), scalers):
            sc.scale(m(x).pow(2).sum().mul(s + 1 if s != 1 else float("inf"))).backward()  # step 1 skipped
            if unscale or clip is not None:
                sc.unscale_(opt)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
            clip_grad_norm(ours.parameters(), clip, opt_o)
        for m, opt, sc in zip((ref, ours), (opt_r, opt_o), scalers):
            sc.step(opt)  # raised AttributeError (grad_scale deleted twice) before, or ignored the scale natively
            sc.update()
            opt.zero_grad()
        assert scalers[0].get_scale() == scalers[1].get_scale() == (1024.0 if s < 1 else 512.0)
        assert not hasattr(opt_o, "grad_scale") and not hasattr(opt_o, "found_inf")
        for (n, a), b in zip(ref.named_parameters(), ours.parameters()):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=f"step {s}: {n}")
