//! `--metrics`: the binary serves the Prometheus text format over HTTP, and after a real workload the
//! counters say what happened.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use ggrpc::client::{Client, GraphBuilder};
use ggrpc::ggml::{GgmlType, Op};

/// `GET path` over plain HTTP/1.1: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn metrics_are_scraped_over_http_after_a_workload() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-server"))
        .args([
            "-p",
            "0",
            "-d",
            "cpu",
            "-t",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("NODEVICE_SELECT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut endpoint, mut metrics) = (String::new(), String::new());
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l.contains("endpoint") {
            endpoint = l.rsplit(' ').next().unwrap().to_string();
        }
        if l.contains("metrics") {
            let url = l.rsplit(' ').next().unwrap();
            metrics = url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_string();
            break;
        }
    }

    let mut c = Client::connect(endpoint.as_str()).unwrap();
    let buf = c.alloc(0, 1 << 16).unwrap();
    let mut g = GraphBuilder::new(buf, c.alignment(0).unwrap());
    let a = g.input(GgmlType::F32, [64, 4, 1, 1]);
    let x = g.input(GgmlType::F32, [64, 2, 1, 1]);
    let y = g.op(Op::MulMat, GgmlType::F32, [4, 2, 1, 1], &[a, x], [0; 16]);
    let z = g.op(Op::Scale, GgmlType::F32, [4, 2, 1, 1], &[y], {
        let mut p = [0; 16];
        p[0] = 2f32.to_bits() as i32;
        p
    });
    c.set_f32(&g.tensor(a), &[0.5; 256]).unwrap();
    c.set_f32(&g.tensor(x), &[1.0; 128]).unwrap();
    let wg = g.graph(&[y, z]);
    c.graph_compute(0, &wg).unwrap();
    c.graph_recompute(0, wg.uid).unwrap();
    assert_eq!(c.get_f32(&g.tensor(z)).unwrap(), vec![64.0; 8]);

    let (status, text) = http_get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let cmd = |name: &str| format!("ggrpc_commands_total{{command=\"{name}\"}}");
    assert_eq!(value(&text, &cmd("GRAPH_COMPUTE")), 1.0);
    assert_eq!(value(&text, &cmd("GRAPH_RECOMPUTE")), 1.0);
    assert_eq!(value(&text, &cmd("SET_TENSOR")), 2.0);
    assert_eq!(value(&text, &cmd("GET_TENSOR")), 1.0);
    // Bytes: the two SET_TENSOR requests carry 305-byte headers plus 1536 data bytes (+9 framing).
    let set_in = value(&text, "ggrpc_received_bytes_total{command=\"SET_TENSOR\"}");
    assert_eq!(set_in, (2 * (9 + 305) + 4 * 384) as f64);
    let got_out = value(&text, "ggrpc_sent_bytes_total{command=\"GET_TENSOR\"}");
    assert_eq!(got_out, (8 + 32) as f64);
    assert_eq!(
        value(
            &text,
            "ggrpc_command_duration_seconds_count{command=\"GRAPH_COMPUTE\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, "ggrpc_sessions"), 1.0);
    assert_eq!(
        value(&text, "ggrpc_device_graphs_total{device=\"CPU\"}"),
        2.0
    );
    assert_eq!(
        value(&text, "ggrpc_device_nodes_computed_total{device=\"CPU\"}"),
        4.0
    );
    assert_eq!(
        value(&text, "ggrpc_device_nodes_fallback_total{device=\"CPU\"}"),
        0.0
    );
    assert_eq!(
        value(&text, "ggrpc_device_allocated_bytes{device=\"CPU\"}"),
        65536.0
    );
    assert!(text.contains("protocol=\"8.0.0\""), "{text}");

    drop(c);
    // The session's memory and slot come back; the scrape shows it (sessions close asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, text) = http_get(&metrics, "/metrics");
        if value(&text, "ggrpc_sessions") == 0.0
            && value(&text, "ggrpc_device_allocated_bytes{device=\"CPU\"}") == 0.0
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, _) = http_get(&metrics, "/nothing");
    assert!(status.contains("404"), "{status}");
    child.kill().unwrap();
    child.wait().unwrap();
}
