"""`hone run`, `hone predict`, `hone eval` and `hone.load` end to end on a tiny BERT."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import hone
from _tiny import build_tiny_bert
from _util import clf_rows, write_jsonl
from hone.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    tiny = build_tiny_bert(tmp / "bert")
    data = write_jsonl(tmp / "tickets.jsonl", clf_rows(90))
    cfg = {"seed": 1, "data": {"path": str(data), "pii": {"enabled": False}},
           "model": {"name": str(tiny), "max_length": 32},
           "train": {"max_steps": 10, "batch_size": 8, "lr": 3e-3, "eval_every": 5},
           "eval": {"baselines": ["zero_shot", "few_shot"], "few_shot_k": 3, "bootstrap": 50, "forgetting": True}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp / "run.yaml"), "-o", str(tmp / "out")])
    assert r.exit_code == 0, r.output
    assert "report" in r.output and "fine-tuned vs zero_shot" in r.output
    return tmp / "out"


def test_run_writes_artifact_and_reports(run_dir):
    rep = json.loads((run_dir / "report.json").read_text())
    assert set(rep["systems"]) == {"fine_tuned", "zero_shot", "few_shot"}
    assert set(rep["gains"]) == {"zero_shot", "few_shot"} and "forgetting" in rep
    assert rep["training"]["steps"] == 10 and rep["history"]
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")
    man = json.loads((run_dir / "artifact" / "manifest.json").read_text())
    assert man["labels"] == ["billing", "outage", "roaming"] and "accuracy" in man["metrics"]
    assert (run_dir / "artifact" / "model.safetensors").exists() and (run_dir / "metrics.jsonl").exists()


def test_predict_cli_and_python_api(run_dir, tmp_path):
    r = runner.invoke(app, ["predict", str(run_dir / "artifact"), "my bill is wrong", "no signal at all", "--top-k", "2"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [x["text"] for x in lines] == ["my bill is wrong", "no signal at all"]
    assert all(len(x["top_k"]) == 2 and x["label"] in ("billing", "outage", "roaming") for x in lines)
    f = tmp_path / "in.txt"
    f.write_text("roaming abroad\nrefund please\n")
    r = runner.invoke(app, ["predict", str(run_dir / "artifact"), "--file", str(f)])
    assert r.exit_code == 0 and len(r.stdout.strip().splitlines()) == 2
    clf = hone.load(str(run_dir / "artifact"))
    out = clf.predict(["roaming abroad"])
    assert out[0]["label"] == lines[0]["label"] or out[0]["label"] in clf.labels
    assert abs(sum(s for s in clf.scores(["x"])[0].tolist()) - 1) < 1e-5


def test_classifier_loads_onto_the_inference_device(run_dir, monkeypatch):
    """On a GPU machine the classifier is loaded onto the GPU ("meta" stands in for it here)."""
    from hone.train import loop

    monkeypatch.setattr(loop, "inference_device", lambda: "meta")
    assert {p.device.type for p in hone.load(str(run_dir / "artifact")).model.parameters()} == {"meta"}


def test_classifier_requests_one_text_bad_top_k_and_threads(run_dir):
    import threading

    from hone.errors import RequestError

    clf = hone.load(str(run_dir / "artifact"))
    assert len(clf.predict("my bill is wrong")) == 1  # one text, not one result per character
    with pytest.raises(RequestError, match="top_k"):
        clf.predict(["my bill"], top_k=0)
    r = runner.invoke(app, ["predict", str(run_dir / "artifact"), "my bill", "--top-k", "0"])
    assert r.exit_code == 2 and "top_k must be" in r.output  # a traceback before
    texts = [f"my bill is wrong {i}" for i in range(20)]
    want = clf.scores(texts)
    errors = []

    def work():
        for n in (4, 20, 4, 20):  # the plain path and the CPU kernels' path, overlapping
            try:
                assert torch.allclose(clf.scores(texts[:n]), want[:n], atol=1e-4)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # every patched forward was put back: threads restoring each other's patches left some in place
    assert [n for n, m in clf.model.named_modules() if "forward" in m.__dict__] == []


def test_many_texts_are_scored_with_the_cpu_kernels(run_dir, monkeypatch):
    """From ``KERNELS_MIN_TEXTS`` texts on, ``scores`` runs the model under the CPU kernels (fused layers, padded
    batches packed): the plain model's probabilities to float rounding, in input order."""
    from hone.serve import engine

    clf = hone.load(str(run_dir / "artifact"))
    texts = [("my bill is wrong " * (i % 5 + 1)).strip() + f" {i}" for i in range(20)]
    entered = []
    real = engine.cpu_kernels
    monkeypatch.setattr(engine, "cpu_kernels", lambda m: entered.append(1) or real(m))
    got = clf.scores(texts, batch_size=8)
    assert entered == [1]
    monkeypatch.setattr(engine, "KERNELS_MIN_TEXTS", 10**9)
    want = clf.scores(texts, batch_size=8)
    assert entered == [1] and got.shape == (20, len(clf.labels))
    assert torch.allclose(got, want, atol=1e-6)


