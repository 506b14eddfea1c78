//! Differential check: runs the same single-op graphs (Gemma-3-shaped, random inputs) on two RPC servers,
//! e.g. llama.cpp's reference rpc-server and ggrpc, and prints the relative error of each output.
//!
//! ```sh
//! python tests/e2e/ref_server.py -p 50100 -t 1 &      # the reference (needs scripts/e2e-env.sh's venv)
//! cargo run --release -- -p 50101 -t 1 &
//! cargo run --release --example compare_ops -- 127.0.0.1:50100 127.0.0.1:50101
//! ```

use ggrpc::client::{Client, GraphBuilder, TensorId, wire_nbytes};
use ggrpc::ggml::{GgmlType, Op};
use ggrpc::proto::WireTensor;
use ggrpc::quant;

/// xorshift for reproducible inputs.
struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Bytes for a tensor of `typ` holding random values of magnitude `scale`.
fn random_bytes(rng: &mut Rng, t: &WireTensor, scale: f32) -> Vec<u8> {
    let typ = GgmlType::from_u32(t.typ).expect("type");
    let n: usize = t.ne.iter().map(|&v| v as usize).product();
    let vals: Vec<f32> = (0..n).map(|_| rng.f() * scale).collect();
    match typ {
        GgmlType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::Q2K
        | GgmlType::Q3K
        | GgmlType::Q4K
        | GgmlType::Q5K
        | GgmlType::Q6K
        | GgmlType::Iq4Xs => {
            // Random quants and sub-block scales with small, valid f16 scales at the right offsets:
            // (offset of d, offset of dmin).
            let (d_off, dmin_off) = match typ {
                GgmlType::Q2K => (80, Some(82)),
                GgmlType::Q3K => (108, None),
                GgmlType::Q4K | GgmlType::Q5K => (0, Some(2)),
                GgmlType::Q6K => (208, None),
                _ => (0, None),
            };
            let bs = typ.type_size();
            let mut b: Vec<u8> = (0..wire_nbytes(t).expect("size") as usize)
                .map(|_| (rng.f() * 127.0) as i8 as u8)
                .collect();
            for blk in b.chunks_exact_mut(bs) {
                let d = half::f16::from_f32(0.001 + rng.f().abs() * 0.002).to_le_bytes();
                blk[d_off..d_off + 2].copy_from_slice(&d);
                if let Some(o) = dmin_off {
                    blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.001).to_le_bytes());
                }
            }
            b
        }
        q => {
            let row = t.ne[0] as usize;
            let mut out = vec![0u8; wire_nbytes(t).expect("size") as usize];
            let rb = q.row_size(row).expect("row");
            for (r, chunk) in out.chunks_exact_mut(rb).enumerate() {
                quant::quantize_row(q, &vals[r * row..(r + 1) * row], chunk).expect("quantize");
            }
            out
        }
    }
}

/// Builds a case's graph: returns the inputs (with the magnitude of their random values) and the output.
type Build = Box<dyn Fn(&mut GraphBuilder) -> (Vec<(TensorId, f32)>, TensorId)>;

struct Case {
    name: String,
    build: Build,
}

