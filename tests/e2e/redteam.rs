//! The red-team suite: every attack in `tests/redteam/attacks.toml`, run at once beside a stream
//! of well-behaved agents. Each attack must get its expected outcome, every well-behaved run its
//! correct result, and nothing outside the writable folder may change. Prints a table.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden::imports::ImportError;
use warden::{EngineError, LoadError, Outcome, RunOptions};
use warden_tests::{agent, root, runtime};

/// Attacks on the host around the sandbox (the CLI, the compiler, the audit log, reads of files a
/// user names): each is a Rust function, named in `attacks.toml` as `agent = "host:<name>"`.
#[path = "redteam/host.rs"]
mod host;

/// Components that cost the compiler far more than their size (`many-functions:600000`, …).
#[path = "redteam/complex.rs"]
mod complex;

/// The model host of class `model`: a stub provider and a runtime with models, per attack.
#[path = "redteam/model.rs"]
mod model;

#[derive(Deserialize)]
struct Suite {
    attack: Vec<Attack>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Attack {
    name: String,
    class: String,
    agent: String,
    policy: String,
    task: toml::Value,
    expect: String,
    #[serde(default)]
    copies: Option<usize>,
    /// What the attack's stub provider does (attacks whose policy has a `[model]` section).
    #[serde(default)]
    stub: Option<String>,
}

/// A loopback server: `/` answers "pong", `/redirect` sends the client to cloud metadata.
fn server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let reply = if request.starts_with("GET /redirect") {
                    "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong"
                        .to_string()
                };
                let _ = s.write_all(reply.as_bytes());
            });
        }
    });
    port
}

/// A workspace with canaries and planted symlinks; returns (root of everything, workspace).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("notes/out")).unwrap();
    std::fs::create_dir_all(ws.join("secret")).unwrap();
    std::fs::write(ws.join("notes/a.md"), "# Alpha\nread-only note").unwrap();
    std::fs::write(ws.join("notes/out/keep.txt"), "writable").unwrap();
    std::fs::write(ws.join("secret/canary"), "CANARY").unwrap();
    std::fs::write(dir.path().join("outside-canary"), "OUTSIDE").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(ws.join("secret/canary"), ws.join("notes/leak")).unwrap();
        std::os::unix::fs::symlink("/etc", ws.join("notes/etc")).unwrap();
    }
    (dir, ws)
}

/// Everything under `root` except the writable folder: path -> content or link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with("ws/notes/out") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else if meta.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(&p, root, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn module_bytes(spec: &str) -> Vec<u8> {
    if let Some(file) = spec.strip_prefix("wat:") {
        return std::fs::read(root().join("tests/redteam/wat").join(file)).unwrap();
    }
    if let Some(name) = spec.strip_prefix("truncated:") {
        let bytes = std::fs::read(agent(name)).unwrap();
        return bytes[..bytes.len() / 2].to_vec();
    }
    if let Some(bytes) = complex::generate(spec) {
        return bytes;
    }
    match spec {
        "garbage" => b"\0asm\x0d\0\x01\0\xff\xff\xff\xffnot a component at all".to_vec(),
        // Not wasm, not text: the first bytes of a JPEG.
        "not-wasm" => b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x80\x81\xfe not an agent".to_vec(),
        "oversized" => vec![0u8; 65 << 20],
        name => std::fs::read(agent(name)).unwrap(),
    }
}

fn describe_refusal(err: &LoadError) -> String {
    let kind = match err {
        LoadError::Import {
            refusal:
                ImportError::Unknown { .. }
                | ImportError::NotAnInterface { .. }
                | ImportError::Mismatch { .. },
            ..
        } => "unknown",
        LoadError::Import {
            refusal: ImportError::NotGranted { .. },
            ..
        } => "not-granted",
        LoadError::Import {
            refusal: ImportError::Outdated { .. },
            ..
        } => "outdated",
        LoadError::Import {
            refusal: ImportError::Duplicate { .. },
            ..
        } => "duplicate",
        LoadError::Engine(EngineError::TooLarge { .. }) => "too-large",
        LoadError::Engine(EngineError::TooComplex(_)) => "too-complex",
        LoadError::Engine(_) => "invalid",
        _ => "other",
    };
    format!("refused:{kind}")
}

fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Completed { output } => {
            format!("completed:{}", output.chars().take(40).collect::<String>())
        }
        Outcome::AgentError { message, .. } => format!(
            "agent-error:{}",
            message.chars().take(60).collect::<String>()
        ),
        Outcome::Escalated { reason, .. } => format!("escalated:{reason}"),
        Outcome::Killed {
            reason, capability, ..
        } => format!("killed:{reason}:{capability}"),
    }
}

/// Does `actual` satisfy `expect` (a prefix match on each `:`-separated part)?
fn matches(expect: &str, actual: &str) -> bool {
    let (ek, erest) = expect.split_once(':').unwrap_or((expect, ""));
    let (ak, arest) = actual.split_once(':').unwrap_or((actual, ""));
    if ek != ak {
        return false;
    }
    match ek {
        "completed" | "agent-error" | "contained" | "escalated" | "run-error" => {
            arest.contains(erest)
        }
        "killed" => {
            let (er, ecap) = erest.split_once(':').unwrap_or((erest, ""));
            let (ar, acap) = arest.split_once(':').unwrap_or((arest, ""));
            er == ar && acap.starts_with(ecap)
        }
        _ => erest == arest,
    }
}

async fn run_attack(attack: Attack, port: u16) -> (Attack, Vec<String>, Option<String>) {
    let (dir, ws) = workspace();
    let before = snapshot(dir.path());
    let body = attack.policy.replace("{port}", &port.to_string());
    let policy_text = format!("{body}\nagent.name = \"redteam\"\n");
    let policy = warden::policy::Policy::parse("attack.toml", &policy_text)
        .unwrap_or_else(|e| panic!("{}: bad policy: {}", attack.name, e.render(false)));
    let task = match &attack.task {
        toml::Value::String(s) => s.clone(),
        v => serde_json::to_string(v).unwrap(),
    }
    .replace("{port}", &port.to_string());
    if let Some(name) = attack.agent.strip_prefix("host:") {
        let actual = host::run(name, &task, port).await;
        let after = snapshot(dir.path());
        let damage = (before != after).then(|| "the workspace changed".to_string());
        return (attack, actual, damage);
    }
    let bytes = module_bytes(&attack.agent);
    // A policy that grants a model runs on a host whose models are a stub of the attack's own.
    let copies = attack.copies.unwrap_or(1);
    let model_host = if policy.model.is_empty() {
        assert!(
            attack.stub.is_none(),
            "{}: `stub` needs a [model] policy",
            attack.name
        );
        None
    } else {
        Some(model::host(runtime(), attack.stub.as_deref(), copies).await)
    };
    let host = model_host.as_ref().map_or(runtime(), |h| &h.runtime);
    let (mut leaked, mut sent) = (false, 0);
    let actual = match host.load(&bytes, policy) {
        Err(e) => vec![describe_refusal(&e)],
        Ok(loaded) => {
            let loaded = std::sync::Arc::new(loaded);
            let mut runs = Vec::new();
            for _ in 0..copies {
                let (loaded, task, ws) = (loaded.clone(), task.clone(), ws.clone());
                runs.push(tokio::spawn(async move {
                    let options = RunOptions {
                        workspace: Some(ws),
                        user: None,
                        on_begin: None,
                        queued: None,
                        client: None,
                    };
                    match loaded.run(&task, &options).await {
                        Ok(report) => (
                            describe_outcome(&report.outcome),
                            model::leaks(&report),
                            model::sent(&report),
                        ),
                        Err(e) => (format!("run-error:{e}"), false, 0),
                    }
                }));
            }
            let mut outs = Vec::new();
            for r in runs {
                let (out, leak, calls) = r.await.unwrap();
                leaked |= leak;
                sent += calls;
                outs.push(out);
            }
            outs
        }
    };
    let after = snapshot(dir.path());
    if leaked {
        return (
            attack,
            actual,
            Some("the provider's API key reached a run report".into()),
        );
    }
    if let Some(h) = &model_host
        && h.stub.request_count() as u64 > sent
    {
        let got = h.stub.request_count();
        return (
            attack,
            actual,
            Some(format!(
                "the provider got {got} requests; the host sent {sent} calls"
            )),
        );
    }
    let damage = (before != after).then(|| {
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k.display().to_string())
            .chain(
                before
                    .keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("-{}", k.display())),
            )
            .collect();
        changed.join(", ")
    });
    (attack, actual, damage)
}

