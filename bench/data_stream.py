"""Streaming check: `hone data check` time and peak RSS on large generated JSONL files.

    python bench/data_stream.py --mb 225 900

Writes synthetic classification rows (random support-ish words, every 4th file repeated to
stress duplicate detection) to a temp dir, runs `hone data check` in a child process per
size, and prints a table plus one JSON line.  Peak RSS is the child's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("my bill is wrong the network is down again roaming in spain does not work please help asap "
         "thanks router sim card esim port number refund").split()


def make(path: Path, mb: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    rows, size = 0, 0
    with open(path, "w") as fh:
        while size < mb * 1_000_000:
            t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            line = json.dumps({"text": t, "label": f"intent_{rows % 30}"}) + "\n"
            fh.write(line)
            size += len(line)
            rows += 1
    return rows


def run(path: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hone", "data", "check", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, max(peak, before) / 1024  # KB -> MB (ru_maxrss of the largest child so far)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, nargs="+", default=[225, 900])
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for mb in sorted(args.mb):  # ascending, so ru_maxrss of the newest child is its own peak
            f = Path(d) / f"rows_{mb}mb.jsonl"
            rows = make(f, mb)
            secs, rss = run(f)
            results.append({"file_mb": round(f.stat().st_size / 1e6), "rows": rows, "seconds": round(secs, 1),
                            "peak_rss_mb": round(rss), "rows_per_s": round(rows / secs)})
            f.unlink()
    print(f"{'file MB':>8} {'rows':>10} {'seconds':>8} {'peak RSS MB':>12} {'rows/s':>9}")
    for r in results:
        print(f"{r['file_mb']:>8} {r['rows']:>10} {r['seconds']:>8} {r['peak_rss_mb']:>12} {r['rows_per_s']:>9}")
    print(json.dumps({"bench": "data_stream", "results": results}))


if __name__ == "__main__":
    main()
