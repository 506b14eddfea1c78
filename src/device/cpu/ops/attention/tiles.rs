//! The tiled FLASH_ATTN_EXT path's K and V in f32, converted once per op instead of once per query
//! row: K transposed into tiles of `TILE_KV` keys (`[tile][d][key]`), so the K·Q scores of one tile
//! are 64 independent FMA chains over d that the compiler vectorizes across keys; each chain is the
//! same single FMA chain in d order that ggml's `simd_gemm` computes, so the bits do not change.

use super::super::Src;
use super::TILE_KV;
use crate::device::DeviceError;

/// Above this many f32s (K and V together) the rows are converted one by one, as before.
const MAX_FLOATS: usize = 16 << 20;

pub struct Tiles {
    kt: Vec<f32>,
    v: Vec<f32>,
    dk: usize,
    dv: usize,
    n_kv: usize,
    n_tiles: usize,
    /// K's (and V's) ne[2]: planes are indexed `i3 * ne2 + i2`.
    k_ne2: usize,
    v_ne2: usize,
}

impl Tiles {
    pub fn new(k: &Src<'_>, v: &Src<'_>) -> Result<Option<Self>, DeviceError> {
        let (dk, dv, n_kv) = (k.t.ne[0], v.t.ne[0], k.t.ne[1]);
        let n_tiles = n_kv.div_ceil(TILE_KV);
        let k_planes = k.t.ne[2] * k.t.ne[3];
        let v_planes = v.t.ne[2] * v.t.ne[3];
        let k_len = k_planes * n_tiles * TILE_KV * dk;
        let v_len = v_planes * n_kv * dv;
        if k_len + v_len > MAX_FLOATS || v.t.ne[1] != n_kv {
            return Ok(None);
        }
        let mut kt = vec![0f32; k_len];
        let mut row = vec![0f32; dk];
        for p in 0..k_planes {
            let (i2, i3) = (p % k.t.ne[2], p / k.t.ne[2]);
            for key in 0..n_kv {
                super::read_fast(k.t, k.data, key, i2, i3, &mut row)?;
                let base = (p * n_tiles + key / TILE_KV) * TILE_KV * dk + key % TILE_KV;
                for (d, &x) in row.iter().enumerate() {
                    kt[base + d * TILE_KV] = x;
                }
            }
        }
        let mut vv = vec![0f32; v_len];
        for (r, out) in vv.chunks_exact_mut(dv.max(1)).enumerate() {
            let (key, p) = (r % n_kv, r / n_kv);
            super::read_fast(v.t, v.data, key, p % v.t.ne[2], p / v.t.ne[2], out)?;
        }
        Ok(Some(Tiles {
            kt,
            v: vv,
            dk,
            dv,
            n_kv,
            n_tiles,
            k_ne2: k.t.ne[2],
            v_ne2: v.t.ne[2],
        }))
    }

    /// `out[t] = Σ_d q[d]·K[key0 + t][d]` for the tile that starts at `key0` (a multiple of
    /// `TILE_KV`), one FMA chain per key in d order; keys past the end score 0.
    pub fn scores(&self, q: &[f32], i2: usize, i3: usize, key0: usize, out: &mut [f32; TILE_KV]) {
        let p = i3 * self.k_ne2 + i2;
        let base = (p * self.n_tiles + key0 / TILE_KV) * TILE_KV * self.dk;
        let tile = &self.kt[base..base + TILE_KV * self.dk];
        let mut acc = [0f32; TILE_KV];
        for (col, &qd) in tile.chunks_exact(TILE_KV).zip(q) {
            for (a, &kv) in acc.iter_mut().zip(col) {
                *a = qd.mul_add(kv, *a);
            }
        }
        *out = acc;
    }

    /// V row `key` of plane (i2, i3) in f32.
    pub fn v_row(&self, key: usize, i2: usize, i3: usize) -> &[f32] {
        let r = (i3 * self.v_ne2 + i2) * self.n_kv + key;
        &self.v[r * self.dv..(r + 1) * self.dv]
    }
}
