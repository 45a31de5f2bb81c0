"""The training loop on a tiny BERT: exact resume, methods, early stopping, failure, artifacts."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _tiny import build_tiny_bert
from _util import clf_rows, write_jsonl
from hone.config import load_config
from hone.errors import TrainError
from hone.train.classify import train_classifier


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def _cfg(tmp_path, tiny, **over):
    data = write_jsonl(tmp_path / "in.jsonl", clf_rows(72))
    base = {"seed": 3, "data": {"path": str(data), "pii": {"enabled": False}, "dedupe": {"near": False}},
            "model": {"name": str(tiny), "max_length": 32},
            "train": {"max_steps": 12, "batch_size": 8, "lr": 3e-3, "save_every": 4, "eval_every": 4,
                      "warmup_steps": 2, "schedule": "cosine"}}
    for k, v in over.items():
        node = base
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return load_config(base)


def _weights(art: Path) -> dict:
    f = art / "model.safetensors"
    return load_file(str(f if f.exists() else art / "adapter_model.safetensors"))


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny)
    a = train_classifier(cfg, tmp_path / "a", progress=False)
    train_classifier(cfg, tmp_path / "b", stop_after=6, progress=False)  # "crash" after step 6
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000004"]
    b = train_classifier(cfg, tmp_path / "b", progress=False)  # resumes from step 4
    assert a.result.steps == b.result.steps == 12
    wa, wb = _weights(a.artifact), _weights(b.artifact)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    # and the run really trained: the loss went down from the first logged value
    hist = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in h for h in hist) and any("train_loss" in h for h in hist)


def test_a_run_resumed_after_an_epoch_boundary_ends_with_the_same_weights(tmp_path, tiny, monkeypatch):
    """The reviewer's set-up (mean pooling, LoRA r=8, the CPU kernels and precision left at their defaults) resumed
    in its second epoch: the uninterrupted run went on through the first epoch's batch order again, the resumed one
    drew the second epoch's own, and they ended with other weights."""
    from hone.train import loop

    drawn = []
    order = loop.epoch_order
    monkeypatch.setattr(loop, "epoch_order", lambda n, bs, seed, epoch, lengths: drawn.append(epoch) or order(
        n, bs, seed, epoch, lengths))
    cfg = _cfg(tmp_path, tiny, method={"name": "lora", "r": 8, "alpha": 16},
               **{"model.pooling": "mean", "train.max_steps": 20, "train.save_every": 5, "train.eval_every": 20})
    a = train_classifier(cfg, tmp_path / "a", progress=False)  # 8 steps an epoch: epochs 0, 1 and 2
    assert drawn == [0, 1, 2]  # each epoch in its own order
    train_classifier(cfg, tmp_path / "b", stop_after=12, progress=False)  # "crash" after step 12, in epoch 1
    b = train_classifier(cfg, tmp_path / "b", progress=False)  # resumes from step 10
    assert a.result.steps == b.result.steps == 20
    wa, wb = _weights(a.artifact), _weights(b.artifact)
    assert wa.keys() == wb.keys() and [k for k in wa if not torch.equal(wa[k], wb[k])] == []
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()


def test_seeded_losses_are_reproducible_and_seed_sensitive(tmp_path, tiny):
    r1 = train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None}), tmp_path / "r1", progress=False)
    r2 = train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None}), tmp_path / "r2", progress=False)
    r3 = train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None, "seed": 4}), tmp_path / "r3",
                          progress=False)
    loss = lambda r: [h["train_loss"] for h in r.result.history if "train_loss" in h]  # noqa: E731
    assert loss(r1) == loss(r2) and loss(r1) != loss(r3)


@pytest.mark.parametrize("method,frozen_prefix", [
    ({"name": "full"}, None), ({"name": "head"}, "bert.encoder"), ({"name": "freeze", "layers": 1}, "bert.encoder.layer.0."),
    ({"name": "progressive", "every": 8}, "bert.encoder.layer.0."), ({"name": "lora", "r": 4}, None),
    ({"name": "ia3"}, None)])