fn params(vals: &[(usize, f32)], ints: &[(usize, i32)]) -> [i32; 16] {
    let mut p = [0i32; 16];
    for &(i, v) in vals {
        p[i] = v.to_bits() as i32;
    }
    for &(i, v) in ints {
        p[i] = v;
    }
    p
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    for typ in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Iq4Nl,
        GgmlType::Bf16,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::Q5K,
        GgmlType::Q3K,
        GgmlType::Q2K,
        GgmlType::Iq4Xs,
        GgmlType::F16,
        GgmlType::F32,
    ] {
        let kq = typ.block_size() == 256;
        // K-quants switch to ggml's tiled matmul at n >= 8: check both sides of the edge.
        let ns: &[usize] = if kq {
            &[1, 7, 8, 64, 130]
        } else {
            &[1, 7, 130]
        };
        for &n in ns {
            let (k, m) = if kq { (2048, 640) } else { (640, 1024) };
            v.push(Case {
                name: format!("MUL_MAT {} {k}x{m} n={n}", typ.name()),
                build: Box::new(move |g| {
                    let w = g.input(typ, [k, m, 1, 1]);
                    let x = g.input(GgmlType::F32, [k, n, 1, 1]);
                    (
                        vec![(w, 1.0), (x, 1.0)],
                        g.op(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[w, x], [0; 16]),
                    )
                }),
            });
        }
    }
    for n in [1usize, 130] {
        v.push(Case {
            name: format!("RMS_NORM 640 n={n}"),
            build: Box::new(move |g| {
                let x = g.input(GgmlType::F32, [640, n, 1, 1]);
                (
                    vec![(x, 3.0)],
                    g.op(
                        Op::RmsNorm,
                        GgmlType::F32,
                        [640, n, 1, 1],
                        &[x],
                        params(&[(0, 1e-6)], &[]),
                    ),
                )
            }),
        });
        v.push(Case {
            name: format!("GLU GEGLU 2048 n={n}"),
            build: Box::new(move |g| {
                let a = g.input(GgmlType::F32, [2048, n, 1, 1]);
                let b = g.input(GgmlType::F32, [2048, n, 1, 1]);
                (
                    vec![(a, 4.0), (b, 4.0)],
                    g.op(
                        Op::Glu,
                        GgmlType::F32,
                        [2048, n, 1, 1],
                        &[a, b],
                        params(&[], &[(0, 1)]),
                    ),
                )
            }),
        });
        v.push(Case {
            name: format!("ROPE neox 256x4 n={n}"),
            build: Box::new(move |g| {
                let x = g.input(GgmlType::F32, [256, 4, n, 1]);
                let pos = g.input(GgmlType::I32, [n, 1, 1, 1]);
                let p = params(
                    &[
                        (5, 1_000_000.0),
                        (6, 1.0),
                        (7, 0.0),
                        (8, 1.0),
                        (9, 32.0),
                        (10, 1.0),
                    ],
                    &[(1, 256), (2, 2), (4, 32768)],
                );
                (
                    vec![(x, 2.0), (pos, 0.0)],
                    g.op(Op::Rope, GgmlType::F32, [256, 4, n, 1], &[x, pos], p),
                )
            }),
        });
        for kv in [256usize, 512] {
            v.push(Case {
                name: format!("FLASH_ATTN_EXT d256 h4/1 n={n} kv={kv}"),
                build: Box::new(move |g| {
                    let q = g.input(GgmlType::F32, [256, n, 4, 1]);
                    let k = g.input(GgmlType::F16, [256, kv, 1, 1]);
                    let vv = g.input(GgmlType::F16, [256, kv, 1, 1]);
                    let npad = n.div_ceil(64) * 64;
                    let mask = g.input(GgmlType::F16, [kv, npad, 1, 1]);
                    let p = params(&[(0, 1.0), (1, 0.0), (2, 0.0)], &[(3, 10)]);
                    (
                        vec![(q, 2.0), (k, 2.0), (vv, 2.0), (mask, 0.0)],
                        g.op(
                            Op::FlashAttnExt,
                            GgmlType::F32,
                            [256, 4, n, 1],
                            &[q, k, vv, mask],
                            p,
                        ),
                    )
                }),
            });
        }
        v.push(Case {
            name: format!("SOFT_MAX 256x{n}x4 masked"),
            build: Box::new(move |g| {
                let a = g.input(GgmlType::F32, [256, n, 4, 1]);
                let mask = g.input(GgmlType::F16, [256, n, 1, 1]);
                (
                    vec![(a, 8.0), (mask, 0.0)],
                    g.op(
                        Op::SoftMax,
                        GgmlType::F32,
                        [256, n, 4, 1],
                        &[a, mask],
                        params(&[(0, 0.0625)], &[]),
                    ),
                )
            }),
        });
    }
    // The exact layout Gemma 3 sends: q a permuted view, K/V views of a 512-row f16 cache, mask [n_kv, n].
    for n in [1usize, 7, 130] {
        v.push(Case {
            name: format!("FLASH_ATTN_EXT gemma layout n={n}"),
            build: Box::new(move |g| {
                let qs = g.input(GgmlType::F32, [256, 4, n, 1]);
                let q = g.view(
                    qs,
                    Op::Permute,
                    [256, n, 4, 1],
                    [4, 4096, 1024, 4096 * n],
                    0,
                );
                let kc = g.input(GgmlType::F16, [256, 512, 1, 1]);
                let vc = g.input(GgmlType::F16, [256, 512, 1, 1]);
                let k = g.view(kc, Op::View, [256, 256, 1, 1], [2, 512, 512, 262144], 0);
                let vv = g.view(vc, Op::View, [256, 256, 1, 1], [2, 512, 512, 262144], 0);
                let mask = g.input(GgmlType::F16, [256, n, 1, 1]);
                let p = params(&[(0, 1.0)], &[(3, 10)]);
                (
                    vec![(qs, 2.0), (kc, 2.0), (vc, 2.0), (mask, 0.0)],
                    g.op(
                        Op::FlashAttnExt,
                        GgmlType::F32,
                        [256, 4, n, 1],
                        &[q, k, vv, mask],
                        p,
                    ),
                )
            }),
        });
    }
    // A quantized KV cache (`-ctk T -ctv T -fa on`): the cache write (CPY f32 -> T) and attention on it.
    for kvt in [GgmlType::Q8_0, GgmlType::Q4_0] {
        v.push(Case {
            name: format!("CPY f32 -> {} [256,4,7]", kvt.name()),
            build: Box::new(move |g| {
                let x = g.input(GgmlType::F32, [256, 4, 7, 1]);
                let dst = g.input(kvt, [256, 4, 7, 1]);
                (
                    vec![(x, 2.0), (dst, 0.0)],
                    g.op(Op::Cpy, kvt, [256, 4, 7, 1], &[x, dst], [0; 16]),
                )
            }),
        });
        for n in [1usize, 7, 130] {
            v.push(Case {
                name: format!("FLASH_ATTN_EXT {} cache n={n}", kvt.name()),
                build: Box::new(move |g| {
                    let q = g.input(GgmlType::F32, [256, n, 4, 1]);
                    let k = g.input(kvt, [256, 256, 1, 1]);
                    let vv = g.input(kvt, [256, 256, 1, 1]);
                    let mask = g.input(GgmlType::F16, [256, n, 1, 1]);
                    let p = params(&[(0, 1.0)], &[(3, 10)]);
                    (
                        vec![(q, 2.0), (k, 2.0), (vv, 2.0), (mask, 0.0)],
                        g.op(
                            Op::FlashAttnExt,
                            GgmlType::F32,
                            [256, 4, n, 1],
                            &[q, k, vv, mask],
                            p,
                        ),
                    )
                }),
            });
        }
    }
    for base in [10000.0f32, 1_000_000.0] {
        v.push(Case {
            name: format!("ROPE neox base {base} [256,4,130]"),
            build: Box::new(move |g| {
                let x = g.input(GgmlType::F32, [256, 4, 130, 1]);
                let pos = g.input(GgmlType::I32, [130, 1, 1, 1]);
                let p = params(
                    &[(5, base), (6, 1.0), (8, 1.0), (9, 32.0), (10, 1.0)],
                    &[(1, 256), (2, 2), (4, 32768)],
                );
                (
                    vec![(x, 2.0), (pos, 0.0)],
                    g.op(Op::Rope, GgmlType::F32, [256, 4, 130, 1], &[x, pos], p),
                )
            }),
        });
    }
    v.push(Case {
        name: "RMS_NORM [256,4,130]".into(),
        build: Box::new(|g| {
            let x = g.input(GgmlType::F32, [256, 4, 130, 1]);
            (
                vec![(x, 3.0)],
                g.op(
                    Op::RmsNorm,
                    GgmlType::F32,
                    [256, 4, 130, 1],
                    &[x],
                    params(&[(0, 1e-6)], &[]),
                ),
            )
        }),
    });
    v.push(Case {
        name: "GET_ROWS q8_0 640x1000 -> 130".into(),
        build: Box::new(|g| {
            let t = g.input(GgmlType::Q8_0, [640, 1000, 1, 1]);
            let idx = g.input(GgmlType::I32, [130, 1, 1, 1]);
            (
                vec![(t, 1.0), (idx, 0.0)],
                g.op(
                    Op::GetRows,
                    GgmlType::F32,
                    [640, 130, 1, 1],
                    &[t, idx],
                    [0; 16],
                ),
            )
        }),
    });
    v.push(Case {
        name: "CPY f32 -> f16 256x130".into(),
        build: Box::new(|g| {
            let a = g.input(GgmlType::F32, [256, 130, 1, 1]);
            let d = g.input(GgmlType::F16, [256, 130, 1, 1]);
            let c = g.op(Op::Cpy, GgmlType::F16, [256, 130, 1, 1], &[a, d], [0; 16]);
            (vec![(a, 3.0), (d, 0.0)], c)
        }),
    });
    v
}