#[tokio::test(flavor = "multi_thread")]
async fn redteam_suite() {
    let text = std::fs::read_to_string(root().join("tests/redteam/attacks.toml")).unwrap();
    let suite: Suite = toml::from_str(&text).expect("attacks.toml parses");
    assert!(
        suite.attack.len() >= 40,
        "the suite must hold at least 40 attacks"
    );
    let port = server();

    // Well-behaved agents, running all the while.
    let honest = tokio::spawn(async move {
        let hello = std::sync::Arc::new(warden_tests::load("hello", "").unwrap());
        let mut handles = Vec::new();
        for i in 0..300 {
            let hello = hello.clone();
            handles.push(tokio::spawn(async move {
                let r = hello
                    .run(&format!("\"caller {i}\""), &RunOptions::default())
                    .await
                    .unwrap();
                match r.outcome {
                    Outcome::Completed { output } if output == format!("hello, caller {i}") => true,
                    other => {
                        eprintln!("well-behaved run {i} got {other:?}");
                        false
                    }
                }
            }));
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut good = 0;
        for h in handles {
            good += usize::from(h.await.unwrap());
        }
        good
    });

    // Every attack at once, but the `gate` class after the others: its controls (a fork bomb
    // with a raised process limit, a CPU spin, an output flood, run on purpose against a
    // weakened jail) load the whole machine, which would starve the attacks that race a
    // one-second deadline of their own (the `calls` class's tree limits). Rows keep file order.
    let (gate, rest): (Vec<_>, Vec<_>) = suite
        .attack
        .clone()
        .into_iter()
        .enumerate()
        .partition(|(_, a)| a.class == "gate");
    let mut rows = vec![None; suite.attack.len()];
    for group in [rest, gate] {
        let mut handles = Vec::new();
        for (i, attack) in group {
            handles.push((i, tokio::spawn(run_attack(attack, port))));
        }
        for (i, h) in handles {
            rows[i] = Some(h.await.expect("the host never panics"));
        }
    }
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| r.expect("every attack ran"))
        .collect();
    let good = honest.await.unwrap();

    let mut failures = Vec::new();
    let mut by_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut table =
        String::from("\n| # | class | attack | expected | actual | |\n|---|---|---|---|---|---|\n");
    for (i, (attack, actual, damage)) in rows.iter().enumerate() {
        let all_ok = actual.iter().all(|a| matches(&attack.expect, a)) && damage.is_none();
        let shown = if actual.len() > 1 {
            let first = &actual[0];
            let same = actual.iter().filter(|a| *a == first).count();
            format!("{first} (×{same} of {})", actual.len())
        } else {
            actual.first().cloned().unwrap_or_default()
        };
        let entry = by_class.entry(attack.class.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(all_ok);
        table.push_str(&format!(
            "| {} | {} | {} | {} | {}{} | {} |\n",
            i + 1,
            attack.class,
            attack.name,
            attack.expect,
            // Agent output is untrusted text: escaped before it reaches whoever runs the suite.
            warden::terminal::line(&shown).replace('|', "/"),
            damage
                .as_ref()
                .map(|d| format!(" DAMAGE: {d}"))
                .unwrap_or_default(),
            if all_ok { "ok" } else { "FAIL" }
        ));
        if !all_ok {
            failures.push(format!(
                "{}: expected {}, got {actual:?} {damage:?}",
                attack.name, attack.expect
            ));
        }
    }
    let summary: Vec<String> = by_class
        .iter()
        .map(|(c, (n, ok))| format!("{c}: {ok}/{n}"))
        .collect();
    let rss = peak_rss_kib();
    table.push_str(&format!(
        "\n{} attacks ({}), {} of 300 well-behaved runs correct, host peak RSS {} MiB\n",
        rows.len(),
        summary.join(", "),
        good,
        rss / 1024
    ));
    println!("{table}");
    let report = root().join("target/redteam-report.md");
    let _ = std::fs::write(&report, &table);

    assert!(
        failures.is_empty(),
        "attacks not contained:\n{}",
        failures.join("\n")
    );
    assert_eq!(good, 300, "a well-behaved agent was disturbed");
    assert!(
        rss < 4 << 20,
        "host peak RSS {rss} KiB is over the 4 GiB bound"
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
