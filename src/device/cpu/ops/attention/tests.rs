//! FLASH_ATTN_EXT against a direct f64 softmax(scale·QKᵀ + slope·mask)·V, and against SOFT_MAX.

use super::super::rows::Alibi;
use super::super::testutil::{HostTensor, Rng, assert_close, params_f32, run_op};
use crate::ggml::{GgmlType, Op};

#[derive(Clone)]
struct Case {
    dk: usize,
    dv: usize,
    n_kv: usize,
    n_batch: usize,
    n_head: usize,
    n_head_kv: usize,
    d3: usize,
    kv_type: GgmlType,
    /// V's type when it differs from K's.
    v_type: Option<GgmlType>,
    mask: bool,
    sinks: bool,
    scale: f32,
    max_bias: f32,
    softcap: f32,
}

const BASE: Case = Case {
    dk: 16,
    dv: 16,
    n_kv: 13,
    n_batch: 3,
    n_head: 4,
    n_head_kv: 2,
    d3: 2,
    kv_type: GgmlType::F32,
    v_type: None,
    mask: true,
    sinks: false,
    scale: 0.25,
    max_bias: 0.0,
    softcap: 0.0,
};

struct Inputs {
    q: HostTensor,
    k: HostTensor,
    v: HostTensor,
    mask: Option<HostTensor>,
    sinks: Option<HostTensor>,
}

fn inputs(c: &Case, seed: u64) -> Inputs {
    let mut rng = Rng::new(seed);
    let qne = [c.dk, c.n_batch, c.n_head, c.d3];
    let kne = [c.dk, c.n_kv, c.n_head_kv, c.d3];
    let vne = [c.dv, c.n_kv, c.n_head_kv, c.d3];
    let q = HostTensor::from_f32(
        GgmlType::F32,
        qne,
        &rng.vec(qne.iter().product(), -1.0, 1.0),
    );
    let k = HostTensor::from_f32(c.kv_type, kne, &rng.vec(kne.iter().product(), -1.0, 1.0));
    let v = HostTensor::from_f32(
        c.v_type.unwrap_or(c.kv_type),
        vne,
        &rng.vec(vne.iter().product(), -1.0, 1.0),
    );
    // Mask padded to more rows than the batch, one slice per head pair, shared over dim 3; row 1 of
    // every slice is fully masked, other rows lose about a third of their keys.
    let mne = [c.n_kv + 3, c.n_batch + 2, c.n_head / 2, 1];
    let mvals: Vec<f32> = (0..mne.iter().product::<usize>())
        .map(|i| {
            let (i0, i1) = (i % mne[0], (i / mne[0]) % mne[1]);
            if i1 == 1 || (i0 * 7 + i1 * 3) % 3 == 0 {
                f32::NEG_INFINITY
            } else {
                rng.uniform(-1.0, 0.0)
            }
        })
        .collect();
    let mask = c
        .mask
        .then(|| HostTensor::from_f32(GgmlType::F16, mne, &mvals));
    let sinks = c.sinks.then(|| {
        HostTensor::from_f32(
            GgmlType::F32,
            [c.n_head, 1, 1, 1],
            &rng.vec(c.n_head, -1.0, 2.0),
        )
    });
    Inputs {
        q,
        k,
        v,
        mask,
        sinks,
    }
}

fn params(c: &Case) -> [i32; 16] {
    params_f32(&[c.scale, c.max_bias, c.softcap])
}

