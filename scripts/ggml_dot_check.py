"""Recompute a node dumped by `diff_graph.py compare --dump D --dump-idx K` (a Q4_K/Q6_K/... x Q8_K MUL_MAT)
with libggml-cpu's own quantize_row_q8_K + ggml_vec_dot_<type>_q8_K[SUFFIX] via ctypes, for the first 8 columns, and
say which isolated output (reference server / ggrpc) it reproduces bit for bit.

    $VENV/bin/python scripts/ggml_dot_check.py /tmp/diffdump/node16 [_generic]
"""
import ctypes, json, sys, glob, numpy as np
lib = glob.glob(sys.prefix + "/lib/python3*/site-packages/llama_cpp/lib/libggml-cpu.so")[0]
base = ctypes.CDLL(lib.replace("ggml-cpu", "ggml-base"), mode=ctypes.RTLD_GLOBAL)
g = ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
g.ggml_cpu_init()
d = sys.argv[1]
m = json.load(open(d + "/meta.json"))
s0, s1 = m["src"][0], m["src"][1]
w = np.fromfile(d + "/src0.bin", np.uint8); x = np.fromfile(d + "/src1.bin", np.float32)
K, M = s0["ne"][0], s0["ne"][1]; N = s1["ne"][1]; rb = s0["nb"][1]
typ = s0["type"]
dot = getattr(g, f"ggml_vec_dot_{typ}_q8_K" + (sys.argv[2] if len(sys.argv) > 2 else ""))
qf = g.quantize_row_q8_K
qrow = K // 256 * 292
ref = np.fromfile(d + "/out_ref.bin", np.float32).reshape(N, M)
tst = np.fromfile(d + "/out_ggrpc.bin", np.float32).reshape(N, M)
out = np.zeros((N, M), np.float32)
res = ctypes.c_float()
for n in range(min(N, 8)):
    q = ctypes.create_string_buffer(qrow)
    xr = np.ascontiguousarray(x[n*K:(n+1)*K])
    qf(xr.ctypes.data_as(ctypes.c_void_p), q, ctypes.c_int64(K))
    for r in range(M):
        dot(ctypes.c_int(K), ctypes.byref(res), ctypes.c_size_t(0), ctypes.c_void_p(w.ctypes.data + r*rb), ctypes.c_size_t(0), q, ctypes.c_size_t(0), ctypes.c_int(1))
        out[n, r] = res.value
n = min(N, 8)
print(typ, "ctypes-ggml == ref:", np.mean(out[:n] == ref[:n]), " ctypes-ggml == ggrpc:", np.mean(out[:n] == tst[:n]), " ref==ggrpc:", np.mean(ref[:n]==tst[:n]))
