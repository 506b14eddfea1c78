//! The `rpc-server` binary: flags, banner, and errors, as a user sees them.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rpc-server"));
    c.env("NODEVICE_SELECT", "1");
    c
}

/// A CPU server on a free port, with its stdout (banner first) as lines.
fn cpu_server() -> (Child, Lines<BufReader<ChildStdout>>) {
    cpu_server_with(&[], Stdio::null())
}

fn cpu_server_with(extra: &[&str], stderr: Stdio) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = bin()
        .args(["-p", "0", "-d", "cpu", "-t", "1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The banner up to and including its `transport` line, and the endpoint it names.
fn banner(lines: &mut Lines<BufReader<ChildStdout>>) -> (Vec<String>, String) {
    let mut out = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let done = l.contains("transport");
        out.push(l);
        if done {
            break;
        }
    }
    let addr = out
        .iter()
        .find(|l| l.contains("endpoint"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_string();
    (out, addr)
}

#[test]
fn unknown_device_exits_non_zero_and_lists_the_available_ones() {
    let out = bin().args(["-d", "NoSuchGpu"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown device: NoSuchGpu"), "{err}");
    assert!(err.contains("CPU"), "{err}");
}

#[test]
fn bad_flags_exit_non_zero() {
    assert!(!bin().args(["-t", "0"]).output().unwrap().status.success());
    assert!(
        !bin()
            .args(["-p", "70000"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn list_devices_shows_the_cpu_with_its_memory() {
    let out = bin().arg("--list-devices").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.lines()
            .any(|l| l.trim_start().starts_with("CPU: ") && l.contains(" MiB free)")),
        "{s}"
    );
}

/// Mesa's device-select layer complains on stderr when XDG_RUNTIME_DIR is unset (a service, a
/// container); the server disables the layer for itself unless the user set NODEVICE_SELECT.
#[test]
fn starts_quietly_without_xdg_runtime_dir() {
    let quiet = |c: &mut Command| {
        c.env_remove("XDG_RUNTIME_DIR")
            .env_remove("NODEVICE_SELECT");
    };
    let mut list = bin();
    quiet(&mut list);
    let out = list.arg("--list-devices").output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");

    let mut serve = bin();
    quiet(&mut serve);
    let mut child = serve
        .args(["-p", "0", "-t", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (b, _) = banner(&mut lines);
    assert_eq!(b[0], "Starting RPC server v8.0.0");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn banner_names_version_endpoint_cache_and_devices_then_serves() {
    let (mut child, mut lines) = cpu_server();
    let banner: Vec<String> = (0..6).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(banner[0], "Starting RPC server v8.0.0");
    assert!(
        banner[1].starts_with("  endpoint       : 127.0.0.1:"),
        "{banner:?}"
    );
    assert_eq!(banner[2], "  local cache    : n/a");
    assert_eq!(banner[3], "Devices:");
    assert!(banner[4].starts_with("  CPU: "), "{banner:?}");
    assert_eq!(banner[5], "  transport      : TCP");
    let addr = banner[1].rsplit(' ').next().unwrap().to_string();
    let mut c = ggrpc::client::Client::connect(addr.as_str()).unwrap();
    assert_eq!(c.major(), ggrpc::proto::Major::V8);
    assert_eq!(c.device_count().unwrap(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn protocol_7_is_served_when_asked_for() {
    let (mut child, mut lines) = cpu_server_with(&["--protocol", "7"], Stdio::null());
    let (banner, addr) = banner(&mut lines);
    assert_eq!(banner[0], "Starting RPC server v7.0.0");
    let mut c = ggrpc::client::Client::connect(addr.as_str()).unwrap();
    assert_eq!(c.major(), ggrpc::proto::Major::V7);
    assert_eq!(c.device_count().unwrap(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !bin()
            .args(["--protocol", "9"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// A client of the other major aborts right after HELLO: the log says what to do, once.
#[test]
fn a_client_that_leaves_after_hello_gets_a_hint() {
    let (mut child, mut lines) = cpu_server_with(&["--protocol", "7"], Stdio::piped());
    let (_, addr) = banner(&mut lines);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // What a v8 client does on a v7 server: HELLO, then it aborts.
    drop(ggrpc::client::Client::connect(addr.as_str()).unwrap());
    let deadline = std::time::Duration::from_secs(60);
    let hint = loop {
        let l = rx.recv_timeout(deadline).expect("no hint logged");
        if l.contains("right after HELLO") {
            break l;
        }
    };
    assert!(hint.contains("--protocol 8"), "{hint}");
    // A session that sends commands gets no hint.
    let mut c = ggrpc::client::Client::connect(addr.as_str()).unwrap();
    c.device_count().unwrap();
    drop(c);
    // Both sessions' closes (the first one's comes after its hint).
    let mut closes = 0;
    let mut seen = Vec::new();
    while closes < 2 {
        let l = rx.recv_timeout(deadline).expect("sessions not closed");
        closes += l.contains("Client connection closed") as usize;
        seen.push(l);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen.extend(rx.try_iter());
    assert!(
        !seen.iter().any(|l| l.contains("right after HELLO")),
        "{seen:?}"
    );
}

/// SIGTERM (what service managers send) stops the server cleanly, like Ctrl-C.
#[cfg(unix)]
#[test]
fn sigterm_shuts_down_cleanly() {
    let (mut child, mut lines) = cpu_server();
    assert!(lines.any(|l| l.unwrap().contains("transport")));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}
