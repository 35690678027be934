//! What the ledger (trust lookup, task row, hash-chained audit records, end-of-task commit)
//! adds to a run of the trivial agent: its parts timed alone, a sequential run bare against
//! with the ledger, and runs per second with both cores busy (8 and 32 concurrent tasks) bare
//! against with the ledger; the sequential runs again with the machine idle between them; then
//! what staging adds to a one-file write.
//!
//! The machine may be shared: each bare/ledger comparison is measured twice, interleaved, and
//! the better figure of each side is kept (printed as "best of 2").

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::{LoadedAgent, Outcome, RunOptions, Runtime};

use super::{fresh_instance_latency_with, load, percentile, sorted_samples, throughput, us};

/// Every ledger figure (see the module docs).
pub async fn ledger_figures(base: &Runtime, quick: bool) -> anyhow::Result<()> {
    let n = if quick { 2_000 } else { 20_000 };
    let data = tempfile::tempdir()?;
    let ledger = Arc::new(warden::ledger::Ledger::open(data.path(), 1024)?);
    let profiling = [
        "WARDEN_BENCH_LEDGER_PROFILE",
        "WARDEN_BENCH_LEDGER_PROFILE_LOAD",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    // A profiler sees the run path only: the parts go straight to the store.
    if !profiling {
        breakdown(&ledger, n)?;
    }
    let with = base.clone().with_ledger(Arc::clone(&ledger));
    let bare = Arc::new(load(base, "hello", "")?);
    let hello = Arc::new(load(&with, "hello", "")?);

    let opts = RunOptions::default();
    // For a profiler, `WARDEN_BENCH_LEDGER_PROFILE_BARE=1` profiles the bare run instead.
    let profiled = if std::env::var_os("WARDEN_BENCH_LEDGER_PROFILE_BARE").is_some() {
        &bare
    } else {
        &hello
    };
    // For a profiler: only the sequential run with the ledger, this many times.
    if let Some(runs) = std::env::var("WARDEN_BENCH_LEDGER_PROFILE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        fresh_instance_latency_with(profiled, runs, &opts, "hello (profile)").await?;
        return Ok(());
    }
    // For a profiler: only the with-ledger throughput with 8 concurrent tasks, for this long.
    if let Some(secs) = std::env::var("WARDEN_BENCH_LEDGER_PROFILE_LOAD")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        throughput(profiled.clone(), secs, 8).await?;
        let stats = ledger.commit_stats();
        println!("batches {} jobs {}", stats.batches, stats.jobs);
        return Ok(());
    }
    let mut best_bare = (Duration::MAX, Duration::MAX);
    let mut best_with = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        let b = fresh_instance_latency_with(&bare, n, &opts, "hello, bare").await?;
        let w = fresh_instance_latency_with(
            &hello,
            n,
            &opts,
            "hello, with ledger: trust + task + audit",
        )
        .await?;
        best_bare = (best_bare.0.min(b.0), best_bare.1.min(b.1));
        best_with = (best_with.0.min(w.0), best_with.1.min(w.1));
    }
    println!(
        "ledger, sequential (best of 2): p50 {:.1} µs bare vs {:.1} µs with ledger ({:.2}x); p99 {:.1} µs vs {:.1} µs ({:.2}x)",
        us(best_bare.0),
        us(best_with.0),
        us(best_with.0) / us(best_bare.0),
        us(best_bare.1),
        us(best_with.1),
        us(best_with.1) / us(best_bare.1),
    );

    idle_figures(&bare, &hello, if quick { 200 } else { 2_000 }).await?;

    let secs = if quick { 0.5 } else { 3.0 };
    for workers in [8, 32] {
        let before = ledger.commit_stats();
        let (mut b, mut w) = (0f64, 0f64);
        for _ in 0..2 {
            b = b.max(throughput(bare.clone(), secs, workers).await?);
            w = w.max(throughput(hello.clone(), secs, workers).await?);
        }
        println!(
            "ledger, throughput with {workers} concurrent tasks (best of 2): {b:.0} runs/s bare vs {w:.0} with ledger ({:.0}% of bare)",
            100.0 * w / b
        );
        let after = ledger.commit_stats();
        let (batches, jobs) = (after.batches - before.batches, after.jobs - before.jobs);
        println!(
            "ledger, group commit with {workers} concurrent tasks: {jobs} jobs (task starts and ends, or whole deferred tasks) in {batches} batches ({:.2} a batch)",
            jobs as f64 / batches.max(1) as f64
        );
    }

    if std::env::var_os("WARDEN_BENCH_SKIP_STAGING").is_some() {
        return Ok(());
    }
    staging_figures(base, &with, quick).await
}

/// What an idle machine costs the next run: the sequential runs again with 300 µs between
/// them, the thread asleep in the gap (as a server is between one client's requests: the
/// request/answer round trips of `WARDEN_BENCH_ONLY=mcp`) and then spinning through it. Where
/// the two differ the cost is the idle itself — a virtual CPU that halts when its threads sleep
/// comes back with cold caches and TLB (this bench's machines run nested, with the guest's
/// halt polling off) — not the elapsed time, so a figure measured back to back is the warm one.
async fn idle_figures(bare: &LoadedAgent, hello: &LoadedAgent, n: usize) -> anyhow::Result<()> {
    const GAP: Duration = Duration::from_micros(300);
    let mut line = Vec::new();
    for (what, spin) in [("asleep", false), ("spinning", true)] {
        let b = gapped_p50(bare, n, GAP, spin).await?;
        let w = gapped_p50(hello, n, GAP, spin).await?;
        line.push(format!(
            "{what} in the gap p50 {:.1} µs bare vs {:.1} µs with ledger ({:.2}x)",
            us(b),
            us(w),
            us(w) / us(b)
        ));
    }
    println!(
        "ledger, sequential with 300 µs idle between runs, n={n}: {}",
        line.join("; ")
    );
    Ok(())
}

