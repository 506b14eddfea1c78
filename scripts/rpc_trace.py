"""Transparent TCP proxy that summarises the ggml RPC commands a client sends, one summary per connection.

    python3 scripts/rpc_trace.py LISTEN_PORT UPSTREAM_PORT [--major 7|8] [--verbose] [--seq] [--json FILE]
                                 [--comm-proxy] [--upstream-host HOST]

Point the client at 127.0.0.1:LISTEN_PORT and run a server on UPSTREAM_PORT. Bytes are passed through
untouched in both directions (except with --comm-proxy, below); requests and response frames are parsed on
the way. A response frame is attributed to the most recent request forwarded before it: the client never has
more than one response outstanding, so that is exact. --major selects the command table and the
GRAPH_COMPUTE / GRAPH_RECOMPUTE layouts (7: `u32 device | u32 n_nodes ...`, RECOMPUTE `{u32 device}`;
8: `u32 device | u64 uid | u32 n_nodes ...`, RECOMPUTE `{u32 device, u64 uid}`, plus SET_TENSOR_2D 18,
GET_TENSOR_2D 19, COMM_INIT 20, COMM_ALLREDUCE 21, COMM_FREE 22). Default 7.

Per connection it prints the command counts, the first commands, and (--seq) the whole command sequence
run-length encoded; for 8.0.0 also the graph uids of GRAPH_COMPUTE / GRAPH_RECOMPUTE, the COMM_INIT fields
and reply, the element counts of COMM_ALLREDUCE tensors and the 2D transfer headers. --json appends the
same summary as one JSON object per line. --verbose prints every command as it passes.

--comm-proxy (8.0.0, tensor parallelism): when a COMM_INIT with rank > 0 passes, the proxy listens on a free
port Q, rewrites the request's port to Q and forwards Q to the original host:port, counting the bytes the
two servers exchange (24 bytes of conn_caps each way, then per allreduce the wire payload each way); the
summary compares them with what the COMM_ALLREDUCE tensors predict (f32 tensors of >= 32768 elements
travel as bf16).

Example (the v8 client through llama.cpp's own v8 server, inside the Debian 13 root):
    scripts/e2e-v8-env.sh run python3 tests/e2e/ref_server_v8.py -p 51001 &
    python3 scripts/rpc_trace.py 51002 51001 --major 8 --seq &
    scripts/e2e-v8-env.sh run python3 tests/e2e/client_v8.py logits --model M --endpoint 127.0.0.1:51002 ...
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import struct
import sys
import threading
import time

NAMES_V7 = ["ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE", "FREE_BUFFER", "BUFFER_CLEAR",
            "SET_TENSOR", "SET_TENSOR_HASH", "GET_TENSOR", "COPY_TENSOR", "GRAPH_COMPUTE", "GET_DEVICE_MEMORY",
            "INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO", "DEVICE_COUNT", "GRAPH_RECOMPUTE", "MEMSET_TENSOR"]
NAMES_V8 = NAMES_V7 + ["SET_TENSOR_2D", "GET_TENSOR_2D", "COMM_INIT", "COMM_ALLREDUCE", "COMM_FREE"]
NAMES = NAMES_V7  # kept for importers of the old module-level table

TENSOR = 296  # sizeof(rpc_tensor)
STREAMED = {"SET_TENSOR", "SET_TENSOR_2D"}  # only a prefix is kept; the data is streamed through
PREFIX = 400
TYPE_SIZES = {0: 4, 1: 2, 30: 2, 24: 1, 25: 2, 26: 4, 27: 8, 28: 8}  # f32 f16 bf16 i8 i16 i32 i64 f64

OUT_LOCK = threading.Lock()


def recvn(c: socket.socket, k: int) -> bytes:
    b = bytearray()
    while len(b) < k:
        x = c.recv(min(k - len(b), 1 << 20))
        if not x:
            raise EOFError
        b += x
    return bytes(b)


def parse_tensor(b: bytes) -> dict:
    ne = list(struct.unpack_from("<4I", b, 20))
    nb = list(struct.unpack_from("<4I", b, 36))
    n = 1
    for x in ne:
        n *= x
    return {
        "type": struct.unpack_from("<I", b, 8)[0],
        "ne": ne,
        "nb": nb,
        "nelements": n,
        "name": b[228:292].split(b"\0", 1)[0].decode(errors="replace"),
    }


def rle(seq: list[str]) -> list[list]:
    out: list[list] = []
    for s in seq:
        if out and out[-1][0] == s:
            out[-1][1] += 1
        else:
            out.append([s, 1])
    return out


class CommLink:
    """Forwards one server-to-server comm connection, counting the bytes each way."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.local_port = self.lsock.getsockname()[1]
        self.to_rank0 = 0  # bytes from the connecting peer (rank 1) to rank 0
        self.to_rank1 = 0
        self.error = None
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.lsock.settimeout(60)
            a, _ = self.lsock.accept()  # rank 1
            self.lsock.close()
            a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            b = None
            for _ in range(200):  # rank 0 may not be listening yet
                try:
                    b = socket.create_connection((self.host, self.port), timeout=5)
                    break
                except OSError:
                    time.sleep(0.05)
            if b is None:
                raise OSError(f"cannot reach rank 0 at {self.host}:{self.port}")
            b.settimeout(None)
            b.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._pump, args=(b, a, "to_rank1"), daemon=True)
            t.start()
            self._pump(a, b, "to_rank0")
            t.join(10)
        except OSError as e:
            self.error = str(e)
        finally:
            self.done.set()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        try:
            while x := src.recv(1 << 20):
                dst.sendall(x)
                setattr(self, counter, getattr(self, counter) + len(x))
        except OSError:
            pass
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Conn:
    def __init__(self, idx: int, args):
        self.idx, self.args = idx, args
        self.names = NAMES_V8 if args.major == 8 else NAMES_V7
        self.counts: collections.Counter = collections.Counter()
        self.payload_bytes: collections.Counter = collections.Counter()
        self.req_sizes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.resp_sizes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.resp_first: dict[str, str] = {}
        self.seq: list[str] = []
        self.first: list[str] = []
        self.last = "(none)"
        self.graph_compute: list[dict] = []
        self.graph_recompute: collections.Counter = collections.Counter()
        self.recompute_unknown = 0
        self.comm_init: list[dict] = []
        self.allreduce: collections.Counter = collections.Counter()
        self.allreduce_wire_bf16 = 0
        self.allreduce_wire_f32 = 0
        self.allreduce_n = 0
        self.comm_free: list[int] = []
        self.t2d: list[dict] = []
        self.t2d_counts: collections.Counter = collections.Counter()
        self.links: list[CommLink] = []
        self.t0 = time.time()

    def name(self, cmd: int) -> str:
        return self.names[cmd] if cmd < len(self.names) else f"CMD{cmd}"

    # ---- requests ---------------------------------------------------------------------------------------
    def on_request(self, name: str, size: int, p: bytes) -> bytes:
        """Record one request (p: whole payload, or its prefix for streamed ones); may return a rewrite."""
        v8 = self.args.major == 8
        try:
            if name == "GRAPH_COMPUTE":
                if v8:
                    dev, uid, n_nodes = struct.unpack_from("<IQI", p, 0)
                    nt_off = 16 + 8 * n_nodes
                else:
                    dev, n_nodes = struct.unpack_from("<II", p, 0)
                    uid, nt_off = None, 8 + 8 * n_nodes
                n_tensors = struct.unpack_from("<I", p, nt_off)[0]
                self.graph_compute.append({"device": dev, "uid": uid, "n_nodes": n_nodes, "n_tensors": n_tensors,
                                           "size": size, "exact": size == nt_off + 4 + TENSOR * n_tensors})
            elif name == "GRAPH_RECOMPUTE":
                if v8 and size >= 12:
                    dev, uid = struct.unpack_from("<IQ", p, 0)
                else:
                    dev, uid = struct.unpack_from("<I", p, 0)[0], None
                self.graph_recompute[(dev, uid)] += 1
                if v8 and uid not in {g["uid"] for g in self.graph_compute if g["device"] == dev}:
                    self.recompute_unknown += 1
            elif v8 and name == "COMM_INIT":
                dev, rank, world, port = struct.unpack_from("<4I", p, 0)
                host = p[16:80].split(b"\0", 1)[0].decode(errors="replace")
                rec = {"device": dev, "rank": rank, "world": world, "port": port, "host": host, "size": size}
                self.comm_init.append(rec)
                if self.args.comm_proxy and rank > 0:
                    link = CommLink(host or "127.0.0.1", port)
                    self.links.append(link)
                    rec["rewritten_port"] = link.local_port
                    p = bytearray(p)
                    struct.pack_into("<I", p, 12, link.local_port)
                    return bytes(p)
            elif v8 and name == "COMM_ALLREDUCE":
                t = parse_tensor(p[4:4 + TENSOR])
                self.allreduce[(t["type"], t["nelements"], tuple(t["ne"]))] += 1
                self.allreduce_n += 1
                nbytes = t["nelements"] * TYPE_SIZES.get(t["type"], 0)
                self.allreduce_wire_f32 += nbytes
                self.allreduce_wire_bf16 += t["nelements"] * 2 if (t["type"] == 0 and t["nelements"] >= 32768) else nbytes
            elif v8 and name == "COMM_FREE":
                self.comm_free.append(struct.unpack_from("<I", p, 0)[0])
            elif v8 and name in ("SET_TENSOR_2D", "GET_TENSOR_2D"):
                t = parse_tensor(p[:TENSOR])
                off, sz, nc, stride = struct.unpack_from("<4Q", p, TENSOR)
                self.t2d_counts[name] += 1
                if len(self.t2d) < 40:
                    self.t2d.append({"cmd": name, "tensor": t["name"], "type": t["type"], "ne": t["ne"], "offset": off,
                                     "size": sz, "n_copies": nc, "stride": stride, "payload": size})
        except struct.error:
            pass
        return p

    def on_response(self, name: str, size: int, head: bytes) -> None:
        self.resp_sizes[name][size] += 1
        if name not in self.resp_first:
            self.resp_first[name] = head[:32].hex()

    # ---- summary ----------------------------------------------------------------------------------------
    def summary(self) -> dict:
        for link in self.links:
            link.done.wait(15)
        fixed = {k: dict(v) for k, v in self.req_sizes.items() if len(v) <= 4}
        s = {
            "conn": self.idx,
            "upstream": self.args.upstream,
            "major": self.args.major,
            "duration_s": round(time.time() - self.t0, 3),
            "counts": dict(self.counts),
            "payload_bytes": dict(self.payload_bytes),
            "request_sizes": fixed,
            "response_sizes": {k: dict(v) for k, v in self.resp_sizes.items()},
            "response_first_bytes": self.resp_first,
            "sequence": rle(self.seq),
        }
        if self.graph_compute:
            uids = collections.Counter((g["device"], g["uid"]) for g in self.graph_compute)
            s["graph_compute"] = {
                "count": len(self.graph_compute),
                "distinct_uids": len(uids),
                "uids": [[d, u, c] for (d, u), c in uids.items()][:50],
                "n_nodes": sorted({g["n_nodes"] for g in self.graph_compute}),
                "n_tensors": sorted({g["n_tensors"] for g in self.graph_compute}),
                "layout_exact": all(g["exact"] for g in self.graph_compute),
                "first": self.graph_compute[:6],
            }
        if self.graph_recompute:
            s["graph_recompute"] = {"count": sum(self.graph_recompute.values()),
                                    "uids": [[d, u, c] for (d, u), c in self.graph_recompute.items()][:50],
                                    "uid_never_computed_on_this_connection": self.recompute_unknown}
        if self.comm_init:
            s["comm_init"] = self.comm_init
        if self.allreduce_n:
            s["comm_allreduce"] = {
                "count": self.allreduce_n,
                "by_type_nelements_ne": [[t, n, list(ne), c] for (t, n, ne), c in sorted(self.allreduce.items())],
                "wire_bytes_if_bf16_rule": self.allreduce_wire_bf16,
                "wire_bytes_if_all_native": self.allreduce_wire_f32,
            }
        if self.comm_free:
            s["comm_free"] = self.comm_free
        if self.t2d_counts:
            s["tensor_2d"] = {"counts": dict(self.t2d_counts), "first": self.t2d}
        if self.links:
            s["comm_links"] = [{"rank0": f"{ln.host}:{ln.port}", "via": ln.local_port, "bytes_to_rank0": ln.to_rank0,
                                "bytes_to_rank1": ln.to_rank1, "error": ln.error} for ln in self.links]
        return s


