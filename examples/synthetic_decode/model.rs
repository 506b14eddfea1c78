//! A synthetic Gemma 3 270M: the real model's shapes and Q4_K_M weight types (read from
//! `gemma-3-270m-q4_k_m.gguf`), random weights, and the graph llama.cpp's Gemma 3 builder sends for a
//! batch of tokens (embedding, 18 layers of norms, projections, ROPE, KV-cache SET_ROWS, flash
//! attention and GEGLU FFN, the tied Q8_0 output for the batch's last token).

use ggrpc::client::{Client, GraphBuilder, TensorId};
use ggrpc::ggml::{GgmlType, GluOp, Op, contiguous_strides};

pub const D_MODEL: usize = 640;
pub const HEAD_DIM: usize = 256;
pub const N_HEAD: usize = 4;
pub const N_HEAD_KV: usize = 1;
pub const D_FF: usize = 2048;
pub const VOCAB: usize = 262144;
pub const LAYERS: usize = 18;
const EPS: f32 = 1e-6;
/// Sliding-window layers see this many past positions; every `SWA_PATTERN`-th layer is global.
const SWA_WINDOW: usize = 512;
const SWA_PATTERN: usize = 6;
/// ggml's GGML_PREC_F32, which llama.cpp sets on FLASH_ATTN_EXT.
const PREC_F32: i32 = 10;

/// llama.cpp's `use_more_bits` for Q4_K_M: these layers' attn_v is Q8_0 and ffn_down Q6_K (else
/// Q5_0 and Q4_K; rows of 640 are not whole K-quant blocks, hence the Q5_0/Q8_0 fallbacks).
fn more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

fn is_global(layer: usize) -> bool {
    (layer + 1).is_multiple_of(SWA_PATTERN)
}

/// One layer's weights and KV cache.
pub struct Layer {
    attn_norm: TensorId,
    wq: TensorId,
    q_norm: TensorId,
    wk: TensorId,
    k_norm: TensorId,
    wv: TensorId,
    wo: TensorId,
    post_attn_norm: TensorId,
    ffn_norm: TensorId,
    wg: TensorId,
    wu: TensorId,
    wd: TensorId,
    post_ffw_norm: TensorId,
    k_cache: Option<TensorId>,
    v_cache: Option<TensorId>,
}

/// Every weight of the model (placed in the builder's current buffer).
pub struct Weights {
    tok: TensorId,
    out_norm: TensorId,
    pub layers: Vec<Layer>,
    /// Cache length in positions (0 before `place_cache`).
    pub n_ctx: usize,
}

impl Weights {
    pub fn place(g: &mut GraphBuilder, n_layers: usize) -> Self {
        let f32v = |g: &mut GraphBuilder, n| g.input(GgmlType::F32, [n, 1, 1, 1]);
        let mat = |g: &mut GraphBuilder, t, k, m| g.input(t, [k, m, 1, 1]);
        let tok = mat(g, GgmlType::Q8_0, D_MODEL, VOCAB);
        let out_norm = f32v(g, D_MODEL);
        let layers = (0..n_layers)
            .map(|i| {
                let more = more_bits(i, n_layers);
                Layer {
                    attn_norm: f32v(g, D_MODEL),
                    wq: mat(g, GgmlType::Q5_0, D_MODEL, HEAD_DIM * N_HEAD),
                    q_norm: f32v(g, HEAD_DIM),
                    wk: mat(g, GgmlType::Q5_0, D_MODEL, HEAD_DIM * N_HEAD_KV),
                    k_norm: f32v(g, HEAD_DIM),
                    wv: mat(
                        g,
                        if more { GgmlType::Q8_0 } else { GgmlType::Q5_0 },
                        D_MODEL,
                        HEAD_DIM * N_HEAD_KV,
                    ),
                    wo: mat(g, GgmlType::Q4K, HEAD_DIM * N_HEAD, D_MODEL),
                    post_attn_norm: f32v(g, D_MODEL),
                    ffn_norm: f32v(g, D_MODEL),
                    wg: mat(g, GgmlType::Q5_0, D_MODEL, D_FF),
                    wu: mat(g, GgmlType::Q5_0, D_MODEL, D_FF),
                    wd: mat(
                        g,
                        if more { GgmlType::Q6K } else { GgmlType::Q4K },
                        D_FF,
                        D_MODEL,
                    ),
                    post_ffw_norm: f32v(g, D_MODEL),
                    k_cache: None,
                    v_cache: None,
                }
            })
            .collect();
        Weights {
            tok,
            out_norm,
            layers,
            n_ctx: 0,
        }
    }