/// Fills special inputs: positions, indices and causal masks need meaningful values.
fn fill(rng: &mut Rng, g: &GraphBuilder, id: TensorId, scale: f32) -> Vec<u8> {
    let t = g.tensor(id);
    if t.typ == GgmlType::I32 as u32 {
        let n = t.ne[0] as usize;
        return (0..n as i32)
            .map(|i| {
                if n == 130 && t.ne[1] == 1 {
                    i
                } else {
                    (i * 7) % 1000
                }
            })
            .flat_map(|v| v.to_le_bytes())
            .collect();
    }
    if scale == 0.0 {
        // A causal-style f16 mask: row r sees keys <= r + 100.
        let (cols, rows) = (t.ne[0] as usize, t.ne[1] as usize);
        return (0..rows)
            .flat_map(|r| {
                (0..cols).map(move |c| {
                    if c <= r + 100 {
                        0.0f32
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect();
    }
    random_bytes(rng, &t, scale)
}

fn run(addr: &str, case: &Case, seed: u64) -> std::io::Result<Vec<f32>> {
    let mut c = Client::connect(addr)?;
    let align = c.alignment(0)?;
    let buf = c.alloc(0, 64 << 20)?;
    let mut g = GraphBuilder::new(buf, align);
    let (inputs, out) = (case.build)(&mut g);
    let mut rng = Rng(seed);
    for (id, scale) in inputs {
        let bytes = fill(&mut rng, &g, id, scale);
        c.set_tensor(&g.tensor(id), 0, &bytes, false)?;
    }
    c.graph_compute(0, &g.graph(&[out]))?;
    let t = g.tensor(out);
    let bytes = c.get_tensor(&t, 0, wire_nbytes(&t).unwrap_or(0))?;
    Ok(if t.typ == GgmlType::F16 as u32 {
        bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (a, b) = (
        args.get(1).cloned().unwrap_or("127.0.0.1:50100".into()),
        args.get(2).cloned().unwrap_or("127.0.0.1:50101".into()),
    );
    println!("{:<40} {:>12} {:>12}", "case", "rel err", "max |diff|");
    for case in cases() {
        let (ra, rb) = match (run(&a, &case, 7), run(&b, &case, 7)) {
            (Ok(x), Ok(y)) => (x, y),
            (x, y) => {
                println!("{:<40} failed: {:?} / {:?}", case.name, x.err(), y.err());
                continue;
            }
        };
        let (mut num, mut den, mut maxd) = (0f64, 0f64, 0f64);
        for (x, y) in ra.iter().zip(&rb) {
            if x.is_finite() && y.is_finite() {
                num += ((x - y) as f64).powi(2);
                den += (*x as f64).powi(2);
                maxd = maxd.max((x - y).abs() as f64);
            } else if x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()) {
                maxd = f64::INFINITY;
            }
        }
        println!(
            "{:<40} {:>12.3e} {:>12.3e}",
            case.name,
            (num / den.max(1e-30)).sqrt(),
            maxd
        );
    }
}
