import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import hone
from hone.cli import app
from hone.config import load_config
from hone.data.prepare import prepare
from hone.errors import DataError

from _util import clf_rows, read_jsonl, write_jsonl

runner = CliRunner()


def test_public_api_is_pinned():
    assert sorted(hone.__all__) == sorted([
        "ArtifactError", "Classifier", "ConfigError", "DataError", "DataReport", "Generator", "HoneError", "ModelError",
        "Record", "RequestError",
        "RunConfig", "__version__", "check_data", "load", "load_config", "prepare_data", "redact"])
    for name in hone.__all__:
        assert hasattr(hone, name)


def _cfg(path, **data):
    return load_config({"data": {"path": str(path), **data}, "seed": 5})


def test_prepare_writes_everything_and_is_byte_identical(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", clf_rows(60) + [clf_rows(60)[0]])  # one exact duplicate
    cfg = _cfg(src, pii={"enabled": False}, balance={"strategy": "class_weights"})
    p1 = prepare(cfg, tmp_path / "out1")
    prepare(cfg, tmp_path / "out2")
    names = sorted(f.name for f in (tmp_path / "out1").iterdir())
    assert names == ["config.yaml", "data_report.json", "manifest.json", "metadata.json", "test.jsonl",
                     "train.jsonl", "validation.jsonl"]
    for n in names:
        assert (tmp_path / "out1" / n).read_bytes() == (tmp_path / "out2" / n).read_bytes(), n
    rows = {s: read_jsonl(tmp_path / "out1" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    assert sum(len(v) for v in rows.values()) == 60  # the duplicate is gone
    assert p1.report.steps["dedupe"]["exact_removed"] == 1
    meta = json.loads((tmp_path / "out1" / "metadata.json").read_text())
    assert meta["labels"] == ["billing", "outage", "roaming"] and set(meta["class_weights"]) == set(meta["labels"])
    man = json.loads((tmp_path / "out1" / "manifest.json").read_text())
    from hone.artifacts import sha256_file
    assert man["inputs"][0]["sha256"] == sha256_file(src)
    assert man["outputs"]["train.jsonl"] == sha256_file(tmp_path / "out1" / "train.jsonl")
    assert "torch" in man["versions"] and "transformers" in man["versions"]


def test_invalid_input_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", clf_rows(20) + [{"text": "", "label": "x"}])
    with pytest.raises(DataError, match=r"in.jsonl:21: text: is empty"):
        prepare(_cfg(src), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]  # no staging leftovers


def test_failure_midway_keeps_existing_output(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", clf_rows(30))
    cfg = _cfg(src, pii={"enabled": False})
    prepare(cfg, tmp_path / "out")
    before = (tmp_path / "out" / "train.jsonl").read_bytes()
    import hone.data.prepare as prep_mod

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(prep_mod.artifacts, "atomic_write_json", boom)
    with pytest.raises(OSError):
        prepare(cfg, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]


def test_existing_splits_and_group_column(tmp_path):
    rows = [{**r, "customer": f"c{i // 3}"} for i, r in enumerate(clf_rows(60))]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    prep = prepare(_cfg(src, pii={"enabled": False}, split={"group_column": "customer"}), tmp_path / "o")
    seen = {}
    for name, recs in prep.splits.items():
        for r in recs:
            assert seen.setdefault(r.meta["group"], name) == name
    out = read_jsonl(tmp_path / "o" / "train.jsonl")
    # the ids are numbered, not written as given: a group column is often a customer's phone number or e-mail
    assert all(r["_hone"]["group"].startswith("g") and "customer" not in r for r in out)
    assert not any(f'"c{i}"' in (tmp_path / "o" / f).read_text() for i in range(20)
                   for f in ("train.jsonl", "validation.jsonl", "test.jsonl"))
    tr = write_jsonl(tmp_path / "tr.jsonl", clf_rows(40))
    te = write_jsonl(tmp_path / "te.jsonl", clf_rows(9))
    cfg = load_config({"data": {"files": {"train": str(tr), "test": str(te)}, "pii": {"enabled": False},
                                "dedupe": {"near": False}}})
    prep = prepare(cfg, tmp_path / "o2")
    assert len(prep.splits["test"]) == 9 and len(prep.splits["validation"]) > 0


def test_data_files_of_different_kinds_are_a_clear_error(tmp_path):
    tr = write_jsonl(tmp_path / "tr.jsonl", clf_rows(40))
    te = write_jsonl(tmp_path / "te.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"},
                                                           {"role": "assistant", "content": "a"}]} for i in range(5)])
    cfg = load_config({"data": {"files": {"train": str(tr), "test": str(te)}, "pii": {"enabled": False}}})
    with pytest.raises(DataError, match="te.jsonl: chat rows, where .*tr.jsonl holds classification rows"):
        prepare(cfg, tmp_path / "o")  # it raised KeyError: 'text'
    assert not (tmp_path / "o").exists()


