//! Window ops against direct index arithmetic from SAM's image encoder (window_partition,
//! window_unpartition, get_rel_pos, add_decomposed_rel_pos). Copies are exact; ADD_REL_POS adds two
//! f32 values to each score, compared at 1e-6. test-backend-ops has no cases for these ops.

use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use crate::ggml::{GgmlType, Op};

use GgmlType::{Bf16, F16, F32};

fn win_params(npx: usize, npy: usize, w: usize) -> [i32; 16] {
    let mut p = [0; 16];
    p[..3].copy_from_slice(&[npx as i32, npy as i32, w as i32]);
    p
}

/// A [C, W, H] image, split into 3 x 3 windows (zero padded: W = 7, H = 5 -> 3 x 2 windows), and put
/// back.
#[test]
fn win_part_and_unpart_round_trip() {
    let (c, w0, h0, w) = (4usize, 7usize, 5usize, 3usize);
    let (npx, npy) = (w0.div_ceil(w), h0.div_ceil(w));
    let mut rng = Rng::new(111);
    let img = rng.vec(c * w0 * h0, -1.0, 1.0);
    let a = HostTensor::from_f32(F32, [c, w0, h0, 1], &img);
    let mut parts = HostTensor::zeros(F32, [c, w, w, npx * npy]);
    run_op(
        Op::WinPart,
        win_params(npx, npy, w),
        &[Some(&a)],
        &mut parts,
    )
    .unwrap();
    let got = parts.to_f32();
    for win in 0..npx * npy {
        let (py, px) = (win / npx, win % npx);
        for y in 0..w {
            for x in 0..w {
                for ch in 0..c {
                    let (gx, gy) = (px * w + x, py * w + y);
                    let want = if gx < w0 && gy < h0 {
                        img[(gy * w0 + gx) * c + ch]
                    } else {
                        0.0
                    };
                    assert_eq!(got[((win * w + y) * w + x) * c + ch], want);
                }
            }
        }
    }
    let mut back = HostTensor::zeros(F32, [c, w0, h0, 1]);
    let mut p = [0; 16];
    p[0] = w as i32;
    run_op(Op::WinUnpart, p, &[Some(&parts)], &mut back).unwrap();
    assert_eq!(back.to_f32(), img);
    // The window count must match the parameters.
    let mut bad = HostTensor::zeros(F32, [c, w, w, 5]);
    assert!(run_op(Op::WinPart, win_params(npx, npy, w), &[Some(&a)], &mut bad).is_err());
}

#[test]
fn get_rel_pos_gathers_relative_rows() {
    let (c, k) = (3, 4);
    let vals: Vec<f32> = (0..c * (2 * k - 1)).map(|i| i as f32).collect();
    for t in [F16, Bf16] {
        let a = HostTensor::from_f32(t, [c, 2 * k - 1, 1, 1], &vals);
        let mut d = HostTensor::zeros(F16, [c, k, k, 1]);
        run_op(Op::GetRelPos, [0; 16], &[Some(&a)], &mut d).unwrap();
        // Raw 2-byte copies: row (q - key) + k - 1 for query q, key `key`.
        for q in 0..k {
            for key in 0..k {
                let row = q + k - 1 - key;
                for ch in 0..c {
                    let i = (q * k + key) * c + ch;
                    let j = row * c + ch;
                    assert_eq!(
                        d.bytes[2 * i..2 * i + 2],
                        a.bytes[2 * j..2 * j + 2],
                        "{t:?}"
                    );
                }
            }
        }
    }
    let a = HostTensor::zeros(F32, [c, 2 * k - 1, 1, 1]);
    let mut d = HostTensor::zeros(F16, [c, k, k, 1]);
    assert!(run_op(Op::GetRelPos, [0; 16], &[Some(&a)], &mut d).is_err());
}

/// attn[h, (qh, qw), (kh, kw)] += rel_h[h, qh, qw, kh] + rel_w[h, qh, qw, kw], the layout being
/// attn [kw*kh, qw*qh, heads], pw/ph [k, qw, qh, heads] (k = kw = kh).
#[test]
fn add_rel_pos_adds_both_biases() {
    let (k, qw, qh, heads) = (3, 3, 2, 2);
    let mut rng = Rng::new(112);
    let a_ne = [k * k, qw * qh, heads, 1];
    let attn = rng.vec(a_ne.iter().product(), -1.0, 1.0);
    let p_ne = [k, qw, qh, heads];
    let (pw, ph) = (
        rng.vec(k * qw * qh * heads, -1.0, 1.0),
        rng.vec(k * qw * qh * heads, -1.0, 1.0),
    );
    let a = HostTensor::from_f32(F32, a_ne, &attn);
    let (pwt, pht) = (
        HostTensor::from_f32(F32, p_ne, &pw),
        HostTensor::from_f32(F32, p_ne, &ph),
    );
    let mut want = Vec::new();
    for h in 0..heads {
        for y in 0..qh {
            for x in 0..qw {
                let q = (h * qh + y) * qw + x;
                for kh in 0..k {
                    for kw in 0..k {
                        let s = attn[q * k * k + kh * k + kw];
                        want.push(
                            f64::from(s) + f64::from(ph[q * k + kh]) + f64::from(pw[q * k + kw]),
                        );
                    }
                }
            }
        }
    }
    let srcs = [Some(&a), Some(&pwt), Some(&pht)];
    let mut d = HostTensor::zeros(F32, a_ne);
    run_op(Op::AddRelPos, [0; 16], &srcs, &mut d).unwrap();
    assert_close(&d.to_f32(), &want, 1e-6, "add_rel_pos");
    // In place: dst already holds a (the runner passes the shared bytes as the destination).
    let mut d = a.clone();
    let mut p = [0; 16];
    p[0] = 1;
    run_op(Op::AddRelPos, p, &srcs, &mut d).unwrap();
    assert_close(&d.to_f32(), &want, 1e-6, "add_rel_pos inplace");
    let bad = HostTensor::zeros(F32, [k, qw, qh, heads + 1]);
    let mut d = HostTensor::zeros(F32, a_ne);
    assert!(
        run_op(
            Op::AddRelPos,
            [0; 16],
            &[Some(&a), Some(&bad), Some(&bad)],
            &mut d
        )
        .is_err()
    );
}