def test_every_method_trains(tmp_path, tiny, method, frozen_prefix):
    from transformers import AutoModelForSequenceClassification

    cfg = _cfg(tmp_path, tiny, method=method, **{"train.save_every": None})
    run = train_classifier(cfg, tmp_path / "run", progress=False)
    before = AutoModelForSequenceClassification.from_pretrained(str(tiny), num_labels=3).state_dict()
    man = json.loads((run.artifact / "manifest.json").read_text())
    assert man["method"] == method["name"] and man["labels"] == ["billing", "outage", "roaming"]
    if method["name"] in ("lora", "ia3"):
        assert (run.artifact / "adapter_config.json").exists() and man["format"] == "peft"
        assert man["parameters"]["trainable"] < man["parameters"]["total"] * 0.5
        return
    after = run.model.state_dict()
    changed = {k for k in before if k in after and not k.startswith("classifier") and not torch.equal(before[k], after[k])}
    assert changed, "no body weight changed" if method["name"] != "head" else True
    if frozen_prefix:
        assert not any(k.startswith(frozen_prefix) for k in changed), sorted(changed)[:5]


def test_prefix_tuning_of_an_encoder_classifier_fails_clearly_before_training(tmp_path, tiny):
    """transformers' BERT classifier takes no past key values, where peft puts the prefixes: the run stops at set-up
    with a message naming the method and the alternatives, not in peft's first forward; prompt tuning trains."""
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="prefix_tuning needs a model that takes past key values.*prompt_tuning"):
        train_classifier(_cfg(tmp_path, tiny, method={"name": "prefix_tuning"}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "artifact").exists()
    run = train_classifier(_cfg(tmp_path, tiny, method={"name": "prompt_tuning", "num_virtual_tokens": 4},
                                **{"train.save_every": None}), tmp_path / "prompt", progress=False)
    assert run.result.steps == 12


def test_early_stopping_and_best_restore(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, **{"train.max_steps": 40, "train.eval_every": 2, "train.save_every": None,
                                  "train.lr": 1e-9, "train.early_stopping": {"patience": 2, "metric": "loss"}})
    run = train_classifier(cfg, tmp_path / "run", progress=False)
    assert run.result.stopped_early and run.result.steps < 40
    assert run.result.best_step is not None


def test_an_early_stopped_run_run_again_does_not_train_on(tmp_path, tiny):
    # the checkpoint written at the stopping step already counts the patience used up: running the command again
    # on the run directory used to resume from it and train until the next evaluation, a longer run than the first
    cfg = _cfg(tmp_path, tiny, **{"train.max_steps": 40, "train.eval_every": 2, "train.save_every": 2,
                                  "train.lr": 1e-9, "train.early_stopping": {"patience": 2, "metric": "loss"}})
    first = train_classifier(cfg, tmp_path / "run", progress=False)
    assert first.result.stopped_early and first.result.steps < 40
    wa = _weights(first.artifact)
    again = train_classifier(cfg, tmp_path / "run", progress=False)
    assert again.result.stopped_early and again.result.steps == first.result.steps
    assert again.result.best_step == first.result.best_step
    wb = _weights(again.artifact)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_non_finite_loss_fails_clearly_and_leaves_no_artifact(tmp_path, tiny, monkeypatch):
    import hone.train.classify as C

    real = C.apply_method

    def poisoned(model, cfg):
        model = real(model, cfg)
        with torch.no_grad():
            model.classifier.weight.fill_(float("nan"))
        return model
    monkeypatch.setattr(C, "apply_method", poisoned)
    with pytest.raises(TrainError, match=r"loss became nan at step 1 .*did not succeed"):
        train_classifier(_cfg(tmp_path, tiny), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "artifact").exists()


def test_artifact_loads_without_hone(tmp_path, tiny):
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    full = train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None}), tmp_path / "f", progress=False)
    m = AutoModelForSequenceClassification.from_pretrained(str(full.artifact))
    tok = AutoTokenizer.from_pretrained(str(full.artifact))
    assert m.config.id2label[0] == "billing"
    x = tok(["my bill is wrong"], return_tensors="pt")
    full.model.eval()
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m(**x).logits, full.model(**x).logits, atol=1e-6)
    lora = train_classifier(_cfg(tmp_path, tiny, method={"name": "lora", "r": 4}, **{"train.save_every": None}),
                            tmp_path / "l", progress=False)
    pc = PeftConfig.from_pretrained(str(lora.artifact))
    base = AutoModelForSequenceClassification.from_pretrained(pc.base_model_name_or_path,
                                                              config=AutoConfig.from_pretrained(str(lora.artifact)))
    pm = PeftModel.from_pretrained(base, str(lora.artifact)).eval()
    lora.model.eval()
    with torch.no_grad():
        assert torch.allclose(pm(**x).logits, lora.model(**x).logits, atol=1e-5)


