"""End-to-end benchmark: the real llama.cpp client (Gemma 3 270M, all layers offloaded) through each server.

Usage and options: see scripts/bench-e2e.sh, or `python scripts/bench_e2e.py --help`.
Each (round, server) pair starts a fresh server, runs one client process (model load, warm-up, then
--reps pp and tg measurements in llama-bench's style), and stops the server. Servers run alternately
within each round so that slow drifts in machine load hit all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import e2e_common as common  # noqa: E402


def parse_servers(spec: str, default_device: str) -> list[tuple[str, str, str]]:
    """'ggrpc,reference@CPU,ggrpc@Vulkan0,/path/bin@CPU,local' -> [(label, server spec, device)]."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, dev = item.partition("@")
        dev = dev or default_device
        label = "local" if name == "local" else f"{Path(name).name if '/' in name else name}@{dev}"
        out.append((label, name, dev))
    return out


def load_avg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_one(name: str, device: str, a, work: Path, tag: str) -> dict:
    extra = ["--pp", str(a.pp), "--tg", str(a.tg), "--reps", str(a.reps)]
    if name == "local":
        run = common.client("bench", "local", work / tag, *extra)
        srv = None
    else:
        srv = common.Server(common.resolve_server(name), device, a.threads, work / f"{tag}-server.log")
        srv.start()
        try:
            run = common.client("bench", srv.endpoint, work / tag, *extra)
        finally:
            srv.stop()
    if run.rc != 0 or run.info is None:
        msg = f"{tag}: client failed (rc={run.rc}); log: {run.log}\n{run.log_tail(4000)}"
        if srv is not None:
            msg += f"\n--- server log ({srv.log}) ---\n{srv.log_text(4000)}"
        raise RuntimeError(msg)
    if name != "local" and run.info["offloaded"] and run.info["offloaded"][0] != run.info["offloaded"][1]:
        raise RuntimeError(f"{tag}: not all layers offloaded: {run.info['offloaded']}")
    return run.info


def fmt(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):8.1f} ± {sd:5.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=os.environ.get("GGRPC_BENCH_SERVERS", "ggrpc,reference"),
                    help="comma list of NAME[@DEVICE]; NAME = ggrpc | reference | local | path to a binary")
    ap.add_argument("--device", default=common.device_list(), help="default device for entries without @DEV")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="measurements per client process")
    ap.add_argument("--pp", type=int, default=64, help="prompt tokens (one batch)")
    ap.add_argument("--tg", type=int, default=32, help="generated tokens (one at a time)")
    ap.add_argument("--threads", type=int, default=common.env_int("GGRPC_THREADS", max(1, (os.cpu_count() or 2) // 2)),
                    help="server -t, and the client's CPU threads unless GGRPC_CLIENT_THREADS is set "
                         "(default: $GGRPC_THREADS, else half the cores like rpc-server's own default)")
    ap.add_argument("--baseline", default=None, help="label the ratios are relative to (default: first reference)")
    ap.add_argument("--json", default=None, help="also write all measurements here")
    a = ap.parse_args()

    os.environ.setdefault("GGRPC_CLIENT_THREADS", str(a.threads))  # read by the client subprocesses
    servers = parse_servers(a.servers, a.device)
    common.model_path()
    work = Path(tempfile.mkdtemp(prefix="ggrpc-bench-"))
    print(f"bench: pp{a.pp} tg{a.tg}, {a.rounds} rounds x {a.reps} reps, server -t {a.threads}, client threads "
          f"{common.client_threads()}; logs in {work}; load avg {load_avg()}", flush=True)
    results: dict[str, dict[str, list[float]]] = {label: {"pp": [], "tg": []} for label, _, _ in servers}
    for r in range(a.rounds):
        for label, name, dev in servers:
            t0 = time.monotonic()
            info = run_one(name, dev, a, work, f"r{r}-{label.replace('/', '_')}")
            results[label]["pp"] += info["pp_tps"]
            results[label]["tg"] += info["tg_tps"]
            print(f"  round {r + 1} {label:24s} pp {statistics.mean(info['pp_tps']):8.1f} t/s  "
                  f"tg {statistics.mean(info['tg_tps']):7.1f} t/s  ({time.monotonic() - t0:.0f} s, "
                  f"load avg {load_avg()})", flush=True)

    labels = [s[0] for s in servers]
    base = a.baseline or next((lbl for lbl, n, _ in servers if n == "reference"), None)
    if base is not None and base not in results:
        base = None
    print()
    head = f"{'server':24s} {'pp' + str(a.pp) + ' t/s':>16s} {'tg' + str(a.tg) + ' t/s':>16s}"
    if base:
        head += f" {'pp ratio':>9s} {'tg ratio':>9s}"
    print(head)
    print("-" * len(head))
    for lbl in labels:
        pp, tg = results[lbl]["pp"], results[lbl]["tg"]
        line = f"{lbl:24s} {fmt(pp):>16s} {fmt(tg):>16s}"
        if base:
            bp, bt = statistics.mean(results[base]["pp"]), statistics.mean(results[base]["tg"])
            line += f" {statistics.mean(pp) / bp:9.3f} {statistics.mean(tg) / bt:9.3f}"
        print(line)
    if base:
        print(f"(ratios relative to {base}; mean ± stdev over {a.rounds * a.reps} measurements each)")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "baseline": base, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
