//! The agent-call figures (`WARDEN_BENCH_ONLY=calls`): one agent-to-agent hop — a trivial caller
//! (`relay`, `tests/agents/relay`, which hands its task to `hello`) calling a trivial callee
//! (`hello`) found by name in an agents directory — against a single trivial run (`hello` alone),
//! and against the caller's own run without the call (`relay` given `null`), so the hop's own
//! cost shows apart from its two instances. Medians and
//! p99 of interleaved samples, without and with a ledger (goal: the hop at most 2× the single
//! run). The runs are made from a task on the runtime's workers, as a host serving tasks makes
//! them (a caller on the `block_on` thread pays a thread hand-off for each hop).
//!
//! `WARDEN_BENCH_CALLS_PROFILE=<run>` (`single`, `echo` or `hop`; `WARDEN_BENCH_CALLS_LEDGER=1`
//! with a ledger) repeats only that run, for a profiler, and prints its median.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use warden::policy::HostConfig;
use warden::{LoadedAgent, Outcome, RunOptions, Runtime};

use super::{agent_path, percentile, us};

/// An agents directory holding `hello` and `relay` (which may call `hello`).
fn agents_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::copy(agent_path("hello")?, dir.join("hello.wasm"))?;
    std::fs::write(dir.join("hello.toml"), "[agent]\nname = \"hello\"\n")?;
    std::fs::copy(agent_path("relay")?, dir.join("relay.wasm"))?;
    std::fs::write(
        dir.join("relay.toml"),
        "[agent]\nname = \"relay\"\n[agents]\ncall = [\"hello\"]\n",
    )?;
    Ok(())
}

fn load(rt: &Runtime, dir: &Path, name: &str) -> anyhow::Result<LoadedAgent> {
    let policy = rt.load_policy(&dir.join(format!("{name}.toml")))?;
    Ok(rt.load_file(&dir.join(format!("{name}.wasm")), policy)?)
}

/// The three runs: what, agent, task, expected output.
type Runs<'a> = [(&'static str, &'a LoadedAgent, &'static str, &'static str); 3];

fn runs<'a>(hello: &'a LoadedAgent, relay: &'a LoadedAgent) -> Runs<'a> {
    [
        ("single run (hello)", hello, "\"bench\"", "hello, bench"),
        ("caller alone (relay, no call)", relay, "null", "null"),
        (
            "one hop (relay -> hello)",
            relay,
            "\"bench\"",
            "hello, bench",
        ),
    ]
}

/// The three runs, `n` samples each, interleaved; prints their figures.
async fn compare(rt: &Runtime, dir: &Path, n: usize, label: &str) -> anyhow::Result<()> {
    let hello = load(rt, dir, "hello")?;
    let relay = load(rt, dir, "relay")?;
    let runs = runs(&hello, &relay);
    let options = RunOptions::default();
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..(n + n / 10) {
        for (i, (what, agent, task, expect)) in runs.iter().enumerate() {
            let t = Instant::now();
            let r = agent.run(task, &options).await?;
            let took = t.elapsed();
            ensure!(
                matches!(&r.outcome, Outcome::Completed { output } if output == expect),
                "{what}: {:?}",
                r.outcome
            );
            // The first tenth warms the caches (and loads `hello` into the directory).
            if round >= n / 10 {
                samples[i].push(took);
            }
        }
    }
    for s in &mut samples {
        s.sort();
    }
    let p50 = |i: usize| percentile(&samples[i], 0.5);
    for (i, (what, ..)) in runs.iter().enumerate() {
        println!(
            "{what}, {label}, n={n}: p50 {:.1} µs, p99 {:.1} µs",
            us(p50(i)),
            us(percentile(&samples[i], 0.99)),
        );
    }
    println!(
        "one hop / single run, {label}: {:.2}× (goal ≤ 2×); the hop's own cost beyond its callee's run: {:.1} µs",
        us(p50(2)) / us(p50(0)),
        us(p50(2)) - us(p50(1)) - us(p50(0)),
    );
    Ok(())
}

/// Only run `which` (0, 1 or 2 of [`runs`]), `n` times: for a profiler.
async fn profile(rt: &Runtime, dir: &Path, which: usize, n: usize) -> anyhow::Result<()> {
    let hello = load(rt, dir, "hello")?;
    let relay = load(rt, dir, "relay")?;
    let (what, agent, task, expect) = runs(&hello, &relay)[which];
    let options = RunOptions::default();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = agent.run(task, &options).await?;
        samples.push(t.elapsed());
        ensure!(
            matches!(&r.outcome, Outcome::Completed { output } if output == expect),
            "{what}: {:?}",
            r.outcome
        );
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    println!(
        "{what} only, n={n}: p50 {:.1} µs, mean {:.1} µs",
        us(percentile(&samples, 0.5)),
        us(mean)
    );
    Ok(())
}

/// Agent-call figures, without a ledger and with one.
pub async fn call_figures(base: &Runtime, quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    agents_dir(dir.path())?;
    let config = HostConfig::parse(
        "bench.toml",
        &format!("[agents]\ndir = \"{}\"\n", dir.path().display()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = if quick { 500 } else { 5_000 };
    if let Ok(which) = std::env::var("WARDEN_BENCH_CALLS_PROFILE") {
        let which = ["single", "echo", "hop"]
            .iter()
            .position(|w| *w == which)
            .ok_or_else(|| anyhow::anyhow!("WARDEN_BENCH_CALLS_PROFILE is single, echo or hop"))?;
        let mut rt = base.clone().with_host_config(config);
        let _data = tempfile::tempdir()?;
        if std::env::var_os("WARDEN_BENCH_CALLS_LEDGER").is_some() {
            rt = rt.with_ledger(Arc::new(warden::ledger::Ledger::open(_data.path(), 1024)?));
        }
        let path = dir.path().to_path_buf();
        return tokio::spawn(async move { profile(&rt, &path, which, n * 4).await }).await?;
    }
    let without = base.clone().with_host_config(config.clone());
    let path = dir.path().to_path_buf();
    tokio::spawn(async move { compare(&without, &path, n, "without ledger").await }).await??;
    let data = tempfile::tempdir()?;
    let ledger = Arc::new(warden::ledger::Ledger::open(data.path(), 1024)?);
    let with = base.clone().with_host_config(config).with_ledger(ledger);
    let path = dir.path().to_path_buf();
    tokio::spawn(async move { compare(&with, &path, n, "with ledger").await }).await?
}