def test_a_prepared_train_file_with_synthetic_rows_can_be_prepared_again(tmp_path):
    """Augmented and oversampled rows carry their marker; prepared again they stay in train (an AssertionError
    stopped the run when one was split into validation)."""
    src = write_jsonl(tmp_path / "in.jsonl", clf_rows(60))
    prepare(_cfg(src, pii={"enabled": False}, augment={"enabled": True}, balance={"strategy": "oversample"}),
            tmp_path / "a")
    train = read_jsonl(tmp_path / "a" / "train.jsonl")
    assert any("augmented" in r.get("_hone", {}) for r in train)
    again = prepare(_cfg(tmp_path / "a" / "train.jsonl", pii={"enabled": False},
                         split={"train": 0.6, "validation": 0.2, "test": 0.2}), tmp_path / "b")
    assert again.splits["validation"] and again.splits["test"]
    for name in ("validation", "test"):
        assert not any("augmented" in r.meta or "oversampled" in r.meta for r in again.splits[name])


def test_a_chat_turn_emptied_by_cleaning_drops_its_row(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"question {i} about my bill"},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(12)]
    rows.append({"messages": [{"role": "user", "content": "<br><div></div>"}, {"role": "assistant", "content": "ok"}]})
    prep = prepare(_cfg(write_jsonl(tmp_path / "c.jsonl", rows), pii={"enabled": False}), tmp_path / "o")
    assert prep.report.steps["clean"]["dropped"] == {"field_empty_after_cleaning": 1}
    kept = [m["content"] for recs in prep.splits.values() for r in recs for m in r.data["messages"]]
    assert "" not in kept and len(kept) == 24  # it was written with an empty turn, which check then refused


def test_a_header_only_file_in_data_files_says_it_has_no_rows(tmp_path):
    # it was reported as a schema mismatch ("text rows, where ... holds classification rows; set data.schema")
    tr = write_jsonl(tmp_path / "tr.jsonl", clf_rows(40))
    (tmp_path / "te.csv").write_text("text,label\n")
    cfg = load_config({"data": {"files": {"train": str(tr), "test": str(tmp_path / "te.csv")},
                                "pii": {"enabled": False}}})
    with pytest.raises(DataError, match=r"te.csv: no rows \(an empty file, or a header without rows\)"):
        prepare(cfg, tmp_path / "o")


def test_data_check_of_json_rows_without_known_fields_names_their_keys(tmp_path):
    # 500 lines of "text: missing", with no word on the fields the file has or how to map them
    f = write_jsonl(tmp_path / "d.jsonl", [{"dialogue": f"#P1#: hi {i}", "summary": "s"} for i in range(30)])
    r = runner.invoke(app, ["data", "check", str(f)])
    assert r.exit_code == 2
    assert "d.jsonl:1: text: missing (this row's keys: 'dialogue', 'summary'); name the text field with --text-column" in r.output
    assert r.output.count("this row's keys") == 1 and "d.jsonl:2: text: missing" in r.output
    assert "--json FILE" in r.output  # the "see the JSON report" that did not exist
    r = runner.invoke(app, ["data", "check", str(f), "--text-column", "dialogue"])
    assert r.exit_code == 0, r.output


def test_predict_on_a_generator_artifact_is_one_clear_error(tmp_path):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text(json.dumps({"kind": "generator", "task": "generation"}))
    r = runner.invoke(app, ["predict", str(tmp_path / "art"), "hello"])
    assert r.exit_code == 2 and "a generator artifact, not a classifier: use hone generate" in r.output


