//! Kernel micro-benchmarks on one device, for `scripts/gpu-bench.sh`: the mat-vecs of a Gemma 3 270M
//! decode step (GB/s of weight bytes read) and prompt-sized MUL_MATs (int8 TOPS, 2·K·M·N per second),
//! each the median of several timed runs of a planned graph (as GRAPH_RECOMPUTE replays it) after
//! warm-up. Graphs are built as `benches/wgpu.rs` builds them (`benches/common`).
//!
//! ```sh
//! NODEVICE_SELECT=1 cargo run --release --example gpu_bench -- --device Vulkan0 --json out.json
//! ```
//!
//! Without `--device` it takes the first hardware GPU, else the first software adapter (lavapipe).

#[path = "../benches/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::Bench;
use common::stats::{Samples, array, num, object, sig3, string};
use ggrpc::device::{self, Device, DeviceKind, DeviceOptions, GraphCache};
use ggrpc::ggml::{GgmlType, Op};

#[derive(Parser, Debug)]
#[command(about = "GPU kernel micro-benchmarks (mat-vec GB/s, prompt MUL_MAT TOPS)")]
struct Args {
    /// Device to measure (`--list-devices` names); default: first GPU, else first software adapter
    #[arg(short, long)]
    device: Option<String>,
    /// Fewer and smaller runs (to check the script on a slow adapter)
    #[arg(long)]
    quick: bool,
    /// Timed runs per case (the median is reported)
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Activation columns of the prompt MUL_MATs
    #[arg(long, default_value_t = 512)]
    prompt_cols: usize,
    /// Write the results as one JSON object here
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// The decode step's weight shapes: `(what, type, K, M)` (ne = [K, M]), each read once per token.
const MATVEC: &[(&str, GgmlType, usize, usize)] = &[
    ("output (tied token_embd)", GgmlType::Q8_0, 640, 262144),
    ("attn_q", GgmlType::Q5_0, 640, 1024),
    ("attn_k / attn_v", GgmlType::Q5_0, 640, 256),
    ("attn_v (more bits)", GgmlType::Q8_0, 640, 256),
    ("attn_output", GgmlType::Q4K, 1024, 640),
    ("ffn_gate / ffn_up", GgmlType::Q5_0, 640, 2048),
    ("ffn_down", GgmlType::Q4K, 2048, 640),
    ("ffn_down (more bits)", GgmlType::Q6K, 2048, 640),
];

/// Prompt MUL_MATs (`n` = `--prompt-cols` activation columns).
const PROMPT: &[(&str, GgmlType, usize, usize)] = &[
    ("ffn_gate / ffn_up", GgmlType::Q5_0, 640, 2048),
    ("attn_output", GgmlType::Q4K, 1024, 640),
    ("ffn_down (more bits)", GgmlType::Q6K, 2048, 640),
    ("attn_v (more bits)", GgmlType::Q8_0, 640, 256),
];

/// A mat-vec reads more distinct weight bytes than this per graph (copies of the small matrices), so
/// the figure is memory bandwidth, not a cache that one 1 MiB matrix fits in.
const MATVEC_BYTES: usize = 256 << 20;
const MAX_COPIES: usize = 256;

fn open(name: Option<&str>) -> Result<Arc<dyn Device>, String> {
    let opts = DeviceOptions {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_cap: None,
    };
    if let Some(name) = name {
        return device::select(&[name.to_string()], &opts)?
            .pop()
            .ok_or_else(|| "no device".into());
    }
    let mut all = device::discover();
    let pick = [DeviceKind::Gpu, DeviceKind::Software]
        .iter()
        .find_map(|k| all.iter().position(|c| c.kind == *k))
        .ok_or("no GPU adapter (only the CPU device): is a Vulkan driver installed?")?;
    let c = all.swap_remove(pick);
    (c.open)(&opts).map_err(|e| format!("failed to open {}: {e}", c.name))
}

fn aligned(typ: GgmlType, ne: [usize; 4]) -> usize {
    let n = ne[0] * ne[1] * ne[2] * ne[3] / typ.block_size() * typ.type_size();
    n.div_ceil(256) * 256
}

/// One result row: the case, what one graph did and how long it took.
struct Row {
    what: &'static str,
    typ: GgmlType,
    k: usize,
    m: usize,
    n: usize,
    copies: usize,
    samples: Samples,
    fallback: u64,
    dispatches: u64,
}

impl Row {
    fn weight_bytes(&self) -> f64 {
        (self.typ.row_size(self.k).expect("row") * self.m * self.copies) as f64
    }

    /// GB/s of weights for a mat-vec, int8 TOPS for a prompt product.
    fn rate(&self) -> f64 {
        let t = self.samples.median();
        if self.n == 1 {
            self.weight_bytes() / t / 1e9
        } else {
            2.0 * (self.k * self.m * self.n * self.copies) as f64 / t / 1e12
        }
    }

