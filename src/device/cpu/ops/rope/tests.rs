//! ROPE against a direct f64 evaluation of B.7 (powers instead of ggml's running products).

use super::super::testutil::{HostTensor, Rng, assert_close, run_op};
use super::{IMROPE, MROPE, NEOX, NORMAL, VISION};
use crate::ggml::{GgmlType, Op};

#[derive(Clone, Copy)]
struct Cfg {
    mode: i32,
    n_dims: usize,
    n_offs: usize,
    n_ctx_orig: i32,
    freq_base: f32,
    freq_scale: f32,
    ext_factor: f32,
    attn_factor: f32,
    beta_fast: f32,
    beta_slow: f32,
    sections: [i32; 4],
}

const BASE: Cfg = Cfg {
    mode: NEOX,
    n_dims: 8,
    n_offs: 0,
    n_ctx_orig: 0,
    freq_base: 10000.0,
    freq_scale: 1.0,
    ext_factor: 0.0,
    attn_factor: 1.0,
    beta_fast: 32.0,
    beta_slow: 1.0,
    sections: [0; 4],
};

fn params(c: &Cfg) -> [i32; 16] {
    let mut p = [0i32; 16];
    p[1] = c.n_dims as i32;
    p[2] = c.mode;
    p[4] = c.n_ctx_orig;
    for (k, v) in [
        c.freq_base,
        c.freq_scale,
        c.ext_factor,
        c.attn_factor,
        c.beta_fast,
        c.beta_slow,
    ]
    .into_iter()
    .enumerate()
    {
        p[5 + k] = v.to_bits() as i32;
    }
    p[11..15].copy_from_slice(&c.sections);
    p[15] = c.n_offs as i32;
    p
}