    /// Places an f16 K and V cache of `n_ctx` positions per layer in the builder's current buffer.
    pub fn place_cache(&mut self, g: &mut GraphBuilder, n_ctx: usize) {
        for l in &mut self.layers {
            l.k_cache = Some(g.input(GgmlType::F16, [HEAD_DIM * N_HEAD_KV, n_ctx, 1, 1]));
            l.v_cache = Some(g.input(GgmlType::F16, [HEAD_DIM * N_HEAD_KV, n_ctx, 1, 1]));
        }
        self.n_ctx = n_ctx;
    }

    fn all(&self) -> Vec<TensorId> {
        let mut v = vec![self.tok, self.out_norm];
        for l in &self.layers {
            v.extend([
                l.attn_norm,
                l.wq,
                l.q_norm,
                l.wk,
                l.k_norm,
                l.wv,
                l.wo,
                l.post_attn_norm,
                l.ffn_norm,
                l.wg,
                l.wu,
                l.wd,
                l.post_ffw_norm,
            ]);
        }
        v
    }

    /// Uploads random weights (norm weights near 1, matrices quantized from small uniform values);
    /// returns the bytes sent.
    pub fn upload(&self, c: &mut Client, g: &GraphBuilder) -> std::io::Result<u64> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0;
        for id in self.all() {
            let t = g.tensor(id);
            let typ = GgmlType::from_u32(t.typ).expect("a type this module placed");
            let (k, m) = (t.ne[0] as usize, t.ne[1] as usize);
            let bytes = if typ == GgmlType::F32 {
                (0..k * m)
                    .flat_map(|_| (1.0 + 0.1 * rng.uniform()).to_le_bytes())
                    .collect()
            } else {
                random_matrix(typ, k, m, &mut rng)
            };
            c.set_tensor(&t, 0, &bytes, false)?;
            sent += bytes.len() as u64;
        }
        Ok(sent)
    }
}

/// A [k, m] matrix of `typ`: a few distinct rows quantized from uniform values in ±0.05, repeated
/// (quantizing 262144 rows one by one would take longer than the benchmark).
fn random_matrix(typ: GgmlType, k: usize, m: usize, rng: &mut Rng) -> Vec<u8> {
    const DISTINCT: usize = 61;
    let row = typ.row_size(k).expect("whole blocks");
    let rows: Vec<Vec<u8>> = (0..DISTINCT.min(m))
        .map(|_| {
            let src: Vec<f32> = (0..k).map(|_| 0.05 * rng.uniform()).collect();
            let mut dst = vec![0u8; row];
            ggrpc::quant::quantize_row(typ, &src, &mut dst).expect("quantizable type");
            dst
        })
        .collect();
    let mut out = Vec::with_capacity(row * m);
    for i in 0..m {
        out.extend_from_slice(&rows[(i * 7 + i / DISTINCT) % rows.len()]);
    }
    out
}

/// xorshift64*: deterministic weights without a dependency.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The inputs a client sets before each run of a batch's graph, and its output.
pub struct Batch {
    pub n_tok: usize,
    pub n_kv: usize,
    ids: TensorId,
    pos: TensorId,
    slots: TensorId,
    mask_global: TensorId,
    mask_swa: TensorId,
    pub logits: TensorId,
    pub nodes: Vec<TensorId>,
    pub builder: GraphBuilder,
}

fn f32_params(vals: &[f32]) -> [i32; 16] {
    let mut p = [0i32; 16];
    for (d, v) in p.iter_mut().zip(vals) {
        *d = v.to_bits() as i32;
    }
    p
}

fn rope_params(freq_base: f32) -> [i32; 16] {
    // n_dims, mode NEOX, n_ctx_orig, then freq_base, freq_scale, ext_factor, attn_factor, beta_fast,
    // beta_slow.
    let mut p = f32_params(&[0.0, 0.0, 0.0, 0.0, 0.0, freq_base, 1.0, 0.0, 1.0, 32.0, 1.0]);
    (p[1], p[2], p[4]) = (HEAD_DIM as i32, 2, 32768);
    p
}

/// Adds compute nodes to a builder, remembering them in graph order.
struct Nodes<'a> {
    g: &'a mut GraphBuilder,
    nodes: Vec<TensorId>,
}