def test_scores_batches_texts_by_token_count(run_dir):
    """Texts are batched by their token counts, not their characters (by characters these four would pair a
    5-token text with a 10-token one in each batch): each batch holds texts of one length, with no padding; the
    probabilities come back in input order, as scored one by one."""
    clf = hone.load(str(run_dir / "artifact"))
    five = ["international communications department", "international communications departments"]  # 39, 40 chars
    ten = ["a b c d e f g h", "always between country during example family general however"]  # 15, 60 chars
    texts = [five[0], ten[0], five[1], ten[1]]
    assert [len(clf.tokenizer(t)["input_ids"]) for t in texts] == [5, 10, 5, 10]
    seen = []
    handle = clf.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["attention_mask"].clone()),
                                                 with_kwargs=True)
    try:
        got = clf.scores(texts, batch_size=2)
    finally:
        handle.remove()
    assert len(seen) == 2 and all(bool(mask.all()) for mask in seen)  # by characters each batch mixed both kinds
    one_by_one = torch.cat([clf.scores([t]) for t in texts])
    assert torch.allclose(got, one_by_one, atol=1e-5)


def test_eval_cli_on_a_labelled_file(run_dir, tmp_path):
    data = write_jsonl(tmp_path / "more.jsonl", clf_rows(15))
    r = runner.invoke(app, ["eval", str(run_dir / "artifact"), "--data", str(data), "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["systems"]["fine_tuned"]["n"] == 15
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "unknown_intent"}])
    r = runner.invoke(app, ["eval", str(run_dir / "artifact"), "--data", str(bad)])
    assert r.exit_code == 2 and "unknown_intent" in r.output
    r = runner.invoke(app, ["eval", str(run_dir / "artifact"), "--data", str(data), "-o", str(tmp_path / "ev2"),
                            "--no-baselines", "--set", "eval.bootstrap=0"])  # --set was ignored
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev2" / "report.json").read_text())
    ft = rep["systems"]["fine_tuned"]
    assert list(rep["systems"]) == ["fine_tuned"] and ft["accuracy_ci"] is None  # no resampling: no interval


def test_eval_without_bootstrap_against_baselines_gives_point_differences(run_dir, tmp_path):
    """eval.bootstrap=0 (allowed by the config) crashed with baselines: 'n_boot must be positive'."""
    data = write_jsonl(tmp_path / "more.jsonl", clf_rows(15))
    r = runner.invoke(app, ["eval", str(run_dir / "artifact"), "--data", str(data), "-o", str(tmp_path / "ev"),
                            "--set", "eval.bootstrap=0"])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert set(rep["systems"]) == {"fine_tuned", "zero_shot"} and rep["gains"] == {}
    assert rep["systems"]["zero_shot"]["accuracy_ci"] is None
    assert "unpaired; no bootstrap CI supplied" in (tmp_path / "ev" / "report.md").read_text()


