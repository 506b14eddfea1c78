//! Cases for the training ops (backward passes, losses, optimizer steps), the SAM window ops and
//! FLASH_ATTN_EXT with quantized K/V. Shapes and op_params as ggml's constructors build them, sizes from
//! test-backend-ops scaled down; tolerances are test-backend-ops' for the op.

use super::cases::{DEFAULT, EXACT, MATMUL, case, pf, pi, with_f32};
use super::{Case, CaseBuilder};
use crate::device::host_kernels::testkit::HostTensor;
use crate::ggml::{GgmlType, Op, TensorFlags};

use GgmlType::{F16, F32, I32, I64, Q4_0, Q8_0};

pub fn all(v: &mut Vec<Case>) {
    backward(v);
    losses_and_steps(v);
    windows(v);
    attention_quant(v);
}

/// A leaf viewing the first `ne` elements of each dim of a contiguous `full` tensor (ggml_view_4d with
/// the full tensor's strides at offset 0): a non-contiguous source.
pub(super) fn sub_view(b: &mut CaseBuilder, full: HostTensor, ne: [usize; 4]) -> usize {
    let mut h = full;
    h.t.ne = ne;
    let n = h.t.nbytes().expect("size");
    h.bytes.truncate(n);
    b.leaf(h)
}

/// ggml_rope_ext's op_params: n_dims, mode, n_ctx_orig, then freq_base, freq_scale, ext_factor,
/// attn_factor, beta_fast, beta_slow.
fn rope_params(n_dims: i32, mode: i32, ext_factor: f32, attn_factor: f32) -> [i32; 16] {
    let mut p = pi(&[0, n_dims, mode, 0, 0]);
    for (k, x) in [10000.0f32, 1.0, ext_factor, attn_factor, 1.0, 1.0]
        .iter()
        .enumerate()
    {
        p = with_f32(p, 5 + k, *x);
    }
    p
}

