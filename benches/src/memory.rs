//! The memory figures (`WARDEN_BENCH_ONLY=memory`):
//!
//! (a) a memory read as the host serves it: one task's `get` of a key in a store of 10,000
//!     entries (goal: under 10 µs), and `list` of a namespace of 100;
//! (b) the filter: building it (the gitleaks rules compiled once per process), checking a 1 KiB
//!     note and a 64 KiB text, and a whole write of a 1 KiB note (filter, join with earlier
//!     writes, insert);
//! (c) a read from inside an agent: the probe's `mem-get` repeated, per call (the wasm boundary,
//!     the gate and its trace record, and the host's read).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use warden::capabilities::memory::{MemoryAccess, MemoryWrite};
use warden::orchestra::memory::{
    Change, Filter, Memory, MemoryScope, NewVersion, TaskMemory, now_ms,
};
use warden::secrets::SecretStore;
use warden::{Outcome, RunOptions, Runtime};

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median and p99 of `n` timed calls of `f` (after `n / 10` untimed ones).
fn sample(n: usize, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    for _ in 0..n / 10 {
        f()?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
    }
    times.sort();
    let at = |p: f64| us(times[((times.len() - 1) as f64 * p).round() as usize]);
    Ok((at(0.5), at(0.99)))
}

fn task(memory: &Arc<Memory>, task: u64) -> TaskMemory {
    TaskMemory::new(
        memory.clone(),
        MemoryScope {
            user: "alice".into(),
            agent: "curator".into(),
            task,
            horizon: Duration::from_secs(3600),
            secrets: Arc::new(SecretStore::default()),
            observer: None,
        },
    )
}

const NOTE: &str = "After the March outage we cap retries at thirty seconds with full jitter; \
the token bucket refills every 500 ms, and clients that see 429 back off for the Retry-After \
value the server sends. ";

/// The memory figures, on `base`'s engine.
pub async fn memory_figures(base: &Runtime, quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let memory = Arc::new(Memory::open(dir.path())?);
    let now = now_ms();
    let tags = vec!["ops".to_string()];
    for i in 0..10_000u32 {
        let ns = if i < 100 { "lessons" } else { "archive" };
        memory.write(&NewVersion {
            namespace: ns,
            key: &format!("k{i:05}"),
            change: Change::Write,
            text: NOTE,
            tags: &tags,
            owner: if i % 2 == 0 { "alice" } else { "bob" },
            general: i % 3 == 0,
            written_ms: now,
            expires_ms: Some(now + 3_600_000),
            pinned: false,
            agent: "curator",
            task: Some(1),
        })?;
    }
    let view = task(&memory, 2);
    let n = if quick { 20_000 } else { 200_000 };
    let (p50, p99) = sample(n, &mut || {
        let found = view.get("archive", "k05000").map_err(anyhow::Error::msg)?;
        anyhow::ensure!(found.is_some(), "k05000 is alice's");
        Ok(())
    })?;
    println!(
        "memory read (a task's get, 10,000 entries), n={n}: p50 {p50:.2} µs, p99 {p99:.2} µs (goal: under 10 µs)"
    );
    let (p50, p99) = sample(n / 10, &mut || {
        let all = view.list("lessons", None).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(!all.is_empty(), "lessons has entries");
        Ok(())
    })?;
    println!("memory list (a namespace of 100, ~67 visible): p50 {p50:.1} µs, p99 {p99:.1} µs");

    let t = Instant::now();
    let filter = Filter::new().map_err(anyhow::Error::msg)?;
    println!(
        "filter build ({} gitleaks rules + {} built-in): {:.1} ms",
        filter.gitleaks().rules(),
        filter.builtin_rules().len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let secrets = SecretStore::default();
    let kib: String = NOTE.repeat(1024 / NOTE.len() + 1)[..1024].to_owned();
    let big: String = NOTE.repeat(64 * 1024 / NOTE.len())[..60 * 1024].to_owned();
    for (label, text, n) in [("1 KiB note", &kib, 2_000), ("60 KiB text", &big, 100)] {
        let n = if quick { n / 10 } else { n };
        let (p50, p99) = sample(n, &mut || {
            filter
                .check(text, &secrets)
                .map_err(|r| anyhow::anyhow!("refused: {r}"))
        })?;
        println!("filter check ({label}), n={n}: p50 {p50:.1} µs, p99 {p99:.1} µs");
    }
    // A task writes at most 256 entries: 20 untimed and 200 timed writes fit in one.
    let writer = task(&memory, 3);
    let mut i = 0;
    let (p50, p99) = sample(200, &mut || {
        i += 1;
        let w = MemoryWrite {
            namespace: "lessons".into(),
            key: format!("w{i}"),
            text: kib.clone(),
            tags: vec![],
            ttl_secs: None,
            general: false,
        };
        writer.put(w).map(|_| ()).map_err(anyhow::Error::msg)
    })?;
    println!(
        "memory write (1 KiB note: filtered, joined with the task's earlier writes, stored): p50 {p50:.1} µs, p99 {p99:.1} µs"
    );
    guest_reads(base, quick).await
}

/// Per-call cost of `mem-get` from inside the probe.
async fn guest_reads(base: &Runtime, quick: bool) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let ledger = Arc::new(warden::ledger::Ledger::open(data.path(), 1024)?);
    let memory = Arc::new(Memory::open(data.path())?);
    let rt = base.clone().with_ledger(ledger).with_memory(memory.clone());
    let body = "[memory]\nwrite = [\"lessons\"]\n[limits]\ncpu = \"20 s\"\nwall = \"60 s\"\n";
    let probe = super::load(&rt, "probe", body)?;
    let put = r#"{"op":"mem-put","namespace":"lessons","key":"k","text":"a lesson"}"#;
    probe.run(put, &RunOptions::default()).await?;
    let calls: u64 = if quick { 2_000 } else { 20_000 };
    let per = |depth: u64| {
        let probe = &probe;
        async move {
            let task =
                format!(r#"{{"op":"mem-get","namespace":"lessons","key":"k","depth":{depth}}}"#);
            let t = Instant::now();
            let r = probe.run(&task, &RunOptions::default()).await?;
            if !matches!(r.outcome, Outcome::Completed { .. }) {
                bail!("mem-get did not complete: {:?}", r.outcome);
            }
            anyhow::Ok(t.elapsed())
        }
    };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let one = per(1).await?;
        let many = per(calls).await?;
        best = best.min(us(many.saturating_sub(one)) / (calls - 1) as f64);
    }
    println!(
        "memory read from the guest (probe mem-get, {calls} calls a task): {best:.2} µs per call"
    );
    Ok(())
}