def test_runs_with_different_precisions_in_one_process(tmp_path):
    """accelerate keeps one state per process; hone resets it when a run asks for another precision, and
    hands the model back with its own forward (not accelerate's autocast wrapper)."""
    from test_cpu_kernels import _lora_llama, _Rows

    from hone.config import TrainConfig
    from hone.train.loop import train
    from hone.train.objectives import CausalLMObjective

    for precision in ("fp32", "bf16", "fp32"):
        model = _lora_llama(0.0)
        res = train(model, _Rows(5), None, TrainConfig(max_steps=1, batch_size=8, precision=precision),
                    objective=CausalLMObjective(), run_dir=tmp_path / precision, seed=0, progress=False)
        assert res.steps == 1
        assert all("forward" not in vars(m) and "_original_forward" not in vars(m) for m in model.modules())
        with torch.no_grad():
            assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.float32


def test_batches_pad_each_row_to_the_longest_and_count_real_tokens():
    from hone.data.batches import Encoded

    enc = Encoded([[5, 6, 7], [8], [9, 10, 11, 12], [13, 14]], torch.tensor([0, 1, 2, 3]), pad_id=99)
    b = enc.batch([3, 0, 1])
    assert b["input_ids"].tolist() == [[13, 14, 99], [5, 6, 7], [8, 99, 99]]
    assert b["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    assert b["input_ids"].dtype == b["attention_mask"].dtype == torch.long
    assert b["labels"].tolist() == [3, 0, 1] and b["num_tokens"] == 6
    assert enc.batch([2])["attention_mask"].tolist() == [[1, 1, 1, 1]]  # no padding at all


def _orders(monkeypatch):
    """Record the ``lengths`` the loop passes to ``epoch_order`` (None: batches not bucketed by length)."""
    import hone.train.loop as loop

    seen = []
    real = loop.epoch_order

    def recording(n, batch_size, seed, epoch, lengths):
        seen.append(lengths)
        return real(n, batch_size, seed, epoch, lengths)
    monkeypatch.setattr(loop, "epoch_order", recording)
    return seen


def test_bucket_auto_leaves_packed_batches_unsorted_and_a_resume_keeps_the_choice(tmp_path, tiny, monkeypatch):
    """``train.bucket: auto`` (the default): where hone's CPU kernels run the encoder packed (the padding left out),
    the batches are not sorted by length; without the kernels, or with ``bucket: true``, they are.  The choice is saved
    with the checkpoints, so a resumed run replays the same batches even where auto would now decide otherwise."""
    import json as _json

    from hone.model import native

    if native.library() is None or native.library().vector_width < native.ATTENTION_MIN_LANES:
        pytest.skip("no native attention kernels on this machine")
    seen = _orders(monkeypatch)
    train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None}), tmp_path / "auto", progress=False)
    assert seen and all(x is None for x in seen)
    seen.clear()
    train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None, "train.bucket": True}), tmp_path / "on",
                     progress=False)
    assert seen and all(x is not None for x in seen)
    seen.clear()
    train_classifier(_cfg(tmp_path, tiny, **{"train.save_every": None, "train.cpu_kernels": False}),
                     tmp_path / "stock", progress=False)
    assert seen and all(x is not None for x in seen)
    # a run interrupted with kernels on resumes with them off: it keeps the unsorted batches it started with
    seen.clear()
    train_classifier(_cfg(tmp_path, tiny), tmp_path / "r", stop_after=6, progress=False)
    state = _json.loads((tmp_path / "r" / "checkpoints" / "step-0000004" / "state.json").read_text())
    assert state["bucket"] is False
    seen.clear()
    train_classifier(_cfg(tmp_path, tiny, **{"train.cpu_kernels": False}), tmp_path / "r", progress=False)
    assert seen and all(x is None for x in seen)


