//! Prometheus metrics: per-command counts, latency and bytes, sessions and refused connections, and the
//! devices' own counters read at scrape time. Served by `--metrics` (`serve_http`) in the Prometheus
//! text format; updated always (a few atomics per request), whether served or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::device::{Device, DeviceCounters};
use crate::proto::{Command, Major};

type CommandLabel = [(&'static str, &'static str); 1];
type ReasonLabel = [(&'static str, &'static str); 1];

/// Why a connection was turned away before it got a session.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// `--max-connections` sessions were already open.
    TooManySessions,
    /// No HELLO within `--hello-timeout`.
    NoHello,
    /// Still silent when the pre-HELLO pool was full and a newer connection needed its place.
    Evicted,
}

impl Refusal {
    fn label(self) -> ReasonLabel {
        [(
            "reason",
            match self {
                Refusal::TooManySessions => "too_many_sessions",
                Refusal::NoHello => "no_hello",
                Refusal::Evicted => "evicted_before_hello",
            },
        )]
    }
}

pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabel, Counter>,
    latency: Family<CommandLabel, Histogram>,
    bytes_in: Family<CommandLabel, Counter>,
    bytes_out: Family<CommandLabel, Counter>,
    errors: Family<CommandLabel, Counter>,
    sessions: Gauge,
    accepted: Counter,
    refused: Family<ReasonLabel, Counter>,
}

impl Metrics {
    pub fn new(devices: &[Arc<dyn Device>], major: Major) -> Self {
        let mut registry = Registry::with_prefix("ggrpc");
        let commands = Family::<CommandLabel, Counter>::default();
        let latency = Family::<CommandLabel, Histogram>::new_with_constructor(|| {
            // 10 µs .. ~40 s
            Histogram::new(exponential_buckets(1e-5, 4.0, 12))
        });
        let bytes_in = Family::<CommandLabel, Counter>::default();
        let bytes_out = Family::<CommandLabel, Counter>::default();
        let errors = Family::<CommandLabel, Counter>::default();
        let sessions = Gauge::default();
        let accepted = Counter::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register("commands", "Requests handled, by command", commands.clone());
        registry.register(
            "command_duration_seconds",
            "Time from a request's header to its reply (or completion), by command",
            latency.clone(),
        );
        registry.register(
            "received_bytes",
            "Request bytes read (header and payload), by command",
            bytes_in.clone(),
        );
        registry.register(
            "sent_bytes",
            "Reply bytes written (length and payload), by command",
            bytes_out.clone(),
        );
        registry.register(
            "closed_on_error",
            "Connections closed because a request failed, by the command that failed",
            errors.clone(),
        );
        registry.register("sessions", "Open client sessions", sessions.clone());
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before getting a session, by reason",
            refused.clone(),
        );
        let (m, n, p) = major.version();
        let info = Family::<[(&'static str, String); 2], Gauge>::default();
        info.get_or_create(&[
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("protocol", format!("{m}.{n}.{p}")),
        ])
        .set(1);
        registry.register(
            "build",
            "The server's version and the protocol it speaks",
            info,
        );
        registry.register_collector(Box::new(DeviceCollector(devices.to_vec())));
        Metrics {
            registry,
            commands,
            latency,
            bytes_in,
            bytes_out,
            errors,
            sessions,
            accepted,
            refused,
        }
    }

    /// One request done (whatever its outcome).
    pub fn command(&self, cmd: Command, elapsed: Duration, bytes_in: u64, bytes_out: u64) {
        let l = [("command", cmd.name())];
        self.commands.get_or_create(&l).inc();
        self.latency
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
        self.bytes_in.get_or_create(&l).inc_by(bytes_in);
        if bytes_out > 0 {
            self.bytes_out.get_or_create(&l).inc_by(bytes_out);
        }
    }

    pub fn closed_on_error(&self, cmd: &'static str) {
        self.errors.get_or_create(&[("command", cmd)]).inc();
    }

    pub fn accepted(&self) {
        self.accepted.inc();
    }

    pub fn refused(&self, why: Refusal) {
        self.refused.get_or_create(&why.label()).inc();
    }

    /// Counts an open session until the guard drops.
    pub fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.inc();
        SessionGuard(self.clone())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        out
    }
}

