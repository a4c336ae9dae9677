"""Collect a GPU check's outputs (see bench/gpu_check.sh) into one markdown summary on stdout."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def main(out: str) -> int:
    d = Path(out)
    print("# fastcka GPU check\n")
    env = d / "env.txt"
    if env.exists():
        print("## Machine\n\n```\n" + env.read_text().strip() + "\n```\n")
    log = d / "pytest.log"
    if log.exists():
        lines = [ln for ln in log.read_text().splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        print("## GPU tests (`pytest -m 'gpu or cudasim'`, native CUDA)\n")
        print((lines[-1] if lines else "no pytest summary line (crashed or timed out)") + "\n")
    agr = d / "agreement.json"
    if agr.exists():
        rows = json.loads(agr.read_text())
        print("## CPU/GPU agreement\n")
        print("| check | CPU | GPU | difference | tolerance | ok |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['check']} | {r['cpu']:.12g} | {r['gpu']:.12g} | {r['diff']:.3g} | "
                  f"{r['tol']:.0e} | {'yes' if r['ok'] else '**NO**'} |")
        print()
    for name in ("cka", "qap", "local_cka"):
        md = d / f"{name}_gpu.md"
        print(f"## Benchmark: {name}\n")
        print(md.read_text().strip() + "\n" if md.exists() else "(no result: see the log)\n")
    large = sorted(d.glob("local_large_*.json"))
    if large:
        print("## Local CKA streaming top-10, q = 20,000, p = 1,000 (same inputs on GPU and CPU)\n")
        print("| kernel | device | seconds | top-1 | top-10 | peak RSS MiB |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for f in large:
            kern, dev = f.stem.split("_")[2:4]
            try:
                r = json.loads(f.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                print(f"| {kern} | {dev} | failed or timed out | | | |")
                continue
            print(f"| {kern} | {dev} | {r['seconds']:.2f} | {r['top1']:.4f} | {r['top10']:.4f} | "
                  f"{r['peak_rss_mib']:.0f} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/gpu-run"))
