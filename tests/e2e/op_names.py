"""Prints the op, unary-op, GLU-op and type names of a ggml base library, index by index, as JSON.

    python op_names.py /path/to/libggml-base.so.0

The RPC protocol carries these enums as raw integers, so both protocol majors' clients must number them
as ggrpc does (src/ggml/op.rs, src/ggml/types.rs: 101 ops, 22 unary, 7 GLU, 43 types).
"""

import ctypes
import json
import sys

lib = ctypes.CDLL(sys.argv[1])
out = {}
for key, fn, n in [("ops", "ggml_op_name", 101), ("unary", "ggml_unary_op_name", 22),
                   ("glu", "ggml_glu_op_name", 7), ("types", "ggml_type_name", 43)]:
    f = getattr(lib, fn)
    f.restype, f.argtypes = ctypes.c_char_p, [ctypes.c_int]
    out[key] = [(f(i) or b"").decode(errors="replace") for i in range(n)]
print(json.dumps(out))