/// dst [dv, n_head, n_batch, d3] in logical order.
fn reference(c: &Case, inp: &Inputs) -> Vec<f64> {
    let (q, k, v) = (inp.q.to_f32(), inp.k.to_f32(), inp.v.to_f32());
    let m = inp.mask.as_ref().map(|m| (m.to_f32(), m.t.ne));
    let sinks = inp.sinks.as_ref().map(|s| s.to_f32());
    let alibi = Alibi::new(c.max_bias, c.n_head);
    let mut out = vec![0f64; c.dv * c.n_head * c.n_batch * c.d3];
    for i3 in 0..c.d3 {
        for b in 0..c.n_batch {
            for h in 0..c.n_head {
                let hk = h / (c.n_head / c.n_head_kv);
                let qr = &q[((i3 * c.n_head + h) * c.n_batch + b) * c.dk..][..c.dk];
                let mut w: Vec<f64> = (0..c.n_kv)
                    .map(|j| {
                        let kr = &k[((i3 * c.n_head_kv + hk) * c.n_kv + j) * c.dk..][..c.dk];
                        let mut s = c.scale as f64
                            * qr.iter()
                                .zip(kr)
                                .map(|(&a, &b)| a as f64 * b as f64)
                                .sum::<f64>();
                        if c.softcap != 0.0 {
                            let cap = c.softcap as f64;
                            s = cap * (s / cap).tanh();
                        }
                        let mv = m.as_ref().map_or(0.0, |(m, ne)| {
                            m[((h % ne[2]) * ne[1] + b) * ne[0] + j] as f64
                        });
                        s + alibi.slope(h) as f64 * mv
                    })
                    .collect();
                let sink = sinks.as_ref().map(|s| s[h] as f64);
                let max = w
                    .iter()
                    .copied()
                    .chain(sink)
                    .fold(f64::NEG_INFINITY, f64::max);
                w.iter_mut().for_each(|x| *x = (*x - max).exp());
                let den = w.iter().sum::<f64>() + sink.map_or(0.0, |s| (s - max).exp());
                let o = &mut out[((i3 * c.n_batch + b) * c.n_head + h) * c.dv..][..c.dv];
                if max == f64::NEG_INFINITY {
                    continue; // fully masked, no sink: ggml writes zeros
                }
                for (j, &p) in w.iter().enumerate() {
                    let vr = &v[((i3 * c.n_head_kv + hk) * c.n_kv + j) * c.dv..][..c.dv];
                    for d in 0..c.dv {
                        o[d] += p / den * vr[d] as f64;
                    }
                }
            }
        }
    }
    out
}

fn run(c: &Case, inp: &Inputs, prec: i32) -> Result<Vec<f32>, String> {
    let mut d = HostTensor::zeros(GgmlType::F32, [c.dv, c.n_head, c.n_batch, c.d3]);
    let mut p = params(c);
    p[3] = prec;
    run_op(
        Op::FlashAttnExt,
        p,
        &[
            Some(&inp.q),
            Some(&inp.k),
            Some(&inp.v),
            inp.mask.as_ref(),
            inp.sinks.as_ref(),
        ],
        &mut d,
    )?;
    Ok(d.to_f32())
}

fn check(c: &Case, seed: u64, tol: f64) {
    let inp = inputs(c, seed);
    let want = reference(c, &inp);
    assert_close(&run(c, &inp, 0).unwrap(), &want, tol, "fattn");
    // The same through non-contiguous views of q, k and v (and the f32-precision flag).
    let perm = Inputs {
        q: inp.q.permuted([2, 0, 1, 3]),
        k: inp.k.permuted([1, 2, 0, 3]),
        v: inp.v.permuted([0, 2, 1, 3]),
        mask: inp.mask.clone(),
        sinks: inp.sinks.clone(),
    };
    assert_close(&run(c, &perm, 10).unwrap(), &want, tol, "fattn permuted");
}

#[test]
fn f32_kv_with_mask_and_gqa() {
    check(&BASE, 1, 1e-5);
    check(
        &Case {
            n_head_kv: 1,
            n_kv: 70,
            dk: 24,
            dv: 8,
            ..BASE
        },
        2,
        1e-5,
    );
    check(
        &Case {
            mask: false,
            n_head_kv: 4,
            ..BASE
        },
        3,
        1e-5,
    );
}

#[test]
fn f16_kv_vector_path() {
    // Q rounded to f16 and an f16 V accumulator: ggml's decode-path numerics.
    let c = Case {
        kv_type: GgmlType::F16,
        n_batch: 1,
        n_kv: 40,
        ..BASE
    };
    check(&c, 4, 3e-3);
    check(
        &Case {
            kv_type: GgmlType::Bf16,
            ..BASE
        },
        5,
        2e-2,
    );
}

