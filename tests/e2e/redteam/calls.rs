//! Host attacks of the `calls` class: agents that call agents to get past the host — recursion
//! and fan-out bombs, identity laundering through a chain, a callee widening its caller's grant,
//! a name that is a path, an impostor policy in the agents directory, a callee spending past its
//! tree's budget, a tree that would wait on its own instance slots, a callee called at the tree's
//! last moment so that it is killed (and would be demoted), a callee outliving its tree, an
//! oversized input, a user reaching through a granted agent one their roles do not list, and a
//! callee's policy narrowed where the directory's watch does not look (through a second name, a
//! re-pointed release link) or so that size and time stay the same. Each builds a host of its own (`../calls/host.rs`) with an agents directory
//! of real components, runs the attack, and judges it: `contained:<what>`, or `breach:<what>`.

#[path = "../calls/host.rs"]
mod host;

use std::time::{Duration, Instant};

use host::{Host, call};
use serde_json::{Value, json};
use warden::Outcome;
use warden::store::TaskRecord;
use warden_tests::probe;

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    let verdict = match name {
        "calls-recursion-bomb" => recursion_bomb().await,
        "calls-fan-out-bomb" => fan_out_bomb().await,
        "calls-exponential-bomb" => exponential_bomb().await,
        "calls-identity-laundering" => identity_laundering().await,
        "calls-callee-widens-its-caller" => callee_widens_its_caller().await,
        "calls-name-a-path" => name_a_path().await,
        "calls-impostor-policy" => impostor_policy().await,
        "calls-budget-laundering" => budget_laundering().await,
        "calls-slot-deadlock" => slot_deadlock().await,
        "calls-demote-a-rival-at-the-deadline" => demote_a_rival().await,
        "calls-outlive-the-tree" => outlive_the_tree().await,
        "calls-oversized-input" => oversized_input().await,
        "calls-agent-laundering" => agent_laundering().await,
        "calls-stale-policy" => stale_policy().await,
        _ => return None,
    };
    Some(vec![verdict])
}

fn output(r: &warden::RunReport) -> Result<&str, String> {
    match &r.outcome {
        Outcome::Completed { output } => Ok(output),
        other => Err(format!(
            "breach:the caller ended {}",
            warden::outcome_name(other)
        )),
    }
}

/// Every task below `id`, depth first, with its depth.
fn tree(host: &Host, id: u64, depth: u32, out: &mut Vec<(u32, TaskRecord)>) {
    for c in host.children(id) {
        let cid = c.id;
        out.push((depth, c));
        tree(host, cid, depth + 1, out);
    }
}

async fn recursion_bomb() -> String {
    // An agent that calls itself, which calls itself, … (default max_depth 4).
    let host = Host::new("");
    host.probe("bomb", "[agents]\ncall = [\"bomb\"]\n");
    let r = host
        .run(
            "bomb",
            &probe("bomb", &[("name", json!("bomb")), ("depth", json!(1))]),
            None,
        )
        .await;
    if let Err(b) = output(&r) {
        return b;
    }
    let mut all = Vec::new();
    tree(&host, r.task, 1, &mut all);
    let deepest = all.iter().map(|(d, _)| *d).max().unwrap_or(0);
    match (all.len(), deepest) {
        (4, 4) => "contained:depth".into(),
        (n, d) => format!("breach:{n} tasks, {d} deep"),
    }
}

async fn fan_out_bomb() -> String {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    let task = probe(
        "call-many",
        &[
            ("name", json!("hello")),
            ("input", json!("\"x\"")),
            ("depth", json!(1000)),
        ],
    );
    let r = host.run("front", &task, None).await;
    let out = match output(&r) {
        Ok(o) => o.to_owned(),
        Err(b) => return b,
    };
    let ran = host.children(r.task).len();
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    match (ran, v["errors"]["refused"]["count"].as_u64()) {
        (8, Some(992)) => "contained:fan-out".into(),
        (n, refused) => format!("breach:{n} callees ran, {refused:?} refused"),
    }
}

