//! `rpc-server`: serves local devices to llama.cpp clients over ggml's RPC protocol (8.0.0 or 7.0.0).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ggrpc::device::{self, DeviceOptions};
use ggrpc::proto::Major;
use ggrpc::server::cache::Cache;
use ggrpc::server::{Limits, Server, ServerConfig, Shared, metrics};

/// A drop-in replacement for llama.cpp's rpc-server.
#[derive(Parser, Debug)]
#[command(name = "rpc-server", version, about)]
struct Args {
    /// Host to bind to (a name or an address)
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind to
    #[arg(short, long, default_value_t = 50052)]
    port: u16,
    /// Comma-separated list of devices (see --list-devices)
    #[arg(short, long, value_delimiter = ',')]
    device: Vec<String>,
    /// Enable the local file cache
    #[arg(short, long)]
    cache: bool,
    /// Number of threads for the CPU device (default: all cores)
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Memory cap per device, in MiB
    #[arg(short, long)]
    mem: Option<u64>,
    /// Most clients served at once
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Largest SET_TENSOR request, in bytes (data is streamed, never buffered whole)
    #[arg(long, default_value_t = Limits::default().max_set_tensor_bytes)]
    max_set_tensor_bytes: u64,
    /// Largest payload of any other request (GRAPH_COMPUTE), in bytes; it is buffered whole
    #[arg(long, default_value_t = Limits::default().max_request_bytes)]
    max_request_bytes: u64,
    /// Close a connection whose client stays silent this many seconds while the server waits for it
    /// (0: never, as the reference)
    #[arg(long, default_value_t = 0)]
    idle_timeout: u64,
    /// Protocol major to speak: 8 (current llama.cpp) or 7 (llama-cpp-python 0.3.36, llama.cpp
    /// before the 8.0 change). Clients abort unless it matches theirs
    #[arg(long, default_value_t = 8, value_parser = parse_major)]
    protocol: u8,
    /// Refuse COMM_INIT (server-to-server communicators for `split_mode=tensor`); the client then
    /// falls back to reducing through itself
    #[arg(long)]
    no_comm: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (PORT alone: on 127.0.0.1)
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// Close a new connection that has not sent HELLO within this many seconds (it holds no
    /// session slot meanwhile)
    #[arg(long, default_value_t = Limits::default().hello_timeout.as_secs())]
    hello_timeout: u64,
    /// Bound on the bytes of graphs one client keeps for GRAPH_RECOMPUTE (v8 keeps up to 1024 per
    /// device); past it the connection is closed
    #[arg(long, default_value_t = Limits::default().max_graph_cache_bytes)]
    max_graph_cache_bytes: u64,
    /// List the available devices and exit
    #[arg(long)]
    list_devices: bool,
}

fn parse_major(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .trim_end_matches(".0.0")
        .parse()
        .map_err(|_| format!("not a protocol major: {s}"))?;
    Major::from_number(n)
        .map(|m| m as u8)
        .ok_or_else(|| format!("protocol {n} is not served (7 or 8)"))
}