/// The rotated rows; `back` rotates by the opposite angle (ROPE_BACK).
fn reference(
    c: &Cfg,
    x: &[f32],
    ne: [usize; 4],
    pos: &[i32],
    ff: Option<&[f32]>,
    back: bool,
) -> Vec<f64> {
    let nd = c.n_dims as f64;
    let base = c.freq_base as f64;
    let corr = |b: f64| {
        nd * (c.n_ctx_orig as f64 / (b * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let low = corr(c.beta_fast as f64).floor().max(0.0);
    let high = corr(c.beta_slow as f64).ceil().min(nd - 1.0);
    let s = c.sections.map(|v| v as usize);
    let sd = s.iter().sum::<usize>().max(1);
    let starts = [0, s[0], s[0] + s[1], s[0] + s[1] + s[2]];
    let npairs = if c.mode == VISION {
        ne[0] / 2
    } else {
        c.n_dims / 2
    };
    let mut out = Vec::new();
    for (r, row) in x.chunks(ne[0]).enumerate() {
        let i2 = (r / ne[1]) % ne[2];
        let mut y: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        for i in 0..npairs {
            let sector = i % sd;
            let contiguous = (0..4)
                .rev()
                .find(|&k| sector >= starts[k] && s[k] > 0)
                .unwrap_or(0);
            let (stream, e) = match c.mode {
                NORMAL | NEOX => (0, i),
                MROPE => (contiguous, i),
                VISION => (contiguous, sector - starts[contiguous]),
                _ => {
                    let k = if sector % 3 == 1 && sector < 3 * s[1] {
                        1
                    } else if sector % 3 == 2 && sector < 3 * s[2] {
                        2
                    } else if sector % 3 == 0 && sector < 3 * s[0] {
                        0
                    } else {
                        3
                    };
                    (k, i)
                }
            };
            let p = pos[i2 + stream * ne[2]] as f64;
            let theta = p * base.powf(-2.0 * e as f64 / nd) / ff.map_or(1.0, |f| f[i] as f64);
            let interp = c.freq_scale as f64 * theta;
            let mut mscale = c.attn_factor as f64;
            let mut angle = interp;
            if c.ext_factor != 0.0 {
                let ramp = ((i as f64 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
                let mix = c.ext_factor as f64 * (1.0 - ramp);
                angle = interp * (1.0 - mix) + theta * mix;
                mscale *= 1.0 + 0.1 * (1.0 / c.freq_scale as f64).ln();
            }
            let (a, b) = match c.mode {
                NORMAL => (c.n_offs + 2 * i, c.n_offs + 2 * i + 1),
                VISION => (i, i + c.n_dims),
                _ => (c.n_offs + i, c.n_offs + i + c.n_dims / 2),
            };
            let (x0, x1) = (row[a] as f64, row[b] as f64);
            let angle = if back { -angle } else { angle };
            let (cs, sn) = (angle.cos() * mscale, angle.sin() * mscale);
            y[a] = x0 * cs - x1 * sn;
            y[b] = x0 * sn + x1 * cs;
        }
        out.extend(y);
    }
    out
}

/// Runs ROPE on random data (also through a permuted view of the input) and compares.
fn check_case(c: Cfg, ne: [usize; 4], typ: GgmlType, with_ff: bool, seed: u64, tol: f64) {
    check_op(Op::Rope, c, ne, typ, with_ff, seed, tol);
}

fn check_op(op: Op, c: Cfg, ne: [usize; 4], typ: GgmlType, with_ff: bool, seed: u64, tol: f64) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(ne.iter().product(), -1.0, 1.0);
    let npos = if c.mode & MROPE != 0 {
        4 * ne[2]
    } else {
        ne[2]
    };
    let pos: Vec<i32> = (0..npos).map(|_| (rng.next_u64() % 40) as i32).collect();
    let nff = if c.mode == VISION {
        ne[0] / 2
    } else {
        c.n_dims / 2
    };
    let ffv = rng.vec(nff, 0.5, 4.0);
    let src = HostTensor::from_f32(typ, ne, &x);
    let p = HostTensor::from_i32([npos, 1, 1, 1], &pos);
    let ff = HostTensor::from_f32(GgmlType::F32, [nff, 1, 1, 1], &ffv);
    let back = op == Op::RopeBack;
    let want = reference(
        &c,
        &src.to_f32(),
        ne,
        &pos,
        with_ff.then_some(&ffv[..]),
        back,
    );
    for s in [src.clone(), src.permuted([1, 3, 0, 2])] {
        let mut d = HostTensor::zeros(typ, ne);
        let ffs = with_ff.then_some(&ff);
        run_op(op, params(&c), &[Some(&s), Some(&p), ffs], &mut d).unwrap();
        assert_close(&d.to_f32(), &want, tol, &format!("{op:?} mode {}", c.mode));
    }
}

#[test]
fn normal_and_neox() {
    for mode in [NORMAL, NEOX] {
        let c = Cfg { mode, ..BASE };
        check_case(c, [8, 3, 5, 2], GgmlType::F32, false, 1, 2e-4);
        // n_dims < ne0 with an offset: channels outside [2, 8) pass through.
        let c = Cfg {
            mode,
            n_dims: 6,
            n_offs: 2,
            ..BASE
        };
        check_case(c, [11, 2, 4, 1], GgmlType::F32, true, 2, 2e-4);
    }
}

#[test]
fn yarn_with_freq_factors() {
    for mode in [NORMAL, NEOX] {
        let c = Cfg {
            mode,
            n_dims: 16,
            n_ctx_orig: 64,
            freq_scale: 0.25,
            ext_factor: 1.0,
            attn_factor: 1.2,
            ..BASE
        };
        check_case(c, [20, 2, 6, 1], GgmlType::F32, true, 3, 2e-4);
        let c = Cfg {
            ext_factor: 0.5,
            freq_base: 500.0,
            ..c
        };
        check_case(c, [16, 3, 4, 1], GgmlType::F32, false, 4, 2e-4);
    }
}

#[test]
fn f16_tensors() {
    let c = Cfg { n_dims: 12, ..BASE };
    check_case(c, [14, 3, 4, 1], GgmlType::F16, true, 5, 3e-3);
    let c = Cfg { mode: NORMAL, ..c };
    check_case(c, [12, 2, 3, 2], GgmlType::F16, false, 6, 3e-3);
}

#[test]
fn multimodal_modes() {
    let c = Cfg {
        mode: MROPE,
        n_dims: 16,
        sections: [3, 3, 2, 0],
        ..BASE
    };
    check_case(c, [18, 2, 5, 1], GgmlType::F32, false, 7, 2e-4);
    let c = Cfg {
        mode: IMROPE,
        n_dims: 16,
        sections: [3, 3, 2, 0],
        ..BASE
    };
    check_case(c, [16, 3, 4, 1], GgmlType::F32, true, 8, 2e-4);
    let c = Cfg {
        mode: VISION,
        n_dims: 8,
        sections: [2, 2, 2, 2],
        ..BASE
    };
    check_case(c, [16, 2, 3, 1], GgmlType::F32, true, 9, 2e-4);
    let c = Cfg {
        ext_factor: 1.0,
        n_ctx_orig: 32,
        freq_scale: 0.5,
        ..c
    };
    check_case(c, [16, 2, 3, 1], GgmlType::F32, false, 10, 2e-4);
}

/// ROPE_BACK rotates by minus the angle: against the reference, with YaRN's magnitude scaling and an
/// f16 case like test-backend-ops' `ROPE_BACK(type=f16,ne_a=[128,32,2,1],n_dims=128,mode=0,...)`, and
/// as the inverse of ROPE when the magnitude is 1.
#[test]
fn rope_back_rotates_backwards() {
    let yarn = Cfg {
        n_dims: 16,
        n_ctx_orig: 64,
        freq_scale: 0.25,
        ext_factor: 1.0,
        attn_factor: 1.2,
        ..BASE
    };
    for mode in [NORMAL, NEOX] {
        check_op(
            Op::RopeBack,
            Cfg { mode, ..yarn },
            [20, 2, 6, 1],
            GgmlType::F32,
            true,
            11,
            2e-4,
        );
    }
    let llama = Cfg {
        mode: NORMAL,
        n_dims: 128,
        ..BASE
    };
    check_op(
        Op::RopeBack,
        llama,
        [128, 32, 2, 1],
        GgmlType::F16,
        false,
        12,
        3e-3,
    );
    let mrope = Cfg {
        mode: MROPE,
        n_dims: 16,
        sections: [3, 3, 2, 0],
        ..BASE
    };
    check_op(
        Op::RopeBack,
        mrope,
        [18, 2, 5, 1],
        GgmlType::F32,
        false,
        13,
        2e-4,
    );

    let ne = [16, 3, 4, 1];
    let mut rng = Rng::new(14);
    let x = rng.vec(ne.iter().product(), -1.0, 1.0);
    let src = HostTensor::from_f32(GgmlType::F32, ne, &x);
    let pos = HostTensor::from_i32([4, 1, 1, 1], &[3, 17, 0, 39]);
    let mut y = HostTensor::zeros(GgmlType::F32, ne);
    let mut back = HostTensor::zeros(GgmlType::F32, ne);
    for mode in [NORMAL, NEOX] {
        let p = params(&Cfg { mode, ..BASE });
        run_op(Op::Rope, p, &[Some(&src), Some(&pos)], &mut y).unwrap();
        run_op(Op::RopeBack, p, &[Some(&y), Some(&pos)], &mut back).unwrap();
        let want: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        assert_close(&back.to_f32(), &want, 1e-5, "rope_back(rope(x))");
    }
}

#[test]
fn rejects_bad_params() {
    let ne = [8, 2, 3, 1];
    let x = HostTensor::zeros(GgmlType::F32, ne);
    let pos = HostTensor::from_i32([3, 1, 1, 1], &[0, 1, 2]);
    let pos4 = HostTensor::from_i32([12, 1, 1, 1], &[0; 12]);
    let ff = HostTensor::zeros(GgmlType::F32, [2, 1, 1, 1]);
    let bad = [
        Cfg { mode: 1, ..BASE },
        Cfg { mode: 3, ..BASE },
        Cfg { mode: 16, ..BASE },
        Cfg { n_dims: 7, ..BASE },
        Cfg { n_dims: 10, ..BASE },
        Cfg {
            n_dims: 4,
            n_offs: 6,
            ..BASE
        },
        Cfg {
            n_dims: 4,
            n_offs: 1,
            ..BASE
        },
    ];
    let mut d = HostTensor::zeros(GgmlType::F32, ne);
    for c in bad {
        assert!(run_op(Op::Rope, params(&c), &[Some(&x), Some(&pos)], &mut d).is_err());
    }
    // Too few freq_factors (need n_dims/2 = 4), wrong position count, missing positions.
    let p = params(&BASE);
    assert!(run_op(Op::Rope, p, &[Some(&x), Some(&pos), Some(&ff)], &mut d).is_err());
    assert!(run_op(Op::Rope, p, &[Some(&x), Some(&pos4)], &mut d).is_err());
    assert!(run_op(Op::Rope, p, &[Some(&x)], &mut d).is_err());
    // Multimodal: sections all zero; vision with n_dims != ne0/2; mrope with 1 position per token.
    let c = Cfg {
        mode: MROPE,
        ..BASE
    };
    assert!(run_op(Op::Rope, params(&c), &[Some(&x), Some(&pos4)], &mut d).is_err());
    let c = Cfg {
        mode: MROPE,
        sections: [2, 2, 0, 0],
        ..BASE
    };
    assert!(run_op(Op::Rope, params(&c), &[Some(&x), Some(&pos4)], &mut d).is_ok());
    assert!(run_op(Op::Rope, params(&c), &[Some(&x), Some(&pos)], &mut d).is_err());
    let c = Cfg {
        mode: VISION,
        n_dims: 2,
        sections: [1, 1, 0, 0],
        ..BASE
    };
    assert!(run_op(Op::Rope, params(&c), &[Some(&x), Some(&pos4)], &mut d).is_err());
    // Types: bf16 input, f32 positions; shape mismatch with the destination.
    let b = HostTensor::zeros(GgmlType::Bf16, ne);
    assert!(run_op(Op::Rope, p, &[Some(&b), Some(&pos)], &mut d).is_err());
    let pf = HostTensor::zeros(GgmlType::F32, [3, 1, 1, 1]);
    assert!(run_op(Op::Rope, p, &[Some(&x), Some(&pf)], &mut d).is_err());
    let mut d2 = HostTensor::zeros(GgmlType::F32, [8, 3, 2, 1]);
    assert!(run_op(Op::Rope, p, &[Some(&x), Some(&pos)], &mut d2).is_err());
}