impl Nodes<'_> {
    fn op(&mut self, op: Op, ne: [usize; 4], srcs: &[TensorId], params: [i32; 16]) -> TensorId {
        let t = self.g.op(op, GgmlType::F32, ne, srcs, params);
        self.nodes.push(t);
        t
    }

    fn ne(&self, t: TensorId) -> [usize; 4] {
        self.g.tensor(t).ne.map(|v| v as usize)
    }

    /// A view of `t` (no memory, no computation of its own).
    fn view(&mut self, t: TensorId, op: Op, ne: [usize; 4], nb: [usize; 4], offs: u64) -> TensorId {
        let v = self.g.view(t, op, ne, nb, offs);
        self.g.tensor_mut(v).flags = 0;
        v
    }

    /// A contiguous f32 view of `t` with another shape (RESHAPE), or at a byte offset (VIEW).
    fn reshape(&mut self, t: TensorId, ne: [usize; 4], offs: u64) -> TensorId {
        let op = if offs == 0 { Op::Reshape } else { Op::View };
        self.view(t, op, ne, contiguous_strides(GgmlType::F32, ne), offs)
    }

    fn norm(&mut self, x: TensorId, w: TensorId) -> TensorId {
        let ne = self.ne(x);
        let n = self.op(Op::RmsNorm, ne, &[x], f32_params(&[EPS]));
        self.op(Op::Mul, ne, &[n, w], [0; 16])
    }

    fn mm(&mut self, w: TensorId, x: TensorId) -> TensorId {
        let (rows, cols) = (self.ne(w)[1], self.ne(x)[1]);
        self.op(Op::MulMat, [rows, cols, 1, 1], &[w, x], [0; 16])
    }

    /// SET_ROWS of `rows` ([HEAD_DIM * N_HEAD_KV, n]) into `cache` at `slots`: a node that is a view
    /// of the cache, as ggml builds it.
    fn set_rows(&mut self, cache: TensorId, rows: TensorId, slots: TensorId) -> TensorId {
        let c = self.g.tensor(cache);
        let ne = c.ne.map(|v| v as usize);
        let nb = c.nb.map(|v| v as usize);
        let t = self.g.view(cache, Op::SetRows, ne, nb, 0);
        let (r, s) = (self.g.tensor(rows).id, self.g.tensor(slots).id);
        let w = self.g.tensor_mut(t);
        w.src = [0; 10];
        (w.src[0], w.src[1], w.src[2]) = (r, s, c.id);
        w.flags = ggrpc::ggml::TensorFlags::COMPUTE;
        self.nodes.push(t);
        t
    }
}

