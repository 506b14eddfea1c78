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
    let mut child = bin()
        .args(["-p", "0", "-d", "cpu", "-t", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
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

#[test]
fn banner_names_version_endpoint_cache_and_devices_then_serves() {
    let (mut child, mut lines) = cpu_server();
    let banner: Vec<String> = (0..6).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(banner[0], "Starting RPC server v7.0.0");
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
    assert_eq!(c.device_count().unwrap(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
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
