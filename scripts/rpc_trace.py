"""Transparent TCP proxy that summarises the ggml RPC commands a client sends, one line per connection.

    python3 scripts/rpc_trace.py LISTEN_PORT UPSTREAM_PORT [--verbose]

Point the client at 127.0.0.1:LISTEN_PORT and run a server on UPSTREAM_PORT. Responses are passed through
untouched. Example (the real client through the reference server):
    python tests/e2e/ref_server.py -p 51001 &  python3 scripts/rpc_trace.py 51002 51001 &
    python tests/e2e/client.py generate --endpoint 127.0.0.1:51002 --n 4 --info /tmp/g.json
"""

import collections
import socket
import struct
import sys
import threading

NAMES = ["ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE", "FREE_BUFFER", "BUFFER_CLEAR",
         "SET_TENSOR", "SET_TENSOR_HASH", "GET_TENSOR", "COPY_TENSOR", "GRAPH_COMPUTE", "GET_DEVICE_MEMORY",
         "INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO", "DEVICE_COUNT", "GRAPH_RECOMPUTE", "MEMSET_TENSOR"]


def recvn(c: socket.socket, k: int) -> bytes:
    b = bytearray()
    while len(b) < k:
        x = c.recv(min(k - len(b), 1 << 20))
        if not x:
            raise EOFError
        b += x
    return bytes(b)


def pump_back(up: socket.socket, down: socket.socket) -> None:
    try:
        while x := up.recv(1 << 20):
            down.sendall(x)
    except OSError:
        pass
    try:
        down.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(down: socket.socket, idx: int, upstream: int, verbose: bool) -> None:
    up = socket.create_connection(("127.0.0.1", upstream))
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pump_back, args=(up, down), daemon=True).start()
    counts: collections.Counter = collections.Counter()
    first: list[str] = []
    try:
        while True:
            head = recvn(down, 9)  # cmd u8 + payload size u64
            size = struct.unpack("<Q", head[1:])[0]
            payload = recvn(down, size)
            up.sendall(head + payload)
            name = NAMES[head[0]] if head[0] < len(NAMES) else f"CMD{head[0]}"
            counts[name] += 1
            if verbose:
                print(f"conn {idx}: {name}({size})", flush=True)
            elif len(first) < 8:
                first.append(f"{name}({size})")
    except (EOFError, OSError):
        pass
    for s in (up, down):  # shutdown first: a recv blocked in pump_back would otherwise keep the socket open
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
    print(f"conn {idx}: {dict(counts)}; first: {' '.join(first)}", flush=True)


def main() -> None:
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    verbose = "--verbose" in sys.argv
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen))
    srv.listen(16)
    n = 0
    while True:
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n += 1
        threading.Thread(target=handle, args=(c, n, upstream, verbose), daemon=True).start()


if __name__ == "__main__":
    main()
