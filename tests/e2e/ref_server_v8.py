"""llama.cpp's own RPC 8.0.0 server (from the llama-cpp-py-sync 0.11739 wheel), with rpc-server's command line.

Runs inside the Debian 13 root (scripts/e2e-v8-env.sh):

    scripts/e2e-v8-env.sh run python3 tests/e2e/ref_server_v8.py [-H 127.0.0.1] [-p 50052] [-d CPU] [-t 2] [-c]

Calls `ggml_backend_rpc_start_server(endpoint, cache_dir, n_threads, n_devices, devices)` of the wheel's
`libggml-rpc.so.0` through ctypes; it prints `Starting RPC server v8.0.0` and blocks until killed. Devices
are looked up case-insensitively like the real `rpc-server -d`. In tensor-parallel mode (`split_mode="tensor"`)
the server that is rank 0 also listens on 0.0.0.0:(the port in COMM_INIT) for its peer.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import sys
from pathlib import Path


def wheel_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp_py_sync")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama_cpp_py_sync is not installed here; run this inside the root (scripts/e2e-v8-env.sh run)")
    return Path(list(spec.submodule_search_locations)[0])


def load_ggml() -> dict:
    """The wheel's ggml libraries by their sonames, RTLD_GLOBAL (one backend registry for all of them)."""
    d = wheel_dir()
    libs = {n: ctypes.CDLL(str(d / f"lib{n}.so.0"), mode=ctypes.RTLD_GLOBAL) for n in ("ggml-base", "ggml-cpu", "ggml", "ggml-rpc")}
    vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    sigs = {
        ("ggml", "ggml_backend_dev_count"): ([], sz),
        ("ggml", "ggml_backend_dev_get"): ([sz], vp),
        ("ggml-base", "ggml_backend_dev_name"): ([vp], cp),
        ("ggml-base", "ggml_backend_dev_description"): ([vp], cp),
        ("ggml-rpc", "ggml_backend_rpc_start_server"): ([cp, cp, sz, sz, ctypes.POINTER(vp)], None),
    }
    fns = {}
    for (lib, name), (args, res) in sigs.items():
        f = getattr(libs[lib], name)
        f.argtypes, f.restype = args, res
        fns[name] = f
    return fns


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=50052)
    ap.add_argument("-d", "--device", default="CPU")
    ap.add_argument("-t", "--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("-c", "--cache", action="store_true", help="local file cache (LLAMA_CACHE or ~/.cache/llama.cpp)/rpc")
    a = ap.parse_args()

    g = load_ggml()
    devs = []
    for i in range(g["ggml_backend_dev_count"]()):
        h = g["ggml_backend_dev_get"](i)
        devs.append((g["ggml_backend_dev_name"](h).decode(), g["ggml_backend_dev_description"](h).decode(), h))
    chosen = []
    for name in a.device.replace("/", ",").split(","):
        match = [d for d in devs if d[0].lower() == name.strip().lower()]
        if not match:
            print(f"error: unknown device: {name}", file=sys.stderr)
            print("available devices:", file=sys.stderr)
            for d in devs:
                print(f"  {d[0]}: {d[1]}", file=sys.stderr)
            return 1
        chosen.append(match[0][2])
    arr = (ctypes.c_void_p * len(chosen))(*chosen)
    cache_dir = None
    if a.cache:
        cache_dir = Path(os.environ.get("LLAMA_CACHE", Path.home() / ".cache" / "llama.cpp")) / "rpc"
        cache_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    endpoint = f"{a.host}:{a.port}".encode()
    g["ggml_backend_rpc_start_server"](endpoint, str(cache_dir).encode() if cache_dir else None, a.threads, len(chosen), arr)
    return 3  # returns only if it could not listen


if __name__ == "__main__":
    sys.exit(main())
