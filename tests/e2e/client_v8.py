"""The RPC 8.0.0 real client: llama.cpp b11739 (PyPI wheel llama-cpp-py-sync 0.11739, CFFI API) driving
Gemma 3 270M locally or through RPC servers. Runs inside the Debian 13 root (scripts/e2e-v8-env.sh):

    scripts/e2e-v8-env.sh run python3 tests/e2e/client_v8.py logits --model M.gguf \
        --endpoint (local|HOST:PORT[,HOST:PORT]) [--split layer|tensor] [--fa -1|0|1] --out L.npy --info I.json
    ... client_v8.py generate --model M.gguf --endpoint ... [--n 16] --info I.json

`logits`: the fixed text of e2e_common.TEXT, one batch, teacher-forced logits of every position (an
[n_tokens, n_vocab] float32 .npy); `--repeat 2` decodes it again after clearing the memory (the reused
graph goes out as GRAPH_RECOMPUTE) and records how the passes agree. `generate`: greedy (argmax)
continuation of e2e_common.GEN_PROMPT (not in tensor mode: the b11739 client aborts on 1-token batches
there, ggml-backend-meta.cpp:547). `local`: no RPC, the client's CPU; weight repacking off by default
(`--repack 1` for llama.cpp's default); observed bit-identical to the reference v8 server. The wrapper
always creates the context with embeddings on (every position an output, plus an embeddings read-back);
`--embeddings 0` turns that off.

One process per run: ggml's RPC client aborts the whole process when a server misbehaves or closes, so the
caller sees a failed subprocess; and its client threads can hang interpreter teardown, so the run ends
with os._exit. The info JSON is written before the model is freed (--close 1, the default).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# e2e_common imports only the standard library at module level (no llama_cpp): safe inside the root.
from e2e_common import GEN_PROMPT, TEXT  # noqa: E402

LOG: list[str] = []
DEBUG_LOG = os.environ.get("GGRPC_V8_DEBUG_LOG") == "1"  # also print llama.cpp's debug-level lines


class Session:
    def __init__(self, a):
        import llama_cpp_py_sync as lcs
        import llama_cpp_py_sync.llama as lcs_llama
        from llama_cpp_py_sync._cffi_bindings import get_ffi, get_lib

        self.version = f"{lcs.__version__} (llama.cpp {lcs.__llama_cpp_tag__}, {lcs.__llama_cpp_commit__})"
        ffi, lib = get_ffi(), get_lib()
        self._log_cb = ffi.callback("void(enum ggml_log_level, const char *, void *)", self._on_log)
        lib.llama_log_set(self._log_cb, ffi.NULL)

        repack_off = a.endpoint == "local" and not a.repack
        if repack_off or not a.embeddings:
            # The wrapper has no switch for these: hand it a library whose default model params turn weight
            # repacking off (use_extra_bufts) and/or whose context init drops `embeddings` (the wrapper
            # always sets it, which makes every token an output and adds an embeddings read-back).
            class _Lib:
                def __getattr__(self, name):
                    return getattr(lib, name)

                @staticmethod
                def llama_model_default_params():
                    p = lib.llama_model_default_params()
                    if repack_off:
                        p.use_extra_bufts = False
                    return p

                @staticmethod
                def llama_init_from_model(model, params):
                    if not a.embeddings:
                        params.embeddings = False
                    return lib.llama_init_from_model(model, params)

            lcs_llama.get_lib = lambda: _Lib()

        kw = dict(n_ctx=a.n_ctx, n_batch=a.n_batch, n_threads=a.threads, n_threads_batch=a.threads,
                  flash_attn_type=a.fa)
        self.endpoints = [] if a.endpoint == "local" else a.endpoint.split(",")
        if self.endpoints:
            kw.update(rpc_servers=self.endpoints, n_gpu_layers=-1, split_mode=a.split)
        else:
            kw.update(n_gpu_layers=0)
        t0 = time.perf_counter()
        self.llm = lcs.Llama(a.model, **kw)
        self.t_load = time.perf_counter() - t0
        self.lib, self.ffi, self.ctx = self.llm._lib, self.llm._ffi, self.llm._ctx
        self.n_vocab = self.llm.n_vocab
        self.args = a

    _last_level = 2

    def _on_log(self, level, text, _user):
        # ggml_log_level: 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 5 CONT (continues the previous line's level).
        s = self.ffi_string(text)
        LOG.append(s)
        if level != 5:
            Session._last_level = level
        if Session._last_level != 1 or DEBUG_LOG:
            sys.stderr.write(s)

    @staticmethod
    def ffi_string(p) -> str:
        from llama_cpp_py_sync._cffi_bindings import get_ffi

        ffi = get_ffi()
        return ffi.string(p).decode(errors="replace") if p != ffi.NULL else ""

    def decode(self, tokens: list[int], pos0: int, all_logits: bool) -> None:
        lib = self.lib
        n = len(tokens)
        batch = lib.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(tokens):
                batch.token[i] = t
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
            batch.n_tokens = n
            rc = lib.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            lib.llama_synchronize(self.ctx)
        finally:
            lib.llama_batch_free(batch)

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def logits_row(self, i: int) -> np.ndarray:
        p = self.lib.llama_get_logits_ith(self.ctx, i)
        if p == self.ffi.NULL:
            raise RuntimeError(f"llama_get_logits_ith({i}) returned NULL")
        return np.frombuffer(self.ffi.buffer(p, 4 * self.n_vocab), dtype=np.float32).copy()

    def info(self) -> dict:
        text = "".join(LOG)
        off = re.search(r"offloaded (\d+)/(\d+) layers to GPU", text)

        def sizes(pat: str) -> dict:
            out: dict[str, float] = {}
            for m in re.finditer(pat, text):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
            return out

        splits = re.findall(r"graph: nodes = (\d+), splits = (\d+)", text)
        fa = re.search(r"flash_attn\s*=\s*(\S+)", text)
        sm = re.search(r"split_mode\s*=\s*(\S+)", text)
        return {
            "client": self.version,
            "endpoints": self.endpoints or ["local"],
            "split_mode": self.args.split if self.endpoints else None,
            "flash_attn_type": self.args.fa,
            "offloaded": [int(off.group(1)), int(off.group(2))] if off else None,
            "model_buffers_mib": sizes(r"load_tensors:\s+(\S+) model buffer size\s+=\s+([\d.]+) MiB"),
            "kv_buffers_mib": sizes(r"(\S+) KV buffer size\s+=\s+([\d.]+) MiB"),
            "compute_buffers_mib": sizes(r"(\S+) compute buffer size\s+=\s+([\d.]+) MiB"),
            "graph_nodes_splits": [int(x) for x in splits[-1]] if splits else None,
            "flash_attn": fa.group(1) if fa else None,
            "split_mode_log": sm.group(1) if sm else None,
            "rpc_log": sorted({ln.strip() for ln in text.splitlines() if "RPC" in ln or "rpc" in ln})[:40],
            "n_vocab": self.n_vocab,
            "t_load_s": self.t_load,
        }


SESSION: Session | None = None


def cmd_logits(a) -> dict:
    global SESSION
    s = SESSION = Session(a)
    toks = s.llm.tokenize(TEXT)  # adds BOS
    if len(toks) > a.n_batch:
        raise RuntimeError(f"{len(toks)} tokens > n_batch {a.n_batch}")
    times, first, out, identical, rep_nmse_max, rep_top1_min = [], None, None, True, 0.0, 1.0
    for r in range(a.repeat):
        if r:
            s.clear()  # same batch again: llama.cpp reuses the graph, so RPC sends GRAPH_RECOMPUTE
        t0 = time.perf_counter()
        s.decode(toks, 0, all_logits=True)
        times.append(time.perf_counter() - t0)
        out = np.stack([s.logits_row(i) for i in range(len(toks))])
        if first is None:
            first = out
        else:  # later passes against the first one
            identical = identical and bool(np.array_equal(first, out))
            a64, b64 = out.astype(np.float64), first.astype(np.float64)
            nmse = ((a64 - b64) ** 2).sum(axis=1) / (b64**2).sum(axis=1)
            rep_nmse_max = max(rep_nmse_max, float(nmse.max()))
            rep_top1_min = min(rep_top1_min, float((out.argmax(axis=1) == first.argmax(axis=1)).mean()))
    np.save(a.out, out)  # the last pass (with --repeat > 1: the recomputed graphs)
    return {**s.info(), "tokens": toks, "t_eval_s": times[0], "t_eval_all_s": times, "repeat": a.repeat,
            "repeats_identical": identical, "repeat_nmse_max": rep_nmse_max, "repeat_top1_min": rep_top1_min}


def cmd_generate(a) -> dict:
    global SESSION
    s = SESSION = Session(a)
    prompt = s.llm.tokenize(a.prompt)
    t0 = time.perf_counter()
    s.decode(prompt, 0, all_logits=False)
    t_prompt = time.perf_counter() - t0
    out, eos = [], False
    t0 = time.perf_counter()
    while len(out) < a.n:
        tok = int(np.argmax(s.logits_row(-1)))
        if s.lib.llama_vocab_is_eog(s.llm._vocab, tok):
            eos = True
            break
        out.append(tok)
        if len(out) < a.n:
            s.decode([tok], len(prompt) + len(out) - 1, all_logits=False)
    t_gen = time.perf_counter() - t0
    text = b"".join(s.llm._token_to_bytes(t) for t in out).decode(errors="replace")
    return {**s.info(), "prompt": a.prompt, "prompt_tokens": prompt, "tokens": out, "text": text, "eos": eos,
            "t_prompt_s": t_prompt, "t_gen_s": t_gen}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "generate"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--endpoint", required=True, help="'local' or HOST:PORT[,HOST:PORT...]")
        p.add_argument("--split", default="layer", choices=["none", "layer", "row", "tensor"])
        p.add_argument("--fa", type=int, default=-1, help="flash_attn_type: -1 auto, 0 off, 1 on (tensor needs 1)")
        p.add_argument("--repack", type=int, default=0, help="local only: CPU weight repacking (use_extra_bufts)")
        p.add_argument("--embeddings", type=int, default=1,
                       help="0: context without embeddings output (the wrapper's default is 1)")
        p.add_argument("--threads", type=int, default=int(os.environ.get("GGRPC_CLIENT_THREADS", "2")))
        p.add_argument("--n-ctx", type=int, default=512)
        p.add_argument("--n-batch", type=int, default=512)
        p.add_argument("--info", required=True, help="JSON file for the results")
        p.add_argument("--close", type=int, default=1,
                       help="free the context and the model before exiting (FREE_BUFFER etc. on the wire)")
        if name == "logits":
            p.add_argument("--out", required=True)
            p.add_argument("--repeat", type=int, default=1,
                           help="decode the text N times (memory cleared between); the last one is saved")
        else:
            p.add_argument("--n", type=int, default=16)
            p.add_argument("--prompt", default=GEN_PROMPT)
    a = ap.parse_args()
    rc = 0
    try:
        res = {"logits": cmd_logits, "generate": cmd_generate}[a.cmd](a)
        Path(a.info).write_text(json.dumps(res, indent=1))
        if a.close and SESSION is not None:
            sys.stderr.flush()
            SESSION.llm.close()
        sys.stderr.write(f"\nclient_v8 {a.cmd} done: {a.info}\n")
    except Exception as e:  # noqa: BLE001 - report and exit non-zero without teardown
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"\nclient_v8 {a.cmd} failed: {e}\n")
        rc = 1
    sys.stderr.flush()
    sys.stdout.flush()
    # No interpreter teardown: ggml-rpc's client threads can hang it.
    os._exit(rc)


if __name__ == "__main__":
    main()
