//! Cases for the vision/audio ops: convolutions, im2col, pooling, upscaling, padding and generators.
//! Shapes and op_params as ggml's constructors build them, from test-backend-ops' cases scaled down;
//! tolerances are test-backend-ops' for the op (its conv tests accept 5e-4).

use super::Case;
use super::cases::{DEFAULT, EXACT, case, pf, pi};
use crate::device::host_kernels::testkit::HostTensor;
use crate::ggml::{GgmlType, Op};

use GgmlType::{F16, F32};

const CONV: f64 = 5e-4;
const POOL_MAX: i32 = 0;
const POOL_AVG: i32 = 1;

pub fn all(v: &mut Vec<Case>) {
    convolutions(v);
    im2col(v);
    pooling(v);
    resampling(v);
}

/// ggml_calc_conv_output_size.
fn conv_out(ins: usize, ks: usize, s: usize, p: usize, d: usize) -> usize {
    (ins + 2 * p - d * (ks - 1) - 1) / s + 1
}

fn convolutions(v: &mut Vec<Case>) {
    // test_conv_2d (ggml_conv_2d_direct): kernel [KW, KH, IC, OC], input [W, H, IC, N].
    for kt in [F32, F16] {
        v.push(case(80, format!("CONV_2D_{}", kt.name()), CONV, |b| {
            let (s0, s1, p0, p1, d0, d1) = (2, 1, 1, 0, 1, 2);
            let kernel = b.rand(kt, [3, 3, 4, 9], -1.0, 1.0);
            let input = b.rand(F32, [13, 11, 4, 2], -1.0, 1.0);
            let ow = conv_out(13, 3, s0, p0, d0);
            let oh = conv_out(11, 3, s1, p1, d1);
            let p = pi(&[s0, s1, p0, p1, d0, d1].map(|x| x as i32));
            b.node(F32, [ow, oh, 9, 2], Op::Conv2d, p, &[kernel, input]);
        }));
    }
    // test_conv_3d (ggml_conv_3d_direct): kernel [KW, KH, KD, IC*OC], input [W, H, D, IC*N].
    for kt in [F32, F16] {
        v.push(case(81, format!("CONV_3D_{}", kt.name()), CONV, |b| {
            let (n, ic, oc) = (2, 3, 4);
            let (s, p, d) = ([2, 1, 1], [1, 1, 0], [1, 2, 1]);
            let kernel = b.rand(kt, [3, 3, 2, ic * oc], -1.0, 1.0);
            let input = b.rand(F32, [7, 6, 5, ic * n], -1.0, 1.0);
            let ow = conv_out(7, 3, s[0], p[0], d[0]);
            let oh = conv_out(6, 3, s[1], p[1], d[1]);
            let od = conv_out(5, 2, s[2], p[2], d[2]);
            let mut params = Vec::new();
            params.extend(s.map(|x| x as i32));
            params.extend(p.map(|x| x as i32));
            params.extend(d.map(|x| x as i32));
            params.extend([ic as i32, n as i32, oc as i32]);
            b.node(
                F32,
                [ow, oh, od, oc * n],
                Op::Conv3d,
                pi(&params),
                &[kernel, input],
            );
        }));
    }
    // test_conv_2d_dw (ggml_conv_2d_dw_direct): kernel [KW, KH, 1, C], input [W, H, C, N].
    for (kt, cwhn) in [(F32, false), (F16, false), (F32, true)] {
        let name = format!("CONV_2D_DW_{}_cwhn{}", kt.name(), cwhn as u8);
        v.push(case(82, name, DEFAULT, |b| {
            let (s, p, d) = (2, 1, 1);
            let kernel = b.rand(kt, [3, 3, 1, 5], -1.0, 1.0);
            let ne_in = [17, 12, 5, 1];
            let input = if cwhn {
                // Channels innermost in memory (ggml_permute(cont(permute(x, 1, 2, 0, 3)), 2, 0, 1, 3)).
                let n = ne_in.iter().product();
                let h = HostTensor::from_f32(F32, ne_in, &b.rng.vec(n, -1.0, 1.0));
                b.leaf(h.permuted([1, 2, 0, 3]))
            } else {
                b.rand(F32, ne_in, -1.0, 1.0)
            };
            let ow = conv_out(17, 3, s, p, d);
            let oh = conv_out(12, 3, s, p, d);
            let params = pi(&[s, s, p, p, d, d].map(|x| x as i32));
            let out = b.node(F32, [ow, oh, 5, 1], Op::Conv2dDw, params, &[kernel, input]);
            if cwhn {
                // ggml gives the result the input's channel-innermost layout.
                let t = &mut b.graph.tensors[out];
                t.nb[0] = 5 * 4;
                t.nb[1] = ow * t.nb[0];
                t.nb[2] = 4;
                t.nb[3] = oh * t.nb[1];
            }
        }));
    }
    // test_conv_transpose_1d: kernel [K, OC, IC], input [L, IC]; ggml only allows p0 = 0, d0 = 1.
    for kt in [F32, F16] {
        v.push(case(
            83,
            format!("CONV_TRANSPOSE_1D_{}", kt.name()),
            DEFAULT,
            |b| {
                let s0 = 2;
                let kernel = b.rand(kt, [5, 3, 4, 1], -1.0, 1.0);
                let input = b.rand(F32, [13, 4, 1, 1], -1.0, 1.0);
                let out = [(13 - 1) * s0 + 5, 3, 1, 1];
                let p = pi(&[s0 as i32, 0, 1]);
                b.node(F32, out, Op::ConvTranspose1d, p, &[kernel, input]);
            },
        ));
    }
    // test_conv_transpose_2d (ggml_conv_transpose_2d_p0): kernel [KW, KH, OC, IC], input [W, H, IC, N].
    v.push(case(84, "CONV_TRANSPOSE_2D".into(), CONV, |b| {
        let s = 2;
        let kernel = b.rand(F16, [3, 3, 2, 5], -1.0, 1.0);
        let input = b.rand(F32, [7, 6, 5, 2], -1.0, 1.0);
        let out = [(7 - 1) * s + 3, (6 - 1) * s + 3, 2, 2];
        b.node(
            F32,
            out,
            Op::ConvTranspose2d,
            pi(&[s as i32]),
            &[kernel, input],
        );
    }));
    // test_col2im_1d(type, K = 6, OC = 4, T_in = 11, s0 = 3, p0 = 1): cols [K*OC, T_in].
    for (typ, tol) in [(F32, DEFAULT), (F16, CONV)] {
        v.push(case(85, format!("COL2IM_1D_{}", typ.name()), tol, |b| {
            let (k, oc, t_in, s0, p0) = (6, 4, 11, 3, 1);
            let cols = b.rand(typ, [k * oc, t_in, 1, 1], -1.0, 1.0);
            let t_out = (t_in - 1) * s0 + k - 2 * p0;
            let p = pi(&[s0 as i32, oc as i32, p0 as i32]);
            b.node(typ, [t_out, oc, 1, 1], Op::Col2im1d, p, &[cols]);
        }));
    }
}