/// llama.cpp's quantized KV caches (`--cache-type-k/-v q4_0|q8_0 -fa`). The reference is f64 attention
/// over the dequantized K and V with the exact Q; the kernel scores keys against Q converted to
/// Q8_0 (each element off by at most amax/254 ≈ 0.004), which moves a logit by
/// ≲ scale·Σ|k|·0.004 ≈ 0.03 at worst for dk = 64 and so the softmax-weighted output by about 1e-2
/// relative. A wrong block index or scale would be off by O(1).
#[test]
fn quantized_kv_cache() {
    use GgmlType::*;
    for (i, (kt, vt)) in [
        (Q4_0, Q4_0),
        (Q8_0, Q8_0),
        (Q8_0, Q4_0),
        (Q4_1, Q5_1),
        (Q5_0, Iq4Nl),
        (Q4K, F16),
    ]
    .into_iter()
    .enumerate()
    {
        let dk = if kt == Q4K { 256 } else { 64 };
        let c = Case {
            dk,
            dv: 64,
            n_kv: 37,
            kv_type: kt,
            v_type: Some(vt),
            ..BASE
        };
        let inp = inputs(&c, 20 + i as u64);
        let want = reference(&c, &inp);
        let what = format!("fattn k {} v {}", kt.name(), vt.name());
        assert_close(&run(&c, &inp, 0).unwrap(), &want, 1e-2, &what);
        // Same with sinks, ALiBi and one query row (the decode shape).
        let c1 = Case {
            n_batch: 1,
            sinks: true,
            max_bias: 8.0,
            ..c
        };
        let inp = inputs(&c1, 30 + i as u64);
        assert_close(
            &run(&c1, &inp, 10).unwrap(),
            &reference(&c1, &inp),
            1e-2,
            &what,
        );
    }
}

#[test]
fn softcap_alibi_sinks() {
    let c = Case {
        softcap: 2.0,
        scale: 1.5,
        ..BASE
    };
    check(&c, 6, 1e-5);
    let c = Case {
        max_bias: 8.0,
        n_head: 6,
        n_head_kv: 3,
        ..BASE
    };
    check(&c, 7, 1e-5);
    let c = Case {
        sinks: true,
        ..BASE
    };
    check(&c, 8, 1e-5);
    let c = Case {
        sinks: true,
        mask: false,
        softcap: 5.0,
        kv_type: GgmlType::F16,
        ..BASE
    };
    check(&c, 9, 3e-3);
}

#[test]
fn tiled_path_for_large_batches() {
    // 70 query rows with f16 K/V: f32 numerics, keys in tiles of 64 (two tiles here).
    let c = Case {
        kv_type: GgmlType::F16,
        n_batch: 70,
        n_kv: 100,
        d3: 1,
        n_head: 2,
        n_head_kv: 1,
        ..BASE
    };
    check(&c, 10, 1e-5);
    let c = Case {
        sinks: true,
        softcap: 3.0,
        ..c
    };
    check(&c, 11, 1e-5);
}

/// The tiled path's K and V converted once (K transposed, scores vectorized across keys) give the
/// bits of the row-by-row conversion: each score is the same FMA chain in d order.
#[test]
fn tiled_scores_from_converted_tiles_are_bit_identical() {
    let base = Case {
        kv_type: GgmlType::F16,
        n_batch: 70,
        n_kv: 150,
        d3: 1,
        n_head: 4,
        n_head_kv: 1,
        ..BASE
    };
    for (seed, c) in [
        Case {
            sinks: true,
            softcap: 3.0,
            ..base.clone()
        },
        Case {
            kv_type: GgmlType::F32,
            n_head_kv: 2,
            ..base.clone()
        },
        base,
    ]
    .into_iter()
    .enumerate()
    {
        let inp = inputs(&c, 40 + seed as u64);
        for chunk in [usize::MAX, 128] {
            let a = run_flavour(&c, &inp, chunk, true);
            let b = run_flavour(&c, &inp, chunk, false);
            assert!(a.iter().any(|&x| x != 0.0));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "case {seed}, chunk {chunk}");
        }
    }
}

#[test]
fn fully_masked_rows_give_zeros() {
    // Row 1 of the mask is all -inf: output zero, with or without sinks.
    for sinks in [false, true] {
        let c = Case { sinks, ..BASE };
        let out = run(&c, &inputs(&c, 12), 0).unwrap();
        for i3 in 0..c.d3 {
            for h in 0..c.n_head {
                let o = &out[((i3 * c.n_batch + 1) * c.n_head + h) * c.dv..][..c.dv];
                assert!(o.iter().all(|&x| x == 0.0), "{o:?}");
            }
        }
    }
}