/// The p50 of `n` sequential runs of `agent` with `gap` between them, slept or spun.
async fn gapped_p50(
    agent: &LoadedAgent,
    n: usize,
    gap: Duration,
    spin: bool,
) -> anyhow::Result<Duration> {
    let between = || {
        if spin {
            let until = Instant::now() + gap;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        } else {
            // The worker thread itself sleeps, as an idle server's would.
            std::thread::sleep(gap);
        }
    };
    let samples = sorted_samples(agent, n, &RunOptions::default(), between).await?;
    Ok(percentile(&samples, 0.5))
}

/// Staging cost against workspace size: one write into a 10,000-file workspace, then into a
/// workspace that holds only the folder written to. Equal figures mean staging costs what the
/// agent writes, not what the workspace holds.
async fn staging_figures(base: &Runtime, with: &Runtime, quick: bool) -> anyhow::Result<()> {
    let big = tempfile::tempdir()?;
    for d in 0..100 {
        let dir = big.path().join(format!("out/d{d}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}.txt")), "x")?;
        }
    }
    let small = tempfile::tempdir()?;
    std::fs::create_dir_all(small.path().join("out/d7"))?;
    let body = "[fs]\nwrite = [\"out/**\"]\n[trust]\npromote_after = 1\n";
    for (ws_label, ws) in [("10,000-file", big.path()), ("1-folder", small.path())] {
        for (label, rt) in [("without ledger", base), ("with ledger", with)] {
            let probe = load(rt, "probe", body)?;
            let opts = RunOptions {
                workspace: Some(ws.to_path_buf()),
                user: None,
                on_begin: None,
                queued: None,
                client: None,
            };
            let task = r#"{"op":"write","path":"/out/d7/new.txt","text":"one file"}"#;
            for _ in 0..20 {
                probe.run(task, &opts).await?;
            }
            let runs = if quick { 200 } else { 2_000 };
            let mut samples = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                let r = probe.run(task, &opts).await?;
                samples.push(t.elapsed());
                anyhow::ensure!(
                    matches!(r.outcome, Outcome::Completed { .. }),
                    "write failed: {:?}",
                    r.outcome
                );
            }
            samples.sort();
            println!(
                "one-file write in a {ws_label} workspace, staged and applied ({label}), n={runs}: p50 {:.1} µs, p99 {:.1} µs",
                us(percentile(&samples, 0.5)),
                us(percentile(&samples, 0.99)),
            );
        }
    }
    Ok(())
}

/// The ledger's parts, timed alone: an audit record, the task row at start, the end-of-task
/// commit (task row + trust record), the trust lookup.
fn breakdown(ledger: &warden::ledger::Ledger, n: usize) -> anyhow::Result<()> {
    use warden::store::{TaskEnd, TaskRecord, TrustRecord};
    let store = ledger.store();
    let time = |label: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let t = Instant::now();
        for _ in 0..n {
            f()?;
        }
        println!(
            "  ledger part: {label}: {:.1} µs each",
            us(t.elapsed()) / n as f64
        );
        Ok(())
    };
    time("audit record", &mut || {
        ledger.record(warden::audit::AuditEvent::new("bench").task(1).agent("hello").detail(
            serde_json::json!({"status": "completed", "elapsed_us": 20, "trace_sha256": "ab".repeat(32)}),
        ))?;
        Ok(())
    })?;
    let task = TaskRecord {
        id: 0,
        agent: "hello".into(),
        agent_id: "unsigned/hello".into(),
        module_hash: "ab".repeat(32),
        user: "-".into(),
        level: 1,
        grant: serde_json::json!({"fs": {"read": [], "write": []}}),
        status: "running".into(),
        outcome: None,
        trace: None,
        staging: "none".into(),
        staging_path: None,
        started_ms: 0,
        ended_ms: None,
        parent: None,
    };
    let mut ids = Vec::with_capacity(n);
    time("task row at start", &mut || {
        ids.push(store.begin_task(&task, ledger.owner())?);
        Ok(())
    })?;
    let trust = TrustRecord::new("unsigned/hello", &"ab".repeat(32));
    let mut i = 0;
    time("end-of-task commit", &mut || {
        store.end_task(&TaskEnd {
            id: ids[i],
            status: "completed".into(),
            outcome: serde_json::json!({"status": "completed", "output": "hello, bench"}),
            trace: serde_json::json!({"events": [], "dropped": 0}),
            staging: "none".into(),
            staging_path: None,
            ended_ms: warden::store::now_ms(),
            trust: Some(trust.clone()),
        })?;
        i += 1;
        Ok(())
    })?;
    time("trust lookup", &mut || {
        store.trust("unsigned/hello")?;
        Ok(())
    })?;
    // A signed checkpoint (every `checkpoint_every` records): sign, append, fsync, anchor.
    let t = Instant::now();
    let m = 50;
    for _ in 0..m {
        ledger.checkpoint()?;
    }
    println!(
        "  ledger part: signed checkpoint (fsync and anchor): {:.1} µs each",
        us(t.elapsed()) / m as f64
    );
    Ok(())
}