fn backward(v: &mut Vec<Case>) {
    v.push(case(50, "COUNT_EQUAL".into(), EXACT, |b| {
        // test_count_equal: the argmax of two f32 tensors, compared.
        let x = b.rand(F32, [4, 500, 1, 1], -1.0, 1.0);
        let y = b.rand(F32, [4, 500, 1, 1], -1.0, 1.0);
        let ax = b.node(I32, [500, 1, 1, 1], Op::Argmax, [0; 16], &[x]);
        let ay = b.node(I32, [500, 1, 1, 1], Op::Argmax, [0; 16], &[y]);
        b.node(I64, [1, 1, 1, 1], Op::CountEqual, [0; 16], &[ax, ay]);
    }));
    for (nr, view) in [([2, 1, 2, 1], false), ([4, 1, 2, 1], true)] {
        let name = format!(
            "REPEAT_BACK_nr{}{}{}{}_v{}",
            nr[0], nr[1], nr[2], nr[3], view as u8
        );
        v.push(case(51, name, DEFAULT, |b| {
            let ne = [8, 6, 4, 2];
            let big: [usize; 4] = std::array::from_fn(|d| ne[d] * nr[d]);
            let src = if view {
                // test_repeat_back's view: the first half of every repeated dim.
                let n = big.iter().product();
                let h = HostTensor::from_f32(F32, big, &b.rng.vec(n, -1.0, 1.0));
                let half = std::array::from_fn(|d| if nr[d] == 1 { big[d] } else { big[d] / 2 });
                sub_view(b, h, half)
            } else {
                b.rand(F32, big, -1.0, 1.0)
            };
            b.node(F32, ne, Op::RepeatBack, [0; 16], &[src]);
        }));
    }
    v.push(case(52, "SILU_BACK".into(), DEFAULT, |b| {
        let x = b.rand(F32, [64, 5, 4, 3], -1.0, 1.0);
        let grad = b.rand(F32, [64, 5, 4, 3], -1.0, 1.0);
        b.node(F32, [64, 5, 4, 3], Op::SiluBack, [0; 16], &[x, grad]);
    }));
    v.push(case(53, "RMS_NORM_BACK".into(), DEFAULT, |b| {
        let x = b.rand(F32, [67, 5, 4, 3], -10.0, 10.0);
        let y = b.rand(F32, [67, 5, 4, 3], -10.0, 10.0);
        b.node(F32, [67, 5, 4, 3], Op::RmsNormBack, pf(&[1e-6]), &[x, y]);
    }));
    for typ in [F32, F16] {
        v.push(case(
            54,
            format!("GET_ROWS_BACK_{}", typ.name()),
            DEFAULT,
            |b| {
                // ggml_get_rows_back(grad [n, r], rows [r], in_forward [n, m]) -> f32 [n, m]; the
                // forward tensor only gives the shape, so it is no source.
                let grad = b.rand(typ, [256, 4, 1, 1], -1.0, 1.0);
                let rows = b.ints([4, 1, 1, 1], &[3, 0, 3, 1]);
                b.node(F32, [256, 5, 1, 1], Op::GetRowsBack, [0; 16], &[grad, rows]);
            },
        ));
    }
    v.push(case(55, "DIAG".into(), DEFAULT, |b| {
        let x = b.rand(F32, [10, 1, 4, 3], -1.0, 1.0);
        b.node(F32, [10, 10, 4, 3], Op::Diag, [0; 16], &[x]);
    }));
    for (ne, scale) in [([16, 16, 1, 1], 1.0f32), ([15, 15, 2, 3], 0.1)] {
        let name = format!("SOFT_MAX_BACK_{}x{}x{}_s{scale}", ne[0], ne[1], ne[2]);
        v.push(case(56, name, DEFAULT, |b| {
            let grad = b.rand(F32, ne, -1.0, 1.0);
            let y = b.rand(F32, ne, -1.0, 1.0);
            b.node(F32, ne, Op::SoftMaxBack, pf(&[scale, 0.0]), &[grad, y]);
        }));
    }
    // test_rope with forward = false: ggml_rope_ext_back, the ROPE node relabelled ROPE_BACK.
    for (mode, n_dims, ef, af) in [(0, 64, 0.0, 1.0), (2, 32, 0.746, 1.4)] {
        v.push(case(57, format!("ROPE_BACK_mode{mode}"), DEFAULT, |b| {
            let x = b.rand(F32, [64, 3, 5, 1], -1.0, 1.0);
            let pos = b.ints([5, 1, 1, 1], &[0, 1, 7, 100, 511]);
            let p = rope_params(n_dims, mode, ef, af);
            b.node(F32, [64, 3, 5, 1], Op::RopeBack, p, &[x, pos]);
        }));
    }
    v.push(case(57, "ROPE_BACK_freq_factors".into(), DEFAULT, |b| {
        let x = b.rand(F32, [32, 4, 3, 1], -1.0, 1.0);
        let pos = b.ints([3, 1, 1, 1], &[2, 50, 300]);
        let freq = b.rand(F32, [8, 1, 1, 1], 0.9, 1.1);
        let p = rope_params(16, 0, 0.0, 1.0);
        b.node(F32, [32, 4, 3, 1], Op::RopeBack, p, &[x, pos, freq]);
    }));
    for tri in 0..4 {
        v.push(case(58, format!("TRI_type{tri}"), DEFAULT, |b| {
            let x = b.rand(F32, [10, 10, 4, 3], -1.0, 1.0);
            b.node(F32, [10, 10, 4, 3], Op::Tri, pi(&[tri]), &[x]);
        }));
    }
}

fn losses_and_steps(v: &mut Vec<Case>) {
    let ne = [10, 5, 4, 3];
    v.push(case(60, "CROSS_ENTROPY_LOSS".into(), DEFAULT, |b| {
        let logits = b.rand(F32, ne, -100.0, 100.0);
        let raw = b.rand(F32, ne, -100.0, 100.0);
        // Labels that add up to 1, as test-backend-ops makes them.
        let labels = b.node(F32, ne, Op::SoftMax, pf(&[1.0, 0.0]), &[raw]);
        b.node(
            F32,
            [1, 1, 1, 1],
            Op::CrossEntropyLoss,
            [0; 16],
            &[logits, labels],
        );
    }));
    v.push(case(61, "CROSS_ENTROPY_LOSS_BACK".into(), DEFAULT, |b| {
        let grad = b.rand(F32, [1, 1, 1, 1], -1.0, 1.0);
        let logits = b.rand(F32, ne, -1.0, 1.0);
        let raw = b.rand(F32, ne, -1.0, 1.0);
        let labels = b.node(F32, ne, Op::SoftMax, pf(&[1.0, 0.0]), &[raw]);
        b.node(
            F32,
            ne,
            Op::CrossEntropyLossBack,
            [0; 16],
            &[grad, logits, labels],
        );
    }));
    // The steps are views of the parameter (ggml_view_tensor(a)) and update it in place; ggml requires
    // the parameter flag on `a`.
    let param = |b: &mut CaseBuilder| {
        let a = b.rand(F32, ne, 0.0, 1.0);
        b.graph.tensors[a].flags |= TensorFlags::PARAM;
        a
    };
    v.push(case(62, "OPT_STEP_ADAMW".into(), DEFAULT, |b| {
        let a = param(b);
        let grad = b.rand(F32, ne, 0.0, 1.0);
        let m = b.rand(F32, ne, 0.0, 1.0);
        let var = b.rand(F32, ne, 0.0, 1.0);
        let params = b.rand(F32, [7, 1, 1, 1], 0.0, 1.0);
        b.node_into(a, Op::OptStepAdamw, [0; 16], &[a, grad, m, var, params]);
    }));
    v.push(case(63, "OPT_STEP_SGD".into(), DEFAULT, |b| {
        let a = param(b);
        let grad = b.rand(F32, ne, 0.0, 1.0);
        let params = b.rand(F32, [2, 1, 1, 1], 0.0, 1.0);
        b.node_into(a, Op::OptStepSgd, [0; 16], &[a, grad, params]);
    }));
}

