"""Per-weight-type MUL_MAT benchmarks through RPC: ggrpc and llama.cpp's own rpc-server, same run.

Usage: see scripts/bench-ops.sh. Starts both servers (CPU, -t THREADS) on free loopback ports, runs
`cargo bench --bench rpc` against them (benches/rpc.rs: each weight type's decode mat-vec in GB/s of
weights and a 64-column prompt matmul in GMAC/s, the two servers adjacent for every case), then reads
criterion's estimates and prints one table with the ratio ggrpc / reference per case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import e2e_common as common  # noqa: E402


def estimates(crit: Path, since: float) -> dict[str, dict[tuple[str, str], tuple[float, int]]]:
    """group -> (type, server) -> (mean seconds per iteration, weight bytes), for this run's cases."""
    out: dict[str, dict[tuple[str, str], tuple[float, int]]] = {}
    for meta in crit.glob("rpc_*/*/new/benchmark.json"):
        if meta.stat().st_mtime < since:
            continue  # an earlier run's case
        m = json.loads(meta.read_text())
        typ, _, server = m["function_id"].partition("/")
        mean = json.loads((meta.parent / "estimates.json").read_text())["mean"]["point_estimate"] * 1e-9
        out.setdefault(m["group_id"], {})[(typ, server)] = (mean, m.get("throughput", {}).get("Bytes", 0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("GGRPC_THREADS", "0")) or
                    max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--filter", default="", help="criterion filter, e.g. q4_K")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ggrpc-bench-ops-"))
    binary = str(REPO / "target" / "release" / "rpc-server")
    ggrpc = common.Server(binary, "CPU", a.threads, work / "ggrpc.log")
    ref = common.Server("reference", "CPU", a.threads, work / "reference.log")
    crit = REPO / "target" / "criterion"
    started = time.time()
    with ggrpc, ref:
        env = dict(os.environ, GGRPC_BENCH_SERVERS=f"ggrpc={ggrpc.endpoint},reference={ref.endpoint}")
        cmd = ["cargo", "bench", "--bench", "rpc", "--", "--noplot"] + ([a.filter] if a.filter else [])
        print(f"bench-ops: -t {a.threads}, logs in {work}; {' '.join(cmd)}", file=sys.stderr)
        run = subprocess.run(cmd, cwd=REPO, env=env)
        if run.returncode != 0:
            return run.returncode
    print(f"\n{'case':<36} {'ggrpc':>12} {'reference':>12} {'ratio':>7}")
    print("-" * 70)
    for group, times in sorted(estimates(crit, started).items()):
        shape = group.removeprefix("rpc_").rsplit("_", 2)
        (k, m), n = (int(v) for v in shape[1].split("x")), int(shape[2].removeprefix("n"))
        for typ in sorted({t for t, _ in times}):
            if (typ, "ggrpc") not in times or (typ, "reference") not in times:
                continue
            (g, nbytes), (r, _) = times[(typ, "ggrpc")], times[(typ, "reference")]
            if n == 1:
                unit, val = "GB/s", lambda s: nbytes / s / 1e9
            else:
                unit, val = "GMAC/s", lambda s: k * m * n / s / 1e9
            name = f"{shape[0]} {k}x{m} n={n} {typ}"
            print(f"{name:<36} {val(g):>7.2f} {unit:<6} {val(r):>7.2f} {unit:<6} {r / g:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
