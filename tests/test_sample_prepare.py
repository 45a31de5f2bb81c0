"""The README's main job: the telecom recipe on the bundled sample, with PII redaction on."""

import json
from pathlib import Path

from hone.config import load_config
from hone.data.prepare import prepare

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "telecom_prepare.yaml"


def test_telecom_recipe_every_step_works_and_reruns_byte_identical(tmp_path):
    cfg = load_config(RECIPE)
    prep = prepare(cfg, tmp_path / "a")
    prepare(cfg, tmp_path / "b")
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    steps = prep.report.steps
    changed = steps["clean"]["records_changed"]
    assert all(changed[k] > 0 for k in ("unicode", "html", "signatures", "boilerplate", "normalize", "whitespace"))
    assert steps["clean"]["dropped"]["language"] >= 10  # the planted Spanish / French / German tickets
    assert steps["pii"]["records_changed"] > 150
    assert {"PERSON", "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "ADDRESS", "ACCOUNT_NUMBER"} <= set(
        steps["pii"]["entities"])
    assert steps["dedupe"]["exact_removed"] > 50 and steps["dedupe"]["near_removed"] > 30
    assert steps["leakage"]["action"] == "drop"
    text = "".join((tmp_path / "a" / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    assert "@example.com" not in text and "<EMAIL_1>" in text
    # customers never span splits; 26 intents in train with class weights in the metadata
    groups = {s: {json.loads(x)["_hone"]["group"] for x in (tmp_path / "a" / f"{s}.jsonl").read_text().splitlines()}
              for s in ("train", "validation", "test")}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert len(meta["labels"]) == 26 and len(meta["class_weights"]) == 26
