//! Resource limits: the device cap across sessions, per-request payload caps, the idle timeout and the
//! connection limit. Each limit closes (or refuses) only the client that crossed it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use ggrpc::client::Client;
use ggrpc::proto::Command;
use ggrpc::server::Limits;

fn limited(limits: Limits) -> common::TestServer {
    common::start_with(common::Options {
        limits: Some(limits),
        ..Default::default()
    })
}

#[test]
fn device_cap_holds_across_concurrent_sessions() {
    let s = common::start_with(common::Options {
        mem_cap: Some(1 << 20),
        ..Default::default()
    });
    let addr = s.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr).unwrap();
                let got = c.alloc(0, 256 << 10).is_ok();
                (c, got)
            })
        })
        .collect();
    let results: Vec<(Client, bool)> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let granted = results.iter().filter(|r| r.1).count();
    assert_eq!(granted, 4, "exactly cap / size allocations succeed");
    assert_eq!(s.cpu.used(), 1 << 20);
    drop(results);
    assert!(s.wait_used(0));
}

#[test]
fn request_payload_limits() {
    let s = limited(Limits {
        max_set_tensor_bytes: 305 + 64,
        max_request_bytes: 4096,
        ..Limits::default()
    });
    let mut ok = s.client();
    let b = ok.alloc(0, 4096).unwrap();
    let t16 = common::f32_at(b, 0, 16);
    ok.set_f32(&t16, &[1.0; 16]).unwrap();
    let (_, wg) = common::add_graph(b);
    ok.graph_compute(0, &wg).unwrap();
    assert_eq!(
        ok.device_count().unwrap(),
        1,
        "requests under the limits pass"
    );

    let mut big = s.client();
    let b = big.alloc(0, 4096).unwrap();
    big.set_f32(&common::f32_at(b, 0, 17), &[1.0; 17]).unwrap();
    common::assert_closed(&mut big);

    // Refused on the declared length, before any of the payload is read.
    let mut big = s.client();
    let mut frame = vec![Command::GraphCompute as u8];
    frame.extend_from_slice(&4097u64.to_le_bytes());
    big.send_bytes(&frame).unwrap();
    common::assert_closed(&mut big);
    assert_eq!(ok.get_f32(&t16).unwrap(), vec![1.0; 16]);
}

#[test]
fn idle_timeout_closes_silent_and_stalled_clients_only() {
    // Seconds, not milliseconds: the active client's pauses stay this far under the limit even when a
    // loaded machine delays the test thread or the server.
    const LIMIT: Duration = Duration::from_secs(3);
    let s = limited(Limits {
        idle_timeout: Some(LIMIT),
        ..Limits::default()
    });
    let mut silent = s.client();
    let mut stalled = s.client();
    let b = stalled.alloc(0, 4096).unwrap();
    let p = common::set_tensor_payload(&common::f32_at(b, 0, 4), 0, &[0; 16]);
    let mut frame = vec![Command::SetTensor as u8];
    frame.extend_from_slice(&(p.len() as u64).to_le_bytes());
    frame.extend_from_slice(&p[..100]);
    stalled.send_bytes(&frame).unwrap();
    let mut pre_hello = Client::connect_raw(s.addr).unwrap();

    // An active client pausing a tenth of the limit stays, past the time the others are closed.
    let mut active = s.client();
    let started = Instant::now();
    while started.elapsed() < LIMIT + LIMIT / 2 {
        std::thread::sleep(LIMIT / 10);
        assert_eq!(active.device_count().unwrap(), 1);
    }
    for c in [&mut silent, &mut stalled, &mut pre_hello] {
        common::assert_closed(c);
    }
    assert_eq!(active.device_count().unwrap(), 1);
}