def pump_back(up: socket.socket, down: socket.socket, conn: Conn) -> None:
    """Server -> client: forward as it comes, and cut the stream into `u64 len | payload` frames."""
    state, need, hdr, cur_name, cur_size, cur_head = "hdr", 8, bytearray(), "", 0, bytearray()
    try:
        while x := up.recv(1 << 20):
            # Parse before forwarding: once the client has a whole response it may send its next request,
            # and conn.last must still name the request this frame answers when its header is read.
            i = 0
            while i < len(x):
                if state == "hdr":
                    take = min(need, len(x) - i)
                    hdr += x[i:i + take]
                    i += take
                    need -= take
                    if need == 0:
                        cur_size = struct.unpack("<Q", bytes(hdr))[0]
                        cur_name, cur_head, hdr = conn.last, bytearray(), bytearray()
                        if cur_size == 0:
                            conn.on_response(cur_name, 0, b"")
                            need = 8
                        else:
                            state, need = "body", cur_size
                else:
                    take = min(need, len(x) - i)
                    if len(cur_head) < 32:
                        cur_head += x[i:i + min(take, 32 - len(cur_head))]
                    i += take
                    need -= take
                    if need == 0:
                        conn.on_response(cur_name, cur_size, bytes(cur_head))
                        state, need = "hdr", 8
            down.sendall(x)
    except OSError:
        pass
    try:
        down.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(down: socket.socket, idx: int, args) -> None:
    up = socket.create_connection((args.upstream_host, args.upstream))
    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(idx, args)
    back = threading.Thread(target=pump_back, args=(up, down, conn), daemon=True)
    back.start()
    try:
        while True:
            head = recvn(down, 9)  # cmd u8 + payload size u64
            size = struct.unpack("<Q", head[1:])[0]
            name = conn.name(head[0])
            keep = min(size, PREFIX) if name in STREAMED else size
            payload = recvn(down, keep)
            conn.counts[name] += 1
            conn.payload_bytes[name] += size
            conn.req_sizes[name][size] += 1
            conn.seq.append(name)
            if len(conn.first) < 8:
                conn.first.append(f"{name}({size})")
            payload = conn.on_request(name, size, payload)
            conn.last = name  # before forwarding: its response cannot arrive earlier
            up.sendall(head + payload)
            rest = size - keep
            while rest > 0:
                x = down.recv(min(rest, 1 << 20))
                if not x:
                    raise EOFError
                up.sendall(x)
                rest -= len(x)
            if args.verbose:
                with OUT_LOCK:
                    print(f"conn {idx}: {name}({size})", flush=True)
    except (EOFError, OSError):
        pass
    try:
        up.shutdown(socket.SHUT_WR)  # let the server see EOF, then drain its last responses
    except OSError:
        pass
    back.join(10)
    for s in (up, down):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
    s = conn.summary()
    first = " ".join(conn.first)
    lines = [f"conn {idx}: {s['counts']}; first: {first}"]
    if args.major == 8:
        for key in ("graph_compute", "graph_recompute", "comm_init", "comm_allreduce", "comm_free", "tensor_2d", "comm_links"):
            if key in s:
                v = s[key]
                if key == "graph_compute":
                    v = {k: v[k] for k in ("count", "distinct_uids", "n_nodes", "n_tensors", "layout_exact")}
                lines.append(f"conn {idx}:   {key}: {json.dumps(v)}")
        lines.append(f"conn {idx}:   responses: {json.dumps(s['response_sizes'])}")
    if args.seq:
        lines.append(f"conn {idx}:   sequence: " + " ".join(f"{n}x{c}" if c > 1 else n for n, c in s["sequence"]))
    with OUT_LOCK:
        print("\n".join(lines), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(s) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("listen", type=int)
    ap.add_argument("upstream", type=int)
    ap.add_argument("--major", type=int, choices=[7, 8], default=7)
    ap.add_argument("--upstream-host", default="127.0.0.1")
    ap.add_argument("--verbose", action="store_true", help="print every command as it passes")
    ap.add_argument("--seq", action="store_true", help="print each connection's command sequence (run-length encoded)")
    ap.add_argument("--json", help="append one JSON summary per connection to this file")
    ap.add_argument("--comm-proxy", action="store_true", help="8.0.0: interpose on the server-to-server comm link")
    args = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.listen))
    srv.listen(16)
    print(f"rpc_trace: 127.0.0.1:{args.listen} -> {args.upstream_host}:{args.upstream} (RPC {args.major}.x)", flush=True)
    n = 0
    while True:
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n += 1
        threading.Thread(target=handle, args=(c, n, args), daemon=True).start()


if __name__ == "__main__":
    main()
