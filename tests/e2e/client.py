"""The real client: llama.cpp (llama-cpp-python's libllama) driving Gemma 3 270M, locally or through RPC.

    python client.py logits   --endpoint (local|HOST:PORT[,HOST:PORT]) --out LOGITS.npy --info INFO.json
    python client.py generate --endpoint ... --n 32 --info INFO.json
    python client.py bench    --endpoint ... --pp 64 --tg 32 --reps 3 --info INFO.json

One process per run: the RPC registration is process-global, and ggml's RPC client aborts the process when
the server closes the connection, so the caller must see that as a failed subprocess.

With an endpoint, every device of every server is registered as llama.cpp's `--rpc` does
(`ggml_backend_rpc_add_server` + `ggml_backend_register`) and passed explicitly as the model's device list,
with all layers offloaded. `local` computes on the client's CPU with weight repacking off
(`use_extra_bufts = false`), the configuration the reference rpc-server is bit-identical to.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_common as common  # noqa: E402

LOG: list[str] = []


def setup_rpc(endpoints: list[str]) -> list[int]:
    """Register each server like `--rpc` does; return the RPC device handles (before importing llama_cpp)."""
    g = common.load_ggml()
    devs = []
    for ep in endpoints:
        reg = g["ggml_backend_rpc_add_server"](ep.encode())
        if not reg:
            raise RuntimeError(f"ggml_backend_rpc_add_server({ep}) failed")
        g["ggml_backend_register"](reg)
        devs += [g["ggml_backend_reg_dev_get"](reg, i) for i in range(g["ggml_backend_reg_dev_count"](reg))]
    if not devs:
        raise RuntimeError(f"no RPC devices found on {endpoints}")
    return devs


class Session:
    """A loaded model + context; `llama` is the llama_cpp module (imported only after registration)."""

    def __init__(self, endpoint: str, n_ctx: int = 512, n_batch: int = 512, kv_type: str | None = None):
        self.endpoint = endpoint
        rpc_devs = [] if endpoint == "local" else setup_rpc(endpoint.split(","))
        common.load_ggml()
        import llama_cpp as llama

        self.llama = llama
        self._log_cb = llama.llama_log_callback(self._on_log)  # keep alive
        llama.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        llama.llama_backend_init()
        self.devices = [(n, d, t) for n, d, t, _h in common.list_devices(common.load_ggml())]

        mp = llama.llama_model_default_params()
        if rpc_devs:
            mp.n_gpu_layers = 99
            self._dev_arr = (ctypes.c_void_p * (len(rpc_devs) + 1))(*rpc_devs, None)
            mp.devices = ctypes.cast(self._dev_arr, ctypes.c_void_p)
        else:
            mp.n_gpu_layers = 0
            # GGRPC_LOCAL_REPACK=1: llama.cpp's other CPU path (weight repacking), to measure ggml's own
            # variance on the same text.
            mp.use_extra_bufts = os.environ.get("GGRPC_LOCAL_REPACK") == "1"
        path = str(common.model_path()).encode()
        t0 = time.perf_counter()
        self.model = llama.llama_model_load_from_file(path, mp)
        self.t_load = time.perf_counter() - t0
        if not self.model:
            raise RuntimeError("llama_model_load_from_file failed")
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = llama.llama_vocab_n_tokens(self.vocab)

        cp = llama.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx, n_batch, n_batch
        cp.n_threads = cp.n_threads_batch = common.client_threads()
        if os.environ.get("GGRPC_FLASH_ATTN"):  # -1 auto (default), 0 off, 1 on: for diagnosis
            cp.flash_attn_type = int(os.environ["GGRPC_FLASH_ATTN"])
        if kv_type:
            # llama.cpp's `-ctk T -ctv T -fa on`: a quantized V cache needs flash attention.
            cp.type_k = cp.type_v = KV_TYPES[kv_type]
            cp.flash_attn_type = 1
        self.ctx = llama.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama_init_from_model failed")
        self.mem = llama.llama_get_memory(self.ctx)

    def _on_log(self, level, text, _user):
        s = text.decode(errors="replace") if text else ""
        LOG.append(s)
        sys.stderr.write(s)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        b = text.encode()
        buf = (self.llama.llama_token * (len(b) + 16))()
        n = self.llama.llama_tokenize(self.vocab, b, len(b), buf, len(buf), add_bos, False)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return list(buf[:n])

    def piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.llama.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def decode(self, tokens: list[int], pos0: int, all_logits: bool) -> None:
        llama = self.llama
        n = len(tokens)
        batch = llama.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(tokens):
                batch.token[i] = t
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
            batch.n_tokens = n
            rc = llama.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            llama.llama_synchronize(self.ctx)
        finally:
            llama.llama_batch_free(batch)

    def logits(self, n_rows: int) -> np.ndarray:
        ptr = self.llama.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_rows, self.n_vocab)).copy()

    def last_logits(self) -> np.ndarray:
        ptr = self.llama.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        self.llama.llama_free(self.ctx)
        self.llama.llama_model_free(self.model)
        self.llama.llama_backend_free()

    def clear(self) -> None:
        self.llama.llama_memory_clear(self.mem, True)

    def info(self) -> dict:
        """What llama.cpp says about device placement (parsed from its log)."""
        text = "".join(LOG)
        off = re.search(r"offloaded (\d+)/(\d+) layers to GPU", text)
        buffers = {}
        for m in re.finditer(r"load_tensors:\s+(\S+) model buffer size\s+=\s+([\d.]+) MiB", text):
            buffers[m.group(1)] = float(m.group(2))
        kv = {}
        for m in re.finditer(r"(\S+) KV buffer size\s+=\s+([\d.]+) MiB", text):
            kv[m.group(1)] = kv.get(m.group(1), 0.0) + float(m.group(2))
        compute = {}
        for m in re.finditer(r"(\S+) compute buffer size\s+=\s+([\d.]+) MiB", text):
            compute[m.group(1)] = float(m.group(2))
        layers: dict[str, int] = {}
        for m in re.finditer(r"load_tensors: layer\s+\d+ assigned to device (\S+),", text):
            layers[m.group(1)] = layers.get(m.group(1), 0) + 1
        splits = re.findall(r"sched_reserve: graph: nodes = (\d+), splits = (\d+)", text)
        fa = re.search(r"flash_attn\s*=\s*(\S+)", text)
        fa_used = "FLASH_ATTN_EXT" in text
        return {
            "endpoint": self.endpoint,
            "devices": self.devices,
            "offloaded": [int(off.group(1)), int(off.group(2))] if off else None,
            "layer_devices": layers,
            "graph_nodes_splits": [int(x) for x in splits[-1]] if splits else None,
            "model_buffers_mib": buffers,
            "kv_buffers_mib": kv,
            "compute_buffers_mib": compute,
            "flash_attn": fa.group(1) if fa else None,
            "flash_attn_used": fa_used,
            "n_vocab": self.n_vocab,
            "t_load_s": self.t_load,
        }


# ggml_type ids of the KV cache types the tests use.
KV_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 8}


def cmd_logits(a) -> tuple[dict, Session]:
    s = Session(a.endpoint, kv_type=a.kv_type)
    toks = s.tokenize(common.TEXT)
    t0 = time.perf_counter()
    s.decode(toks, 0, all_logits=True)
    dt = time.perf_counter() - t0
    np.save(a.out, s.logits(len(toks)))
    return {**s.info(), "tokens": toks, "t_eval_s": dt}, s


def cmd_generate(a) -> tuple[dict, Session]:
    s = Session(a.endpoint)
    prompt = s.tokenize(a.prompt)
    t0 = time.perf_counter()
    s.decode(prompt, 0, all_logits=False)
    t_prompt = time.perf_counter() - t0
    out, eos = [], False
    t0 = time.perf_counter()
    while len(out) < a.n:
        tok = int(np.argmax(s.last_logits()))
        if s.llama.llama_vocab_is_eog(s.vocab, tok):
            eos = True
            break
        out.append(tok)
        if len(out) < a.n:
            s.decode([tok], len(prompt) + len(out) - 1, all_logits=False)
    t_gen = time.perf_counter() - t0
    text = b"".join(s.piece(t) for t in out).decode(errors="replace")
    return {**s.info(), "prompt": a.prompt, "prompt_tokens": prompt, "tokens": out, "text": text, "eos": eos,
            "t_prompt_s": t_prompt, "t_gen_s": t_gen}, s


def cmd_bench(a) -> tuple[dict, Session]:
    """llama-bench's method: random tokens, empty cache; pp = one batch of PP tokens, tg = TG single decodes."""
    s = Session(a.endpoint)
    rng = np.random.default_rng(1234)
    pp_toks = [int(x) for x in rng.integers(0, s.n_vocab, a.pp)]
    tg_toks = [int(x) for x in rng.integers(0, s.n_vocab, a.tg)]

    def run_pp() -> float:
        s.clear()
        t0 = time.perf_counter()
        s.decode(pp_toks, 0, all_logits=False)
        return time.perf_counter() - t0

    def run_tg(n: int) -> float:
        s.clear()
        t0 = time.perf_counter()
        for i in range(n):
            s.decode([tg_toks[i]], i, all_logits=False)
        return time.perf_counter() - t0

    run_pp()  # warm-up, as llama-bench does (also sends the graphs once)
    run_tg(1)
    pp = [a.pp / run_pp() for _ in range(a.reps)]
    tg = [a.tg / run_tg(a.tg) for _ in range(a.reps)]
    return {**s.info(), "pp": a.pp, "tg": a.tg, "pp_tps": pp, "tg_tps": tg}, s


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "generate", "bench"):
        p = sub.add_parser(name)
        p.add_argument("--endpoint", required=True, help="'local' or HOST:PORT[,HOST:PORT...]")
        p.add_argument("--info", required=True, help="JSON file for the results")
        if name == "logits":
            p.add_argument("--out", required=True)
            p.add_argument("--kv-type", choices=sorted(KV_TYPES), help="KV cache type (flash attention on)")
        if name == "generate":
            p.add_argument("--n", type=int, default=32)
            p.add_argument("--prompt", default=common.GEN_PROMPT)
        if name == "bench":
            p.add_argument("--pp", type=int, default=64)
            p.add_argument("--tg", type=int, default=32)
            p.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    res, s = {"logits": cmd_logits, "generate": cmd_generate, "bench": cmd_bench}[a.cmd](a)
    Path(a.info).write_text(json.dumps(res, indent=1))
    s.close()  # frees the context and the model: FREE_BUFFER on the wire, then the connection closes
    sys.stderr.write(f"\nclient {a.cmd} done: {a.info}\n")
    sys.stderr.flush()
    # Skip interpreter teardown (ctypes callbacks and libraries unloading in arbitrary order).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