async fn exponential_bomb() -> String {
    // Every task calls itself 10 times: without bounds, 10^depth tasks.
    let host = Host::new("max_depth = 3\nmax_fanout = 4\n");
    host.probe("bomb", "[agents]\ncall = [\"bomb\"]\n");
    let r = host
        .run(
            "bomb",
            &probe("bomb", &[("name", json!("bomb")), ("depth", json!(10))]),
            None,
        )
        .await;
    if let Err(b) = output(&r) {
        return b;
    }
    let mut all = Vec::new();
    tree(&host, r.task, 1, &mut all);
    // 4 + 16 + 64 callees: 4 calls of each task run, up to depth 3.
    if all.len() == 84 && all.iter().all(|(d, _)| *d <= 3) {
        "contained:tree-bounded".into()
    } else {
        format!("breach:{} tasks in the tree", all.len() + 1)
    }
}

const ROLES: &str = "[role.reader]\nagents = [\"*\"]\nfs.read = [\"**\"]\n";

fn reader() -> std::sync::Arc<warden::user::User> {
    let roles = warden::policy::Roles::parse("roles.toml", ROLES).unwrap();
    std::sync::Arc::new(warden::user::User::new("mallory", vec!["reader".into()], &roles).unwrap())
}

async fn identity_laundering() -> String {
    // A user who may only read; three agents that may all write; the last one writes.
    let host = Host::new("");
    let w = "[fs]\nwrite = [\"**\"]\n";
    host.probe("front", &format!("[agents]\ncall = [\"middle\"]\n{w}"));
    host.probe("middle", &format!("[agents]\ncall = [\"back\"]\n{w}"));
    host.probe("back", w);
    let write = probe(
        "write",
        &[("path", json!("/docs/a.md")), ("text", json!("laundered"))],
    );
    let r = host
        .run(
            "front",
            &call("middle", &call("back", &write)),
            Some(reader()),
        )
        .await;
    if let Err(b) = output(&r) {
        return b;
    }
    let mut all = Vec::new();
    tree(&host, r.task, 1, &mut all);
    match all.last() {
        Some((2, back)) if back.status == "killed" && back.user == "mallory" => {
            "contained:killed-at-the-last-hop".into()
        }
        Some((_, back)) => format!(
            "breach:the last hop ended {} for {}",
            back.status, back.user
        ),
        None => "breach:no hop ran".into(),
    }
}

async fn agent_laundering() -> String {
    // Mallory's roles list only `front`; `front` may call `vault`, which may write everything.
    let roles = warden::policy::Roles::parse(
        "roles.toml",
        "[role.front-only]\nagents = [\"front\"]\nfs.write = [\"**\"]\n",
    )
    .unwrap();
    let mallory = std::sync::Arc::new(
        warden::user::User::new("mallory", vec!["front-only".into()], &roles).unwrap(),
    );
    let host = Host::new("");
    let w = "[fs]\nwrite = [\"**\"]\n";
    host.probe("front", &format!("[agents]\ncall = [\"vault\"]\n{w}"));
    host.probe("vault", w);
    let write = probe(
        "write",
        &[("path", json!("/docs/a.md")), ("text", json!("laundered"))],
    );
    let r = host
        .run("front", &call("vault", &write), Some(mallory))
        .await;
    let out = match output(&r) {
        Ok(o) => o.to_owned(),
        Err(b) => return b,
    };
    let written = std::fs::read_to_string(host.root().join("ws/docs/a.md")).unwrap_or_default();
    if written.contains("laundered") {
        return "breach:the unlisted agent wrote".into();
    }
    match (host.children(r.task).first(), out.contains("\"refused\"")) {
        (None, true) => "contained:refused-at-the-hop".into(),
        (Some(c), _) => format!("breach:the unlisted agent ran ({})", c.status),
        (None, false) => format!("breach:the call was not refused: {out}"),
    }
}