def test_packs_padded_batches_checks_what_the_packed_encoder_takes(tiny):
    from transformers import AutoModelForSequenceClassification

    from hone.model import native
    from hone.model.cpu_kernels import cpu_kernels
    from hone.model.fused_bert import packs_padded_batches

    if native.library() is None or native.library().vector_width < native.ATTENTION_MIN_LANES:
        pytest.skip("no native attention kernels on this machine")
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny), num_labels=3)
    assert not packs_padded_batches(model)  # kernels not switched on
    with cpu_kernels(model):
        assert packs_padded_batches(model)
        model.bert.encoder.layer[1].gradient_checkpointing = True
        assert not packs_padded_batches(model)
        model.bert.encoder.layer[1].gradient_checkpointing = False
        handle = model.bert.encoder.layer[0].attention.register_forward_hook(lambda *a: None)
        assert not packs_padded_batches(model)
        handle.remove()
        assert packs_padded_batches(model)
    assert not packs_padded_batches(model)


def test_fp16_grad_scaler_steps_and_resumes_at_its_scale(tmp_path, tiny, monkeypatch, native_path):
    """``precision: fp16`` on a GPU: accelerate scales the loss with a GradScaler, which hone's fused AdamW must
    step under (it raised AttributeError at the first step) and whose scale a resume must restore.  accelerate
    makes no scaler on a CPU, so torch's CPU GradScaler is put in its place here, the rest of the loop as on a GPU."""
    import accelerate

    real_init, scalers = accelerate.Accelerator.__init__, []

    def init(self, *a, **k):
        real_init(self, *a, **k)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=3)
        scalers.append(self.scaler)
    monkeypatch.setattr(accelerate.Accelerator, "__init__", init)
    cfg = _cfg(tmp_path, tiny, **{"train.precision": "fp16"})
    a = train_classifier(cfg, tmp_path / "a", progress=False)
    train_classifier(cfg, tmp_path / "b", stop_after=6, progress=False)
    saved = json.loads((tmp_path / "b" / "checkpoints" / "step-0000004" / "state.json").read_text())["grad_scaler"]
    assert saved["scale"] != 2.0 ** 16  # it grew every 3 good steps (or backed off): not the initial scale
    b = train_classifier(cfg, tmp_path / "b", progress=False)
    assert scalers[-1].get_scale() == scalers[0].get_scale()  # the resumed run ends where the uninterrupted one did
    assert a.result.steps == b.result.steps == 12
    wa, wb = _weights(a.artifact), _weights(b.artifact)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_multi_label_runs_train_evaluate_and_report_every_label(tmp_path, tiny):
    """The default early-stopping metric (macro-F1) was not measured for multi-label data, so a multi-label run
    stopped with an error at its first evaluation; the report scored only each example's first label."""
    import random

    from hone.eval.suite import evaluate_classifier
    from hone.config import EvalConfig
    from hone.serve.engine import Classifier

    labels = ["billing", "outage", "roaming"]
    rng = random.Random(0)
    rows = [{"text": f"ticket {i} about " + " and ".join(ls) + f" case {i * 7}", "label": ls}
            for i in range(80) for ls in [sorted(rng.sample(labels, rng.choice([1, 2])))]]
    data = tmp_path / "ml.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, tiny, **{"data.path": str(data), "train.save_every": None})
    run = train_classifier(cfg, tmp_path / "run", progress=False)
    evals = [h for h in run.result.history if "eval_macro_f1" in h]
    assert run.result.steps == 12 and len(evals) == 3 and all(0 <= h["eval_accuracy"] <= 1 for h in evals)
    clf = Classifier.load(run.artifact)
    test = [r for r in rows[:20]]
    rep = evaluate_classifier(clf, [r["text"] for r in test], [r["label"] for r in test],
                              cfg=EvalConfig(baselines=[], forgetting=False, bootstrap=20), seed=0, base_model=str(tiny))
    ml = rep["multi_label"]
    assert ml["n"] == 20 and sum(c["support"] for c in ml["per_class"].values()) == sum(len(r["label"]) for r in test)
    from typer.testing import CliRunner

    from hone.cli import app

    r = CliRunner().invoke(app, ["eval", str(run.artifact), "--data", str(data), "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output  # TypeError: unhashable type: 'list' before
    assert "multi_label" in json.loads((tmp_path / "ev" / "report.json").read_text())


def test_restoring_the_best_under_progressive_unfreezing_puts_back_layers_opened_later(tiny):
    """The best snapshot held only the weights trainable at that step; layers opened afterwards kept their last
    values, so the restored model mixed two steps and evaluated as neither."""
    from transformers import AutoModelForSequenceClassification

    from hone.config import ProgressiveMethod
    from hone.model.methods import ProgressiveUnfreezer, apply_method
    from hone.train import loop

    model = apply_method(AutoModelForSequenceClassification.from_pretrained(str(tiny), num_labels=3),
                         ProgressiveMethod(every=4))
    unfreezer = ProgressiveUnfreezer(model, 4, "steps")
    unfreezer.update(4, 0)  # the top group open at the best step
    at_best = {n: p.detach().clone() for n, p in model.named_parameters()}
    best = loop._best_state(model, unfreezer)
    unfreezer.update(8, 0)  # the next group opens, then everything trains on
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    path = Path(str(tiny)).parent / "best.safetensors"
    from hone.train import checkpoint as ckpt

    ckpt.save_weights(path, best)
    loop._restore(model, path)
    later = [n for n, p in model.named_parameters() if any(p is q for q in unfreezer.groups[1])]
    assert later and all(torch.equal(p, at_best[n]) for n, p in model.named_parameters() if n in later)


def test_the_class_weights_strategy_weights_the_loss_unless_switched_off(tmp_path, tiny, monkeypatch):
    # the strategy computed weights that the loss used only with a second switch (train.class_weights: true), so
    # the bundled quickstart, which asks for class_weights, trained unweighted
    import hone.train.classify as C

    seen = []
    real = C.ClassificationObjective

    def objective(**kw):
        seen.append(kw["class_weights"])
        return real(**kw)
    monkeypatch.setattr(C, "ClassificationObjective", objective)
    rows = clf_rows(72)
    rows = [r for i, r in enumerate(rows) if r["label"] != "roaming" or i % 4 == 0]  # imbalanced
    data = write_jsonl(tmp_path / "imb.jsonl", rows)
    for i, over in enumerate(({}, {"train.class_weights": False}, {"data.balance": {"strategy": "none"}},
                              {"data.balance": {"strategy": "none"}, "train.class_weights": True})):
        cfg = _cfg(tmp_path, tiny, **{"data.balance": {"strategy": "class_weights"}, "train.max_steps": 1,
                                      "train.warmup_steps": 0,
                                      "train.save_every": None, **over})
        cfg.data.path = str(data)
        train_classifier(cfg, tmp_path / f"r{i}", progress=False)
    weighted, off, none, on = seen
    assert off is None and none is None
    labels = ["billing", "outage", "roaming"]
    assert weighted is not None and weighted[labels.index("roaming")] > weighted[labels.index("billing")]
    assert torch.allclose(weighted, on)  # (from metadata.json, or computed from the split)