fn im2col(v: &mut Vec<Case>) {
    // test_im2col's default (2-D, 3x3 kernel, padding 1) for each kernel/destination type.
    for (kt, dt) in [(F16, F32), (F32, F32), (F16, F16)] {
        let name = format!("IM2COL_2d_{}_{}", kt.name(), dt.name());
        v.push(case(86, name, DEFAULT, |b| {
            let kernel = b.rand(kt, [3, 3, 3, 1], -1.0, 1.0);
            let input = b.rand(F32, [10, 10, 3, 1], -1.0, 1.0);
            let p = pi(&[1, 1, 1, 1, 1, 1, 1]);
            b.node(dt, [27, 10, 10, 1], Op::Im2col, p, &[kernel, input]);
        }));
    }
    // The 1-D form (whisper's conv_1d): kernel [K, IC, OC], input [L, IC, N]; stride 2, padding 1.
    v.push(case(86, "IM2COL_1d".into(), DEFAULT, |b| {
        let kernel = b.rand(F16, [3, 4, 5, 1], -1.0, 1.0);
        let input = b.rand(F32, [20, 4, 3, 1], -1.0, 1.0);
        let ow = conv_out(20, 3, 2, 1, 1);
        let p = pi(&[2, 0, 1, 0, 1, 0, 0]);
        b.node(F16, [12, ow, 3, 1], Op::Im2col, p, &[kernel, input]);
    }));
    // ggml_im2col_back(grad of the im2col output, kernel, input shape, ...) as ggml's backward builds it.
    v.push(case(87, "IM2COL_BACK".into(), DEFAULT, |b| {
        let grad = b.rand(F32, [27, 5, 10, 1], -1.0, 1.0);
        let kernel = b.rand(F16, [3, 3, 3, 1], -1.0, 1.0);
        let p = pi(&[2, 1, 1, 1, 1, 1, 1]);
        b.node(F32, [10, 10, 3, 1], Op::Im2colBack, p, &[grad, kernel]);
    }));
    // test_im2col_3d: kernel [KW, KH, KD, OC*IC], input [W, H, D, N*IC].
    for (kt, dt) in [(F16, F32), (F32, F16)] {
        let name = format!("IM2COL_3D_{}_{}", kt.name(), dt.name());
        v.push(case(88, name, DEFAULT, |b| {
            let ic = 3;
            let kernel = b.rand(kt, [3, 3, 3, 2 * ic], -1.0, 1.0);
            let input = b.rand(F32, [7, 6, 5, 2 * ic], -1.0, 1.0);
            let (ow, oh, od) = (
                conv_out(7, 3, 2, 1, 1),
                conv_out(6, 3, 1, 1, 1),
                conv_out(5, 3, 1, 0, 1),
            );
            let p = pi(&[2, 1, 1, 1, 1, 0, 1, 1, 1, ic as i32]);
            b.node(
                dt,
                [27 * ic, ow, oh, od * 2],
                Op::Im2col3d,
                p,
                &[kernel, input],
            );
        }));
    }
}