#[test]
fn kv_cache_view_with_wide_rows() {
    // K and V as views of the first n_kv cells of a larger cache (nb[1] stays the cache's).
    let c = Case {
        kv_type: GgmlType::F16,
        ..BASE
    };
    let inp = inputs(&c, 13);
    let widen = |x: &HostTensor, cells: usize| {
        let mut ne = x.t.ne;
        ne[1] = cells;
        let vals = x.to_f32();
        let mut all = vec![0f32; ne.iter().product()];
        for (r, row) in vals.chunks(ne[0]).enumerate() {
            let (i1, rest) = (r % x.t.ne[1], r / x.t.ne[1]);
            all[(rest * cells + i1) * ne[0]..][..ne[0]].copy_from_slice(row);
        }
        let mut big = HostTensor::from_f32(x.t.typ, ne, &all);
        big.t.ne[1] = x.t.ne[1];
        big
    };
    let view = Inputs {
        q: inp.q.clone(),
        k: widen(&inp.k, 32),
        v: widen(&inp.v, 32),
        mask: inp.mask.clone(),
        sinks: None,
    };
    assert_close(
        &run(&c, &view, 0).unwrap(),
        &reference(&c, &inp),
        3e-3,
        "kv view",
    );
}

#[test]
fn matches_soft_max_then_v() {
    // softmax(scale·QKᵀ + mask) through the SOFT_MAX op, then ·V in f64.
    let c = Case {
        n_head_kv: 4,
        d3: 1,
        ..BASE
    };
    let inp = inputs(&c, 14);
    let (q, k, v) = (inp.q.to_f32(), inp.k.to_f32(), inp.v.to_f32());
    let mask = inp.mask.as_ref().unwrap();
    let kq: Vec<f32> = (0..c.n_head)
        .flat_map(|h| (0..c.n_batch).map(move |b| (h, b)))
        .flat_map(|(h, b)| {
            let (q, k) = (&q, &k);
            (0..c.n_kv).map(move |j| {
                let qr = &q[(h * c.n_batch + b) * c.dk..][..c.dk];
                let kr = &k[(h * c.n_kv + j) * c.dk..][..c.dk];
                qr.iter()
                    .zip(kr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32
            })
        })
        .collect();
    let kq = HostTensor::from_f32(GgmlType::F32, [c.n_kv, c.n_batch, c.n_head, 1], &kq);
    // SOFT_MAX wants mask.ne0 == n_kv: cut the padded mask down to a contiguous copy.
    let mv = mask.to_f32();
    let mne = mask.t.ne;
    let cut: Vec<f32> = (0..mne[2] * c.n_batch * c.n_kv)
        .map(|i| {
            let (j, b, h) = (
                i % c.n_kv,
                (i / c.n_kv) % c.n_batch,
                i / (c.n_kv * c.n_batch),
            );
            mv[(h * mne[1] + b) * mne[0] + j]
        })
        .collect();
    let cm = HostTensor::from_f32(GgmlType::F16, [c.n_kv, c.n_batch, mne[2], 1], &cut);
    let mut p = HostTensor::zeros(GgmlType::F32, kq.t.ne);
    run_op(
        Op::SoftMax,
        params_f32(&[c.scale]),
        &[Some(&kq), Some(&cm)],
        &mut p,
    )
    .unwrap();
    let p = p.to_f32();
    let mut want = vec![0f64; c.dv * c.n_head * c.n_batch];
    for h in 0..c.n_head {
        for b in 0..c.n_batch {
            let pr = &p[(h * c.n_batch + b) * c.n_kv..][..c.n_kv];
            if pr.iter().any(|x| x.is_nan()) {
                continue; // fully masked: SOFT_MAX gives NaN, flash attention zeros
            }
            for d in 0..c.dv {
                want[(b * c.n_head + h) * c.dv + d] = (0..c.n_kv)
                    .map(|j| pr[j] as f64 * v[(h * c.n_kv + j) * c.dv + d] as f64)
                    .sum();
            }
        }
    }
    assert_close(&run(&c, &inp, 0).unwrap(), &want, 1e-5, "fattn vs softmax");
}

#[test]
fn rejects_bad_shapes_and_params() {
    let c = BASE;
    let good = inputs(&c, 15);
    assert!(run(&c, &good, 0).is_ok());
    assert!(run(&c, &good, 20).is_err(), "precision");
    let with = |f: &dyn Fn(&mut Inputs)| {
        let mut i = inputs(&c, 15);
        f(&mut i);
        run(&c, &i, 0)
    };
    assert!(
        with(&|i| i.k = HostTensor::zeros(GgmlType::F32, [15, 13, 2, 2])).is_err(),
        "dk"
    );
    assert!(
        with(&|i| i.k = HostTensor::zeros(GgmlType::F32, [16, 13, 3, 2])).is_err(),
        "gqa"
    );
    assert!(
        with(&|i| i.v = HostTensor::zeros(GgmlType::F32, [16, 12, 2, 2])).is_err(),
        "n_kv"
    );
    assert!(
        with(&|i| i.v = HostTensor::zeros(GgmlType::F32, [8, 13, 2, 2])).is_err(),
        "dv"
    );
    assert!(
        with(&|i| i.k = HostTensor::zeros(GgmlType::I32, [16, 13, 2, 2])).is_err(),
        "k type"
    );
    assert!(
        with(&|i| i.mask = Some(HostTensor::zeros(GgmlType::F16, [16, 2, 2, 1]))).is_err(),
        "mask rows"
    );
    assert!(
        with(&|i| i.mask = Some(HostTensor::zeros(GgmlType::F16, [12, 3, 2, 1]))).is_err(),
        "mask keys"
    );
    assert!(
        with(&|i| i.mask = Some(HostTensor::zeros(GgmlType::F16, [13, 3, 3, 1]))).is_err(),
        "mask heads"
    );
    assert!(
        with(&|i| i.sinks = Some(HostTensor::zeros(GgmlType::F32, [3, 1, 1, 1]))).is_err(),
        "sinks"
    );
    // dst not permuted relative to q, and a non-f32 dst.
    for (typ, ne) in [
        (GgmlType::F32, [16, 3, 4, 2]),
        (GgmlType::F16, [16, 4, 3, 2]),
    ] {
        let mut d = HostTensor::zeros(typ, ne);
        let srcs = [Some(&good.q), Some(&good.k), Some(&good.v)];
        assert!(run_op(Op::FlashAttnExt, params(&c), &srcs, &mut d).is_err());
    }
    let mut d = HostTensor::zeros(GgmlType::F32, [16, 4, 3, 2]);
    assert!(
        run_op(
            Op::FlashAttnExt,
            params(&c),
            &[Some(&good.q), Some(&good.k)],
            &mut d
        )
        .is_err()
    );
}

/// `run_chunked` on `inp` with chunks of `chunk` keys.
fn run_in_chunks(c: &Case, inp: &Inputs, chunk: usize) -> Vec<f32> {
    run_flavour(c, inp, chunk, true)
}

/// `run_with` on `inp`: chunks of `chunk` keys, K and V converted once or row by row.
fn run_flavour(c: &Case, inp: &Inputs, chunk: usize, convert_once: bool) -> Vec<f32> {
    let mut d = HostTensor::zeros(GgmlType::F32, [c.dv, c.n_head, c.n_batch, c.d3]);
    let mut t = d.t.clone();
    t.op = Op::FlashAttnExt;
    t.op_params = params(c);
    fn src(h: Option<&HostTensor>) -> Option<super::super::Src<'_>> {
        h.map(|h| super::super::Src {
            t: &h.t,
            data: &h.bytes,
        })
    }
    let mut srcs: [Option<super::super::Src<'_>>; crate::ggml::MAX_SRC] = Default::default();
    srcs[0] = src(Some(&inp.q));
    srcs[1] = src(Some(&inp.k));
    srcs[2] = src(Some(&inp.v));
    srcs[3] = src(inp.mask.as_ref());
    srcs[4] = src(inp.sinks.as_ref());
    let dst = super::super::Dst::new(&t, &mut d.bytes);
    super::run_with(&srcs, dst, chunk, convert_once).unwrap();
    d.to_f32()
}

/// ggml's split-KV combination: any chunking gives the same softmax (sinks counted once, in the
/// first chunk; fully masked chunks and rows skipped), and one chunk is the plain path, bit for bit.
#[test]
fn keys_in_chunks_combine_to_the_same_softmax() {
    for c in [
        Case { n_kv: 70, ..BASE },
        Case {
            n_kv: 70,
            kv_type: GgmlType::F16,
            sinks: true,
            ..BASE
        },
        Case {
            n_kv: 150,
            n_batch: 66,
            d3: 1,
            ..BASE
        },
    ] {
        let inp = inputs(&c, 7);
        let want = reference(&c, &inp);
        let plain = run(&c, &inp, 0).unwrap();
        assert_eq!(run_in_chunks(&c, &inp, c.n_kv), plain, "one chunk");
        let tol = if c.kv_type == GgmlType::F16 {
            2e-3
        } else {
            1e-5
        };
        for chunk in [1, 5, 64, 69] {
            let got = run_in_chunks(&c, &inp, chunk);
            assert_close(&got, &want, tol, &format!("chunks of {chunk}"));
        }
    }
}
