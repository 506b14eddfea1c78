"""Host-side helpers for the RPC 8.0.0 real-client tier (tests/e2e/test_v8.py, scripts/trace_v8.py).

The 8.0.0 client (llama-cpp-py-sync 0.11739, llama.cpp b11739) needs glibc >= 2.38, so it and llama.cpp's own
v8 server run inside the Debian 13 root that scripts/e2e-v8-env.sh makes; this module only starts them as
subprocesses (`scripts/e2e-v8-env.sh run ...`). The server under test runs on the host. Nothing here imports
llama_cpp; it needs only the standard library.

Environment (besides those of e2e_common):
  GGRPC_SERVER     server under test: a binary path (launched with --protocol 8 -H 127.0.0.1 -p PORT -d DEV
                   -t N), `reference` (llama.cpp's v8 server from the wheel) or `ggrpc` (default:
                   <repo>/target/release/rpc-server)
  GGRPC_V8_SERVER_ARGS  extra arguments for a binary server under test (split like a shell would)
  GGRPC_V8_TIMEOUT seconds per v8 client run (default 240)
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_common as common  # noqa: E402

HERE = common.HERE
REPO = common.REPO
ENV_SCRIPT = REPO / "scripts" / "e2e-v8-env.sh"
COMM_PORT_OFFSET = 1000  # the reference's rank 0 listens for its peer on (its endpoint's port + 1000)


def setup_root(timeout: float = 1800) -> tuple[bool, str]:
    """Run scripts/e2e-v8-env.sh (instant when cached). Returns (ok, last lines of its output)."""
    try:
        cp = subprocess.run(["bash", str(ENV_SCRIPT)], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"{ENV_SCRIPT} timed out after {timeout} s"
    out = (cp.stdout + cp.stderr).strip().splitlines()
    return cp.returncode == 0, "\n".join(out[-15:])


def in_root(*argv: str) -> list[str]:
    """argv that runs ARGV inside the Debian 13 root (`python3` = the root's venv with the wheel)."""
    return ["bash", str(ENV_SCRIPT), "run", *argv]


def _bindable(port: int) -> bool:
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port_pair(offset: int = COMM_PORT_OFFSET, lo: int = 20000, hi: int = 31000) -> int:
    """A port P with P and P+offset both free (below the ephemeral range, so outgoing sockets rarely take them)."""
    for _ in range(500):
        p = random.randrange(lo, hi)
        if _bindable(p) and _bindable(p + offset):
            return p
    raise RuntimeError("no free port pair found")


def resolve_spec() -> str:
    spec = os.environ.get("GGRPC_SERVER") or "ggrpc"
    if spec == "ggrpc":
        return str(REPO / "target" / "release" / "rpc-server")
    return spec


class V8Server(common.Server):
    """A v8 server on 127.0.0.1:P with P+1000 free too: `reference` (in the root) or a binary with --protocol 8."""

    def argv(self, port: int) -> list[str]:
        args = ["-H", "127.0.0.1", "-p", str(port), "-d", self.device, "-t", str(self.threads)]
        if self.spec == "reference":
            return in_root("python3", str(HERE / "ref_server_v8.py"), *args)
        extra = shlex.split(os.environ.get("GGRPC_V8_SERVER_ARGS", ""))
        return [self.spec, "--protocol", "8", *args, *extra]

    @property
    def label(self) -> str:
        return "reference" if self.spec == "reference" else Path(self.spec).name

    def pick_port(self) -> int:
        return free_port_pair()

    def start(self, timeout: float = 60.0) -> "V8Server":
        super().start(timeout)
        return self


def client_v8(kind: str, endpoints: list[str], workdir: Path, tag: str, model: Path, *extra: str) -> common.ClientRun:
    """Run tests/e2e/client_v8.py KIND inside the root; returns even if it aborted or hung."""
    workdir.mkdir(parents=True, exist_ok=True)
    info, log = workdir / f"{tag}.json", workdir / f"{tag}.log"
    info.unlink(missing_ok=True)
    ep = ",".join(endpoints) if endpoints else "local"
    argv = in_root("python3", str(HERE / "client_v8.py"), kind, "--model", str(model), "--endpoint", ep,
                   "--info", str(info), *extra)
    timeout = common.env_int("GGRPC_V8_TIMEOUT", 240)
    t0 = time.monotonic()
    with open(log, "ab") as logf:
        logf.write(f"$ {shlex.join(argv)}\n".encode())
        logf.flush()
        try:
            rc = subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -999
    run = common.ClientRun(rc, json.loads(info.read_text()) if info.exists() else None, log)
    run.wall_s = time.monotonic() - t0
    return run


def logits_args(out: Path, split: str = "layer", fa: int = 1) -> list[str]:
    return ["--out", str(out), "--split", split, "--fa", str(fa)]
