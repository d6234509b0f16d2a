//! The agent's stop: SIGTERM gives one last interval and its export within
//! `--shutdown-timeout`, and a second signal ends it at once. The collector here is a black
//! hole (it accepts connections and never answers), so the last export cannot finish.
//!
//! Runs the real binary on this host: it needs root, kernel BTF and tracefs (the nfs module
//! may be absent: the agent then waits for it, which is all this test needs).

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

fn can_run_the_agent() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && Path::new("/sys/kernel/btf/vmlinux").is_file();
    if !ok {
        eprintln!("skipped: the agent needs root and /sys/kernel/btf/vmlinux on this host");
    }
    ok
}

/// Starts the agent against a black-holed collector and returns once it printed its first
/// interval.
fn start(black_hole: &TcpListener, shutdown_timeout: &str) -> (Child, mpsc::Receiver<String>) {
    let endpoint = format!("http://{}", black_hole.local_addr().expect("addr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasflow"))
        .args(["run", "--output", "jsonl", "--interval", "300ms", "--otlp-timeout", "60s"])
        .args(["--otlp-endpoint", &endpoint, "--shutdown-timeout", shutdown_timeout])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nasflow");
    // Drained, so the agent never blocks on a full pipe; kept for a failure's message.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (err, sink) = (child.stderr.take().expect("stderr"), std::sync::Arc::clone(&log));
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&(line + "\n"));
        }
    });
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| {
        let _ = child.kill();
        std::thread::sleep(Duration::from_millis(200));
        panic!("no first jsonl line ({e}); the agent said: {}", log.lock().expect("lock"))
    });
    assert!(first.contains("\"kind\":\"health\""), "{first}");
    (child, rx)
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn sigterm_stops_within_the_shutdown_deadline() {
    if !can_run_the_agent() {
        return;
    }
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (mut child, _lines) = start(&black_hole, "2s");
    signal(&child, libc::SIGTERM);
    let took = wait_exit(&mut child, Duration::from_secs(15)).expect("the agent did not stop");
    assert!(took >= Duration::from_millis(1500), "stopped after {took:?}, before its deadline: no last export tried");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}, past its 2 s deadline");
}

#[test]
fn a_second_signal_stops_at_once() {
    if !can_run_the_agent() {
        return;
    }
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (mut child, lines) = start(&black_hole, "60s");
    signal(&child, libc::SIGTERM);
    // The last interval is printed; its export hangs on the black hole.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && lines.recv_timeout(Duration::from_millis(500)).is_ok() {}
    assert!(child.try_wait().expect("wait").is_none(), "stopped before the second signal");
    signal(&child, libc::SIGINT);
    let took = wait_exit(&mut child, Duration::from_secs(10)).expect("the second signal did not stop the agent");
    assert!(took < Duration::from_secs(2), "stopped {took:?} after the second signal");
}
