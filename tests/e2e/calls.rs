//! End-to-end: agents calling agents through the host — real components (the `probe` agent under
//! several names, `hello`) in a temporary agents directory beside their policies, a ledger, and
//! users with roles. A chain three deep carries its user to the last hop; the confused deputy
//! cannot write through a chain; a call outside `[agents] call` kills the caller; depth and
//! fan-out are bounded; a killed callee is demoted while its caller completes; the tree shares
//! one model budget; `warden task show | trace` show every hop and `warden audit verify` passes.

#[path = "calls/host.rs"]
mod host;

use std::sync::Arc;

use host::{Host, call, error_kind, ok_text};
use serde_json::{Value, json};
use warden::KillReason;
use warden::store::TaskRecord;
use warden::user::User;
use warden_tests::{completed, killed, probe};

const ROLES: &str = r#"
[role.docs-reader]
agents = ["*"]
fs.read = ["docs/**"]

[role.reader]
agents = ["*"]
fs.read = ["**"]

[role.writer]
agents = ["*"]
fs.write = ["**"]

[role.front-only]
agents = ["front"]
fs.read = ["**"]
"#;

fn user(roles: &[&str]) -> Arc<User> {
    let file = warden::policy::Roles::parse("roles.toml", ROLES).unwrap();
    Arc::new(
        User::new(
            "alice",
            roles.iter().map(|r| r.to_string()).collect(),
            &file,
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_three_deep_carries_the_user_to_the_last_hop() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"middle\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe(
        "middle",
        "[agents]\ncall = [\"back\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("back", "[fs]\nread = [\"**\"]\n");
    let alice = user(&["docs-reader"]);
    let chain = |path: &str| {
        call(
            "middle",
            &call("back", &probe("read", &[("path", json!(path))])),
        )
    };

    // The last hop reads what its user may read...
    let r = host
        .run("front", &chain("/docs/a.md"), Some(alice.clone()))
        .await;
    let middle = ok_text(completed(&r));
    assert_eq!(ok_text(&middle), "alpha docs");
    let root = host.task(r.task);
    let hops = host.children(r.task);
    assert_eq!(hops.len(), 1);
    let last = host.children(hops[0].id);
    assert_eq!(last.len(), 1, "{last:?}");
    for t in [&root, &hops[0], &last[0]] {
        assert_eq!(t.user, "alice", "task {} acts for the user", t.id);
        assert_eq!(t.grant["roles"], json!(["docs-reader"]), "{}", t.grant);
    }
    assert_eq!(
        (root.parent, hops[0].parent, last[0].parent),
        (None, Some(root.id), Some(hops[0].id))
    );
    assert_eq!(
        (hops[0].agent.as_str(), last[0].agent.as_str()),
        ("middle", "back")
    );
    assert_eq!(last[0].status, "completed");

    // ...and is killed at what its user may not, though every agent's policy allows it.
    let r = host.run("front", &chain("/src/main.rs"), Some(alice)).await;
    let middle = ok_text(completed(&r));
    assert_eq!(error_kind(&middle), "killed", "{middle}");
    let back = &host.children(host.children(r.task)[0].id)[0];
    assert_eq!(back.status, "killed");
    let detail = back.outcome.as_ref().unwrap()["detail"].to_string();
    assert!(detail.contains("not allowed to the user"), "{detail}");

    // Each hop has its record in its caller's task, with the user.
    let calls = host.audit("agent-call");
    let hop = calls
        .iter()
        .find(|c| c["task"] == json!(r.task))
        .expect("the root's call is audited");
    assert_eq!(hop["user"], "alice");
    assert_eq!(hop["detail"]["callee"], "middle");
    assert_eq!(hop["detail"]["outcome"], "completed");
    assert!(calls.iter().any(|c| c["detail"]["outcome"] == "killed"
        && c["detail"]["callee"] == "back"
        && c["user"] == "alice"));
    host.verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_confused_deputy_cannot_write_through_a_chain() {
    let host = Host::new("");
    let writes = "[fs]\nwrite = [\"**\"]\n";
    host.probe("front", &format!("[agents]\ncall = [\"writer\"]\n{writes}"));
    host.probe("writer", writes);
    let task = call(
        "writer",
        &probe(
            "write",
            &[("path", json!("/docs/new.md")), ("text", json!("pwned"))],
        ),
    );
    // A user who may only read asks an agent that may write to call one that writes.
    let r = host.run("front", &task, Some(user(&["reader"]))).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "killed", "{out}");
    assert!(!host.ws().join("docs/new.md").exists());
    let writer = &host.children(r.task)[0];
    assert_eq!(writer.status, "killed");
    assert!(
        writer.outcome.as_ref().unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("not allowed to the user")
    );
    // Its twin: a user who may write gets the write (proposed: the writer is at level 1).
    let r = host.run("front", &task, Some(user(&["writer"]))).await;
    assert_eq!(ok_text(completed(&r)), "written");
    let writer = &host.children(r.task)[0];
    assert_eq!(
        (writer.status.as_str(), writer.staging.as_str()),
        ("completed", "proposed")
    );
    host.verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_cannot_do_more_than_its_caller_without_a_user() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"reader\"]\n[fs]\nread = [\"docs/**\"]\n",
    );
    host.probe("reader", "[fs]\nread = [\"**\"]\n");
    let read = |path: &str| call("reader", &probe("read", &[("path", json!(path))]));
    let r = host.run("front", &read("/docs/a.md"), None).await;
    assert_eq!(ok_text(completed(&r)), "alpha docs");
    let r = host.run("front", &read("/src/main.rs"), None).await;
    assert_eq!(error_kind(completed(&r)), "killed");
    let reader = &host.children(r.task)[0];
    assert_eq!(reader.user, "-");
    assert_eq!(reader.outcome.as_ref().unwrap()["reason"], "out-of-scope");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_outside_the_policy_kills_the_caller() {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    host.probe("back", "");
    let r = host.run("front", &call("hello", "\"world\""), None).await;
    assert_eq!(ok_text(completed(&r)), "hello, world");
    for name in ["back", "../hello", "hello.wasm", "/tmp/hello"] {
        let r = host.run("front", &call(name, "\"x\""), None).await;
        let (capability, detail) = killed(&r, KillReason::OutOfScope);
        assert_eq!(capability, "agents", "{name}");
        assert!(
            detail.contains("not in the policy's agents.call"),
            "{detail}"
        );
        assert!(host.children(r.task).is_empty(), "{name} ran");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn contract_breaches_in_both_directions_come_back_to_the_caller() {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\", \"breacher\"]\n");
    host.agent("hello", "hello", "");
    // A component whose contract promises an integer and which returns its task (WebAssembly
    // text is a component too).
    std::fs::copy(
        warden_tests::root().join("tests/redteam/wat/contract-integer.wat"),
        host.agents().join("breacher.wasm"),
    )
    .unwrap();
    std::fs::write(
        host.agents().join("breacher.toml"),
        "[agent]\nname = \"breacher\"\n",
    )
    .unwrap();
    // An input the callee's contract refuses: the callee never starts.
    let r = host.run("front", &call("hello", "42"), None).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "invalid-input", "{out}");
    assert!(host.children(r.task).is_empty());
    // A result that breaks the callee's own output schema: a breach, the callee demoted.
    let r = host
        .run("front", &call("breacher", "\"not an integer\""), None)
        .await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "contract-breach", "{out}");
    let breacher = &host.children(r.task)[0];
    assert_eq!(
        breacher.outcome.as_ref().unwrap()["reason"],
        "contract-breach"
    );
    let store = host.runtime.ledger().unwrap().store();
    let trust = store.trust(&breacher.agent_id).unwrap().unwrap();
    assert_eq!(trust.demoted_by_task, Some(breacher.id));
    assert_eq!(host.task(r.task).status, "completed");
    // Its twin: an integer is what it promised.
    let r = host.run("front", &call("breacher", "7"), None).await;
    assert_eq!(ok_text(completed(&r)), "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn depth_is_bounded() {
    let host = Host::new("max_depth = 2\n");
    host.probe("bomb", "[agents]\ncall = [\"bomb\"]\n");
    // Each bomb calls itself once: depth 1, depth 2, then refused.
    let r = host
        .run(
            "bomb",
            &probe("bomb", &[("name", json!("bomb")), ("depth", json!(1))]),
            None,
        )
        .await;
    let root: Value = serde_json::from_str(completed(&r)).unwrap();
    assert_eq!(root["ok"], 1, "{root}");
    let one = host.children(r.task);
    let two = host.children(one[0].id);
    assert_eq!((one.len(), two.len()), (1, 1));
    assert!(host.children(two[0].id).is_empty());
    let deepest: Value =
        serde_json::from_str(two[0].outcome.as_ref().unwrap()["output"].as_str().unwrap()).unwrap();
    assert_eq!(deepest["errors"]["refused"]["count"], 1, "{deepest}");
    let why = deepest["errors"]["refused"]["first"].as_str().unwrap();
    assert!(
        why.contains("agents.max_depth") && why.contains("allows 2"),
        "{why}"
    );
    let refused = host.audit("agent-call");
    assert!(
        refused
            .iter()
            .any(|c| c["detail"]["outcome"] == "refused" && c["detail"]["depth"] == 3),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_is_bounded() {
    let host = Host::new("max_fanout = 3\n");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    let task = probe(
        "call-many",
        &[
            ("name", json!("hello")),
            ("input", json!("\"x\"")),
            ("depth", json!(5)),
        ],
    );
    let r = host.run("front", &task, None).await;
    let out: Value = serde_json::from_str(completed(&r)).unwrap();
    assert_eq!(out["ok"], 3, "{out}");
    assert_eq!(out["errors"]["refused"]["count"], 2, "{out}");
    assert!(
        out["errors"]["refused"]["first"]
            .as_str()
            .unwrap()
            .contains("agents.max_fanout"),
        "{out}"
    );
    assert_eq!(host.children(r.task).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_callee_is_demoted_while_its_caller_completes() {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"spinner\"]\n");
    host.probe("spinner", "[limits]\ncpu = \"50 ms\"\n");
    let r = host
        .run("front", &call("spinner", &probe("spin", &[])), None)
        .await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "killed", "{out}");
    assert!(out.contains("cpu-limit"), "{out}");
    let spinner = &host.children(r.task)[0];
    assert_eq!(spinner.status, "killed");
    let store = host.runtime.ledger().unwrap().store();
    let demoted = store.trust(&spinner.agent_id).unwrap().unwrap();
    assert_eq!(demoted.demoted_by_task, Some(spinner.id), "{demoted:?}");
    let caller = store.trust(&host.task(r.task).agent_id).unwrap().unwrap();
    assert_eq!(caller.demoted_by_task, None, "the caller is not demoted");
    assert_eq!(host.task(r.task).status, "completed");
}

/// The callee runs inside its caller's host call, on the caller's thread: its CPU is still its
/// own, so a caller with a small CPU limit is not killed for what its callee spent.
#[tokio::test(flavor = "multi_thread")]
async fn a_callee_s_cpu_is_its_own_not_its_caller_s() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"spinner\"]\n[limits]\ncpu = \"100 ms\"\n",
    );
    // Its own limit is higher; the caller's bounds it (a callee may do at most what its caller
    // may), so it spins for the caller's 100 ms, charged to itself.
    host.probe("spinner", "[limits]\ncpu = \"300 ms\"\n");
    let r = host
        .run("front", &call("spinner", &probe("spin", &[])), None)
        .await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "killed", "{out}");
    assert!(out.contains("cpu-limit"), "{out}");
    assert!(
        r.cpu < std::time::Duration::from_millis(50),
        "the caller was charged {:?}",
        r.cpu
    );
    let spinner = &host.children(r.task)[0];
    let cpu = spinner.outcome.as_ref().unwrap()["usage"]["cpu_us"]
        .as_u64()
        .unwrap();
    assert!(
        (100_000..150_000).contains(&cpu),
        "the callee was charged {cpu} µs for a 100 ms limit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_is_cut_to_the_time_its_tree_has_left_and_not_demoted_for_it() {
    let host = Host::new("tree_wall = \"1 s\"\n");
    host.probe(
        "front",
        "[agents]\ncall = [\"looper\"]\n[limits]\nwall = \"20 s\"\n",
    );
    // `spin-calls` loops through host calls; with a CPU limit far above the tree's wall time,
    // the wall limit is what stops it.
    host.probe("looper", "[limits]\ncpu = \"20 s\"\nwall = \"20 s\"\n");
    let mut task: Value = serde_json::from_str(&call("looper", &probe("spin-calls", &[]))).unwrap();
    // Then, past the tree's deadline, another call.
    task["then"] = serde_json::from_str(&call("looper", &probe("echo", &[]))).unwrap();
    let started = std::time::Instant::now();
    let r = host.run("front", &task.to_string(), None).await;
    let out = completed(&r);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(error_kind(out), "refused", "{out}");
    assert!(out.contains("agents.tree_wall"), "{out}");
    let looper = host.children(r.task);
    assert_eq!(looper.len(), 1, "the late call ran nothing");
    let outcome = looper[0].outcome.as_ref().unwrap();
    assert_eq!(outcome["reason"], "wall-limit", "{outcome}");
    let elapsed = outcome["usage"]["elapsed_us"].as_u64().unwrap();
    assert!(
        elapsed < 1_500_000,
        "cut to the tree's second: {elapsed} µs"
    );
    let store = host.runtime.ledger().unwrap().store();
    let trust = store.trust(&looper[0].agent_id).unwrap().unwrap();
    assert_eq!(
        trust.demoted_by_task, None,
        "the tree's deadline was not its own"
    );
    let calls = host.audit("agent-call");
    assert_eq!(calls[0]["detail"]["outcome"], "killed");
    assert_eq!(calls[1]["detail"]["outcome"], "refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_found_by_name_and_picked_up_when_added_or_replaced() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"late\", \"liar\"]\n[fs]\nread = [\"**\"]\n",
    );
    let task = call("late", &probe("echo", &[("text", json!("here"))]));
    let r = host.run("front", &task, None).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "refused");
    assert!(out.contains("no agent `late`"), "{out}");
    // Added while the host runs.
    host.probe("late", "");
    let r = host.run("front", &task, None).await;
    assert_eq!(ok_text(completed(&r)), "here");
    // Replaced: now it may not be called with that input... its new policy grants no files.
    let read = call("late", &probe("read", &[("path", json!("/docs/a.md"))]));
    host.probe("late", "[fs]\nread = [\"docs/**\"]\n");
    let r = host.run("front", &read, None).await;
    assert_eq!(ok_text(completed(&r)), "alpha docs");
    std::thread::sleep(std::time::Duration::from_millis(20));
    host.probe("late", "");
    let r = host.run("front", &read, None).await;
    assert_eq!(error_kind(completed(&r)), "killed");
    // A policy under another agent's name is refused.
    host.agent("liar", "probe", "");
    std::fs::write(
        host.agents().join("liar.toml"),
        "[agent]\nname = \"late\"\n",
    )
    .unwrap();
    let r = host.run("front", &call("liar", "{}"), None).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "refused");
    assert!(out.contains("policy of agent `late`"), "{out}");
}

