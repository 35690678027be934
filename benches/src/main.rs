//! `warden-bench`: prints the figures the sandbox core is judged by.
//!
//! 1. fresh instance + run of the trivial agent (`hello`), sequential: median and p99;
//! 2. runs per second with both cores busy (a fresh instance every run);
//! 3. how long after its deadline a runaway loop is stopped (CPU limit and wall limit);
//! 4. the cost of a gated host call (a granted tool) against an ungated one (insecure random),
//!    and the gate's decision on its own;
//! 5. (`WARDEN_BENCH_ONLY=model`) what the host adds to a model call, and the prefix-cache hit
//!    rate with a real model server (`WARDEN_MODEL_URL`); see `model.rs`;
//! 6. (`WARDEN_BENCH_ONLY=memory`) a memory read as the host serves it and from inside an
//!    agent, the write filter's cost, a filtered write; see `memory.rs`;
//! 7. (`WARDEN_BENCH_ONLY=compile`) the compile time and peak memory of the worst components
//!    the host's compile limits still admit, each compiled in a child process of its own;
//! 8. (`WARDEN_BENCH_ONLY=calls`) one agent-to-agent hop against a single trivial run; see
//!    `calls.rs`;
//! 9. (`WARDEN_BENCH_ONLY=cascade`) the cascade's own overhead per task, and its model cost
//!    against sending every task to the team on 20 scripted tasks; see `cascade.rs`;
//! 10. (`WARDEN_BENCH_ONLY=mcp`) an MCP `tools/call` round trip over stdio and HTTP against a
//!     no-work JSON-RPC floor, and `warden mcp`'s startup to its first answer; see `mcp.rs`;
//! 11. (`WARDEN_BENCH_ONLY=serve`) the real `warden serve` over HTTP: startup to the first
//!     answered task, a task's round trip (p50/p99), throughput with concurrent clients, and
//!     in-process throughput without and with the ledger beside it; see `serve.rs`;
//! 12. (`WARDEN_BENCH_ONLY=ledger`) what the ledger adds to a trivial run, sequential and under
//!     load, against the bare run, the sequential runs again after 300 µs of idle each, and what
//!     staging adds to a one-file write; see `ledger.rs`.
//!
//! Build the agents first (`scripts/setup`), then `cargo run --release -p warden-bench`.
//! `--quick` runs fewer iterations (used by CI to check that the bench still works).

use std::path::PathBuf;
use std::sync::Arc;

/// The `warden` binary's allocator (`warden::alloc` says why), so that the figures
/// measured in process are the host's.
#[global_allocator]
static ALLOCATOR: warden::alloc::HostAllocator = warden::alloc::HostAllocator;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warden::capabilities::tools::ToolRegistry;
use warden::gate::KillSwitch;
use warden::policy::Policy;
use warden::{EngineConfig, LoadedAgent, Outcome, RunOptions, Runtime};

fn agent_path(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("{} is missing: run scripts/setup first", path.display());
    }
    Ok(path)
}

fn load(rt: &Runtime, name: &str, body: &str) -> anyhow::Result<LoadedAgent> {
    let policy = Policy::parse("bench.toml", &format!("[agent]\nname = \"{name}\"\n{body}"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(rt.load_file(&agent_path(name)?, policy)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn fresh_instance_latency(agent: &LoadedAgent, n: usize) -> anyhow::Result<()> {
    fresh_instance_latency_with(agent, n, &RunOptions::default(), "hello").await?;
    Ok(())
}

async fn fresh_instance_latency_with(
    agent: &LoadedAgent,
    n: usize,
    opts: &RunOptions,
    label: &str,
) -> anyhow::Result<(Duration, Duration)> {
    for _ in 0..(n / 10).max(100) {
        agent.run("\"bench\"", opts).await?;
    }
    let samples = sorted_samples(agent, n, opts, || {}).await?;
    println!(
        "fresh instance + run ({label}), sequential, n={n}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(percentile(&samples, 0.5)),
        us(percentile(&samples, 0.9)),
        us(percentile(&samples, 0.99)),
        us(*samples.last().unwrap_or(&Duration::ZERO)),
    );
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.99)))
}

/// The times of `n` sequential runs of `agent` (each checked to complete), sorted; `between`
/// runs before each one, outside its time.
async fn sorted_samples(
    agent: &LoadedAgent,
    n: usize,
    opts: &RunOptions,
    mut between: impl FnMut(),
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        between();
        let t = Instant::now();
        let r = agent.run("\"bench\"", opts).await?;
        samples.push(t.elapsed());
        if !matches!(r.outcome, Outcome::Completed { .. }) {
            bail!("hello did not complete: {:?}", r.outcome);
        }
    }
    samples.sort();
    Ok(samples)
}