async fn callee_widens_its_caller() -> String {
    // No user: the caller may read docs only; its callee's own policy reads everything.
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"wide\"]\n[fs]\nread = [\"docs/**\"]\n",
    );
    host.probe("wide", "[fs]\nread = [\"**\"]\n");
    let r = host
        .run(
            "front",
            &call("wide", &probe("read", &[("path", json!("/src/main.rs"))])),
            None,
        )
        .await;
    let out = match output(&r) {
        Ok(o) => o.to_owned(),
        Err(b) => return b,
    };
    if out.contains("fn main") {
        return "breach:the callee read past its caller's grant".into();
    }
    match host.children(r.task).first() {
        Some(c) if c.status == "killed" => "contained:bounded-by-the-caller".into(),
        Some(c) => format!("breach:the callee ended {}", c.status),
        None => "breach:no callee ran".into(),
    }
}

async fn name_a_path() -> String {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    // A component beside the directory, where `../` would lead.
    std::fs::copy(
        warden_tests::agent("hello"),
        host.root().join("outside.wasm"),
    )
    .unwrap();
    std::fs::write(
        host.root().join("outside.toml"),
        "[agent]\nname = \"outside\"\n",
    )
    .unwrap();
    let outside = host.root().join("outside");
    for name in [
        "../outside",
        outside.to_str().unwrap(),
        "hello.wasm",
        "HELLO",
        "hello/../hello",
    ] {
        let r = host.run("front", &call(name, "\"x\""), None).await;
        if let Some(ran) = host.children(r.task).first() {
            return format!("breach:`{name}` ran agent `{}`", ran.agent);
        }
        match &r.outcome {
            Outcome::Killed { capability, .. } if capability == "agents" => {}
            other => return format!("breach:`{name}` {}", warden::outcome_name(other)),
        }
    }
    "contained:killed".into()
}

async fn impostor_policy() -> String {
    // `helper.toml` in the directory is another agent's (broader) policy.
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"helper\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("helper", "");
    std::fs::write(
        host.agents().join("helper.toml"),
        "[agent]\nname = \"admin\"\n[fs]\nread = [\"**\"]\n",
    )
    .unwrap();
    let r = host
        .run(
            "front",
            &call("helper", &probe("read", &[("path", json!("/docs/a.md"))])),
            None,
        )
        .await;
    let out = match output(&r) {
        Ok(o) => o.to_owned(),
        Err(b) => return b,
    };
    if host.children(r.task).is_empty() && out.contains("\"refused\"") {
        "contained:refused".into()
    } else {
        format!("breach:{out}")
    }
}

async fn budget_laundering() -> String {
    // The root spends 60 of its 100 tokens, then calls a callee with 100 000 of its own.
    let stub = warden::orchestra::model::stub::StubProvider::start()
        .await
        .unwrap();
    let host = Host::with_models(&stub.url());
    host.probe(
        "front",
        "[agents]\ncall = [\"rich\"]\n[model]\nallow = [\"small\"]\ntokens = 100\n",
    );
    host.probe("rich", "[model]\nallow = [\"small\"]\ntokens = 100000\n");
    let ask = json!({"op": "model", "model": "small", "max_tokens": 10, "text": "hi"});
    let mut task = json!({
        "op": "call",
        "name": "rich",
        "input": json!({"op": "model-loop", "model": "small", "max_tokens": 10, "text": "hi"}).to_string(),
    });
    for _ in 0..4 {
        let mut first = ask.clone();
        first["then"] = task;
        task = first;
    }
    let r = host.run("front", &task.to_string(), None).await;
    if let Err(b) = output(&r) {
        return b;
    }
    let tokens = |t: &TaskRecord| {
        let m = &t
            .outcome
            .as_ref()
            .map(|o| o["usage"]["model"].clone())
            .unwrap_or_default();
        m["prompt_tokens"].as_u64().unwrap_or(0) + m["completion_tokens"].as_u64().unwrap_or(0)
    };
    let callees = host.children(r.task);
    let spent: u64 = tokens(&host.task(r.task)) + callees.iter().map(tokens).sum::<u64>();
    if callees.len() != 1 || callees[0].status != "escalated" || tokens(&callees[0]) == 0 {
        return "breach:the callee did not spend until its budget stopped it".into();
    }
    if spent <= 100 {
        "contained:budget".into()
    } else {
        format!("breach:the tree spent {spent} of its 100 tokens")
    }
}