fn pooling(v: &mut Vec<Case>) {
    for (op, name) in [(POOL_AVG, "avg"), (POOL_MAX, "max")] {
        // test_pool1d({10, 3, 2, 1}, k0 = 3, s0 = 2, p0 = 1); op_params { op, k0, s0, p0 }.
        v.push(case(90, format!("POOL_1D_{name}"), DEFAULT, |b| {
            let x = b.rand(F32, [10, 3, 2, 1], -1.0, 1.0);
            b.node(F32, [5, 3, 2, 1], Op::Pool1d, pi(&[op, 3, 2, 1]), &[x]);
        }));
        // test_pool2d({10, 10, 3, 1}, k 3x3, s 2x1, p 1x0); op_params { op, k0, k1, s0, s1, p0, p1 }.
        v.push(case(91, format!("POOL_2D_{name}"), DEFAULT, |b| {
            let x = b.rand(F32, [10, 10, 3, 1], -1.0, 1.0);
            let p = pi(&[op, 3, 3, 2, 1, 1, 0]);
            b.node(F32, [5, 8, 3, 1], Op::Pool2d, p, &[x]);
        }));
        // ggml_pool_2d_back(grad of the pool output, forward input, ...) as ggml's backward builds it.
        v.push(case(92, format!("POOL_2D_BACK_{name}"), DEFAULT, |b| {
            let grad = b.rand(F32, [5, 8, 3, 1], -1.0, 1.0);
            let x = b.rand(F32, [10, 10, 3, 1], -1.0, 1.0);
            let p = pi(&[op, 3, 3, 2, 1, 1, 0]);
            b.node(F32, [10, 10, 3, 1], Op::Pool2dBack, p, &[grad, x]);
        }));
    }
}

fn resampling(v: &mut Vec<Case>) {
    const ALIGN_CORNERS: i32 = 1 << 8;
    // test_upscale / test_interpolate: op_params[0] is the scale mode with its flags.
    for (name, mode, ne, to, transposed) in [
        ("nearest_x2", 0, [8, 6, 3, 2], [16, 12, 3, 2], false),
        (
            "nearest_x2_transposed",
            0,
            [6, 8, 3, 2],
            [12, 16, 3, 2],
            true,
        ),
        ("nearest", 0, [2, 5, 7, 11], [5, 7, 11, 13], false),
        ("bilinear", 1, [2, 5, 7, 11], [5, 7, 11, 13], false),
        ("bilinear_down", 1, [5, 7, 11, 13], [2, 5, 7, 11], false),
        (
            "bicubic_align",
            2 | ALIGN_CORNERS,
            [1, 4, 3, 2],
            [2, 8, 3, 2],
            false,
        ),
        (
            "bilinear_align",
            1 | ALIGN_CORNERS,
            [4, 1, 3, 2],
            [1, 1, 3, 2],
            false,
        ),
    ] {
        v.push(case(93, format!("UPSCALE_{name}"), DEFAULT, |b| {
            let x = if transposed {
                let n = ne.iter().product();
                let h = HostTensor::from_f32(F32, ne, &b.rng.vec(n, -1.0, 1.0));
                b.leaf(h.permuted([1, 0, 2, 3]))
            } else {
                b.rand(F32, ne, -1.0, 1.0)
            };
            b.node(F32, to, Op::Upscale, pi(&[mode]), &[x]);
        }));
    }
    v.push(case(94, "PAD_REFLECT_1D".into(), EXACT, |b| {
        let x = b.rand(F32, [20, 5, 1, 1], -1.0, 1.0);
        b.node(F32, [33, 5, 1, 1], Op::PadReflect1d, pi(&[7, 6]), &[x]);
    }));
    for permuted in [false, true] {
        v.push(case(95, format!("ROLL_p{}", permuted as u8), EXACT, |b| {
            let ne = if permuted {
                [10, 4, 5, 3]
            } else {
                [10, 5, 4, 3]
            };
            let h = HostTensor::from_f32(F32, ne, &b.rng.vec(600, -1.0, 1.0));
            let x = b.leaf(if permuted {
                h.permuted([0, 2, 1, 3])
            } else {
                h
            });
            b.node(F32, ne, Op::Roll, pi(&[3, -2, 1, -1]), &[x]);
        }));
    }
    v.push(case(96, "ARANGE".into(), DEFAULT, |b| {
        // ceil((20 - -3.5) / 0.75) = 32 steps.
        b.node(F32, [32, 1, 1, 1], Op::Arange, pf(&[-3.5, 20.0, 0.75]), &[]);
    }));
    for dim in [320, 33] {
        v.push(case(
            97,
            format!("TIMESTEP_EMBEDDING_{dim}"),
            DEFAULT,
            |b| {
                let t = b.rand(F32, [3, 1, 1, 1], 0.0, 1000.0);
                b.node(
                    F32,
                    [dim, 3, 1, 1],
                    Op::TimestepEmbedding,
                    pi(&[dim as i32, 10000]),
                    &[t],
                );
            },
        ));
    }
}
