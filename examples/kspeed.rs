use ggrpc::ggml::GgmlType;
use ggrpc::quant;
use std::time::Instant;
fn main() {
    let (k, m, n) = (640usize, 2048usize, 64usize);
    let nb = k / 32;
    for (typ, bs) in [(GgmlType::Q5_0, 22usize), (GgmlType::Q8_0, 34)] {
        let rb = nb * bs;
        let mut w = vec![0u8; rb * m];
        let mut s = 12345u32;
        for b in w.iter_mut() {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            *b = (s >> 16) as u8;
        }
        for r in 0..m {
            for b in 0..nb {
                w[r * rb + b * bs] = 0;
                w[r * rb + b * bs + 1] = 0x3c;
            }
        }
        let mut y = vec![0u8; nb * 34 * n];
        for (i, b) in y.iter_mut().enumerate() {
            *b = (i % 100) as u8;
        }
        for b in 0..nb * n {
            y[b * 34] = 0;
            y[b * 34 + 1] = 0x3c;
        }
        let tile = quant::tile_fn(typ).unwrap();
        let reps = 20;
        let yr = nb * 34;
        for _ in 0..3 {
            let t1 = Instant::now();
            let mut out = [0f32; 16];
            let mut acc = 0f32;
            for _ in 0..reps {
                for r in (0..m).step_by(4) {
                    let xs: [&[u8]; 4] =
                        std::array::from_fn(|i| &w[(r + i) * rb..(r + i + 1) * rb]);
                    for c in (0..n).step_by(4) {
                        let ys: [&[u8]; 4] =
                            std::array::from_fn(|j| &y[(c + j) * yr..(c + j + 1) * yr]);
                        tile(&xs, &ys, &mut out);
                        acc += out[0];
                    }
                }
            }
            let dt = (Instant::now() - t1).as_secs_f64() / reps as f64;
            println!(
                "{} gemm {:.1} us  {:.1} GMAC/s ({acc})",
                typ.name(),
                dt * 1e6,
                (k * m * n) as f64 / dt / 1e9
            );
        }
    }
}
