"""bench/speed.py's result table: ratios of medians, and the conservative ratio against the baseline's fastest run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SPEED = Path(__file__).resolve().parents[1] / "bench" / "speed.py"


def _speed_module():
    spec = importlib.util.spec_from_file_location("hone_bench_speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(samples_per_s: float) -> dict:
    return {"throughput": {"samples_per_s": samples_per_s, "real_tokens_per_s": 16 * samples_per_s,
                           "padding_fraction": 0.03, "mfu": samples_per_s / 600},
            "peak_rss_mb": 1400.0, "train_loss": 4.1}


def test_table_gives_the_ratio_of_medians_and_the_ratio_against_the_fastest_baseline_run():
    speed = _speed_module()
    # session 11's second classify invocation: one HF best run at 58.6 samples/s, the other at 107.5
    by_system = {"baseline-best": [_run(58.6), _run(107.5)],
                 "hone": [_run(145.4), _run(116.6), _run(137.7), _run(150.0)]}
    md = speed.table(by_system, show_eval=False)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines()[2:]}
    medians = rows["**hone / baseline-best**"]
    fastest = rows["hone / baseline-best's fastest run"]
    assert medians[1] == "1.70x"  # 141.55 / 83.05: the slow run drags the baseline's median down
    assert fastest[1] == "1.32x" and fastest[2] == "1.32x" and fastest[5] == "1.32x"  # 141.55 / 107.5
    assert fastest[3] == fastest[4] == ""  # padding and RSS have no "fastest run"
    assert medians[4] == "1.00x"  # peak RSS ratio of medians is still there