/// What the directory's inotify watch cannot see is still seen at the next call: a directory
/// behind a symbolic link that is re-pointed, and a policy with a second name written through
/// that name.
#[tokio::test(flavor = "multi_thread")]
async fn changes_a_watch_cannot_see_are_seen_at_the_next_call() {
    let host = Host::linked();
    host.probe(
        "front",
        "[agents]\ncall = [\"late\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("late", "[fs]\nread = [\"docs/**\"]\n");
    let read = call("late", &probe("read", &[("path", json!("/docs/a.md"))]));
    let r = host.run("front", &read, None).await;
    assert_eq!(ok_text(completed(&r)), "alpha docs");
    // A new release whose `late` may read nothing, the link re-pointed to it: no event in the
    // folder the first release was, and no wait.
    host.release(2);
    host.probe("late", "");
    let r = host.run("front", &read, None).await;
    assert_eq!(error_kind(completed(&r)), "killed", "the old release ran");

    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"late\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("late", "[fs]\nread = [\"docs/**\"]\n");
    let r = host.run("front", &read, None).await;
    assert_eq!(ok_text(completed(&r)), "alpha docs");
    // The policy gets a second name outside the directory, and is rewritten through it in place
    // (an event in the other folder only).
    let elsewhere = host.ws().join("late.toml");
    std::fs::hard_link(host.agents().join("late.toml"), &elsewhere).unwrap();
    let r = host.run("front", &read, None).await;
    assert_eq!(ok_text(completed(&r)), "alpha docs", "reloaded, unchanged");
    std::fs::write(&elsewhere, "[agent]\nname = \"late\"\n").unwrap();
    let r = host.run("front", &read, None).await;
    assert_eq!(error_kind(completed(&r)), "killed", "the old policy ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_agents_directory_calls_are_refused_naming_the_setting() {
    let host = Host::without_directory();
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    let r = host.run("front", &call("hello", "\"x\""), None).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "refused");
    assert!(out.contains("[agents] dir"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tree_shares_one_model_budget() {
    let stub = warden::orchestra::model::stub::StubProvider::start()
        .await
        .unwrap();
    let host = Host::with_models(&stub.url());
    // Each answer uses 15 tokens; each call holds about 2 + 10 (max_tokens) before it is sent.
    host.probe(
        "front",
        "[agents]\ncall = [\"spender\", \"frugal\"]\n[model]\nallow = [\"small\"]\ntokens = 100\n",
    );
    host.probe("spender", "[model]\nallow = [\"small\"]\ntokens = 100000\n");
    host.probe("frugal", "[model]\nallow = [\"small\"]\ntokens = 20\n");
    let spend = |callee: &str| {
        let ask = json!({"op": "model", "model": "small", "max_tokens": 10, "text": "hi"});
        let mut task = json!({
            "op": "call",
            "name": callee,
            "input": json!({"op": "model-loop", "model": "small", "max_tokens": 10, "text": "hi"}).to_string(),
        });
        // The root spends 4 answers (60 tokens) first.
        for _ in 0..4 {
            let mut first = ask.clone();
            first["then"] = task;
            task = first;
        }
        task.to_string()
    };
    let r = host.run("front", &spend("spender"), None).await;
    let out = completed(&r);
    assert_eq!(error_kind(out), "escalated", "{out}");
    let tokens = |t: &TaskRecord| {
        let m = &t.outcome.as_ref().unwrap()["usage"]["model"];
        m["prompt_tokens"].as_u64().unwrap_or(0) + m["completion_tokens"].as_u64().unwrap_or(0)
    };
    let root = host.task(r.task);
    let spender = &host.children(r.task)[0];
    assert_eq!(tokens(&root), 60);
    assert_eq!(spender.status, "escalated");
    // With its own 100 000 tokens (bounded to 100 by its caller's policy) it could spend 90
    // alone; the tree had 40 left.
    assert!(
        tokens(spender) > 0 && tokens(spender) <= 40,
        "{}",
        tokens(spender)
    );
    assert!(tokens(&root) + tokens(spender) <= 100);

    // A callee whose own budget is smaller than what the tree has left spends only its own.
    let r = host
        .run(
            "front",
            &call(
                "frugal",
                &json!({"op": "model-loop", "model": "small", "max_tokens": 10, "text": "hi"})
                    .to_string(),
            ),
            None,
        )
        .await;
    assert_eq!(error_kind(completed(&r)), "escalated");
    let frugal = &host.children(r.task)[0];
    assert!(
        tokens(frugal) <= 20 && tokens(frugal) > 0,
        "{}",
        tokens(frugal)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_show_and_trace_show_every_hop_and_the_audit_verifies() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"middle\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe(
        "middle",
        "[agents]\ncall = [\"back\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("back", "[fs]\nread = [\"**\"]\n");
    let task = call(
        "middle",
        &call("back", &probe("read", &[("path", json!("/docs/a.md"))])),
    );
    let r = host.run("front", &task, Some(user(&["reader"]))).await;
    completed(&r);
    let (code, show, err) = host.warden(&["task", "show", &r.task.to_string()]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&show).unwrap();
    let middle = &shown["children"][0];
    assert_eq!(middle["agent"], "middle");
    assert_eq!(middle["user"], "alice");
    assert_eq!(middle["status"], "completed");
    assert_eq!(middle["grant"]["roles"], json!(["reader"]));
    assert!(middle.get("cost_micro_usd").is_some(), "{middle}");
    assert_eq!(middle["children"][0]["agent"], "back");
    let (code, trace, err) = host.warden(&["task", "trace", &r.task.to_string()]);
    assert_eq!(code, 0, "{err}");
    for hop in ["agent front", "agent middle", "agent back"] {
        assert!(trace.contains(hop), "{hop}: {trace}");
    }
    assert!(
        trace.contains("agents"),
        "the call is in the caller's trace: {trace}"
    );
    assert!(
        trace.contains("read docs/a.md"),
        "the last hop's trace: {trace}"
    );
    host.verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn warden_run_calls_agents_in_the_configured_directory() {
    let host = Host::new("");
    host.probe("front", "[agents]\ncall = [\"hello\"]\n");
    host.agent("hello", "hello", "");
    let (code, out, err) = host.warden(&[
        "run",
        host.agents().join("front.wasm").to_str().unwrap(),
        "--policy",
        host.agents().join("front.toml").to_str().unwrap(),
        "--input",
        &call("hello", "\"cli\""),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ok_text(out.trim()), "hello, cli");
}

/// The `roll-call` example of the docs, built once per test process.
fn roll_call() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(warden_tests::root())
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "--target",
                    "wasm32-wasip2",
                    "-p",
                    "roll-call",
                ])
                .status()
                .expect("cargo runs");
        assert!(status.success(), "building the roll-call agent failed");
    });
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || warden_tests::root().join("target"),
            std::path::PathBuf::from,
        )
        .join("wasm32-wasip2/release/roll_call.wasm")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_roll_call_example_greets_through_hello_as_the_docs_say() {
    let host = Host::new("");
    let policies = warden_tests::root().join("policies");
    std::fs::copy(
        warden_tests::agent("hello"),
        host.agents().join("hello.wasm"),
    )
    .unwrap();
    std::fs::copy(
        policies.join("hello.toml"),
        host.agents().join("hello.toml"),
    )
    .unwrap();
    let run = |input: &str| {
        host.warden(&[
            "run",
            roll_call().to_str().unwrap(),
            "--policy",
            policies.join("roll-call.toml").to_str().unwrap(),
            "--input",
            input,
        ])
    };
    let (code, out, err) = run(r#"["ann", "bo"]"#);
    assert_eq!(
        (code, out.trim()),
        (0, r#"["hello, ann","hello, bo"]"#),
        "{err}"
    );
    let (code, out, err) = run(r#"["ann", " "]"#);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            r#"["hello, ann","(no greeting: invalid-input: expected a name, got an empty one)"]"#
        ),
        "{err}"
    );
    // Nine names: more than it accepts, refused before any call.
    let (code, _, err) = run(r#"["a","b","c","d","e","f","g","h","i"]"#);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("at most 8"), "{err}");
    host.verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_runs_only_the_agents_their_roles_list_at_every_hop() {
    let host = Host::new("");
    host.probe(
        "front",
        "[agents]\ncall = [\"back\"]\n[fs]\nread = [\"**\"]\n",
    );
    host.probe("back", "[fs]\nread = [\"**\"]\n");
    let narrow = user(&["front-only"]);
    // The root: `back` is not in the user's `agents`, so it never starts, and that is audited.
    let e = host
        .try_run(
            "back",
            &probe("read", &[("path", json!("/docs/a.md"))]),
            Some(narrow.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, warden::RunError::NotGranted { .. }), "{e}");
    assert!(
        e.to_string().contains("none of their roles lists it"),
        "{e}"
    );
    let refused = host.audit("task-refused");
    assert!(
        refused
            .iter()
            .any(|r| r["agent"] == "back" && r["detail"]["why"] == "agent-not-granted"),
        "{refused:?}"
    );
    // A hop: `front` may run and its policy may call `back`, but the user may not use `back`:
    // the call is refused to the caller, which completes; no task of `back` exists.
    let r = host
        .run(
            "front",
            &call("back", &probe("read", &[("path", json!("/docs/a.md"))])),
            Some(narrow),
        )
        .await;
    let answer = completed(&r);
    assert_eq!(error_kind(answer), "refused", "{answer}");
    assert!(answer.contains("none of their roles lists it"), "{answer}");
    assert!(host.children(r.task).is_empty());
    // The same user with every agent: the hop runs.
    let r = host
        .run(
            "front",
            &call("back", &probe("read", &[("path", json!("/docs/a.md"))])),
            Some(user(&["reader"])),
        )
        .await;
    assert_eq!(ok_text(completed(&r)), "alpha docs");
    host.verify();
}