async fn slot_deadlock() -> String {
    // Two slots, and trees three deep: waiting for a slot would deadlock every tree.
    let host = Host::with_slots(2, "");
    host.probe("front", "[agents]\ncall = [\"middle\"]\n");
    host.probe("middle", "[agents]\ncall = [\"back\"]\n");
    host.probe("back", "");
    let task = call(
        "middle",
        &call("back", &probe("echo", &[("text", json!("deep"))])),
    );
    let host = std::sync::Arc::new(host);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let (host, task) = (host.clone(), task.clone());
        runs.push(tokio::spawn(
            async move { host.run("front", &task, None).await },
        ));
    }
    let all = async {
        let mut outs = Vec::new();
        for r in runs {
            outs.push(r.await.unwrap());
        }
        outs
    };
    match tokio::time::timeout(Duration::from_secs(60), all).await {
        Err(_) => "breach:the trees deadlocked".into(),
        Ok(reports) if reports.iter().all(|r| output(r).is_ok()) => {
            let refused = reports
                .iter()
                .filter(|r| output(r).is_ok_and(|o| o.contains("no free instance slot")))
                .count();
            format!("contained:no-deadlock ({refused} of 4 trees refused a slot)")
        }
        Ok(_) => "breach:a caller did not complete".into(),
    }
}

async fn demote_a_rival() -> String {
    // The caller hands its rival a task longer than its tree has left (3 s of the rival's own
    // 20): the rival is killed at the tree's deadline, which a demotion would blame on it.
    // (3 s, not 1: on a loaded machine a 1 s tree could end before the rival even started.)
    let host = Host::new("tree_wall = \"3 s\"\n");
    host.probe("front", "[agents]\ncall = [\"rival\"]\n");
    host.probe("rival", "[limits]\ncpu = \"20 s\"\nwall = \"20 s\"\n");
    let r = host
        .run("front", &call("rival", &probe("spin-calls", &[])), None)
        .await;
    let rival = match killed_callee(&host, &r) {
        Ok(c) => c,
        Err(b) => return b,
    };
    let store = host.runtime.ledger().unwrap().store();
    let trust = store.trust(&rival.agent_id).unwrap().unwrap();
    if trust.demoted_by_task.is_some() {
        "breach:the rival was demoted for its caller's deadline".into()
    } else {
        "contained:not-demoted".into()
    }
}

/// The one callee of `r`'s task, killed for its wall limit; or the breach.
fn killed_callee(host: &Host, r: &warden::RunReport) -> Result<TaskRecord, String> {
    output(r)?;
    let Some(callee) = host.children(r.task).into_iter().next() else {
        return Err("breach:the callee never ran".into());
    };
    let reason = callee.outcome.as_ref().map(|o| o["reason"].clone());
    if reason != Some(json!("wall-limit")) {
        return Err(format!(
            "breach:the callee ended {} ({reason:?})",
            callee.status
        ));
    }
    Ok(callee)
}