/// SAM's windowed attention helpers (not in test-backend-ops): shapes from ggml's constructors.
fn windows(v: &mut Vec<Case>) {
    // ggml_win_part(a [C, W, H], w): pads W and H up to multiples of w, one window per ne[3].
    let (c, w0, h0, w) = (8usize, 10usize, 9usize, 4usize);
    let (npx, npy) = (w0.div_ceil(w), h0.div_ceil(w));
    v.push(case(70, "WIN_PART".into(), EXACT, |b| {
        let x = b.rand(F32, [c, w0, h0, 1], -1.0, 1.0);
        let p = pi(&[npx as i32, npy as i32, w as i32]);
        b.node(F32, [c, w, w, npx * npy], Op::WinPart, p, &[x]);
    }));
    v.push(case(71, "WIN_UNPART".into(), EXACT, |b| {
        let x = b.rand(F32, [c, w, w, npx * npy], -1.0, 1.0);
        b.node(F32, [c, w0, h0, 1], Op::WinUnpart, pi(&[w as i32]), &[x]);
    }));
    v.push(case(72, "GET_REL_POS".into(), EXACT, |b| {
        // ggml_get_rel_pos(a [C, 2*qh - 1], qh, kh = qh) -> f16 [C, kh, qh].
        let x = b.rand(F16, [c, 11, 1, 1], -1.0, 1.0);
        b.node(F16, [c, 6, 6, 1], Op::GetRelPos, [0; 16], &[x]);
    }));
    v.push(case(73, "ADD_REL_POS".into(), DEFAULT, |b| {
        // attn [W*H, W*H, B*heads] plus rel_w/rel_h [W, W, H, B*heads]; op_params[0] is `inplace`.
        let attn = b.rand(F32, [16, 16, 3, 1], -1.0, 1.0);
        let pw = b.rand(F32, [4, 4, 4, 3], -1.0, 1.0);
        let ph = b.rand(F32, [4, 4, 4, 3], -1.0, 1.0);
        b.node(
            F32,
            [16, 16, 3, 1],
            Op::AddRelPos,
            pi(&[0]),
            &[attn, pw, ph],
        );
    }));
}

/// test_flash_attn_ext with quantized K/V (the 11097.. cases): the K/V rows go through their block
/// format's dot/dequantize paths.
fn attention_quant(v: &mut Vec<Case>) {
    for (kt, vt) in [(Q8_0, Q8_0), (Q4_0, Q4_0), (Q8_0, Q4_0), (Q4_0, F16)] {
        let name = format!("FLASH_ATTN_EXT_{}_{}", kt.name(), vt.name());
        v.push(case(74, name, MATMUL, |b| {
            let (dk, nq, nh, nkv) = (64, 3, 4, 64);
            let q = b.rand(F32, [dk, nq, nh, 1], -1.0, 1.0);
            let k = b.rand(kt, [dk, nkv, 2, 1], -1.0, 1.0);
            let val = b.rand(vt, [dk, nkv, 2, 1], -1.0, 1.0);
            let m = b.rand(F16, [nkv, nq + 1, 1, 1], -1.0, 1.0);
            let p = pf(&[0.125, 0.0, 0.0]);
            b.node(F32, [dk, nh, nq, 1], Op::FlashAttnExt, p, &[q, k, val, m]);
        }));
    }
}
