//! The server under load, from this (second) process over loopback, then killed with SIGKILL
//! and restarted on the same data directory. Bounded: 200 clients, two rounds, about 10 s of
//! work on two cores.
//!
//! 1. 200 concurrent clients (four users) each submit one task and wait for its end: `hello`
//!    (its greeting checked) and three hostile probes — a runaway loop (killed: `cpu-limit`, or
//!    `wall-limit` on a starved machine), a memory bomb (`memory-limit`) and an escape to the
//!    network (`not-granted`). Every result is checked, and the server's resident memory after
//!    the round stays within a generous bound of its memory before it.
//! 2. 200 more clients submit; once half are acknowledged the server is SIGKILLed. Restarted on
//!    the same data directory, every task a client got a `202` for is there: completed (or
//!    contained, for a hostile one), resumed from the queue and then completed, or
//!    `interrupted` (it was running at the kill) — none lost, none left queued or running — and
//!    `warden audit verify` passes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::queue::{audit_verifies, host_config, row, serve_on, try_call};

/// Clients per round.
const CLIENTS: usize = 200;

/// The most any one round may take.
const ROUND: Duration = Duration::from_secs(40);

/// What client `i` submits, and what its end must be.
fn task(i: usize) -> (Value, Expect) {
    match i % 8 {
        5 => (
            json!({"agent": "probe", "input": {"op": "spin"}}),
            Expect::Killed(&["cpu-limit", "wall-limit"]),
        ),
        6 => (
            json!({"agent": "probe", "input": {"op": "alloc", "bytes": 256 * 1024 * 1024}}),
            Expect::Killed(&["memory-limit"]),
        ),
        7 => (
            json!({"agent": "probe", "input": {"op": "http", "url": "http://127.0.0.1:1/"}}),
            Expect::Killed(&["not-granted"]),
        ),
        _ => (
            json!({"agent": "hello", "input": {"name": format!("client {i}")}}),
            Expect::Greeting(format!("hello, client {i}")),
        ),
    }
}

#[derive(Debug, Clone)]
enum Expect {
    Greeting(String),
    Killed(&'static [&'static str]),
}

/// Whether `row` ended as `expect` says (`interrupted` allowed when `interrupted_ok`).
fn check(row: &Value, expect: &Expect, interrupted_ok: bool) -> Result<(), String> {
    let status = row["status"].as_str().unwrap_or_default();
    if interrupted_ok && status == "interrupted" {
        return Ok(());
    }
    let fine = match expect {
        Expect::Greeting(g) => status == "completed" && row["outcome"]["output"] == *g,
        Expect::Killed(reasons) => {
            status == "killed"
                && reasons.contains(&row["outcome"]["reason"].as_str().unwrap_or_default())
        }
    };
    if fine {
        Ok(())
    } else {
        Err(format!("expected {expect:?}, got {row}"))
    }
}

/// Submit `body` for `token`, retrying a `429` after its `Retry-After`; the task id.
async fn submit(addr: &str, token: &str, body: &Value, until: Instant) -> Result<u64, String> {
    loop {
        let (status, retry, v) = try_call(addr, "POST", "/v1/tasks", token, Some(body)).await?;
        match status {
            202 => return v["task"].as_u64().ok_or_else(|| format!("no id: {v}")),
            429 if Instant::now() < until => {
                let secs = retry.and_then(|r| r.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            _ => return Err(format!("{status}: {v}")),
        }
    }
}

/// The task's row once it ended, polled gently (200 clients poll at once).
async fn end_of(addr: &str, token: &str, id: u64, until: Instant) -> Value {
    loop {
        let v = row(addr, token, id).await;
        if !matches!(v["status"].as_str(), Some("queued" | "running")) {
            return v;
        }
        assert!(Instant::now() < until, "task {id} not ended: {v}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_clients_then_sigkill_and_restart_lose_nothing() {
    let (_agents, config) = host_config(
        "memory = \"16 MiB\"\ncpu = \"200 ms\"\nwall = \"5 s\"\n",
        "[server]\nmax_queued = 1024\nper_user_queued = 256\n",
    );
    let data = tempfile::tempdir().unwrap();
    let mut s = serve_on(&config, data.path());
    let mut tokens = vec![s.token.clone()];
    for user in ["u1", "u2", "u3"] {
        tokens.push(warden_tests::served::dev_token(
            data.path(),
            user,
            &["dev"],
            std::time::Duration::from_secs(600),
        ));
    }
    let tokens = Arc::new(tokens);
    // Warm: the agents compiled and described once before memory is measured.
    for i in [0, 5] {
        let (body, expect) = task(i);
        let id = submit(&s.addr, &tokens[0], &body, Instant::now())
            .await
            .unwrap();
        let v = end_of(&s.addr, &tokens[0], id, Instant::now() + ROUND).await;
        check(&v, &expect, false).unwrap();
    }
    let pid = s.child.id();
    let before = rss_kib(pid);

    // Round 1: every result correct, every hostile task contained.
    let started = Instant::now();
    let until = started + ROUND;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (addr, tokens) = (s.addr.clone(), tokens.clone());
        clients.push(tokio::spawn(async move {
            let token = &tokens[i % tokens.len()];
            let (body, expect) = task(i);
            let id = submit(&addr, token, &body, until).await?;
            let v = end_of(&addr, token, id, until).await;
            check(&v, &expect, false)
        }));
    }
    for c in clients {
        c.await.unwrap().unwrap();
    }
    let round = started.elapsed();
    let after = rss_kib(pid);
    eprintln!(
        "round 1: {CLIENTS} clients in {round:?}; server RSS {before} KiB before, {after} KiB after"
    );
    assert!(
        after < before + 512 * 1024,
        "the server grew from {before} KiB to {after} KiB over one round"
    );

    // Round 2: SIGKILL once half the clients are acknowledged.
    let acked = Arc::new(std::sync::Mutex::new(
        BTreeMap::<u64, (usize, Expect)>::new(),
    ));
    let count = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + ROUND;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (addr, tokens) = (s.addr.clone(), tokens.clone());
        let (acked, count) = (acked.clone(), count.clone());
        clients.push(tokio::spawn(async move {
            let token = &tokens[i % tokens.len()];
            let (body, expect) = task(i);
            // A refused or cut connection after the kill is no acknowledgement.
            if let Ok(id) = submit(&addr, token, &body, until).await {
                acked.lock().unwrap().insert(id, (i % tokens.len(), expect));
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while count.load(Ordering::SeqCst) < CLIENTS / 2 {
        assert!(Instant::now() < until, "not half acknowledged");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= CLIENTS / 2, "{} acknowledged", acked.len());

    // Restarted on the same data directory: every acknowledged task is there and ends.
    let s = serve_on(&config, data.path());
    let until = Instant::now() + ROUND;
    let mut statuses = BTreeMap::<String, usize>::new();
    for (id, (user, expect)) in &acked {
        let v = end_of(&s.addr, &tokens[*user], *id, until).await;
        check(&v, expect, true).unwrap_or_else(|e| panic!("task {id}: {e}"));
        *statuses
            .entry(v["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let log = std::fs::read_to_string(data.path().join("stderr")).unwrap();
    let resumed = log
        .lines()
        .find(|l| l.starts_with("resumed "))
        .unwrap_or("no queued task to resume");
    eprintln!(
        "round 2: {} acknowledged before the kill; at the restart: {resumed}; their ends: {statuses:?}",
        acked.len()
    );
    drop(s);
    audit_verifies(data.path());
}
