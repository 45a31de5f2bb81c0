"""The pipeline end to end on real data: BANKING77 from ../shared (skipped when absent)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hone.cli import app

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
pytestmark = pytest.mark.skipif(not (SHARED / "train.csv").exists(), reason="../shared/data/banking77 not present")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "banking77_prepare.yaml"


def test_banking77_csv_with_column_mapping(tmp_path):
    r = CliRunner().invoke(app, ["data", "prepare", str(CONFIG), "-o", str(tmp_path / "b77")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "b77" / "data_report.json").read_text())
    assert rep["n_labels"] == 77 and rep["valid"] == 10003 + 3080 and rep["error_count"] == 0
    # the real imbalance of the train file: 187 vs 35 examples per intent (test is 40 each)
    assert rep["labels"]["card_payment_fee_charged"] == 187 + 40
    assert rep["labels"]["contactless_not_working"] == 35 + 40
    assert rep["splits"]["test"]["rows"] <= 3080 and rep["splits"]["test"]["labels"] == 77
    assert 5.0 < rep["splits"]["train"]["imbalance_ratio"] < 6.0
    assert rep["steps"]["dedupe"]["train"]["exact_removed"] > 0  # BANKING77 has real duplicates