def test_cli_data_check_ok_and_errors(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", clf_rows(12))
    r = runner.invoke(app, ["data", "check", str(good), "--json", str(tmp_path / "rep.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "rep.json").read_text())["labels"] == {"billing": 4, "outage": 4, "roaming": 4}
    bad = write_jsonl(tmp_path / "bad.jsonl", clf_rows(12) + [{"text": "x", "label": ""}])
    r = runner.invoke(app, ["data", "check", str(bad)])
    assert r.exit_code == 2 and "bad.jsonl:13: label: empty label" in r.output


def test_cli_prepare_exit_code_and_nothing_written(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", clf_rows(12) + [{"text": "x"}])
    r = runner.invoke(app, ["data", "prepare", str(bad), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "bad.jsonl:13: label: missing" in r.output
    assert not (tmp_path / "out").exists()


def test_cli_config_check(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  split: {train: 0.9, validation: 0.2, test: 0.1}\nmethod: {name: lora, r: 0}\n")
    r = runner.invoke(app, ["config", "check", str(f)])
    assert r.exit_code == 2 and "data.split:" in r.output and "method.r:" in r.output
    r = runner.invoke(app, ["config", "check", str(f), "--set", "data.split.validation=0.0", "--set", "method.r=4",
                            "--show"])
    assert r.exit_code == 0 and "r: 4" in r.output


def test_python_dash_m_and_hone_home(tmp_path):
    env = {"HONE_HOME": str(tmp_path / "home"), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", "from hone.settings import get_settings; print(get_settings().runs_dir)"],
                         capture_output=True, text=True, env=env)
    assert out.stdout.strip() == str(tmp_path / "home" / "runs")
    out = subprocess.run([sys.executable, "-m", "hone", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data" in out.stdout


def test_cli_prepare_defaults_under_hone_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HONE_HOME", str(tmp_path / "home"))
    src = write_jsonl(tmp_path / "tickets.jsonl", clf_rows(30))
    r = runner.invoke(app, ["data", "prepare", str(src), "--no-pii"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "home" / "data" / "tickets" / "train.jsonl").exists()
    r = runner.invoke(app, ["data", "prepare", str(src), "--no-pii"])
    assert r.exit_code == 2 and "--overwrite" in r.output


_TERM = """
import sys, time
from pathlib import Path
from hone import artifacts, cli

def slow_command():
    with artifacts.staged_dir(sys.argv[1]) as stage:
        (stage / "train.jsonl").write_text("half")
        print("writing", flush=True)
        time.sleep(60)
cli.app = slow_command
cli.main()
"""


def test_sigterm_mid_write_leaves_no_half_written_output(tmp_path):
    """A SIGTERM (timeout, a cancelled CI job) ended the process at once, leaving the staging folder behind."""
    import signal

    out = tmp_path / "prepared"
    p = subprocess.Popen([sys.executable, "-c", _TERM, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_prepared_folders_get_the_usual_permissions(tmp_path):
    import os

    src = write_jsonl(tmp_path / "in.jsonl", clf_rows(30))
    prepare(_cfg(src, pii={"enabled": False}), tmp_path / "o")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "o").stat().st_mode & 0o777 == 0o777 & ~umask  # mkdtemp's 0700 kept the team out


def test_a_generators_input_and_target_columns_are_mapped(tmp_path):
    # a summarizer's data ({dialogue, summary}, DialogSum's fields) had to be converted by hand
    rows = [{"id": i, "dialogue": f"#Person1#: my bill {i} is wrong\n#Person2#: let me check", "summary": f"billing {i}"}
            for i in range(30)]
    f = write_jsonl(tmp_path / "ds.jsonl", rows)
    r = runner.invoke(app, ["data", "check", str(f), "--prompt-column", "dialogue", "--completion-column", "summary"])
    assert r.exit_code == 0, r.output
    assert "prompt_completion" in r.output
    r = runner.invoke(app, ["data", "prepare", str(f), "--prompt-column", "dialogue", "--completion-column", "summary",
                            "--no-pii", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    got = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert got and set(got[0]) >= {"prompt", "completion"} and got[0]["prompt"].startswith("#Person1#: my bill")
    assert "dialogue" not in got[0] and "summary" not in got[0]
    r = runner.invoke(app, ["data", "check", str(f), "--prompt-column", "conversation"])
    assert r.exit_code == 2 and "column 'conversation' not found; columns are: id, dialogue, summary" in r.output


def test_shots_on_chat_data_is_refused(tmp_path):
    # it kept k rows in all while the log said "k per label"
    rows = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"a {i}"}]}
            for i in range(30)]
    f = write_jsonl(tmp_path / "c.jsonl", rows)
    cfg = load_config({"data": {"path": str(f), "shots": 2, "pii": {"enabled": False}}})
    with pytest.raises(DataError, match="data.shots keeps k examples per label: classification data only, not chat"):
        prepare(cfg, tmp_path / "o")


def test_split_files_with_shared_groups_are_warned_about(tmp_path):
    # the README says no group spans two splits; with split files given, 30 of 30 groups did, without a word
    rows = [{**r, "customer": f"c{i % 10}"} for i, r in enumerate(clf_rows(40))]
    tr = write_jsonl(tmp_path / "tr.jsonl", rows[:30])
    te = write_jsonl(tmp_path / "te.jsonl", rows[30:])
    cfg = load_config({"data": {"files": {"train": str(tr), "test": str(te)}, "pii": {"enabled": False},
                                "split": {"group_column": "customer"}}})
    prep = prepare(cfg, tmp_path / "o")
    warned = [p.message for p in prep.report.warnings if "group(s)" in p.message]
    assert warned == ["10 group(s) of data.split.group_column are in both test and train (split files are kept as "
                      "given): the evaluation sees customers it trained on"]


def test_a_lone_train_file_is_split_by_the_configured_shares(tmp_path):
    # validation and test were carved one after the other: 1,000 rows at 0.8 / 0.1 / 0.1 gave 810 / 100 / 90
    rows = [{"text": f"ticket {i} about {w} number {i * 7}", "label": w} for i in range(1000)
            for w in [("billing", "outage", "roaming", "upgrade")[i % 4]]]
    tr = write_jsonl(tmp_path / "tr.jsonl", rows)
    cfg = load_config({"data": {"files": {"train": str(tr)}, "pii": {"enabled": False}, "dedupe": {"near": False},
                                "split": {"train": 0.8, "validation": 0.1, "test": 0.1}}})
    prep = prepare(cfg, tmp_path / "o")
    assert {k: len(v) for k, v in prep.splits.items()} == {"train": 800, "validation": 100, "test": 100}
