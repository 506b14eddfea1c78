"""Differential, node-by-node comparison of two ggml RPC servers on a recorded real-client graph.

1. Record a real session through a recording proxy in front of the reference server:
       python tests/e2e/ref_server.py -p 52000 -d CPU -t 1 &
       python scripts/diff_graph.py record --listen 52001 --upstream 52000 --out /tmp/rec
       python tests/e2e/client.py logits --endpoint 127.0.0.1:52001 --info /tmp/l.json --out /tmp/l.npy
   Every connection is written to /tmp/rec.connN (requests and their responses); the main one is the biggest.

2. Replay + compare (starts both servers itself, fresh, with -t 1):
       python scripts/diff_graph.py compare --rec /tmp/rec.conn2 [--isolate all|OPS] [--json out.json]
   Replays the recorded commands (mapping buffer handles and bases) up to the target GRAPH_COMPUTE (the first one
   with >= --min-nodes nodes), rewrites that graph so that every non-view compute node gets its own memory in an
   extra scratch buffer (views are re-based on their view_src; leaves keep their addresses), computes it on both
   servers, reads every node back and compares. With --isolate, each node is then recomputed alone on the server
   under test as a one-node graph, after its (non-weight) inputs were overwritten with the reference's values, which
   measures each op's own error. The same is done on the reference as a sanity check (must be ~bit-identical).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NO_RESP = {4, 5, 6, 10, 12, 16, 17}
CMD = ["ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE", "FREE_BUFFER", "BUFFER_CLEAR",
       "SET_TENSOR", "SET_TENSOR_HASH", "GET_TENSOR", "COPY_TENSOR", "GRAPH_COMPUTE", "GET_DEVICE_MEMORY",
       "INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO", "DEVICE_COUNT", "GRAPH_RECOMPUTE", "MEMSET_TENSOR"]
OPS = ("NONE DUP ADD ADD_ID ADD1 ACC SUB MUL DIV SQR SQRT LOG SIN COS SUM SUM_ROWS CUMSUM MEAN ARGMAX COUNT_EQUAL "
       "REPEAT REPEAT_BACK CONCAT SILU_BACK NORM RMS_NORM RMS_NORM_BACK GROUP_NORM L2_NORM MUL_MAT MUL_MAT_ID OUT_PROD "
       "SCALE SET CPY CONT RESHAPE VIEW PERMUTE TRANSPOSE GET_ROWS GET_ROWS_BACK SET_ROWS DIAG DIAG_MASK_INF "
       "DIAG_MASK_ZERO SOFT_MAX SOFT_MAX_BACK ROPE ROPE_BACK CLAMP CONV_TRANSPOSE_1D IM2COL IM2COL_BACK IM2COL_3D "
       "COL2IM_1D CONV_2D CONV_3D CONV_2D_DW CONV_TRANSPOSE_2D POOL_1D POOL_2D POOL_2D_BACK UPSCALE PAD "
       "PAD_REFLECT_1D ROLL ARANGE TIMESTEP_EMBEDDING ARGSORT TOP_K LEAKY_RELU TRI FILL FLASH_ATTN_EXT "
       "FLASH_ATTN_BACK SSM_CONV SSM_SCAN WIN_PART WIN_UNPART GET_REL_POS ADD_REL_POS RWKV_WKV6 GATED_LINEAR_ATTN "
       "RWKV_WKV7 SOLVE_TRI GATED_DELTA_NET LIGHTNING_INDEXER DSV4_HC_COMB DSV4_HC_PRE DSV4_HC_POST UNARY "
       "MAP_CUSTOM1 MAP_CUSTOM2 MAP_CUSTOM3 CUSTOM CROSS_ENTROPY_LOSS CROSS_ENTROPY_LOSS_BACK OPT_STEP_ADAMW "
       "OPT_STEP_SGD GLU").split()
UNARY = ("ABS SGN NEG STEP TANH ELU RELU SIGMOID GELU GELU_QUICK SILU HARDSWISH HARDSIGMOID EXP EXPM1 SOFTPLUS "
         "GELU_ERF XIELU FLOOR CEIL ROUND TRUNC").split()
GLU = "REGLU GEGLU SWIGLU SWIGLU_OAI GEGLU_ERF GEGLU_QUICK SWIGLU_CLAMP".split()
# type id -> (name, block size, type size)
TYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20), 6: ("q5_0", 32, 22),
         7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36), 10: ("q2_K", 256, 84),
         11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210),
         15: ("q8_K", 256, 292), 24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8),
         28: ("f64", 1, 8), 30: ("bf16", 1, 2)}
NPDT = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32, 27: np.int64, 28: np.float64}
EMPTY_OPS = {0, 36, 37, 38, 39}
FLAG_COMPUTE = 16
TFMT = struct.Struct("<QIQ4I4II16ii10QQQQ64si")
assert TFMT.size == 296


# ------------------------------------------------------------------------------------------------ wire helpers

def recvn(s: socket.socket, k: int) -> bytes:
    b = bytearray(k)
    mv, got = memoryview(b), 0
    while got < k:
        n = s.recv_into(mv[got:], min(k - got, 1 << 22))
        if not n:
            raise EOFError("peer closed")
        got += n
    return bytes(b)


class T:
    """A mutable rpc_tensor."""
    __slots__ = ("id", "type", "buffer", "ne", "nb", "op", "op_params", "flags", "src", "view_src", "view_offs",
                 "data", "name", "use_count")

    @classmethod
    def parse(cls, b: bytes, off: int = 0) -> "T":
        v = TFMT.unpack_from(b, off)
        t = cls()
        t.id, t.type, t.buffer = v[0], v[1], v[2]
        t.ne, t.nb, t.op = list(v[3:7]), list(v[7:11]), v[11]
        t.op_params, t.flags = list(v[12:28]), v[28]
        t.src, t.view_src, t.view_offs, t.data = list(v[29:39]), v[39], v[40], v[41]
        t.name, t.use_count = v[42], v[43]
        return t

    def pack(self) -> bytes:
        return TFMT.pack(self.id, self.type, self.buffer, *self.ne, *self.nb, self.op, *self.op_params, self.flags,
                         *self.src, self.view_src, self.view_offs, self.data, self.name, self.use_count)

    def copy(self) -> "T":
        t = T()
        for k in T.__slots__:
            v = getattr(self, k)
            setattr(t, k, list(v) if isinstance(v, list) else v)
        return t

    @property
    def sname(self) -> str:
        return self.name.split(b"\0", 1)[0].decode(errors="replace")

    def nbytes(self) -> int:
        if any(n == 0 for n in self.ne):
            return 0
        _, bs, ts = TYPES[self.type]
        if bs == 1:
            return ts + sum((self.ne[i] - 1) * self.nb[i] for i in range(4))
        return self.ne[0] * self.nb[0] // bs + sum((self.ne[i] - 1) * self.nb[i] for i in range(1, 4))

    def opname(self) -> str:
        n = OPS[self.op] if self.op < len(OPS) else f"OP{self.op}"
        if self.op == 91:
            n += ":" + UNARY[self.op_params[0]]
        elif self.op == 100:
            n += ":" + GLU[self.op_params[0]]
        return n

    def tname(self) -> str:
        return TYPES.get(self.type, (f"t{self.type}",))[0]


class Rec:
    """Recorded request (cmd, payload) and response (or None)."""
    __slots__ = ("cmd", "payload", "resp")

    def __init__(self, cmd, payload, resp):
        self.cmd, self.payload, self.resp = cmd, payload, resp


def read_recording(path: str):
    with open(path, "rb") as f:
        while True:
            h = f.read(9)
            if not h:
                return
            cmd, n = h[0], struct.unpack("<Q", h[1:])[0]
            payload = f.read(n)
            has = f.read(1)[0]
            resp = None
            if has:
                rn = struct.unpack("<Q", f.read(8))[0]
                resp = f.read(rn)
            yield Rec(cmd, payload, resp)


# ------------------------------------------------------------------------------------------------ record

def cmd_record(a) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.listen))
    srv.listen(16)
    print(f"recording proxy on {a.listen} -> {a.upstream}, files {a.out}.connN", flush=True)
    n = 0

    def handle(down, idx):
        up = socket.create_connection(("127.0.0.1", a.upstream))
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        counts = collections.Counter()
        with open(f"{a.out}.conn{idx}", "wb") as f:
            try:
                while True:
                    head = recvn(down, 9)
                    size = struct.unpack("<Q", head[1:])[0]
                    payload = recvn(down, size)
                    up.sendall(head + payload)
                    f.write(head + payload)
                    counts[CMD[head[0]] if head[0] < len(CMD) else head[0]] += 1
                    if head[0] in NO_RESP:
                        f.write(b"\0")
                        continue
                    rh = recvn(up, 8)
                    rp = recvn(up, struct.unpack("<Q", rh)[0])
                    down.sendall(rh + rp)
                    f.write(b"\1" + rh + rp)
            except (EOFError, OSError):
                pass
        for s in (up, down):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        print(f"conn {idx}: {dict(counts)}", flush=True)

    while True:
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n += 1
        threading.Thread(target=handle, args=(c, n), daemon=True).start()


# ------------------------------------------------------------------------------------------------ replay

class Server:
    def __init__(self, label: str, argv: list[str], port: int, log: str, device: str = "CPU"):
        self.label, self.port = label, port
        self.logf = open(log, "wb")
        self.proc = subprocess.Popen(argv + ["-H", "127.0.0.1", "-p", str(port), "-d", device, "-t", "1"],
                                     stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        t0 = time.time()
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if self.proc.poll() is not None or time.time() - t0 > 60:
                    raise RuntimeError(f"{label} server did not start; see {log}")
                time.sleep(0.2)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hmap: dict[int, int] = {}      # recorded handle -> our handle
        self.bases: dict[int, tuple[int, int]] = {}  # recorded handle -> (recorded base, our base)
        self.scratch = None  # (handle, base)

    def req(self, cmd: int, payload: bytes) -> bytes | None:
        self.sock.sendall(bytes([cmd]) + struct.pack("<Q", len(payload)) + payload)
        if cmd in NO_RESP:
            return None
        n = struct.unpack("<Q", recvn(self.sock, 8))[0]
        return recvn(self.sock, n)

    def fix(self, t: T) -> T:
        """Map a recorded tensor's buffer/data onto this server."""
        if t.buffer in self.hmap:
            ob, nb = self.bases[t.buffer]
            if t.data:
                t.data = t.data - ob + nb
            t.buffer = self.hmap[t.buffer]
        return t

    def fixb(self, b: bytes, off: int) -> bytes:
        return b[:off] + self.fix(T.parse(b, off)).pack() + b[off + 296:]

    def replay(self, r: Rec) -> None:
        c, p = r.cmd, r.payload
        if c in (13,):  # GET_ALLOC_SIZE: only informs the client's allocator
            return
        if c == 0:
            resp = self.req(c, p)
            self.hmap[struct.unpack_from("<Q", r.resp)[0]] = struct.unpack_from("<Q", resp)[0]
        elif c == 3:
            old = struct.unpack("<Q", p)[0]
            resp = self.req(c, struct.pack("<Q", self.hmap[old]))
            self.bases[old] = (struct.unpack("<Q", r.resp)[0], struct.unpack("<Q", resp)[0])
        elif c in (4, 5):
            old = struct.unpack_from("<Q", p)[0]
            self.req(c, struct.pack("<Q", self.hmap[old]) + p[8:])
        elif c in (6, 7, 8, 12, 17):
            self.req(c, self.fixb(p, 0))
        elif c == 9:
            self.req(c, self.fixb(self.fixb(p, 0), 296))
        elif c == 10:
            self.req(c, self.fix_graph(p))
        else:  # HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY, GET_ALIGNMENT, GET_MAX_SIZE, GRAPH_RECOMPUTE
            self.req(c, p)

    def fix_graph(self, p: bytes) -> bytes:
        nn = struct.unpack_from("<I", p, 4)[0]
        off = 8 + 8 * nn
        nt = struct.unpack_from("<I", p, off)[0]
        out = [p[:off + 4]]
        for i in range(nt):
            out.append(self.fix(T.parse(p, off + 4 + 296 * i)).pack())
        return b"".join(out)

    def alloc(self, size: int) -> tuple[int, int]:
        h = struct.unpack("<Q", self.req(0, struct.pack("<IQ", 0, size))[:8])[0]
        if not h:
            raise RuntimeError(f"{self.label}: scratch allocation of {size} failed")
        base = struct.unpack("<Q", self.req(3, struct.pack("<Q", h)))[0]
        return h, base

    def get(self, t: T) -> bytes:
        return self.req(8, t.pack() + struct.pack("<QQ", 0, t.nbytes()))

    def set(self, t: T, data: bytes) -> None:
        self.req(6, t.pack() + b"\0" + struct.pack("<Q", 0) + data)

    def graph(self, node_ids: list[int], tensors: list[T]) -> None:
        p = struct.pack("<II", 0, len(node_ids)) + struct.pack(f"<{len(node_ids)}Q", *node_ids)
        p += struct.pack("<I", len(tensors)) + b"".join(t.pack() for t in tensors)
        self.req(10, p)

    def sync(self) -> None:  # a request with a response: everything before it is done
        self.req(15, b"")

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def parse_graph(p: bytes) -> tuple[list[int], list[T]]:
    nn = struct.unpack_from("<I", p, 4)[0]
    ids = list(struct.unpack_from(f"<{nn}Q", p, 8))
    off = 8 + 8 * nn
    nt = struct.unpack_from("<I", p, off)[0]
    return ids, [T.parse(p, off + 4 + 296 * i) for i in range(nt)]