/// The limit counts silence while the server waits for the client, not time spent computing: a client
/// that stays quiet through a graph that runs longer than the limit, and a little after it, is served.
/// The compute's length is set by construction (a gated device), and a false failure needs the test
/// thread to stall for over 3 s between the compute's end and its next request.
#[test]
fn idle_timeout_does_not_count_compute_time() {
    const LIMIT: Duration = Duration::from_secs(4);
    let (s, gate) = common::start_gated(common::Options {
        limits: Some(Limits {
            idle_timeout: Some(LIMIT),
            ..Limits::default()
        }),
        ..Default::default()
    });
    let mut c = s.client();
    let b = c.alloc(0, 4096).unwrap();
    // add_graph's inputs lie at bytes 0 and 64, the sum at 128.
    c.set_f32(&common::f32_at(b, 0, 4), &[1.0; 4]).unwrap();
    c.set_f32(&common::f32_at(b, 64, 4), &[1.5; 4]).unwrap();
    let (_, wg) = common::add_graph(b);
    c.graph_compute(0, &wg).unwrap();
    // The server has read the whole request and the client is silent from here on.
    gate.wait("started");
    let silent = Instant::now();
    std::thread::sleep(LIMIT + Duration::from_secs(2));
    gate.release();
    gate.wait("finished");
    assert!(silent.elapsed() > LIMIT, "the compute outlasted the limit");
    // Had the compute counted, the server would close the connection as soon as it reads again. The
    // clock restarts when the compute ends: a request half a second later is well inside the limit.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.device_count().unwrap(), 1);
    assert_eq!(c.get_f32(&common::f32_at(b, 128, 4)).unwrap(), vec![2.5; 4]);
}

#[test]
fn connections_past_the_limit_are_refused_with_a_log_line() {
    let mut child = Process::new(env!("CARGO_BIN_EXE_rpc-server"))
        .args(["-p", "0", "-d", "cpu", "-t", "1", "--max-connections", "1"])
        .env("NODEVICE_SELECT", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = lines.nth(1).unwrap().unwrap();
    let addr = endpoint.rsplit(' ').next().unwrap().to_string();
    let mut first = Client::connect(addr.as_str()).unwrap();
    // The second client's HELLO finds no free session slot: closed without an answer.
    assert!(Client::connect(addr.as_str()).is_err());
    assert_eq!(first.device_count().unwrap(), 1);
    drop(first);
    // The slot comes back once the first client leaves.
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        if let Ok(mut c) = Client::connect(addr.as_str())
            && c.device_count().is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(third);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("connection refused: too many concurrent sessions"),
        "{err}"
    );
}

#[test]
fn limit_flags_parse() {
    let out = Process::new(env!("CARGO_BIN_EXE_rpc-server"))
        .args(["--max-request-bytes", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let help = Process::new(env!("CARGO_BIN_EXE_rpc-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--max-set-tensor-bytes",
        "--max-request-bytes",
        "--idle-timeout",
        "--max-connections",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}

/// Without `-m`, an allocation past the host's memory is refused with the protocol's failure (the
/// connection stays open), GET_DEVICE_MEMORY's free is total minus what is allocated, and the server
/// keeps serving. Nothing near the machine's memory is actually allocated.
#[test]
fn allocations_past_physical_memory_are_refused() {
    let s = common::start();
    let mut c = s.client();
    let (free, total) = c.memory(0).unwrap();
    assert_eq!(free, total);
    let physical = ggrpc::device::host::physical_memory();
    assert!(total < physical, "total {total} vs physical {physical}");
    for size in [total + 1, physical, u64::MAX / 2] {
        let e = c.alloc(0, size).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::OutOfMemory, "{size}");
    }
    let b = c.alloc(0, 1 << 20).unwrap();
    assert_eq!(c.memory(0).unwrap(), (total - (1 << 20), total));
    // Another client sees the same device: what this one holds is not free for it.
    let mut other = s.client();
    assert_eq!(other.memory(0).unwrap().0, total - (1 << 20));
    assert!(other.alloc(0, total - (1 << 20) + 1).is_err());
    c.free(b).unwrap();
    assert!(s.wait_used(0));
    assert_eq!(other.memory(0).unwrap(), (total, total));
}