    fn json(&self) -> String {
        let key = if self.n == 1 { "gb_per_s" } else { "tops" };
        object(&[
            ("what", string(self.what)),
            ("type", string(self.typ.name())),
            ("k", self.k.to_string()),
            ("m", self.m.to_string()),
            ("n", self.n.to_string()),
            ("copies", self.copies.to_string()),
            ("weight_bytes", num(self.weight_bytes())),
            (key, num(self.rate())),
            (
                "us_per_matmul",
                num(self.samples.median() / self.copies as f64 * 1e6),
            ),
            ("graph", self.samples.json()),
            ("fallback_nodes", self.fallback.to_string()),
            ("dispatches", self.dispatches.to_string()),
        ])
    }
}

/// `copies` MUL_MATs of distinct [K, M] weights by one [K, N] activation, in one graph, timed.
#[allow(clippy::too_many_arguments)]
fn measure(
    dev: &Arc<dyn Device>,
    what: &'static str,
    (typ, k, m, n): (GgmlType, usize, usize, usize),
    copies: usize,
    reps: usize,
    budget: Duration,
) -> Row {
    let size = copies * (aligned(typ, [k, m, 1, 1]) + aligned(GgmlType::F32, [m, n, 1, 1]))
        + aligned(GgmlType::F32, [k, n, 1, 1]);
    let mut b = Bench::new(dev.clone(), size);
    let x = b.leaf(GgmlType::F32, [k, n, 1, 1]);
    for _ in 0..copies {
        let w = b.leaf(typ, [k, m, 1, 1]);
        b.node(Op::MulMat, GgmlType::F32, [m, n, 1, 1], &[w, x], [0; 16]);
    }
    b.dev.check_graph(&b.graph).expect("graph supported");
    let cache = GraphCache::default();
    let samples = Samples::take(2, reps, budget, || b.run_cached(&cache));
    let last = b.dev.counters().last_graph;
    Row {
        what,
        typ,
        k,
        m,
        n,
        copies,
        samples,
        fallback: last.fallback,
        dispatches: last.dispatches,
    }
}

fn table(title: &str, unit: &str, rows: &[Row]) {
    println!("\n{title}\n");
    println!("| weights | type | K×M | N | copies | µs / matmul | {unit} | fallback |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {}×{} | {} | {} | {} | {} | {} |",
            r.what,
            r.typ.name(),
            r.k,
            r.m,
            r.n,
            r.copies,
            sig3(r.samples.median() / r.copies as f64 * 1e6),
            sig3(r.rate()),
            r.fallback
        );
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let dev = open(args.device.as_deref())?;
    let details = dev.details().unwrap_or_default();
    println!(
        "gpu_bench on {} ({}){}",
        dev.name(),
        dev.description(),
        if args.quick { ", quick" } else { "" }
    );
    println!("  {details}");
    let (reps, budget, target, cols) = if args.quick {
        (3, Duration::from_secs(5), 4 << 20, args.prompt_cols.min(64))
    } else {
        (
            args.reps,
            Duration::from_secs(8),
            MATVEC_BYTES,
            args.prompt_cols,
        )
    };
    let mut matvec = Vec::new();
    for &(what, typ, k, m) in MATVEC {
        let bytes = typ.row_size(k).expect("row") * m;
        let copies = target.div_ceil(bytes).clamp(1, MAX_COPIES);
        let r = measure(&dev, what, (typ, k, m, 1), copies, reps, budget);
        eprintln!("  matvec {what} {}: {} GB/s", typ.name(), sig3(r.rate()));
        matvec.push(r);
    }
    let mut prompt = Vec::new();
    for &(what, typ, k, m) in PROMPT {
        let r = measure(&dev, what, (typ, k, m, cols), 1, reps, budget);
        eprintln!(
            "  prompt {what} {} n={cols}: {} TOPS",
            typ.name(),
            sig3(r.rate())
        );
        prompt.push(r);
    }
    table("Mat-vec (one token)", "GB/s", &matvec);
    table(
        &format!("Prompt MUL_MAT ({cols} columns)"),
        "int8 TOPS",
        &prompt,
    );
    let json = object(&[
        ("device", string(dev.name())),
        ("adapter", string(&dev.description())),
        ("details", string(&details)),
        ("quick", args.quick.to_string()),
        (
            "matvec",
            array(&matvec.iter().map(Row::json).collect::<Vec<_>>()),
        ),
        (
            "prompt",
            array(&prompt.iter().map(Row::json).collect::<Vec<_>>()),
        ),
    ]);
    match &args.json {
        Some(p) => std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}
