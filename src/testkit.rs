//! What tests across the crate share: a deterministic RNG, op-parameter packing and a tolerance
//! check. Host tensors and the one-node runner live with the host kernels
//! (`device::host_kernels::testkit`).

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// f32 params from a list (rest zero).
pub fn params_f32(vals: &[f32]) -> [i32; 16] {
    let mut p = [0i32; 16];
    for (i, v) in vals.iter().enumerate() {
        p[i] = v.to_bits() as i32;
    }
    p
}

/// Asserts two slices agree within `tol` (absolute + relative), naming the first mismatch.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()) || (g as f64 == w),
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}
