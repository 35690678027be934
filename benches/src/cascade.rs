//! The cascade's figures (`WARDEN_BENCH_ONLY=cascade`), driving the host in-process: a
//! `warden::Runtime` with a ledger, curated memory, the roster of `target/agents.d`
//! (`scripts/setup`) and two `[[model]]`s served by the scripted stub provider, which answers at
//! once; each task is `Runtime::run_cascade` on a fresh copy of `docs/sample-workspace`.
//!
//! (1) **Overhead**: the fast path (router → implementer → gate → documenter → validator →
//!     memory-curator) with a trivial check (`["true"]`), 20 tasks after warm-up: wall time per
//!     task (p50, p95), the gate's command share (a jailed `true`, timed on its own) and the rest —
//!     the cascade's own overhead: five sandboxed stage runs with their ledger rows and audit
//!     records, five model round trips to a stub that answers at once, working-copy copies and
//!     diffs, the staged proposal.
//! (2) **Cost**: 20 scripted tasks, half easy (the fast path's change passes the workspace's real
//!     tests) and half hard (it fails them, the team's passes), run with the cascade
//!     (`fast_path = true`) and with every task sent to the team (`fast_path = false`). `small`
//!     and `large` (the team's implementer) are priced like a small and a 10× dearer model; each
//!     stage's reply carries token counts of the size such a stage sends and gets. Prints the
//!     model cost per task, the verified pass rate of each, and the ratio. No timed assertions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use warden::capabilities::tools::ToolRegistry;
use warden::policy::HostConfig;
use warden::{EngineConfig, Runtime};
use warden_orchestra::model::stub::{StubProvider, StubReply};

use super::{percentile, us};

/// Tasks of each measured set.
const TASKS: usize = 20;

/// `$ per million tokens` of `small` (input, cached input, output); `large` is 10× each.
const SMALL_PRICE: (f64, f64, f64) = (0.15, 0.075, 0.6);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn agents_dir() -> anyhow::Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    let dir = target.join("agents.d");
    ensure!(
        dir.join("implementer.wasm").is_file(),
        "{} is missing: run scripts/setup first",
        dir.display()
    );
    Ok(dir)
}

/// A copy of the sample workspace at `to`; `check` replaces its test command when given.
fn workspace(to: &Path, check: Option<&str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    let from = repo().join("docs/sample-workspace");
    for e in std::fs::read_dir(&from)?.flatten() {
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    if let Some(check) = check {
        std::fs::write(to.join("warden.task.toml"), format!("check = {check}\n"))?;
    }
    Ok(())
}

/// A host of its own: a fresh data directory, the roster, `small` and `large` at the stub.
fn host(data: &Path, url: &str, fast_path: bool) -> anyhow::Result<Runtime> {
    let (i, c, o) = SMALL_PRICE;
    let mut text = format!("[agents]\ndir = \"{}\"\n", agents_dir()?.display());
    for (name, k) in [("small", 1.0), ("large", 10.0)] {
        text.push_str(&format!(
            "[[model]]\nname = \"{name}\"\nurl = \"{url}\"\nid = \"stub\"\ntimeout = \"60 s\"\nretries = 0\n\
             json_schema = true\nprice = {{ input = {}, cached = {}, output = {} }}\n",
            i * k,
            c * k,
            o * k
        ));
    }
    text.push_str(&format!("[cascade]\nfast_path = {fast_path}\n"));
    let config = HostConfig::parse("bench.toml", &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = EngineConfig {
        cache_dir: Some(std::env::temp_dir().join("warden-bench-cache")),
        ..EngineConfig::default()
    };
    let ledger = Arc::new(warden::ledger::Ledger::open(data, 1024)?);
    let memory = Arc::new(warden_orchestra::memory::Memory::open(ledger.dir())?);
    let rt = Runtime::new(engine, ToolRegistry::with_builtins())?.with_host_config(config.clone());
    let models = warden_orchestra::Models::from_config(&config, rt.tls())?;
    Ok(rt
        .with_models(models)
        .with_ledger(ledger)
        .with_memory(memory))
}

/// One stage's scripted reply: its text and the tokens such a stage sends and gets (prompt,
/// of which cached — the stage's stable system prompt —, completion).
fn reply(text: &str, prompt: u64, cached: u64, completion: u64) -> StubReply {
    StubReply::Answer {
        text: text.into(),
        finish_reason: "stop".into(),
        prompt_tokens: prompt,
        cached_tokens: Some(cached),
        completion_tokens: completion,
    }
}

/// The sample's `calc.py`, fixed or wrongly "fixed", as an implementer's reply.
fn change(fixed: bool) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo().join("docs/sample-workspace/calc.py"))?;
    let to = if fixed {
        "len(values)"
    } else {
        "(len(values) + 2)"
    };
    let text = text.replace("(len(values) + 1)", to);
    Ok(format!(
        "The mean divides by one too many.\nFILE: calc.py\n```python\n{text}```\nSUMMARY: mean divides by len\nCONFIDENCE: 0.9\n"
    ))
}

