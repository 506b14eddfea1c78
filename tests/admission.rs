//! Connections that never say HELLO cannot lock real clients out: they wait in a bounded pre-HELLO
//! pool (the oldest is dropped when it is full) and are closed at the HELLO deadline; only a completed
//! HELLO takes a session slot.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use ggrpc::client::Client;
use ggrpc::server::Limits;

#[test]
fn a_flood_of_silent_sockets_does_not_lock_out_real_clients() {
    let s = common::start_with(common::Options {
        max_connections: Some(4),
        max_pending: Some(16),
        ..Default::default()
    });
    // Far more silent sockets than session slots and pool places, all open at once.
    let silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    // Every real client still gets a session, and four of them at once (all the slots).
    let mut real: Vec<Client> = (0..4).map(|_| s.client()).collect();
    for c in &mut real {
        assert_eq!(c.device_count().unwrap(), 1);
    }
    // A fifth speaking client finds the slots taken: refused, while the four keep working.
    assert!(Client::connect(s.addr).is_err());
    drop(real.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Client::connect(s.addr)
            && c.device_count().is_ok()
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = s.shared().metrics.render();
    assert!(counter(&text, "evicted_before_hello") >= 300 - 16, "{text}");
    assert!(counter(&text, "too_many_sessions") >= 1, "{text}");
    drop(silent);
}

/// The value of `ggrpc_connections_refused_total{reason="..."}`.
fn counter(text: &str, reason: &str) -> u64 {
    let key = format!("reason=\"{reason}\"");
    text.lines()
        .find(|l| l.starts_with("ggrpc_connections_refused_total") && l.contains(&key))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_connection_without_hello_is_closed_at_the_deadline() {
    let s = common::start_with(common::Options {
        limits: Some(Limits {
            hello_timeout: Duration::from_secs(1),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut silent = Client::connect_raw(s.addr).unwrap();
    // Closed by the server (a read sees EOF long before this generous bound).
    silent.set_read_timeout(Some(Duration::from_secs(60)));
    assert!(silent.is_closed());
    assert_eq!(counter(&s.shared().metrics.render(), "no_hello"), 1);
    // A client that speaks is served as usual.
    assert_eq!(s.client().device_count().unwrap(), 1);
}
