import pytest

from hone.config import RunConfig, load_config, parse_overrides
from hone.errors import ConfigError


def test_defaults_and_overrides_are_typed():
    cfg = load_config(None, ["data.split.test=0.2", "data.split.train=0.7", "method.name=lora", "method.r=4",
                             "data.clean.normalize={srvce: service}", "seed=7"])
    assert isinstance(cfg, RunConfig)
    assert cfg.data.split.test == 0.2 and cfg.method.name == "lora" and cfg.method.r == 4
    assert cfg.data.clean.normalize == {"srvce": "service"} and cfg.seed == 7


def test_all_errors_reported_together_with_dotted_keys():
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"split": {"test": 0.5}, "bogus": 1}, "method": {"name": "lora", "r": 0},
                     "train": {"max_steps": 5, "warmup_steps": 9}})
    msg = str(e.value)
    assert "4 error(s)" in msg
    assert "data.split: train + validation + test must sum to 1" in msg
    assert "data.bogus: unknown key" in msg
    assert "method.r:" in msg and "method.lora" not in msg
    assert "train.warmup_steps: must be < max_steps" in msg


def test_unknown_method_and_bad_regex():
    with pytest.raises(ConfigError, match="method"):
        load_config({"method": {"name": "nope"}})
    with pytest.raises(ConfigError, match=r"data.clean.boilerplate: .*boilerplate\[0\] is not a valid regular"):
        load_config({"data": {"clean": {"boilerplate": ["("]}}})


def test_yaml_file_paths_resolved_relative_to_file(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "run.yaml"
    f.write_text("data:\n  path: tickets.jsonl\n  split: {test: 0.2, validation: 0.0, train: 0.8}\n")
    cfg = load_config(f)
    assert cfg.data.path == str(tmp_path / "sub" / "tickets.jsonl")


def test_yaml_errors_have_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("data:\n  path: x\n   split: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["data.split.test"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config({"seed": 3}, ["seed.x=1"])


def test_roundtrip_yaml(tmp_path):
    cfg = load_config(None, ["method.name=lora", "data.schema=chat"])
    f = tmp_path / "c.yaml"
    f.write_text(cfg.to_yaml())
    again = load_config(f)
    assert again.to_dict() == cfg.to_dict()
    assert again.data.schema_ == "chat"


def test_run_without_evaluation_data_fails_before_training(tmp_path):
    """`hone run` with no test file and no test share stops with a clear error before any training."""
    from hone.errors import ConfigError
    from hone.pipeline import _no_eval_data, run

    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "hi", "completion": "hello"}\n')
    gen = load_config({"task": "generate", "data": {"files": {"train": str(train)},
                                                    "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}})
    with pytest.raises(ConfigError, match="nothing to evaluate on"):
        run(gen, tmp_path / "run")
    assert not (tmp_path / "run" / "artifact").exists()
    auto = load_config({"data": {"files": {"train": str(train)}, "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}})
    with pytest.raises(ConfigError, match="nothing to evaluate on"):
        run(auto, tmp_path / "auto")
    assert not (tmp_path / "auto").exists()  # the check comes before the data is even prepared
    cls = load_config({"task": "classify", "data": {"files": {"train": str(train)},
                                                    "split": {"train": 0.9, "validation": 0.1, "test": 0.0}}})
    assert _no_eval_data(cls) is None  # a classifier is scored on the validation split
    cls_none = load_config({"task": "classify", "data": {"files": {"train": str(train)},
                                                         "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}})
    assert "data.split.validation are 0" in _no_eval_data(cls_none)
    assert _no_eval_data(load_config({"task": "generate", "data": {"files": {"train": str(train), "test": str(train)},
                                                                    "split": {"train": 1.0, "validation": 0.0,
                                                                              "test": 0.0}}})) is None


@pytest.mark.parametrize("known", ["task=generate", "train.objective=sft", "data.schema=chat"])
def test_a_classification_metric_for_early_stopping_of_a_generator_is_a_config_error(known):
    # `hone config check` catches it; it used to pass and the run failed only after preparing the data and loading
    # the model
    with pytest.raises(ConfigError, match="train.early_stopping.metric=accuracy is measured for classification only"):
        load_config(None, [known, "train.early_stopping.metric=accuracy"])
    assert load_config(None, [known, "train.early_stopping.metric=loss"]).train.early_stopping.metric == "loss"
    # with the schema left to the data, the check comes before training
    assert load_config(None, ["train.early_stopping.metric=accuracy"]).train.early_stopping.metric == "accuracy"


def test_switching_method_with_set_drops_the_files_method_options(tmp_path):
    # --set method.name=head on a LoRA config failed with "method.r: unknown key"
    (tmp_path / "c.yaml").write_text("method: {name: lora, r: 16, alpha: 32}\n")
    cfg = load_config(tmp_path / "c.yaml", ["method.name=head"])
    assert cfg.method.name == "head"
    cfg = load_config(tmp_path / "c.yaml", ["method.name=lora", "method.r=4"])  # the same method: options kept
    assert cfg.method.r == 4 and cfg.method.alpha == 32
    cfg = load_config(tmp_path / "c.yaml", ["method.name=ia3"])
    assert cfg.method.name == "ia3"
    with pytest.raises(ConfigError, match="method.r: unknown key"):  # options given for the new method still count
        load_config(tmp_path / "c.yaml", ["method.name=head", "method.r=8"])


def test_unknown_keys_suggest_the_real_one():
    # "data.lable_column: unknown key", with no hint; Hugging Face's names for hone's keys got none either
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.lable_column=x", "data.split.tset=0.1", "train.learning_rate=1e-4",
                           "method.name=lora", "method.lora_alpha=8", "train.zzz=1"])
    msg = str(e.value)
    assert "data.lable_column: unknown key (did you mean data.label_column?)" in msg
    assert "data.split.tset: unknown key (did you mean data.split.test?)" in msg
    assert "train.learning_rate: unknown key (hone calls it train.lr)" in msg
    assert "method.lora_alpha: unknown key (hone calls it method.alpha)" in msg
    assert "train.zzz: unknown key\n" in msg + "\n" and "zzz: unknown key (" not in msg