/// The replies of one stage kind.
struct Replies {
    fixed: String,
    wrong: String,
}

impl Replies {
    fn new() -> anyhow::Result<Replies> {
        Ok(Replies {
            fixed: change(true)?,
            wrong: change(false)?,
        })
    }

    fn router(&self) -> StubReply {
        reply(
            r#"{"route": "fast", "complexity": "low", "risk": "low", "confidence": 0.9, "reason": "one function"}"#,
            1_200,
            900,
            60,
        )
    }

    fn implementer(&self, fixed: bool) -> StubReply {
        let text = if fixed { &self.fixed } else { &self.wrong };
        reply(text, 5_200, 1_800, 700)
    }

    /// Documenter, validator, memory-curator: the end of every verified task.
    fn tail(&self) -> [StubReply; 3] {
        [
            reply("The docs need no change.", 2_800, 900, 150),
            reply(r#"{"verdict": "pass", "reasons": []}"#, 2_400, 900, 80),
            reply(r#"{"lessons": []}"#, 1_600, 800, 120),
        ]
    }

    /// Planner, skeptic, tester, the team's implementer, then the tail.
    fn team(&self) -> Vec<StubReply> {
        let mut v = vec![
            reply(
                r#"{"steps": [{"id": "s1", "do": "fix mean in calc.py", "after": []}]}"#,
                2_200,
                900,
                250,
            ),
            reply(r#"{"verdict": "accept", "reasons": []}"#, 2_600, 900, 180),
            reply(
                "The existing test covers it.\nSUMMARY: none\n",
                3_400,
                1_200,
                500,
            ),
            self.implementer(true),
        ];
        v.extend(self.tail());
        v
    }

    /// Every reply of one task: `easy` or hard, with the fast path or the team alone.
    fn task(&self, easy: bool, fast_path: bool) -> Vec<StubReply> {
        match (fast_path, easy) {
            (false, _) => self.team(),
            (true, true) => {
                let mut v = vec![self.router(), self.implementer(true)];
                v.extend(self.tail());
                v
            }
            (true, false) => {
                let mut v = vec![self.router(), self.implementer(false)];
                v.extend(self.team());
                v
            }
        }
    }
}

/// Run one cascade with its scripted replies; the report. Every reply must be used.
async fn one(
    rt: &Runtime,
    stub: &StubProvider,
    ws: &Path,
    replies: Vec<StubReply>,
) -> anyhow::Result<warden::cascade::CascadeReport> {
    let (before, scripted) = (stub.request_count(), replies.len());
    stub.script(replies);
    let report = rt
        .run_cascade("fix the failing test in calc.py", ws, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let made = stub.request_count() - before;
    ensure!(
        made == scripted,
        "the cascade made {made} model calls, {scripted} were scripted: {:?}",
        report.stages
    );
    stub.clear_requests();
    Ok(report)
}

/// (1): the fast path's wall time per task, and what of it the gate's command takes.
async fn overhead(stub: &StubProvider, replies: &Replies, quick: bool) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let rt = host(data.path(), &stub.url(), true)?;
    let n = if quick { 5 } else { TASKS };
    let mut walls = Vec::new();
    for i in 0..(n + 3) {
        let ws = data.path().join(format!("ws-{i}"));
        workspace(&ws, Some(r#"["true"]"#))?;
        let t = Instant::now();
        let r = one(&rt, stub, &ws, replies.task(true, true)).await?;
        let wall = t.elapsed();
        ensure!(r.status == "verified", "not verified: {:?}", r.stages);
        // The first runs compile and load the roster.
        if i >= 3 {
            walls.push(wall);
        }
    }
    walls.sort();
    // The gate's command alone: the same jail (default `[cascade.gate]` limits) running `true`
    // on a copy of the workspace.
    let jail = warden::jail::Jail::locate(warden::jail::JailLimits {
        output: 1 << 20,
        ..warden::jail::JailLimits::default()
    })
    .context("the gate's jail (bubblewrap)")?;
    let dir = tempfile::tempdir()?;
    workspace(dir.path(), None)?;
    let mut gate = Vec::new();
    for i in 0..(n + 3) {
        let t = Instant::now();
        let run = jail.run(&["true".to_string()], dir.path(), b"")?;
        ensure!(run.success(), "`true` failed in the jail");
        if i >= 3 {
            gate.push(t.elapsed());
        }
    }
    gate.sort();
    let (p50, p95, g50) = (
        percentile(&walls, 0.5),
        percentile(&walls, 0.95),
        percentile(&gate, 0.5),
    );
    println!(
        "cascade fast path (router, implementer, gate [\"true\"], documenter, validator, curator; stub answers at once), n={n}: \
         per task p50 {:.1} ms, p95 {:.1} ms",
        us(p50) / 1e3,
        us(p95) / 1e3
    );
    println!(
        "  the gate's command (bubblewrap + `true`, timed alone): p50 {:.1} ms = {:.0}% of the task; \
         the cascade's own overhead (everything else: 5 stage runs, 5 model round trips, ledger, copies): p50 {:.1} ms, {:.1} ms per stage",
        us(g50) / 1e3,
        100.0 * g50.as_secs_f64() / p50.as_secs_f64(),
        us(p50.saturating_sub(g50)) / 1e3,
        us(p50.saturating_sub(g50)) / 1e3 / 5.0
    );
    Ok(())
}

/// What one mode cost over the scripted set.
#[derive(Default)]
struct Tally {
    easy_usd: f64,
    hard_usd: f64,
    verified: usize,
    tasks: usize,
    wall: Duration,
}

impl Tally {
    fn per_task(&self) -> f64 {
        (self.easy_usd + self.hard_usd) / self.tasks.max(1) as f64
    }
}

async fn cost_set(
    stub: &StubProvider,
    replies: &Replies,
    fast_path: bool,
    n: usize,
) -> anyhow::Result<Tally> {
    let data = tempfile::tempdir()?;
    let rt = host(data.path(), &stub.url(), fast_path)?;
    let mut tally = Tally::default();
    for i in 0..n {
        let easy = i % 2 == 0;
        let ws = data.path().join(format!("ws-{i}"));
        workspace(&ws, None)?;
        let t = Instant::now();
        let r = one(&rt, stub, &ws, replies.task(easy, fast_path)).await?;
        tally.wall += t.elapsed();
        let usd = r.model.cost_micro_usd as f64 / 1e6;
        if easy {
            tally.easy_usd += usd;
        } else {
            tally.hard_usd += usd;
        }
        tally.tasks += 1;
        tally.verified += usize::from(r.status == "verified");
    }
    Ok(tally)
}

/// (2): the cascade's model cost against the team's on 20 tasks, half easy.
async fn cost(stub: &StubProvider, replies: &Replies, quick: bool) -> anyhow::Result<()> {
    let n = if quick { 4 } else { TASKS };
    let cascade = cost_set(stub, replies, true, n).await?;
    let team = cost_set(stub, replies, false, n).await?;
    let half = (n / 2).max(1) as f64;
    for (label, t) in [
        ("cascade (fast_path = true)", &cascade),
        ("team only (fast_path = false)", &team),
    ] {
        println!(
            "{label}, {n} tasks (half easy): ${:.5} per task (easy ${:.5}, hard ${:.5}), verified {}/{} ({:.0}%), {:.2} s wall per task (the first loads the roster)",
            t.per_task(),
            t.easy_usd / half,
            t.hard_usd / half,
            t.verified,
            t.tasks,
            100.0 * t.verified as f64 / t.tasks.max(1) as f64,
            t.wall.as_secs_f64() / t.tasks.max(1) as f64
        );
    }
    let ratio = team.per_task() / cascade.per_task();
    println!(
        "  => the cascade costs {:.2}× less than the team at {} pass rate (goal ≥ 3×)",
        ratio,
        if cascade.verified == team.verified {
            "the same"
        } else {
            "a different"
        }
    );
    // With these prices the hard half alone bounds the ratio: a hard task costs the fast path
    // *and* the team, so over an easy share e the ratio is team / (easy·e + hard·(1 − e)).
    let (easy, hard, whole) = (
        cascade.easy_usd / half,
        cascade.hard_usd / half,
        team.per_task(),
    );
    let share_for = |r: f64| (hard - whole / r) / (hard - easy);
    println!(
        "  per task: easy ${easy:.5}, hard ${hard:.5} with the cascade, ${whole:.5} with the team; \
         the cascade reaches 3× when {:.0}% of tasks are easy (2×: {:.0}%), and can never beat {:.1}× (all easy)",
        100.0 * share_for(3.0),
        100.0 * share_for(2.0),
        whole / easy
    );
    Ok(())
}

/// The cascade's figures.
pub async fn cascade_figures(quick: bool) -> anyhow::Result<()> {
    let stub = StubProvider::start().await?;
    let replies = Replies::new()?;
    overhead(&stub, &replies, quick).await?;
    cost(&stub, &replies, quick).await
}
