"""llama.cpp's reference RPC server, from the llama-cpp-python wheel, with rpc-server's command line.

    python ref_server.py [-H 127.0.0.1] [-p 50052] [-d CPU[,DEV...]] [-t N] [-c]

Runs `ggml_backend_rpc_start_server` (blocks until killed) on the named ggml devices, looked up
case-insensitively like the real `rpc-server -d`. Without -d: the CPU device.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_common import list_devices, load_ggml  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=50052)
    ap.add_argument("-d", "--device", default="CPU")
    ap.add_argument("-t", "--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("-c", "--cache", action="store_true")
    a = ap.parse_args()

    g = load_ggml()
    devs = list_devices(g)
    chosen = []
    for name in a.device.replace("/", ",").split(","):
        match = [d for d in devs if d[0].lower() == name.strip().lower()]
        if not match:
            print(f"error: unknown device: {name}", file=sys.stderr)
            print("available devices:")
            for d in devs:
                print(f"  {d[0]}: {d[1]}")
            return 1
        chosen.append(match[0][3])
    arr = (ctypes.c_void_p * len(chosen))(*chosen)
    cache_dir = None
    if a.cache:
        cache_dir = str(Path(os.environ.get("LLAMA_CACHE", Path.home() / ".cache" / "llama.cpp")) / "rpc").encode()
        os.makedirs(cache_dir, exist_ok=True)
    endpoint = f"{a.host}:{a.port}".encode()
    g["ggml_backend_rpc_start_server"](endpoint, cache_dir, a.threads, len(chosen), arr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