/// `HOST:PORT`, or a bare port on loopback.
fn metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let spec = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else {
        s.to_string()
    };
    spec.to_socket_addrs()
        .map_err(|e| format!("--metrics {s}: {e}"))?
        .next()
        .ok_or_else(|| format!("--metrics {s}: no address"))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // GGML_RPC_DEBUG (any value) logs every command, like the reference.
    let default = if std::env::var_os("GGML_RPC_DEBUG").is_some() {
        "ggrpc=debug,info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colours only on a terminal: logs sent to a file or a pipe stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

const MIB: u64 = 1024 * 1024;

/// Mesa's device-select implicit Vulkan layer prints `error: XDG_RUNTIME_DIR is invalid or not set
/// in the environment.` when that variable is unset (a service, a container) and wgpu loads it. The
/// layer only reorders adapters, and ggrpc enumerates and names adapters itself, so it is disabled
/// unless the user chose otherwise by setting `NODEVICE_SELECT` (to anything) themselves.
fn quiet_vulkan_layers() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any thread is started (no runtime, no rayon
        // pool, no wgpu instance yet), so nothing can read the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn main() -> ExitCode {
    quiet_vulkan_layers();
    let args = Args::parse();
    init_logging();
    let threads = args.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = DeviceOptions {
        threads,
        mem_cap: args.mem.map(|m| m.saturating_mul(MIB)),
    };
    if args.list_devices {
        // Each device on its own: one that cannot open (a CUDA GPU without libnvrtc) is listed with
        // the reason instead of hiding the others.
        println!("Available devices:");
        for c in device::discover() {
            let name = c.name.clone();
            match (c.open)(&opts) {
                Ok(d) => {
                    let m = d.memory();
                    println!(
                        "  {}: {} ({} MiB, {} MiB free)",
                        d.name(),
                        d.description(),
                        m.total / MIB,
                        m.free / MIB
                    );
                    if let Some(details) = d.details() {
                        println!("      {details}");
                    }
                }
                Err(e) => println!("  {name}: unavailable ({e})"),
            }
        }
        return ExitCode::SUCCESS;
    }
    // The reference accepts ',' and '/' as separators.
    let names: Vec<String> = args
        .device
        .iter()
        .flat_map(|d| d.split('/'))
        .map(str::to_string)
        .collect();
    let devices = match device::select(&names, &opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cache = if args.cache {
        let dir = Cache::default_dir();
        match Cache::open(dir.clone()) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("Failed to create cache directory: {} ({e})", dir.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if args.host != "127.0.0.1" {
        let bang = "!".repeat(59);
        eprintln!(
            "\n{bang}\nWARNING: Host ('{}') is != '127.0.0.1'\n         Never expose the RPC server to an open network!\n         This is an experimental feature and is not secure!\n{bang}\n",
            args.host
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args, devices, cache))
}

async fn serve(
    args: Args,
    devices: Vec<Arc<dyn device::Device>>,
    cache: Option<Arc<Cache>>,
) -> ExitCode {
    let cache_line = cache
        .as_ref()
        .map(|c| c.dir().display().to_string())
        .unwrap_or_else(|| "n/a".into());
    let lines: Vec<String> = devices
        .iter()
        .map(|d| {
            let m = d.memory();
            format!(
                "  {}: {} ({} MiB, {} MiB free)",
                d.name(),
                d.description(),
                m.total / MIB,
                m.free / MIB
            )
        })
        .collect();
    let major = Major::from_number(args.protocol).unwrap_or(Major::V8);
    let mut shared = Shared::new(devices, cache).with_major(major);
    shared.comm.enabled = !args.no_comm;
    shared.limits = Limits {
        max_set_tensor_bytes: args.max_set_tensor_bytes,
        max_request_bytes: args.max_request_bytes,
        idle_timeout: (args.idle_timeout > 0)
            .then(|| std::time::Duration::from_secs(args.idle_timeout)),
        hello_timeout: std::time::Duration::from_secs(args.hello_timeout.max(1)),
        max_graph_cache_bytes: args.max_graph_cache_bytes,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let metrics_at = match args.metrics.as_deref().map(metrics_addr).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(
        &addr,
        shared,
        ServerConfig {
            max_connections: args.max_connections,
            max_pending: args.max_connections.max(64),
        },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = server.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    let metrics_line = match metrics_at {
        Some(at) => match metrics::serve_http(at, server.shared().metrics.clone()).await {
            Ok(bound) => {
                if !bound.ip().is_loopback() {
                    eprintln!("WARNING: metrics are served on {bound}, beyond this machine");
                }
                format!("http://{bound}/metrics")
            }
            Err(e) => {
                eprintln!("error: cannot serve metrics on {at}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => "off".into(),
    };
    // Before the banner: a signal sent as soon as it appears must find its handler.
    let signals = ShutdownSignals::install();
    println!("Starting RPC server v{major}");
    println!("  endpoint       : {endpoint}");
    println!("  local cache    : {cache_line}");
    println!("Devices:");
    lines.iter().for_each(|l| println!("{l}"));
    println!("  transport      : TCP");
    println!("  metrics        : {metrics_line}");
    if major == Major::V8 {
        let comm = if args.no_comm {
            "off (--no-comm)"
        } else {
            "on"
        };
        println!("  comm           : {comm}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if signals.wait().await {
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        }
    });
    server.run(stop_rx).await;
    ExitCode::SUCCESS
}

/// Ctrl-C, and on Unix SIGTERM (what service managers send). The Unix listeners are registered when
/// installed, not when first awaited.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ShutdownSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Waits for a signal; `false` if no handler could be installed.
    async fn wait(self) -> bool {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (self.term, self.int);
            match (term.as_mut(), int.as_mut()) {
                (Some(t), Some(i)) => tokio::select! {
                    r = t.recv() => r.is_some(),
                    r = i.recv() => r.is_some(),
                },
                (Some(t), None) => t.recv().await.is_some(),
                (None, Some(i)) => i.recv().await.is_some(),
                (None, None) => false,
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.is_ok()
    }
}