def decode(t: T, raw: bytes) -> np.ndarray | None:
    if t.type not in NPDT or len(raw) < t.nbytes():
        return None
    from numpy.lib.stride_tricks import as_strided
    a = np.frombuffer(raw, dtype=np.uint8)
    dt = np.dtype(NPDT[t.type])
    v = as_strided(a.view(dt) if len(raw) % dt.itemsize == 0 else a[: len(raw) // dt.itemsize * dt.itemsize].view(dt),
                   shape=tuple(reversed(t.ne)), strides=tuple(reversed(t.nb)))
    return v.astype(np.float64)


def errs(a: np.ndarray | None, b: np.ndarray | None, ra: bytes, rb: bytes) -> dict:
    """a: under test, b: reference."""
    if a is None or b is None:
        same = ra == rb
        return {"rel": 0.0 if same else float("nan"), "maxabs": 0.0 if same else float("nan"), "nonfinite": 0,
                "raw": True}
    fin = np.isfinite(a) & np.isfinite(b)
    nf = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
    d = np.where(fin, a - b, 0.0)
    nb = float(np.sqrt((np.where(fin, b, 0.0) ** 2).sum()))
    nd = float(np.sqrt((d ** 2).sum()))
    rel = nd / nb if nb > 0 else (0.0 if nd == 0 else float("inf"))
    mismatch_nf = int((np.isfinite(a) != np.isfinite(b)).sum())
    rowrel = 0.0
    if d.ndim and d.shape[-1] and d.size:
        rn = np.sqrt((np.where(fin, b, 0.0) ** 2).reshape(-1, d.shape[-1]).sum(1))
        rd = np.sqrt((d ** 2).reshape(-1, d.shape[-1]).sum(1))
        ok = rn > 0
        rowrel = float((rd[ok] / rn[ok]).max()) if ok.any() else 0.0
    return {"rel": rel, "maxabs": float(np.abs(d).max()) if d.size else 0.0, "nonfinite": nf, "rowrel": rowrel,
            "ndiff": float((a != b).mean()) if a.size else 0.0,
            "nf_mismatch": mismatch_nf, "refnorm": nb / max(1, np.sqrt(b.size))}


def cmd_compare(a) -> None:
    recs = read_recording(a.rec)
    ref = Server("ref", [sys.executable, str(REPO / "tests/e2e/ref_server.py")], a.ref_port, "/tmp/diff_ref.log")
    try:
        # The recording is of the 7.0.0 reference (llama-cpp-python 0.3.36): ggrpc must speak 7 too.
        tst = Server("ggrpc", [a.server, "--protocol", "7"], a.test_port, "/tmp/diff_test.log", a.device)
    except BaseException:
        ref.close()
        raise
    servers = [ref, tst]
    try:
        run_compare(a, recs, ref, tst, servers)
    finally:
        for s in servers:
            s.close()


def run_compare(a, recs, ref, tst, servers) -> None:
    target = None
    ngraph = 0
    t0 = time.time()
    for r in recs:
        if r.cmd == 10:
            nn = struct.unpack_from("<I", r.payload, 4)[0]
            if nn >= a.min_nodes:
                if ngraph == a.skip_graphs:
                    target = r
                    break
                ngraph += 1
        for s in servers:
            s.replay(r)
    if target is None:
        sys.exit("no target GRAPH_COMPUTE found")
    for s in servers:
        s.sync()
    print(f"replayed setup in {time.time() - t0:.1f}s", flush=True)

    node_ids, tensors = parse_graph(target.payload)
    byid = {}
    for t in tensors:
        byid.setdefault(t.id, t)
    nodeset = set(node_ids)
    ALIGN = 256
    # scratch layout (offsets relative to the scratch base)
    offs, total = {}, 0
    for t in tensors:
        if t.id in nodeset and t.view_src == 0 and t.op != 0:
            offs[t.id] = total
            total += (t.nbytes() + ALIGN - 1) // ALIGN * ALIGN
    print(f"graph: {len(node_ids)} nodes, {len(tensors)} tensors, scratch {total / 2**20:.1f} MiB "
          f"for {len(offs)} nodes", flush=True)

    # per-server rewritten tensors
    per: dict[str, dict[int, T]] = {}
    for s in servers:
        h, base = s.alloc(total + ALIGN)
        m: dict[int, T] = {}
        for t0_ in tensors:
            t = s.fix(t0_.copy())
            if t.id in offs:
                t.buffer, t.data = h, base + offs[t.id]
            elif t.view_src:
                v = m[t.view_src]
                t.buffer, t.data = v.buffer, v.data + t.view_offs
            m.setdefault(t.id, t)
        per[s.label] = m

    # which tensors to read: everything that is not a pure leaf
    def pure_leaf(t: T) -> bool:
        return t.view_src == 0 and (t.op == 0 or t.id not in nodeset)

    readable = [t.id for t in tensors if not pure_leaf(t)]
    raw: dict[str, dict[int, bytes]] = {}
    timing = {}
    for s in servers:
        m = per[s.label]
        ts = time.time()
        s.graph(node_ids, [m[t.id] for t in tensors])
        s.sync()
        timing[s.label] = time.time() - ts
        raw[s.label] = {i: s.get(m[i]) for i in dict.fromkeys(readable)}
        print(f"{s.label}: graph computed in {timing[s.label]:.2f}s, read {len(raw[s.label])} tensors", flush=True)

    # ---- full-graph comparison
    full: dict[int, dict] = {}
    for i in dict.fromkeys(readable):
        t = byid[i]
        full[i] = errs(decode(t, raw["ggrpc"][i]), decode(t, raw["ref"][i]), raw["ggrpc"][i], raw["ref"][i])

    def in_err(t: T, table: dict) -> float:
        srcs = []
        for s in t.src:
            if s and s != t.id:
                srcs += [x for x in byid[s].src if x] if s in fused_rms else [s]
        e = [table[s]["rel"] for s in srcs if s in table]
        e = [x for x in e if x == x]
        return max(e) if e else 0.0

    exec_nodes = [i for i in node_ids if byid[i].op not in EMPTY_OPS and byid[i].flags & FLAG_COMPUTE]
    # ggml-cpu fuses RMS_NORM + MUL (the RMS_NORM output is then never written): detect those pairs
    fused_rms = set()
    for k, i in enumerate(exec_nodes[:-1]):
        if byid[i].op == 25 and byid[exec_nodes[k + 1]].op == 7 and i in byid[exec_nodes[k + 1]].src \
                and not any(raw["ref"][i]):
            fused_rms.add(i)
            full[i] = {"rel": float("nan"), "maxabs": float("nan"), "fused": True}
    print(f"{len(fused_rms)} RMS_NORM nodes fused with their MUL in the reference (not compared in the full run)")

    # ---- isolated per-node comparison
    iso: dict[int, dict] = {}
    iso_ref: dict[int, dict] = {}
    want = None if a.isolate in ("all", "") else set(a.isolate.split(","))
    if a.isolate != "none":
        written_roots = set()
        for i in exec_nodes:
            r = byid[i]
            while r.view_src:
                r = byid[r.view_src]
            if r.id != i:
                written_roots.add(r.id)
        # ref bytes of written leaves (KV cache), needed when they are inputs
        leafraw = {}
        for i in written_roots:
            if i not in raw["ref"]:
                leafraw[i] = ref.get(per["ref"][i])
        ti = time.time()
        for k, i in enumerate(exec_nodes):
            t = byid[i]
            group = [i]  # a fused RMS_NORM runs alone here (unfused on both), and again with its MUL below
            if k > 0 and exec_nodes[k - 1] in fused_rms and exec_nodes[k - 1] in t.src:
                group = [exec_nodes[k - 1], i]
            if want is not None and not any(
                    byid[g].opname().split(":")[0] in want or byid[g].opname() in want for g in group):
                continue
            srcs = list(dict.fromkeys(sid for g in group for sid in byid[g].src if sid and sid not in group))
            outs = {}
            for s in servers:
                m = per[s.label]
                # overwrite non-weight inputs with the reference's values (ref already holds them)
                if s is not ref:
                    for sid in srcs:
                        data = raw["ref"].get(sid, leafraw.get(sid))
                        if data is not None:  # None: weights / inputs, identical on both servers
                            s.set(m[sid], data)
                # one-node graph: the node(s), their sources (as leaves) and the sources' view chains
                need: dict[int, T] = {}

                def leafify(tid: int) -> None:
                    if tid in need:
                        return
                    lt = m[tid].copy()
                    if lt.view_src:
                        leafify(lt.view_src)
                    else:
                        lt.op, lt.op_params = 0, [0] * 16
                    lt.src, lt.flags = [0] * 10, lt.flags & ~FLAG_COMPUTE
                    need[tid] = lt

                for sid in srcs:
                    leafify(sid)
                for g in group:
                    if byid[g].view_src and byid[g].view_src not in group:
                        leafify(byid[g].view_src)
                s.graph(group, list(need.values()) + [m[g].copy() for g in group])
                outs[s.label] = {g: s.get(m[g]) for g in group}
            if a.dump and k in a.dump_idx:
                d = Path(a.dump) / f"node{k}"
                d.mkdir(parents=True, exist_ok=True)
                meta = {"op": t.opname(), "name": t.sname, "type": t.tname(), "ne": t.ne, "nb": t.nb,
                        "op_params": t.op_params, "src": []}
                for j, sid in enumerate(t.src):
                    if sid and sid != i:
                        st = byid[sid]
                        (d / f"src{j}.bin").write_bytes(ref.get(per["ref"][sid]))
                        meta["src"].append({"slot": j, "type": st.tname(), "ne": st.ne, "nb": st.nb,
                                            "name": st.sname})
                (d / "out_ref.bin").write_bytes(outs["ref"][i])
                (d / "out_ggrpc.bin").write_bytes(outs["ggrpc"][i])
                (d / "meta.json").write_text(json.dumps(meta, indent=1))
                print(f"dumped node #{k} to {d}")
            for g in group[-1:]:
                tg = byid[g]
                ro, to = outs["ref"][g], outs["ggrpc"][g]
                iso[g] = errs(decode(tg, to), decode(tg, ro), to, ro)
                if g not in fused_rms:  # the full run never wrote a fused RMS_NORM's output
                    iso_ref[g] = errs(decode(tg, ro), decode(tg, raw["ref"][g]), ro, raw["ref"][g])
                if len(group) == 2:
                    iso[g]["fused"] = True
            if a.verbose:
                print(f"  iso {k}/{len(exec_nodes)} {t.opname()} {t.sname}: {iso[i]['rel']:.3e}", flush=True)
        print(f"isolated runs in {time.time() - ti:.1f}s", flush=True)

    # ---- report
    def shp(t: T) -> str:
        return "x".join(str(n) for n in t.ne)

    def srcdesc(t: T) -> str:
        return ",".join(f"{byid[s].tname()}[{shp(byid[s])}]" for s in t.src if s and s != t.id)

    def params(t: T) -> str:
        """op_params, floats decoded where the op uses floats."""
        fl = {25: {0}, 32: {0, 1}, 46: {0, 1}, 48: {5, 6, 7, 8, 9, 10}, 74: {0, 1, 2}}.get(t.op, set())
        last = max([k for k, v in enumerate(t.op_params) if v] + [-1])
        return "[" + ",".join(f"{struct.unpack('<f', struct.pack('<i', v))[0]:g}" if k in fl else str(v)
                              for k, v in enumerate(t.op_params[:last + 1])) + "]"

    rows = []
    for idx, i in enumerate(exec_nodes):
        t = byid[i]
        fused = i in fused_rms or iso.get(i, {}).get("fused", False)
        ie, ir = iso.get(i, {}), iso_ref.get(i, {})
        rows.append({
            "idx": idx, "id": i, "op": ("RMS_NORM+MUL" if t.op == 7 and fused else t.opname()),
            "name": t.sname, "type": t.tname(), "ne": t.ne,
            "src": srcdesc(t), "src0_type": byid[t.src[0]].tname() if t.src[0] else "",
            "op_params": t.op_params, "params": params(t), "fused_rms": i in fused_rms,
            "full_rel": full[i]["rel"], "full_maxabs": full[i]["maxabs"], "full_rowrel": full[i].get("rowrel"),
            "in_rel": in_err(t, full), "iso_rel": ie.get("rel"), "iso_maxabs": ie.get("maxabs"),
            "iso_rowrel": ie.get("rowrel"), "iso_ref_rel": ir.get("rel"), "iso_ndiff": ie.get("ndiff"),
            "full_ndiff": full[i].get("ndiff"),
            "nonfinite": full[i].get("nonfinite", 0), "nf_mismatch": full[i].get("nf_mismatch", 0),
        })

    def f(x):
        return "    -    " if x is None else f"{x:9.2e}"

    def line(r):
        return (f"{r['idx']:4d} {r['op']:<16} {r['name'][:22]:<22} {r['type']:<4} {'x'.join(map(str, r['ne'])):<15} "
                f"{f(r['full_rel'])} {f(r['full_maxabs'])} {f(r['in_rel'])} {f(r['iso_rel'])} {f(r['iso_maxabs'])} "
                f"{f(r['iso_rowrel'])} {f(r['iso_ref_rel'])}")

    hdr = (f"{'idx':>4} {'op':<16} {'name':<22} {'type':<4} {'shape':<15} {'full rel':>9} {'full max':>9} "
           f"{'in rel':>9} {'iso rel':>9} {'iso max':>9} {'iso row':>9} {'isoref':>9}")
    print("\n== first nodes whose error jumps (full rel > thresh and > 3x their inputs' error) ==")
    print("full: whole-graph run (errors propagate); in: worst input error; iso: node alone on the reference's"
          " inputs (own error); iso row: worst per-row rel err; isoref: ref's isolated rerun vs its full run")
    print(hdr)
    shown = 0
    for r in rows:
        if r["full_rel"] == r["full_rel"] and r["full_rel"] > a.thresh and r["full_rel"] > 3 * r["in_rel"]:
            print(line(r))
            shown += 1
            if shown >= a.first:
                break

    if iso:
        print(f"\n== the {a.first} worst isolated (intrinsic) errors ==")
        print(hdr)
        for r in sorted([r for r in rows if r["iso_rel"] is not None], key=lambda r: -r["iso_rel"])[:a.first]:
            print(line(r))

    print("\n== per op (src0 type for MUL_MAT/GET_ROWS): isolated rel err max / median; full-graph max ==")
    groups = collections.defaultdict(list)
    for r in rows:
        if r["fused_rms"] and r["iso_rel"] is None:
            continue
        key = r["op"] + (f"({r['src0_type']})" if r["op"] in ("MUL_MAT", "GET_ROWS") else "")
        groups[key].append(r)
    print(f"{'op':<22} {'n':>4} {'iso max':>9} {'iso med':>9} {'iso row':>9} {'isoref':>9} {'full max':>9} {'%diff':>6}  worst (iso) node")
    for key, g in sorted(groups.items(), key=lambda kv: -max((x["iso_rel"] or 0) for x in kv[1])):
        isos = [x["iso_rel"] for x in g if x["iso_rel"] is not None]
        isr = [x["iso_ref_rel"] for x in g if x["iso_ref_rel"] is not None]
        rr = [x["iso_rowrel"] for x in g if x["iso_rowrel"] is not None]
        fm = [x["full_rel"] for x in g if x["full_rel"] == x["full_rel"]]
        nd = [x["iso_ndiff"] for x in g if x["iso_ndiff"] is not None]
        w = max(g, key=lambda x: (x["iso_rel"] or 0, x["full_rel"]))
        print(f"{key:<22} {len(g):4d} {f(max(isos) if isos else None)} {f(float(np.median(isos)) if isos else None)} "
              f"{f(max(rr) if rr else None)} {f(max(isr) if isr else None)} {f(max(fm) if fm else None)} "
              f"{100 * max(nd) if nd else 0:6.2f}  "
              f"#{w['idx']} {w['name']} {w['type']}[{'x'.join(map(str, w['ne']))}] <- {w['src']} params={w['params']}")

    print(f"\nlast node: {rows[-1]['op']} {rows[-1]['name']} full rel {rows[-1]['full_rel']:.3e}")
    print(f"compute time: ref {timing['ref']:.2f}s, ggrpc {timing['ggrpc']:.2f}s")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=0))
        print(f"rows written to {a.json}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--listen", type=int, required=True)
    r.add_argument("--upstream", type=int, required=True)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--rec", required=True)
    c.add_argument("--server", default=os.environ.get("GGRPC_BIN", "/work/main/target/release/rpc-server"))
    c.add_argument("--ref-port", type=int, default=52100)
    c.add_argument("--test-port", type=int, default=52101)
    c.add_argument("--device", default="CPU", help="-d of the server under test (e.g. Vulkan0)")
    c.add_argument("--min-nodes", type=int, default=500, help="target = first GRAPH_COMPUTE with this many nodes")
    c.add_argument("--skip-graphs", type=int, default=0, help="skip this many such graphs first")
    c.add_argument("--isolate", default="all", help="'all', 'none', or comma-separated op names (e.g. MUL_MAT,ROPE)")
    c.add_argument("--thresh", type=float, default=1e-5)
    c.add_argument("--first", type=int, default=40)
    c.add_argument("--json")
    c.add_argument("--dump", help="folder for --dump-idx nodes: sources, both isolated outputs, meta.json")
    c.add_argument("--dump-idx", type=lambda v: {int(x) for x in v.split(",")}, default=set(),
                   help="comma-separated node indices (execution order, as printed) to dump")
    c.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    {"record": cmd_record, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    main()