/// Runs per second of `agent` with `workers` concurrent tasks for `seconds`; printed and returned.
async fn throughput(agent: Arc<LoadedAgent>, seconds: f64, workers: usize) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            let opts = RunOptions::default();
            let mut done = 0u64;
            while Instant::now() < deadline {
                let r = agent.run("\"bench\"", &opts).await?;
                anyhow::ensure!(matches!(r.outcome, Outcome::Completed { .. }), "run failed");
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput (hello, fresh instance per run, {workers} concurrent tasks on {} worker threads): {:.0} runs/s ({total} runs in {secs:.2} s)",
        tokio::runtime::Handle::current().metrics().num_workers(),
        total as f64 / secs
    );
    Ok(total as f64 / secs)
}

async fn deadline_precision(rt: &Runtime, n: usize) -> anyhow::Result<()> {
    for (label, limits, expect) in [
        (
            "cpu limit 20 ms",
            "[limits]\ncpu = \"20 ms\"\nwall = \"10 s\"\n",
            "cpu-limit",
        ),
        (
            "wall limit 20 ms",
            "[limits]\ncpu = \"20 ms\"\nwall = \"20 ms\"\n",
            "wall-limit",
        ),
    ] {
        let agent = load(rt, "probe", limits)?;
        let mut late = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let r = agent
                .run(r#"{"op":"spin"}"#, &RunOptions::default())
                .await?;
            let elapsed = t.elapsed();
            let Outcome::Killed { reason, .. } = &r.outcome else {
                bail!("the runaway loop was not killed: {:?}", r.outcome);
            };
            if reason.as_str() != expect && expect == "cpu-limit" {
                bail!("expected {expect}, got {reason}");
            }
            late.push(elapsed.saturating_sub(Duration::from_millis(20)));
        }
        late.sort();
        println!(
            "runaway loop, {label}: stopped p50 {:.2} ms / max {:.2} ms after the deadline (n={n})",
            late[late.len() / 2].as_secs_f64() * 1e3,
            late.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

/// Nanoseconds per host call of a loop task, net of an empty loop's run (instantiation etc.).
async fn per_call(agent: &LoadedAgent, task: &str, calls: u64) -> anyhow::Result<f64> {
    let empty = task.replace(&format!("\"depth\":{calls}"), "\"depth\":0");
    let base = Instant::now();
    agent.run(&empty, &RunOptions::default()).await?;
    let base = base.elapsed();
    let t = Instant::now();
    let r = agent.run(task, &RunOptions::default()).await?;
    let took = t.elapsed().saturating_sub(base);
    anyhow::ensure!(
        matches!(r.outcome, Outcome::Completed { .. }),
        "loop failed: {:?}",
        r.outcome
    );
    Ok(took.as_secs_f64() * 1e9 / calls as f64)
}

async fn gated_call_cost(rt: &Runtime, calls: u64) -> anyhow::Result<()> {
    let gated = load(rt, "probe", "[tools]\nallow = [\"echo\"]\n")?;
    let ungated = load(rt, "probe", "")?;
    let tool_task = format!(r#"{{"op":"tool-loop","name":"echo","input":"x","depth":{calls}}}"#);
    let rand_task = format!(r#"{{"op":"random-loop","depth":{calls}}}"#);
    let mut g = Vec::new();
    let mut u = Vec::new();
    for _ in 0..5 {
        g.push(per_call(&gated, &tool_task, calls).await?);
        u.push(per_call(&ungated, &rand_task, calls).await?);
    }
    g.sort_by(f64::total_cmp);
    u.sort_by(f64::total_cmp);
    let (g, u) = (g[2], u[2]);

    // The gate's decision alone: the policy lookup and registry lookup a tool call makes.
    let policy = Policy::parse(
        "b.toml",
        "[agent]\nname = \"b\"\n[tools]\nallow = [\"echo\", \"text.upper\"]\n",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let kill = KillSwitch::new("bench".into(), 0);
    let task = warden::credential::TaskContext::new(
        Arc::new(warden::credential::CredentialMinter::new()?),
        warden::credential::TaskClaims {
            task: 0,
            agent: "bench".into(),
            user: "-".into(),
        },
        Duration::from_secs(60),
    )?;
    let mut reg = ToolRegistry::new();
    reg.register("echo", "", true, |_| Ok(String::new()));
    let n = 2_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let r = reg.call(
            &policy.tools,
            None,
            &kill,
            &task,
            std::hint::black_box("echo"),
            "",
        );
        std::hint::black_box(r.ok());
    }
    let decision = t.elapsed().as_secs_f64() * 1e9 / f64::from(n);
    println!(
        "host call cost: gated tool call (echo) {g:.0} ns, ungated call (insecure random) {u:.0} ns; the gate's decision + tool dispatch alone {decision:.0} ns"
    );
    println!(
        "  => the gate adds {:.0} ns, i.e. the gated call costs {:.2}x the same call without its check",
        decision,
        g / (g - decision).max(1.0)
    );
    Ok(())
}

/// The engine as the host runs it; `WARDEN_BENCH_KEEP_RESIDENT` and `WARDEN_BENCH_DECOMMIT_BATCH`
/// override the pooling knobs, to measure them side by side.
fn engine_config(cache: PathBuf) -> EngineConfig {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let mut config = EngineConfig {
        cache_dir: Some(cache),
        ..EngineConfig::default()
    };
    if let Some(v) = env("WARDEN_BENCH_KEEP_RESIDENT") {
        config.memory_keep_resident = v;
    }
    if let Some(v) = env("WARDEN_BENCH_DECOMMIT_BATCH") {
        config.decommit_batch_size = v;
    }
    if let Some(v) = env("WARDEN_BENCH_INIT_COW") {
        config.memory_init_cow = v != 0;
    }
    if let Some(v) = env("WARDEN_BENCH_PAGEMAP") {
        config.memory_pagemap_scan = v != 0;
    }
    println!(
        "engine: keep_resident {} KiB, decommit batch {}, memory_init_cow {}, pagemap scan {}",
        config.memory_keep_resident >> 10,
        config.decommit_batch_size,
        config.memory_init_cow,
        config.memory_pagemap_scan
    );
    config
}

mod calls;
mod cascade;
mod ledger;
mod mcp;
mod memory;
mod model;
mod serve;

/// The generators of the red-team's "compile" class, shared so that the bench measures the
/// very shapes the suite refuses, at the largest size the limits admit.
#[path = "../../tests/e2e/redteam/complex.rs"]
#[allow(dead_code)]
mod complex;

/// Peak and current resident memory of this process, in KiB (Linux; zeros elsewhere).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time this process has used (user + system), from `/proc/self/stat` (Linux; zero
/// elsewhere): on a shared machine it is steadier than wall time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15, in clock ticks of 10 ms on Linux.
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// Compile the component `spec` names, once, without a cache, and print one line: this runs in
/// a child process so that its peak resident memory is the compile's alone.
fn compile_case(spec: &str) -> anyhow::Result<()> {
    let bytes = match spec.strip_prefix("file:") {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}"))?,
        None => complex::generate(spec).with_context(|| format!("unknown spec {spec}"))?,
    };
    let mut config = EngineConfig {
        max_instances: 4,
        ..EngineConfig::default()
    };
    if std::env::var_os("WARDEN_BENCH_UNBOUNDED").is_some() {
        // What the limits prevent: the compile of a component they refuse.
        config.compile = warden::complexity::CompileLimits::unbounded();
    }
    let engine = warden::WardenEngine::new(config)?;
    if std::env::var_os("WARDEN_BENCH_COUNTS").is_some() {
        let t = Instant::now();
        let counts = engine.complexity(&bytes);
        println!(
            "{spec}: checked in {:.1} ms: {counts:?}",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let (_, before) = rss_kib();
    let t = Instant::now();
    let cpu = cpu_time();
    let result = engine.compile(&bytes);
    let took = t.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    let (peak, _) = rss_kib();
    let verdict = match &result {
        Ok(_) => "compiled".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    println!(
        "{spec:<28} {:>6.2} MB {:>8.0} ms (CPU {:>6.0} ms)  peak RSS {:>5} MiB (+{:>4} MiB)  {}",
        bytes.len() as f64 / 1e6,
        took.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        peak / 1024,
        peak.saturating_sub(before) / 1024,
        verdict.chars().take(160).collect::<String>()
    );
    Ok(())
}

/// The worst admitted case of each kind, each in its own process (`WARDEN_BENCH_CASES`
/// overrides the list: comma-separated specs).
fn compile_figures() -> anyhow::Result<()> {
    // The evaluation's component (refused), then the worst of each shape the default limits
    // still admit, then all of them at once in one component.
    let default_cases = [
        "many-functions:600000",
        "many-functions:40000",
        "huge-function:200x40000",
        "huge-function:524288x15",
        "live-values:4999x550",
        "many-blocks:20000x20",
        "merges:2000x5",
        "deep-nesting:10000x40",
        "br-table:20000x140",
        "many-locals:1999x470",
        "many-functions:39000+merges:2000x4+many-blocks:20000x19+huge-function:524288x9",
    ];
    let cases: Vec<String> = match std::env::var("WARDEN_BENCH_CASES") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => default_cases.iter().map(|s| s.to_string()).collect(),
    };
    println!(
        "compile, one component per child process, {} cores:",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let exe = std::env::current_exe()?;
    for spec in cases {
        let status = std::process::Command::new(&exe)
            .args(["--compile-case", &spec])
            .status()?;
        if !status.success() {
            println!("{spec:<28} child failed: {status}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--compile-case") {
        return compile_case(args.get(i + 1).context("--compile-case SPEC")?);
    }
    if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("compile") {
        return compile_figures();
    }
    if std::env::var_os("WARDEN_BENCH_MCP_FLOOR").is_some() {
        return mcp::floor_stdio();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio")?;
    if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("mcp") {
        return rt.block_on(mcp::mcp_figures(quick));
    }
    if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("model") {
        return rt.block_on(model::model_figures(quick));
    }
    if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("cascade") {
        // From a task on the workers, as a host serving tasks runs them.
        return rt.block_on(async { tokio::spawn(cascade::cascade_figures(quick)).await? });
    }
    rt.block_on(async {
        let cache = std::env::temp_dir().join("warden-bench-cache");
        let runtime = Runtime::new(engine_config(cache), ToolRegistry::with_builtins())?;
        let hello = Arc::new(load(&runtime, "hello", "")?);
        println!(
            "machine: {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("ledger") {
            return ledger::ledger_figures(&runtime, quick).await;
        }
        if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("calls") {
            return calls::call_figures(&runtime, quick).await;
        }
        if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("serve") {
            return serve::serve_figures(&runtime, quick).await;
        }
        if std::env::var("WARDEN_BENCH_ONLY").as_deref() == Ok("memory") {
            return memory::memory_figures(&runtime, quick).await;
        }
        fresh_instance_latency(&hello, if quick { 2_000 } else { 50_000 }).await?;
        for workers in [2, 8] {
            throughput(hello.clone(), if quick { 0.5 } else { 3.0 }, workers).await?;
        }
        deadline_precision(&runtime, if quick { 3 } else { 20 }).await?;
        gated_call_cost(&runtime, if quick { 20_000 } else { 200_000 }).await?;
        ledger::ledger_figures(&runtime, quick).await?;
        calls::call_figures(&runtime, quick).await?;
        anyhow::Ok(())
    })
}