pub struct SessionGuard(Arc<Metrics>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.dec();
    }
}

/// Reads each device's counters at scrape time.
#[derive(Clone)]
struct DeviceCollector(Vec<Arc<dyn Device>>);

impl std::fmt::Debug for DeviceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCollector")
    }
}

type Field = fn(&DeviceCounters) -> u64;

/// (name, help, is a gauge, value).
const DEVICE_METRICS: [(&str, &str, bool, Field); 13] = [
    (
        "device_allocated_bytes",
        "Bytes in live buffers",
        true,
        |c| c.bytes_allocated,
    ),
    ("device_buffers", "Live buffers", true, |c| c.buffers),
    ("device_graphs", "Graphs computed", false, |c| c.graphs),
    (
        "device_nodes_computed",
        "Graph nodes computed",
        false,
        |c| c.nodes_computed,
    ),
    (
        "device_nodes_fallback",
        "Nodes a GPU device ran on the CPU kernels inside the server",
        false,
        |c| c.nodes_fallback,
    ),
    ("device_dispatches", "GPU compute dispatches", false, |c| {
        c.dispatches
    }),
    ("device_submits", "GPU queue submits", false, |c| c.submits),
    (
        "device_readbacks",
        "GPU-to-host copies the host waited on",
        false,
        |c| c.readbacks,
    ),
    (
        "device_last_graph_nodes",
        "Nodes of the last graph",
        true,
        |c| c.last_graph.nodes,
    ),
    (
        "device_last_graph_fallback",
        "Nodes of the last graph that fell back to the CPU",
        true,
        |c| c.last_graph.fallback,
    ),
    (
        "device_last_graph_dispatches",
        "GPU dispatches of the last graph",
        true,
        |c| c.last_graph.dispatches,
    ),
    (
        "device_last_graph_submits",
        "GPU submits of the last graph",
        true,
        |c| c.last_graph.submits,
    ),
    (
        "device_last_graph_readbacks",
        "GPU-to-host readbacks of the last graph",
        true,
        |c| c.last_graph.readbacks,
    ),
];

impl Collector for DeviceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot: Vec<(String, DeviceCounters)> = self
            .0
            .iter()
            .map(|d| (d.name().to_string(), d.counters()))
            .collect();
        for (name, help, gauge, field) in DEVICE_METRICS {
            let kind = if gauge {
                ConstGauge::new(0i64).metric_type()
            } else {
                ConstCounter::new(0u64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (dev, c) in &snapshot {
                let labels = [("device", dev.as_str())];
                let m = family.encode_family(&labels)?;
                let v = field(c);
                if gauge {
                    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
                } else {
                    ConstCounter::new(v).encode(m)?;
                }
            }
        }
        Ok(())
    }
}

/// Serves `GET /metrics` on `addr` until the process ends (a real HTTP listener, axum on hyper).
pub async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
                    m.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::device::cpu::CpuDevice;

    #[test]
    fn renders_commands_sessions_and_devices() {
        let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(1, Some(1 << 20)).unwrap());
        let m = Arc::new(Metrics::new(std::slice::from_ref(&dev), Major::V8));
        m.command(Command::GetTensor, Duration::from_micros(30), 321, 108);
        m.refused(Refusal::NoHello);
        let _buf = dev.alloc(4096).unwrap();
        let s = m.session();
        let text = m.render();
        for want in [
            "ggrpc_commands_total{command=\"GET_TENSOR\"} 1",
            "ggrpc_received_bytes_total{command=\"GET_TENSOR\"} 321",
            "ggrpc_sent_bytes_total{command=\"GET_TENSOR\"} 108",
            "ggrpc_command_duration_seconds_count{command=\"GET_TENSOR\"} 1",
            "ggrpc_sessions 1",
            "ggrpc_connections_refused_total{reason=\"no_hello\"} 1",
            "ggrpc_device_allocated_bytes{device=\"CPU\"} 4096",
            "ggrpc_device_buffers{device=\"CPU\"} 1",
            "protocol=\"8.0.0\"",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        drop(s);
        assert!(m.render().contains("ggrpc_sessions 0"));
    }
}