def _oos_run(tmp_path, tiny, n_in: int, n_oos: int, steps: int, split: dict | None = None):
    """`hone run` of a tiny classifier with an out-of-scope class: (rows, data file, CLI result)."""
    rows = clf_rows(n_in) + [{"text": f"what is the weather like on planet {i} today", "label": "oos"}
                             for i in range(n_oos)]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = {"seed": 2, "data": {"path": str(data), "pii": {"enabled": False}, **({"split": split} if split else {})},
           "model": {"name": str(tiny), "max_length": 32}, "train": {"max_steps": steps, "batch_size": 8, "lr": 3e-3},
           "eval": {"baselines": [], "forgetting": False, "oos_label": "oos", "bootstrap": 20}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    return rows, data, r


def test_without_a_test_split_the_validation_split_is_scored_and_named_and_oos_tuned_on_train(tmp_path):
    """With data.split.test=0 the out-of-scope threshold was tuned on the validation split it was scored on, and
    the report called that split the test set."""
    from hone import artifacts
    from hone.eval.oos import choose_threshold
    from hone.eval.suite import _ids
    from hone.train.classify import read_split

    tiny = build_tiny_bert(tmp_path / "bert")
    _oos_run(tmp_path, tiny, 60, 20, 6, split={"train": 0.8, "validation": 0.2, "test": 0.0})
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["scored_split"] == "validation" and rep["oos"]["threshold_chosen_on"] == "train"
    assert rep["systems"]["fine_tuned"]["n"] == rep["data"]["validation"]
    clf = hone.load(str(tmp_path / "out" / "artifact"))
    split_dir = next(p.parent for p in (tmp_path / "out").rglob(artifacts.SPLIT_FILES["train"]))
    train = read_split(split_dir / artifacts.SPLIT_FILES["train"])
    l2i = {lab: i for i, lab in enumerate(clf.labels)}
    assert rep["oos"]["threshold"] == choose_threshold(clf.scores(train.texts).numpy(), _ids(train.labels, l2i),
                                                       oos_index=l2i["oos"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Systems on the validation set" in md and "validation examples" in md and "optimistic" in md
    assert "| threshold chosen on | train |" in md


def test_multi_label_run_headline_report_manifest_and_gains_use_every_label(tmp_path):
    """A multi-label model's headline, report tables, manifest metrics and gains scored only each example's first
    label; micro-F1 / subset accuracy reached report.json alone."""
    import random

    tiny = build_tiny_bert(tmp_path / "bert")
    labels, rng = ["billing", "outage", "roaming"], random.Random(0)
    rows = [{"text": f"ticket {i} about " + " and ".join(ls) + f" case {i * 7}", "label": ls}
            for i in range(60) for ls in [sorted(rng.sample(labels, rng.choice([1, 2])))]]
    data = write_jsonl(tmp_path / "ml.jsonl", rows)
    cfg = {"seed": 1, "data": {"path": str(data), "pii": {"enabled": False}},
           "model": {"name": str(tiny), "max_length": 32}, "train": {"max_steps": 6, "batch_size": 8, "lr": 3e-3},
           "eval": {"baselines": ["zero_shot"], "forgetting": False, "bootstrap": 30}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    ml = rep["systems"]["fine_tuned"]["multi_label"]
    assert ml == {k: v for k, v in rep["multi_label"].items() if k != "threshold"}
    assert "multi_label" in rep["systems"]["zero_shot"] and rep["gains"]["zero_shot"]["metric"] == "micro_f1"
    assert rep["gains"]["zero_shot"]["b"] == pytest.approx(ml["micro_f1"])
    assert f"fine_tuned: micro-F1 {ml['micro_f1']:.3f}" in r.output and "pts micro-f1" in r.output
    man = json.loads((tmp_path / "out" / "artifact" / "manifest.json").read_text())
    assert man["metrics"]["micro_f1"] == ml["micro_f1"] and "accuracy" not in man["metrics"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Multi-label scores on the test set" in md and "(micro-f1): fine_tuned" in md


def test_predict_on_a_non_artifact_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["predict", str(tmp_path), "hello"])
    assert r.exit_code == 2 and "not a hone artifact" in r.output


def test_model_info_counts_parameters_per_method_and_measures_steps(tmp_path, monkeypatch):
    import hone.train.classify  # noqa: F401  (imported before loop.train is patched: it binds train at import)
    import hone.train.generative  # noqa: F401
    from hone.model import info as model_info
    from hone.train import loop

    tiny = build_tiny_bert(tmp_path / "bert")
    real, steps = loop.train, []

    def train(*a, **k):  # the estimate times hone's own loop, as a run trains (it timed plain fp32 torch steps)
        steps.append(0)
        return real(*a, **{**k, "on_step": lambda s: (steps.append(s), k["on_step"](s))})
    monkeypatch.setattr(loop, "train", train)
    r = runner.invoke(app, ["model", "info", str(tiny), "--examples", "640", "--batch-size", "8", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    p = info["parameters"]
    assert p["full"]["trainable"] == p["full"]["total"]
    assert 0 < p["head"]["trainable"] < p["freeze"]["trainable"] < p["full"]["trainable"]
    assert 0 < p["lora"]["trainable"] < p["freeze"]["trainable"] and p["ia3"]["trainable"] > 0
    assert {"query", "value"} <= set(info["adapter_targets"]) and info["layers"] == 2
    est = info["estimate"]
    assert est["steps_per_epoch"] == 80 and est["seconds_per_step"] > 0 and "hone's training loop" in est["note"]
    assert steps == [0, *range(1, model_info.WARMUP_STEPS + model_info.MEASURED_STEPS + 1)]
    assert est["precision"] == ("bf16" if loop.native_bf16() else "fp32")
    assert est["seconds_per_epoch"] == pytest.approx(est["seconds_per_step"] * 80, abs=0.1)


def test_model_info_of_a_causal_lm_describes_it_as_a_generator_and_times_sft_steps(tmp_path, monkeypatch):
    # it described a decoder as a sequence classifier (a 10-label score head, a classification step) and listed
    # lm_head among the adapter targets
    import hone.train.classify  # noqa: F401  (imported before loop.train is patched: it binds train at import)
    import hone.train.generative  # noqa: F401
    from _tiny import build_tiny_llama
    from hone.train import loop

    tiny = build_tiny_llama(tmp_path / "llama")
    seen = []
    real = loop.train

    def train(model, data, *a, **k):
        seen.append((type(k["objective"]).__name__, k["method"].name, data.batch([0])["labels"]))
        return real(model, data, *a, **k)
    monkeypatch.setattr(loop, "train", train)
    chats = write_jsonl(tmp_path / "c.jsonl", [{"messages": [
        {"role": "user", "content": "my phone bill is too high"},
        {"role": "assistant", "content": f"please cancel my contract today {i}"}]} for i in range(12)])
    r = runner.invoke(app, ["model", "info", str(tiny), "--data", str(chats), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["task"] == "generate" and info["architecture"] == "LlamaForCausalLM"
    assert "lm_head" not in info["adapter_targets"] and {"q_proj", "v_proj"} <= set(info["adapter_targets"])
    p = info["parameters"]
    assert "head" not in p and p["full"]["trainable"] == p["full"]["total"]
    assert 0 < p["prompt_tuning"]["trainable"] < p["lora"]["trainable"] < p["freeze"]["trainable"]
    est = info["estimate"]
    assert est["method"] == "lora" and est["batch_size"] == 8 and est["steps_per_epoch"] == 2
    assert est["trains"].startswith("SFT")
    objective, method, labels = seen[0]
    assert objective == "CausalLMObjective" and method == "lora"
    assert (labels == -100).any() and (labels != -100).any()  # the prompt is masked, the reply trains
    # a decoder can be a classifier's base model too
    r = runner.invoke(app, ["model", "info", str(tiny), "--task", "classify", "--examples", "64", "--method", "lora",
                            "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["task"] == "classify" and "head" in info["parameters"] and info["estimate"]["method"] == "lora"
    assert seen[-1][0] == "ClassificationObjective"
    r = runner.invoke(app, ["model", "info", str(tiny), "--examples", "8", "--method", "dora"])
    assert r.exit_code == 2 and "--method: expected one of" in r.output


def test_model_info_times_a_seq2seq_model_on_source_target_pairs(tmp_path):
    from _tiny import build_tiny_t5

    t5 = build_tiny_t5(tmp_path / "t5")
    r = runner.invoke(app, ["model", "info", str(t5), "--examples", "80", "--method", "full", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["task"] == "generate" and info["estimate"]["trains"] == "source -> target pairs"
    assert info["estimate"]["steps_per_epoch"] == 10 and info["estimate"]["seconds_per_step"] > 0


def test_out_of_scope_threshold_is_chosen_on_validation_and_used_by_predict(tmp_path):
    tiny = build_tiny_bert(tmp_path / "bert")
    rows, data, r = _oos_run(tmp_path, tiny, 90, 30, 12)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    oos = rep["oos"]
    assert oos["label"] == "oos" and 0 <= oos["threshold"] <= 1 and "oos_recall" in oos and "in_scope_accuracy" in oos
    # the terminal says what predict will do (the figures were only in the report files)
    assert f"out-of-scope (oos): threshold {oos['threshold']:.3f} chosen on validation; abstains on" in " ".join(
        r.output.split()) and "out-of-scope recall" in r.output
    man = json.loads((tmp_path / "out" / "artifact" / "manifest.json").read_text())
    assert man["oos"]["threshold"] == oos["threshold"]
    clf = hone.load(str(tmp_path / "out" / "artifact"))
    clf.threshold = 1.01  # nothing is that confident: every text must be routed to a human
    assert all(p["abstained"] and p["label"] == "oos" for p in clf.predict(["my bill", "roaming"]))
    # hone eval scores the abstention with the artifact's threshold (it left the out-of-scope section out)
    r = runner.invoke(app, ["eval", str(tmp_path / "out" / "artifact"), "--data", str(data), "--no-baselines",
                            "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert ev["oos"]["label"] == "oos" and ev["oos"]["threshold"] == man["oos"]["threshold"]
    # a score exactly at the threshold is kept, as the evaluation keeps it (predict compared the rounded score)
    texts = [r["text"] for r in rows[:40]]
    tops = [float(p.max()) for p in clf.scores(texts)]
    k = next(i for i, t in enumerate(tops) if round(t, 5) < t)  # a score that rounds down
    clf.threshold = tops[k]
    assert not clf.predict([texts[k]])[0].get("abstained")
    # an abstain label that is not one of the classes: hone eval still scores the abstention predict applies
    plain = [r for r in rows if r["label"] != "oos"]
    data2 = write_jsonl(tmp_path / "t2.jsonl", plain)
    man_path = tmp_path / "out" / "artifact" / "manifest.json"
    man_path.write_text(json.dumps({**man, "oos": {**man["oos"], "label": "route_to_human"}}))
    r = runner.invoke(app, ["eval", str(tmp_path / "out" / "artifact"), "--data", str(data2), "--no-baselines",
                            "-o", str(tmp_path / "ev2")])
    assert r.exit_code == 0, r.output
    ev2 = json.loads((tmp_path / "ev2" / "report.json").read_text())
    assert ev2["oos"]["label"] == "route_to_human" and ev2["oos"]["threshold"] == man["oos"]["threshold"]


def test_report_titles_name_the_train_file_of_data_files():
    # "minilm + head on data" when the data came as data.files
    from hone.config import load_config
    from hone.pipeline import _data_name

    assert _data_name(load_config({"data": {"files": {"train": "/x/b77_train.csv"}}})) == "b77_train.csv"
    assert _data_name(load_config({"data": {"path": "/x/a.jsonl"}})) == "a.jsonl"


def test_hone_eval_of_a_classifier_reads_the_columns_it_was_trained_on(tmp_path):
    # --label-column had to be given again; the bootstrap used seed 0 where hone run used the config's seed
    import csv

    tiny = build_tiny_bert(tmp_path / "bert")
    rows = clf_rows(48)
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "intent"])
        w.writerows([[r["text"], r["label"]] for r in rows])
    cfg = {"seed": 4, "data": {"path": str(tmp_path / "t.csv"), "text_column": "body", "label_column": "intent",
                               "pii": {"enabled": False}},
           "model": {"name": str(tiny), "max_length": 32}, "train": {"max_steps": 4, "batch_size": 8},
           "eval": {"baselines": [], "forgetting": False, "bootstrap": 20}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    r = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "out" / "artifact"), "--data", str(tmp_path / "t.csv"),
                            "--no-baselines", "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["systems"]["fine_tuned"]["n"] == 48
    r = runner.invoke(app, ["predict", str(tmp_path / "out" / "artifact"), "--file", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 48
    plain = write_jsonl(tmp_path / "plain.jsonl", rows[:12])  # hone's own names still work
    r = runner.invoke(app, ["eval", str(tmp_path / "out" / "artifact"), "--data", str(plain), "--no-baselines",
                            "-o", str(tmp_path / "ev2")])
    assert r.exit_code == 0, r.output