async fn outlive_the_tree() -> String {
    // The callee's own wall limit is an hour, its caller's too; the tree's is three seconds.
    let host = Host::new("tree_wall = \"3 s\"\n");
    host.probe(
        "front",
        "[agents]\ncall = [\"stay\"]\n[limits]\ncpu = \"5 s\"\nwall = \"1 h\"\n",
    );
    host.probe("stay", "[limits]\ncpu = \"10 min\"\nwall = \"1 h\"\n");
    let started = Instant::now();
    let r = host
        .run("front", &call("stay", &probe("spin-calls", &[])), None)
        .await;
    let stay = match killed_callee(&host, &r) {
        Ok(c) => c,
        Err(b) => return b,
    };
    let ran = stay.outcome.as_ref().unwrap()["usage"]["elapsed_us"]
        .as_u64()
        .unwrap_or(u64::MAX);
    if ran < 3_500_000 && started.elapsed() < Duration::from_secs(6) {
        "contained:cut".into()
    } else {
        format!("breach:the callee ran {} ms", ran / 1000)
    }
}

async fn oversized_input() -> String {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    let big = format!("\"{}\"", "x".repeat(2 << 20));
    let r = host.run("front", &call("hello", &big), None).await;
    let out = match output(&r) {
        Ok(o) => o.to_owned(),
        Err(b) => return b,
    };
    if host.children(r.task).is_empty() && out.contains("invalid-input") {
        "contained:invalid-input".into()
    } else {
        "breach:the input reached the callee".into()
    }
}

/// The callee's policy is narrowed (from `docs/` to `src/`) while the host runs, in three ways its agents
/// directory's inotify watch could miss or a size-and-time check could: written through a second
/// name (a hard link outside the directory), a new release behind a re-pointed `current` link,
/// and rewritten in place with the same size and its modification time set back. The next call
/// must run the narrowed policy: the old, wider one reading a file is a breach.
async fn stale_policy() -> String {
    const WIDE: &str = "[agent]\nname = \"late\"\n[fs]\nread = [\"docs/**\"]\n";
    // The same size: `src` is a letter shorter than `docs`, and a space makes up for it.
    const NARROW: &str = "[agent]\nname = \"late\"\n[fs]\nread = [\"src/**\"] \n";
    let read = call("late", &probe("read", &[("path", json!("/docs/a.md"))]));
    assert_eq!(WIDE.len(), NARROW.len());
    for how in ["a second name", "a re-pointed link", "same size and time"] {
        let host = if how == "a re-pointed link" {
            Host::linked()
        } else {
            Host::new("")
        };
        host.probe(
            "front",
            "[agents]\ncall = [\"late\"]\n[fs]\nread = [\"**\"]\n",
        );
        host.probe("late", "");
        let policy = host.agents().join("late.toml");
        std::fs::write(&policy, WIDE).unwrap();
        let before = host.run("front", &read, None).await;
        if !output(&before).is_ok_and(|o| o.contains("alpha docs")) {
            return format!(
                "breach:the setup's call failed ({how}): {:?}",
                before.outcome
            );
        }
        match how {
            "a second name" => {
                let elsewhere = host.ws().join("late.toml");
                std::fs::hard_link(&policy, &elsewhere).unwrap();
                std::fs::write(&elsewhere, NARROW).unwrap();
            }
            "a re-pointed link" => {
                host.release(2);
                std::fs::write(&policy, NARROW).unwrap();
            }
            _ => {
                let mtime = std::fs::metadata(&policy).unwrap().modified().unwrap();
                let file = std::fs::File::options().write(true).open(&policy).unwrap();
                std::io::Write::write_all(&mut &file, NARROW.as_bytes()).unwrap();
                file.set_modified(mtime).unwrap();
            }
        }
        let after = host.run("front", &read, None).await;
        let out = match output(&after) {
            Ok(o) => o.to_owned(),
            Err(b) => return b,
        };
        if out.contains("alpha docs") {
            return format!("breach:the old policy ran after {how}");
        }
        // `docs/` is no longer granted: the read finds no such folder.
        if !out.contains("No such file or directory") {
            return format!("breach:after {how} the read did not fail as unseen: {out}");
        }
    }
    "contained:narrowed-at-once".into()
}