impl Batch {
    /// The graph of one batch of `n_tok` tokens attending over the first `n_kv` cache positions,
    /// built on a clone of `base` (which holds the weights) in its current buffer.
    pub fn build(base: &GraphBuilder, w: &Weights, n_tok: usize, n_kv: usize) -> Batch {
        assert!(n_kv <= w.n_ctx, "n_kv {n_kv} past the cache ({})", w.n_ctx);
        let mut g = base.clone();
        let ids = g.input(GgmlType::I32, [n_tok, 1, 1, 1]);
        let pos = g.input(GgmlType::I32, [n_tok, 1, 1, 1]);
        let slots = g.input(GgmlType::I64, [n_tok, 1, 1, 1]);
        let mask_global = g.input(GgmlType::F16, [n_kv, n_tok, 1, 1]);
        let mask_swa = g.input(GgmlType::F16, [n_kv, n_tok, 1, 1]);
        let mut b = Nodes {
            g: &mut g,
            nodes: Vec::new(),
        };
        let (hd, nh, nkv) = (HEAD_DIM, N_HEAD, N_HEAD_KV);
        let x = b.op(Op::GetRows, [D_MODEL, n_tok, 1, 1], &[w.tok, ids], [0; 16]);
        let scale = (D_MODEL as f32).sqrt();
        let mut x = b.op(
            Op::Scale,
            [D_MODEL, n_tok, 1, 1],
            &[x],
            f32_params(&[scale]),
        );
        for (i, l) in w.layers.iter().enumerate() {
            let (base_freq, mask) = if is_global(i) {
                (1e6, mask_global)
            } else {
                (1e4, mask_swa)
            };
            let h = b.norm(x, l.attn_norm);
            let q = b.mm(l.wq, h);
            let q = b.reshape(q, [hd, nh, n_tok, 1], 0);
            let q = b.norm(q, l.q_norm);
            let q = b.op(
                Op::Rope,
                [hd, nh, n_tok, 1],
                &[q, pos],
                rope_params(base_freq),
            );
            // Gemma 3 scales queries by 1/sqrt(query_pre_attn_scalar) and attends with scale 1.
            let q = b.op(
                Op::Scale,
                [hd, nh, n_tok, 1],
                &[q],
                f32_params(&[1.0 / (hd as f32).sqrt()]),
            );
            let k = b.mm(l.wk, h);
            let k = b.reshape(k, [hd, nkv, n_tok, 1], 0);
            let k = b.norm(k, l.k_norm);
            let k = b.op(
                Op::Rope,
                [hd, nkv, n_tok, 1],
                &[k, pos],
                rope_params(base_freq),
            );
            let k = b.reshape(k, [hd * nkv, n_tok, 1, 1], 0);
            let v = b.mm(l.wv, h);
            let (kc, vc) = (l.k_cache.expect("cache"), l.v_cache.expect("cache"));
            let ks = b.set_rows(kc, k, slots);
            let vs = b.set_rows(vc, v, slots);
            // The caches as attention reads them: [HEAD_DIM, n_kv, N_HEAD_KV] of f16.
            let kv_nb = [2, 2 * hd * nkv, 2 * hd, 2 * hd * nkv * n_kv];
            let kview = b.view(ks, Op::View, [hd, n_kv, nkv, 1], kv_nb, 0);
            let vview = b.view(vs, Op::View, [hd, n_kv, nkv, 1], kv_nb, 0);
            let qp = b.view(
                q,
                Op::Permute,
                [hd, n_tok, nh, 1],
                [4, 4 * hd * nh, 4 * hd, 4 * hd * nh * n_tok],
                0,
            );
            let mut fa = f32_params(&[1.0, 0.0, 0.0]);
            fa[3] = PREC_F32;
            let a = b.op(
                Op::FlashAttnExt,
                [hd, nh, n_tok, 1],
                &[qp, kview, vview, mask],
                fa,
            );
            let a = b.reshape(a, [hd * nh, n_tok, 1, 1], 0);
            let o = b.mm(l.wo, a);
            let o = b.norm(o, l.post_attn_norm);
            let x1 = b.op(Op::Add, [D_MODEL, n_tok, 1, 1], &[o, x], [0; 16]);
            let h = b.norm(x1, l.ffn_norm);
            let (gate, up) = (b.mm(l.wg, h), b.mm(l.wu, h));
            let mut glu = [0i32; 16];
            glu[0] = GluOp::Geglu as i32;
            let act = b.op(Op::Glu, [D_FF, n_tok, 1, 1], &[gate, up], glu);
            let down = b.mm(l.wd, act);
            let down = b.norm(down, l.post_ffw_norm);
            x = b.op(Op::Add, [D_MODEL, n_tok, 1, 1], &[down, x1], [0; 16]);
        }
        // Logits for the last token only, as llama.cpp outputs by default.
        let last = b.reshape(x, [D_MODEL, 1, 1, 1], ((n_tok - 1) * D_MODEL * 4) as u64);
        let y = b.norm(last, w.out_norm);
        let logits = b.mm(w.tok, y);
        let nodes = b.nodes;
        Batch {
            n_tok,
            n_kv,
            ids,
            pos,
            slots,
            mask_global,
            mask_swa,
            logits,
            nodes,
            builder: g,
        }
    }

    /// SET_TENSORs of the batch's inputs: tokens `ids` at positions `first..first + n_tok` (their
    /// cache slots), with the causal masks (sliding-window for the local layers).
    pub fn set_inputs(&self, c: &mut Client, ids: &[i32], first: usize) -> std::io::Result<()> {
        assert_eq!(ids.len(), self.n_tok);
        assert!(first + self.n_tok <= self.n_kv, "positions past n_kv");
        let g = &self.builder;
        let pos: Vec<usize> = (first..first + self.n_tok).collect();
        let i32s = |v: &mut dyn Iterator<Item = i32>| -> Vec<u8> {
            v.flat_map(i32::to_le_bytes).collect()
        };
        c.set_tensor(
            &g.tensor(self.ids),
            0,
            &i32s(&mut ids.iter().copied()),
            false,
        )?;
        c.set_tensor(
            &g.tensor(self.pos),
            0,
            &i32s(&mut pos.iter().map(|&p| p as i32)),
            false,
        )?;
        let slots: Vec<u8> = pos.iter().flat_map(|&p| (p as i64).to_le_bytes()).collect();
        c.set_tensor(&g.tensor(self.slots), 0, &slots, false)?;
        for (t, window) in [(self.mask_global, usize::MAX), (self.mask_swa, SWA_WINDOW)] {
            let mask: Vec<u8> = pos
                .iter()
                .flat_map(|&p| {
                    (0..self.n_kv).map(move |j| {
                        let seen = j <= p && p - j < window;
                        // f16 0 or -inf
                        if seen { 0u16 } else { 0xfc00 }
                    })
                })
                .flat_map(u16::to_le_bytes)
                .collect();
            c.set_tensor(&g.tensor(t), 0, &mask, false)?;
        }
        Ok(())
    }
}
