"""Quality bars of the generative issue, measured on the public data in ../shared (run by hand).

    python bench/gen_datasets.py sgd ../hone-bench-data/sgd          # once per dataset
    python bench/gen_quality.py sgd        # configs/sgd_banking_reply.yaml: SmolLM2 + LoRA vs base
    python bench/gen_quality.py dialogsum  # configs/dialogsum_summary.yaml
    python bench/gen_quality.py teleqna    # configs/teleqna_dapt.yaml: DAPT on TeleQnA explanations, MC base vs DAPT

Each run writes its run directory under runs/bench-<name>/ (report.html there) and prints a
JSON summary with the wall times; figures go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "hone-bench-data"


def _summary(report: dict) -> dict:
    out = {"systems": {}, "gains": {}}
    for name, s in report.get("systems", {}).items():
        out["systems"][name] = {m: round(v["value"], 2) for m, v in s.get("scores", {}).items()}
        out["systems"][name].update({k: s[k] for k in ("perplexity", "seconds") if k in s})
        if "stats" in s:
            out["systems"][name]["stop_rate"] = s["stats"]["stop_rate"]
    for name, g in report.get("gains", {}).items():
        out["gains"][name] = {m: [round(x["gain"], 2), round(x["low"], 2), round(x["high"], 2)] for m, x in g.items()}
    out["training_s"] = report.get("training", {}).get("wall_time_s")
    out["forgetting"] = report.get("forgetting")
    out["choice"] = report.get("choice")
    return out


def run_recipe(name: str, recipe: str) -> dict:
    from hone.config import load_config
    from hone.pipeline import run

    cfg = load_config(ROOT / "configs" / recipe)
    run_dir = ROOT / "runs" / f"bench-{name}"
    t0 = time.perf_counter()
    files = run(cfg, run_dir, log=lambda m: print(f"  {m}", flush=True))
    report = json.loads(files["json"].read_text())
    return {"total_s": round(time.perf_counter() - t0, 1), **_summary(report), "report": str(files["html"])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sgd", "dialogsum", "teleqna"])
    a = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()} python {sys.version.split()[0]}")
    out = run_recipe(a.what, {"sgd": "sgd_banking_reply.yaml", "dialogsum": "dialogsum_summary.yaml",
                              "teleqna": "teleqna_dapt.yaml"}[a.what])
    print(json.dumps(out, indent=1))
    (ROOT / "runs").mkdir(exist_ok=True)
    (ROOT / "runs" / f"bench-{a.what}.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
