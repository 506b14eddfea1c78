#!/usr/bin/env python3
"""Runs ggml's test-backend-ops against a ggrpc server, one op per run, and prints the table.

It never builds llama.cpp: point TBO at a test-backend-ops binary you built yourself from the llama.cpp
tree of the client you test (see README, "ggml's own op suite"), patched to register the RPC server
named in $GGRPC_RPC. Each op gets a fresh ggrpc server, so an abort in one op cannot hide the next.

  TBO=/path/test-backend-ops python3 scripts/backend_ops.py [--device CPU] [--protocol 7] [OP ...]
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time

OPS = """DUP ADD ADD_ID ADD1 ACC SUB MUL DIV SQR SQRT LOG SIN COS SUM SUM_ROWS CUMSUM MEAN ARGMAX
COUNT_EQUAL REPEAT REPEAT_BACK CONCAT SILU_BACK NORM RMS_NORM RMS_NORM_BACK GROUP_NORM L2_NORM MUL_MAT
MUL_MAT_ID OUT_PROD SCALE SET CPY CONT GET_ROWS GET_ROWS_BACK SET_ROWS DIAG DIAG_MASK_INF DIAG_MASK_ZERO
SOFT_MAX SOFT_MAX_BACK ROPE ROPE_BACK CLAMP CONV_TRANSPOSE_1D IM2COL IM2COL_BACK IM2COL_3D COL2IM_1D
CONV_2D CONV_3D CONV_2D_DW CONV_TRANSPOSE_2D POOL_1D POOL_2D POOL_2D_BACK UPSCALE PAD PAD_REFLECT_1D ROLL
ARANGE TIMESTEP_EMBEDDING ARGSORT TOP_K LEAKY_RELU TRI FILL FLASH_ATTN_EXT FLASH_ATTN_BACK SSM_CONV
SSM_SCAN WIN_PART WIN_UNPART GET_REL_POS ADD_REL_POS RWKV_WKV6 GATED_LINEAR_ATTN RWKV_WKV7 SOLVE_TRI
GATED_DELTA_NET LIGHTNING_INDEXER DSV4_HC_COMB DSV4_HC_PRE DSV4_HC_POST CROSS_ENTROPY_LOSS
CROSS_ENTROPY_LOSS_BACK OPT_STEP_ADAMW OPT_STEP_SGD
ABS SGN NEG STEP TANH ELU RELU SIGMOID GELU GELU_QUICK SILU HARDSWISH HARDSIGMOID EXP EXPM1 SOFTPLUS
GELU_ERF XIELU FLOOR CEIL ROUND TRUNC
REGLU GEGLU SWIGLU SWIGLU_OAI GEGLU_ERF GEGLU_QUICK SWIGLU_CLAMP""".split()

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def run_op(args, op):
    port = free_port()
    log = open(os.path.join(args.logs, f"{op}.server.log"), "w")
    srv = subprocess.Popen(
        [args.server, "--protocol", args.protocol, "-d", args.device, "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_port(port, srv):
            return {"op": op, "status": "server did not start"}
        env = dict(os.environ, GGRPC_RPC=f"127.0.0.1:{port}")
        try:
            p = subprocess.run([args.tbo, "test", "-o", op, "-b", "RPC0"], env=env,
                               capture_output=True, text=True, timeout=args.timeout)
            out, rc = ANSI.sub("", p.stdout + p.stderr), p.returncode
        except subprocess.TimeoutExpired as e:
            out = ANSI.sub("", (e.stdout or b"").decode(errors="replace")) if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc = "timeout"
        with open(os.path.join(args.logs, f"{op}.log"), "w") as f:
            f.write(out)
        cases = [c for c in re.findall(r"^\s+(\S.*?): (OK|FAIL|not supported.*)$", out, re.M) if not c[0].startswith("Backend ")]
        ok = sum(1 for _, s in cases if s == "OK")
        fail = [c for c, s in cases if s == "FAIL"]
        m = re.search(r"(\d+)/(\d+) tests passed", out)
        total = int(m.group(2)) if m else None
        srv_alive = srv.poll() is None
        if m and int(m.group(1)) == total and rc == 0:
            status = "pass"
        elif total == 0 or (m is None and not cases and rc == 0):
            status = "no cases"
        else:
            status = "FAIL" if m else f"aborted (rc {rc})"
        res = {"op": op, "status": status, "ok": ok, "total": total, "failed": fail[:20],
               "server_alive": srv_alive}
        if status.startswith("aborted"):
            tail = [l for l in out.splitlines() if l.strip()][-3:]
            res["tail"] = tail
        return res
    finally:
        srv.kill()
        srv.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ops", nargs="*")
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--protocol", default="7")
    ap.add_argument("--server", default="target/release/rpc-server")
    ap.add_argument("--tbo", default=os.environ.get("TBO", ""))
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--logs", default="/tmp/backend-ops")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not args.tbo or not os.path.exists(args.tbo):
        sys.exit("set TBO to a test-backend-ops binary (see the docstring)")
    os.makedirs(args.logs, exist_ok=True)
    results = []
    for op in args.ops or OPS:
        r = run_op(args, op)
        results.append(r)
        extra = "" if r["status"] == "pass" else f"  {r.get('failed') or r.get('tail')}"
        print(f"{op:24} {r['status']:16} {r.get('ok')}/{r.get('total')}{extra}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\n| op | cases | result |\n|---|---|---|")
    for r in results:
        print(f"| {r['op']} | {r.get('ok')}/{r.get('total')} | {r['status']} |")
    bad = [r for r in results if r["status"] not in ("pass", "no cases")]
    print(f"\n{len(results) - len(bad)}/{len(results)} ops pass on {args.device}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
