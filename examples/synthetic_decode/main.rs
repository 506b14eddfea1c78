//! A synthetic Gemma 3 270M (Q4_K_M shapes and types, random weights; see `model.rs`) driven over
//! loopback by the project's Rust client, for `scripts/gpu-bench.sh`: weights uploaded once, then
//! prompt batches (tokens/s of one graph of N tokens) and token generation, one full GRAPH_COMPUTE
//! per token (as a client that rebuilds its graph) and one GRAPH_RECOMPUTE per token (as a v8 client
//! reusing it), each timed from the inputs' SET_TENSORs to the logits' GET_TENSOR.
//!
//! ```sh
//! cargo run --release &                                          # or any llama.cpp rpc-server
//! cargo run --release --example synthetic_decode -- --addr 127.0.0.1:50052
//! cargo run --release --example synthetic_decode -- --server target/release/rpc-server -d Vulkan0
//! ```

mod model;
#[path = "../../benches/common/stats.rs"]
mod stats;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::Parser;
use ggrpc::client::{Client, GraphBuilder, RemoteBuffer};
use ggrpc::proto::Request;
use model::{Batch, Weights};
use stats::{Samples, array, num, object, string};

#[derive(Parser, Debug)]
#[command(about = "Synthetic Gemma-3-270M decode over ggml RPC (tokens/s)")]
struct Args {
    /// A running server to drive
    #[arg(long, conflicts_with = "server")]
    addr: Option<String>,
    /// Start this rpc-server on a free loopback port instead (and stop it at the end)
    #[arg(long)]
    server: Option<PathBuf>,
    /// Device the started server serves (`-d`)
    #[arg(short, long, default_value = "Vulkan0")]
    device: String,
    /// Index of the device in the server's list
    #[arg(long, default_value_t = 0)]
    dev_index: u32,
    /// Server metrics (`--metrics` of ggrpc's rpc-server), read to report fallback nodes and
    /// dispatches per graph; a started server gets one on a free port
    #[arg(long)]
    metrics: Option<String>,
    /// Generated tokens timed in each generation mode
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Untimed tokens before each generation mode
    #[arg(long, default_value_t = 4)]
    warmup: usize,
    /// Prompt batch sizes (tokens in one graph)
    #[arg(long, value_delimiter = ',', default_value = "64,512")]
    pp: Vec<usize>,
    /// Timed runs of each prompt batch
    #[arg(long, default_value_t = 5)]
    pp_reps: usize,
    /// Transformer layers (Gemma 3 270M has 18)
    #[arg(long, default_value_t = model::LAYERS)]
    layers: usize,
    /// Write the results as one JSON object here
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A server this driver started; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Connects, retrying while a server starts (opening a GPU device takes a few seconds).
fn connect(addr: &str, server: &mut Option<Server>) -> Result<Client, String> {
    let started = Instant::now();
    loop {
        match Client::connect(addr) {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() > Duration::from_secs(120) => {
                return Err(format!("{addr}: {e}"));
            }
            Err(_) => {
                if let Some(Server(child)) = server
                    && let Ok(Some(status)) = child.try_wait()
                {
                    return Err(format!("the server exited at startup ({status})"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// `ggrpc_device_*` series of one device from the metrics endpoint, by name without the prefix.
fn scrape(addr: &str, device: &str) -> Option<Vec<(String, f64)>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let label = format!("device=\"{device}\"");
    let out = body
        .lines()
        .filter(|l| l.starts_with("ggrpc_device_") && l.contains(&label))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let name = name.split('{').next()?.trim_start_matches("ggrpc_device_");
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    Some(out)
}

fn metric(m: &[(String, f64)], name: &str) -> f64 {
    m.iter().find(|(n, _)| n == name).map_or(f64::NAN, |p| p.1)
}

type Series = Vec<(String, f64)>;

/// One measured phase: a prompt batch or a generation mode.
struct Phase {
    name: String,
    tokens_per_graph: usize,
    n_kv: usize,
    samples: Samples,
    graph_wire_bytes: usize,
    /// Metrics before and after the timed runs (when the server has them).
    metrics: Option<(Series, Series)>,
}

impl Phase {
    fn tokens_per_s(&self) -> f64 {
        self.tokens_per_graph as f64 / self.samples.median()
    }

    /// Nodes the last graph ran on the CPU fallback (NaN without metrics).
    fn fallback(&self) -> f64 {
        self.metrics
            .as_ref()
            .map_or(f64::NAN, |(_, a)| metric(a, "last_graph_fallback"))
    }

    fn json(&self) -> String {
        let metrics = match &self.metrics {
            None => "null".into(),
            Some((b, a)) => {
                let mut fields: Vec<(&str, String)> = [
                    "last_graph_nodes",
                    "last_graph_fallback",
                    "last_graph_dispatches",
                    "last_graph_submits",
                    "last_graph_readbacks",
                ]
                .iter()
                .map(|n| (*n, num(metric(a, n))))
                .collect();
                let added = metric(a, "nodes_fallback_total") - metric(b, "nodes_fallback_total");
                fields.push(("fallback_nodes_in_phase", num(added)));
                object(&fields)
            }
        };
        object(&[
            ("phase", string(&self.name)),
            ("tokens_per_graph", self.tokens_per_graph.to_string()),
            ("n_kv", self.n_kv.to_string()),
            ("tokens_per_s", num(self.tokens_per_s())),
            ("graph", self.samples.json()),
            ("graph_wire_bytes", self.graph_wire_bytes.to_string()),
            ("metrics", metrics),
        ])
    }
}

/// Names the request an I/O error came from.
fn e(what: &'static str) -> impl Fn(io::Error) -> String {
    move |err| format!("{what}: {err}")
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to).max(1) * to
}

/// Places weights, caches and then the batches' activations in three buffers (`bufs`: the real ones,
/// or stand-ins of unbounded size to measure what each needs); returns the bytes placed in the first
/// two.
fn layout(
    align: u64,
    bufs: [RemoteBuffer; 3],
    layers: usize,
    n_ctx: usize,
) -> (GraphBuilder, Weights, [u64; 2]) {
    let mut g = GraphBuilder::new(bufs[0], align);
    let mut w = Weights::place(&mut g, layers);
    let weights = g.bytes_placed();
    g.use_buffer(bufs[1]);
    w.place_cache(&mut g, n_ctx);
    let cache = g.bytes_placed();
    g.use_buffer(bufs[2]);
    (g, w, [weights, cache])
}

/// One timed run of a batch: its inputs, the graph (or its replay), the logits.
struct Run<'a> {
    c: &'a mut Client,
    dev: u32,
    finite: bool,
}

impl Run<'_> {
    fn step(
        &mut self,
        b: &Batch,
        ids: &[i32],
        first: usize,
        replay: Option<u64>,
    ) -> io::Result<i32> {
        b.set_inputs(self.c, ids, first)?;
        match replay {
            Some(uid) => self.c.graph_recompute(self.dev, uid)?,
            None => self.c.graph_compute(self.dev, &b.builder.graph(&b.nodes))?,
        }
        let logits = self.c.get_f32(&b.builder.tensor(b.logits))?;
        self.finite &= logits.iter().all(|v| v.is_finite());
        let best = (0..logits.len()).max_by(|&i, &j| logits[i].total_cmp(&logits[j]));
        Ok(best.unwrap_or(0) as i32)
    }
}

/// The server to drive: started here (`--server`) or given (`--addr`), and its metrics address.
fn start(args: &Args) -> Result<(Option<Server>, String, Option<String>), String> {
    let Some(path) = &args.server else {
        let addr = args
            .addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1:50052".into());
        return Ok((None, addr, args.metrics.clone()));
    };
    let port = free_port().map_err(e("free port"))?;
    let mport = free_port().map_err(e("free port"))?;
    let metrics = format!("127.0.0.1:{mport}");
    let child = Command::new(path)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-d", &args.device, "--metrics", &metrics])
        .spawn()
        .map_err(e("starting the server"))?;
    Ok((
        Some(Server(child)),
        format!("127.0.0.1:{port}"),
        Some(metrics),
    ))
}

fn print_table(phases: &[Phase], title: &str) {
    println!("\n{title}\n");
    println!(
        "| phase | tokens/graph | n_kv | median ms | p10–p90 ms | tokens/s | fallback nodes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for p in phases {
        let s = &p.samples;
        let fallback = p.fallback();
        println!(
            "| {} | {} | {} | {:.2} | {:.2}–{:.2} | {:.2} | {} |",
            p.name,
            p.tokens_per_graph,
            p.n_kv,
            s.median() * 1e3,
            s.quantile(0.1) * 1e3,
            s.quantile(0.9) * 1e3,
            p.tokens_per_s(),
            if fallback.is_nan() {
                "?".to_string()
            } else {
                fallback.to_string()
            }
        );
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let (mut server, addr, metrics) = start(&args)?;
    let mut c = connect(&addr, &mut server)?;
    let dev = args.dev_index;
    let align = c.alignment(dev).map_err(e("GET_ALIGNMENT"))?;
    let tg_positions = 2 * (args.warmup + args.tokens);
    let pp_max = args.pp.iter().copied().max().unwrap_or(1);
    let n_ctx = round_up(pp_max.max(tg_positions), 256);
    let tg_kv = round_up(tg_positions, 256);

    // Sizes from a dry layout, then the real buffers.
    let huge = RemoteBuffer {
        handle: 0,
        base: 0,
        size: u64::MAX,
    };
    let (g0, w0, [wsize, ksize]) = layout(align, [huge; 3], args.layers, n_ctx);
    let shapes: Vec<(usize, usize)> = args
        .pp
        .iter()
        .map(|&p| (p, round_up(p, 256)))
        .chain([(1, tg_kv)])
        .collect();
    let csize = shapes
        .iter()
        .map(|&(n, kv)| Batch::build(&g0, &w0, n, kv).builder.bytes_placed())
        .max()
        .unwrap_or(0);
    let sizes = [wsize, ksize, csize];
    let max = c.max_size(dev).map_err(e("GET_MAX_SIZE"))?;
    let mut bufs = [huge; 3];
    for (b, &size) in bufs.iter_mut().zip(&sizes) {
        if size > max {
            return Err(format!(
                "a {size}-byte buffer is past the device's max size {max}"
            ));
        }
        *b = c.alloc(dev, size.max(1)).map_err(e("ALLOC_BUFFER"))?;
    }
    let (g, w, _) = layout(align, bufs, args.layers, n_ctx);
    c.clear(bufs[1], 0).map_err(e("BUFFER_CLEAR"))?;
    eprintln!(
        "synthetic_decode: {} layers, buffers {:.1} / {:.1} / {:.1} MiB (weights / KV / compute) on {addr}",
        args.layers,
        sizes[0] as f64 / 1048576.0,
        sizes[1] as f64 / 1048576.0,
        sizes[2] as f64 / 1048576.0
    );
    let t = Instant::now();
    let sent = w.upload(&mut c, &g).map_err(e("uploading weights"))?;
    let upload_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  weights: {:.1} MiB in {upload_s:.2} s",
        sent as f64 / 1048576.0
    );

    let device = args.device.clone();
    let scrape_now = || metrics.as_deref().and_then(|m| scrape(m, &device));
    let mut run = Run {
        c: &mut c,
        dev,
        finite: true,
    };
    let mut phases = Vec::new();
    for &p in &args.pp {
        let b = Batch::build(&g, &w, p, round_up(p, 256));
        let ids: Vec<i32> = (0..p).map(|i| (i * 7919 % model::VOCAB) as i32).collect();
        run.step(&b, &ids, 0, None).map_err(e("prompt batch"))?;
        let before = scrape_now();
        let mut err = None;
        let s = Samples::take(0, args.pp_reps, Duration::from_secs(120), || {
            if let Err(x) = run.step(&b, &ids, 0, None) {
                err.get_or_insert(x);
            }
        });
        if let Some(x) = err {
            return Err(format!("prompt batch: {x}"));
        }
        let wire = Request::GraphCompute(b.builder.graph(&b.nodes))
            .frame(run.c.major())
            .len();
        eprintln!("  pp{p}: {:.2} tokens/s", p as f64 / s.median());
        phases.push(Phase {
            name: format!("pp{p}"),
            tokens_per_graph: p,
            n_kv: b.n_kv,
            samples: s,
            graph_wire_bytes: wire,
            metrics: before.zip(scrape_now()),
        });
    }
    let b = Batch::build(&g, &w, 1, tg_kv);
    let wire = Request::GraphCompute(b.builder.graph(&b.nodes))
        .frame(run.c.major())
        .len();
    let mut tok = 2;
    let mut pos = 0;
    for replay in [false, true] {
        let uid = if replay {
            let wg = b.builder.graph(&b.nodes);
            b.set_inputs(run.c, &[tok], pos).map_err(e("SET_TENSOR"))?;
            run.c.graph_compute(dev, &wg).map_err(e("GRAPH_COMPUTE"))?;
            Some(wg.uid)
        } else {
            None
        };
        let mut times = Vec::new();
        let mut before = None;
        for i in 0..args.warmup + args.tokens {
            if i == args.warmup {
                before = scrape_now();
            }
            let t = Instant::now();
            tok = run.step(&b, &[tok], pos, uid).map_err(e("generation"))?;
            if i >= args.warmup {
                times.push(t.elapsed().as_secs_f64());
            }
            pos += 1;
        }
        let s = Samples::from(times);
        let phase = if replay {
            "tg (GRAPH_RECOMPUTE)"
        } else {
            "tg (GRAPH_COMPUTE)"
        };
        eprintln!("  {phase}: {:.2} tokens/s", 1.0 / s.median());
        phases.push(Phase {
            name: phase.into(),
            tokens_per_graph: 1,
            n_kv: b.n_kv,
            samples: s,
            graph_wire_bytes: wire,
            metrics: before.zip(scrape_now()),
        });
    }
    let finite = run.finite;

    print_table(
        &phases,
        &format!(
            "Synthetic Gemma 3 270M ({} layers) on {device} at {addr}",
            args.layers
        ),
    );
    if !finite {
        eprintln!("warning: some logits were not finite");
    }
    let json = object(&[
        ("device", string(&device)),
        ("addr", string(&addr)),
        ("layers", args.layers.to_string()),
        ("weights_bytes", sent.to_string()),
        ("upload_s", num(upload_s)),
        ("n_ctx", n_ctx.to_string()),
        ("logits_finite", finite.to_string()),
        (
            "phases",
            array(&phases.iter().map(Phase::json).collect::<Vec<_>>()),
        ),
    ]);
    match &args.json {
        Some(p) => std::fs::write(p, json + "\n").map_err(|x| format!("{}: {x}", p.display()))?,
        None => println!("{json}"),
    }
    drop(c);
    drop(server);
    Ok(())
}
