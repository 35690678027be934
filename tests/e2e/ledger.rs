//! End-to-end: earned autonomy. The trust ladder gating a tool before and after promotion and
//! demotion, a level-1 agent's writes proposed and not applied, irreversible actions held until a
//! signed approval (and replayed, tampered or unauthorised approvals refused), the audit log
//! verifying clean and failing on every kind of tampering, and a host killed with SIGKILL in the
//! middle of a stream of tasks losing nothing it reported. What an attacker can do to the data
//! directory such a crash leaves is in `ledger/crash.rs`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use warden::approval::Approval;
use warden::identity::SecretKey;
use warden::ledger::{ApproveError, verify_dir};
use warden::policy::{HostConfig, Roles};
use warden::{KillReason, Outcome, RunOptions, StagingDisposition};
use warden_tests::{agent, completed, killed, ledger_runtime, policy, probe, root, warden_bin};

#[path = "ledger/crash.rs"]
mod crash;
#[path = "ledger/killed.rs"]
mod killed_host;

fn options(ws: Option<&Path>) -> RunOptions {
    RunOptions {
        workspace: ws.map(Path::to_path_buf),
        user: None,
        on_begin: None,
        queued: None,
        client: None,
    }
}

/// The row a run hands back (`RunReport::row`, what `warden serve` gives a caller that waits)
/// is the row the store holds, for a completed run, a killed one and a called one.
#[tokio::test]
async fn the_row_a_run_hands_back_is_the_row_the_store_holds() {
    let data = tempfile::tempdir().unwrap();
    let rt = ledger_runtime(data.path(), HostConfig::default());
    let probe_agent = rt
        .load_file(
            &agent("probe"),
            policy("probe", "[limits]\nmemory = \"16MiB\"\n"),
        )
        .unwrap();
    let tasks = [
        probe("echo", &[("text", json!("ok"))]),
        probe("alloc", &[("bytes", json!(64u64 << 20))]),
    ];
    for task in tasks {
        let r = probe_agent.run(&task, &options(None)).await.unwrap();
        let handed = r.row.expect("a ledgered run hands its row back");
        let stored = rt.ledger().unwrap().store().task(r.task).unwrap();
        assert_eq!(*handed, stored, "{task}");
        assert!(
            handed.ended_ms.is_some() && handed.status != "running",
            "{handed:?}"
        );
    }
}

#[tokio::test]
async fn promotion_after_clean_runs_opens_a_tool_and_a_violation_closes_it() {
    let data = tempfile::tempdir().unwrap();
    let rt = ledger_runtime(data.path(), HostConfig::default());
    let body = "[tools]\nallow = [\"echo\"]\n[trust]\npromote_after = 3\nrequire = { \"tools.echo\" = 2 }\n";
    let probe_agent = rt
        .load_file(&agent("probe"), policy("probe", body))
        .unwrap();
    let tool = probe("tool", &[("name", json!("echo")), ("input", json!("hi"))]);
    let echo = probe("echo", &[("text", json!("ok"))]);

    // Level 1: the tool is withheld (an error the agent sees, not a kill).
    let r = probe_agent.run(&tool, &options(None)).await.unwrap();
    assert_eq!(r.level, Some(1));
    match &r.outcome {
        Outcome::AgentError { message, .. } => {
            assert!(message.contains("needs trust level 2"), "{message}")
        }
        other => panic!("expected the tool to be denied, got {other:?}"),
    }
    // Three clean runs in a row promote it.
    for _ in 0..3 {
        completed(&probe_agent.run(&echo, &options(None)).await.unwrap());
    }
    let r = probe_agent.run(&tool, &options(None)).await.unwrap();
    assert_eq!(r.level, Some(2));
    assert_eq!(completed(&r), "hi");

    // A violation demotes it at once, and the tool is withheld again.
    let escape = probe("read", &[("path", json!("/etc/passwd"))]);
    let r = probe_agent.run(&escape, &options(None)).await.unwrap();
    killed(&r, KillReason::NotGranted);
    let r = probe_agent.run(&tool, &options(None)).await.unwrap();
    assert_eq!(r.level, Some(1));
    assert!(matches!(r.outcome, Outcome::AgentError { .. }));
    // Held: clean runs no longer promote.
    for _ in 0..4 {
        completed(&probe_agent.run(&echo, &options(None)).await.unwrap());
    }
    let store = rt.ledger().unwrap().store();
    let trust = store
        .trust(&probe_agent.identity().agent_id)
        .unwrap()
        .unwrap();
    assert!(trust.held && trust.level == 1, "{trust:?}");
    assert_eq!(trust.level_before, 2);

    // Every promotion and demotion is in the audit log, which verifies.
    drop(rt);
    let log = std::fs::read_to_string(data.path().join("audit.log")).unwrap();
    assert_eq!(log.matches("\"trust-promoted\"").count(), 1);
    assert_eq!(log.matches("\"trust-demoted\"").count(), 1);
    verify_dir(data.path(), None).unwrap();
}

#[tokio::test]
async fn a_level_one_agents_writes_are_proposed_not_applied() {
    let data = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("out")).unwrap();
    std::fs::write(ws.path().join("out/keep.txt"), "original").unwrap();
    let rt = ledger_runtime(data.path(), HostConfig::default());
    let probe_agent = rt
        .load_file(
            &agent("probe"),
            policy("probe", "[fs]\nwrite = [\"out/**\"]\n"),
        )
        .unwrap();
    let write = probe(
        "write",
        &[("path", json!("/out/new.txt")), ("text", json!("proposed"))],
    );
    let r = probe_agent
        .run(&write, &options(Some(ws.path())))
        .await
        .unwrap();
    completed(&r);
    assert_eq!(r.staging, StagingDisposition::Proposed);
    assert!(r.applied.is_none());
    assert!(
        !ws.path().join("out/new.txt").exists(),
        "a level-1 agent's write reached the workspace"
    );
    let ledger = rt.ledger().unwrap();
    let task = ledger.store().task(r.task).unwrap();
    assert_eq!(task.staging, "proposed");

    let staging = warden::staging::Staging::open(&ledger.staging_root(r.task)).unwrap();
    let diff = staging.diff().unwrap();
    assert_eq!(diff.created, vec!["out/new.txt".to_string()]);
    assert!(diff.modified.is_empty() && diff.removed.is_empty());
    staging.apply().unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/new.txt")).unwrap(),
        "proposed"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/keep.txt")).unwrap(),
        "original"
    );

    // A killed task's staging is discarded.
    let write_then_escape = probe(
        "write",
        &[
            ("path", json!("/out/never.txt")),
            ("text", json!("x")),
            ("then", json!({"op": "raw-read-abs", "path": "/etc/passwd"})),
        ],
    );
    let r = probe_agent
        .run(&write_then_escape, &options(Some(ws.path())))
        .await
        .unwrap();
    assert!(matches!(r.outcome, Outcome::Killed { .. }), "{r:?}");
    assert_eq!(r.staging, StagingDisposition::Discarded);
    assert!(!ledger.staging_root(r.task).exists());
    assert!(!ws.path().join("out/never.txt").exists());
}

#[tokio::test]
async fn a_level_two_agent_commits_its_writes() {
    let data = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("out")).unwrap();
    let rt = ledger_runtime(data.path(), HostConfig::default());
    let probe_agent = rt
        .load_file(
            &agent("probe"),
            policy(
                "probe",
                "[fs]\nwrite = [\"out/**\"]\n[trust]\npromote_after = 1\n",
            ),
        )
        .unwrap();
    completed(
        &probe_agent
            .run(
                &probe("echo", &[("text", json!("x"))]),
                &options(Some(ws.path())),
            )
            .await
            .unwrap(),
    );
    let write = probe(
        "write",
        &[("path", json!("/out/a.txt")), ("text", json!("committed"))],
    );
    let r = probe_agent
        .run(&write, &options(Some(ws.path())))
        .await
        .unwrap();
    assert_eq!((r.level, r.staging), (Some(2), StagingDisposition::Applied));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/a.txt")).unwrap(),
        "committed"
    );
}

fn deploy_config(data: &Path, log: &Path) -> HostConfig {
    HostConfig::parse(
        "warden.toml",
        &format!(
            "[host]\ndata_dir = \"{}\"\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}; echo deployed\"]\napproval_ttl = \"10 min\"\nwritable = [\"{}\"]\n",
            data.display(),
            log.display(),
            log.parent().unwrap().display()
        ),
    )
    .unwrap()
}

#[tokio::test]
async fn irreversible_actions_wait_for_a_signed_approval_that_works_once() {
    let data = tempfile::tempdir().unwrap();
    let effects = tempfile::tempdir().unwrap();
    // The tool runs in the OS jail (as uid 65534 when the host is root): its folder is open.
    std::fs::set_permissions(effects.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let deployed = effects.path().join("deployed.log");
    let config = deploy_config(data.path(), &deployed);
    let rt = ledger_runtime(data.path(), config.clone());
    let probe_agent = rt
        .load_file(
            &agent("probe"),
            policy("probe", "[tools]\nallow = [\"deploy\"]\n"),
        )
        .unwrap();
    let call = |params: &str| {
        probe(
            "tool",
            &[("name", json!("deploy")), ("input", json!(params))],
        )
    };
    let r = probe_agent
        .run(&call("release v1"), &options(None))
        .await
        .unwrap();
    let pending: serde_json::Value = serde_json::from_str(completed(&r)).unwrap();
    assert_eq!(pending["status"], "pending");
    assert!(
        !deployed.exists(),
        "the irreversible action ran without approval"
    );
    let id = pending["action"].as_u64().unwrap();

    let alice = SecretKey::generate().unwrap();
    let bob = SecretKey::generate().unwrap();
    let roles = Roles::parse(
        "roles.toml",
        &format!(
            "[person.alice]\nkey = \"{}\"\nroles = [\"release\"]\n[person.bob]\nkey = \"{}\"\nroles = [\"dev\"]\n[role.release]\nagents = [\"*\"]\napprove = [\"deploy\"]\n[role.dev]\nagents = [\"*\"]\nreview = true\n",
            alice.public(),
            bob.public()
        ),
    )
    .unwrap();
    let ledger = rt.ledger().unwrap();
    let action = ledger.store().action(id).unwrap();

    // A person without the right to approve deploys is refused.
    let by_bob = Approval::sign(&action, "bob", &bob);
    let e = ledger
        .approve(
            &by_bob,
            &roles,
            &config,
            warden::capabilities::tools::perform,
        )
        .unwrap_err();
    assert!(e.to_string().contains("no role that may approve"), "{e}");
    // A forged approval (alice's name, another key) is refused.
    let stranger = SecretKey::generate().unwrap();
    let forged = Approval::sign(&action, "alice", &stranger);
    assert!(matches!(
        ledger.approve(
            &forged,
            &roles,
            &config,
            warden::capabilities::tools::perform
        ),
        Err(ApproveError::Refused(_))
    ));
    assert!(!deployed.exists());

    // Alice's approval performs it, exactly with the parameters the agent gave.
    let ok = Approval::sign(&action, "alice", &alice);
    let out = ledger
        .approve(&ok, &roles, &config, warden::capabilities::tools::perform)
        .unwrap();
    assert_eq!(out.trim(), "deployed");
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "release v1");
    // Replayed: refused, and nothing runs twice.
    let e = ledger
        .approve(&ok, &roles, &config, warden::capabilities::tools::perform)
        .unwrap_err();
    assert!(e.to_string().contains("not pending"), "{e}");
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "release v1");

    // An approval of one action is useless for another, and an action whose parameters were
    // changed after approval is refused.
    let r = probe_agent
        .run(&call("release v2"), &options(None))
        .await
        .unwrap();
    let second: serde_json::Value = serde_json::from_str(completed(&r)).unwrap();
    let second = second["action"].as_u64().unwrap();
    let mut moved = ok.clone();
    moved.action = second;
    assert!(
        ledger
            .approve(
                &moved,
                &roles,
                &config,
                warden::capabilities::tools::perform
            )
            .is_err()
    );
    let second_action = ledger.store().action(second).unwrap();
    let approval = Approval::sign(&second_action, "alice", &alice);
    let db = rusqlite::Connection::open(data.path().join("state.db")).unwrap();
    db.execute(
        "UPDATE actions SET params = 'rm -rf everything' WHERE id = ?1",
        [second],
    )
    .unwrap();
    let e = ledger
        .approve(
            &approval,
            &roles,
            &config,
            warden::capabilities::tools::perform,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("not the action that was approved"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "release v1");

    drop(rt);
    let log = std::fs::read_to_string(data.path().join("audit.log")).unwrap();
    for kind in [
        "action-pending",
        "action-approved",
        "action-performed",
        "approval-refused",
    ] {
        assert!(log.contains(&format!("\"{kind}\"")), "no {kind} record");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn irreversible_actions_fail_closed_when_the_audit_log_cannot_be_written() {
    let data = tempfile::tempdir().unwrap();
    let effects = tempfile::tempdir().unwrap();
    // The tool runs in the OS jail (as uid 65534 when the host is root): its folder is open.
    std::fs::set_permissions(effects.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let deployed = effects.path().join("deployed.log");
    let config = deploy_config(data.path(), &deployed);
    // Every write to the log fails (ENOSPC), through the real open and append path.
    std::os::unix::fs::symlink("/dev/full", data.path().join("audit.log")).unwrap();
    let ledger = warden::ledger::Ledger::open(data.path(), 1024).unwrap();
    let e = ledger
        .hold_action(
            1,
            "probe",
            "-",
            "deploy",
            "release",
            std::time::Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(e.to_string().contains("audit"), "{e}");
    assert!(
        ledger.store().actions(10).unwrap().is_empty(),
        "an unaudited action was stored"
    );

    // A host whose log cannot be written does not load (or run) agents either.
    let rt = warden_tests::ledger_runtime(data.path(), config.clone());
    let refused = rt.load_file(
        &agent("probe"),
        policy("probe", "[tools]\nallow = [\"deploy\"]\n"),
    );
    assert!(refused.is_err());

    // And an approval is refused before anything runs.
    let alice = SecretKey::generate().unwrap();
    let roles = Roles::parse(
        "roles.toml",
        &format!(
            "[person.alice]\nkey = \"{}\"\nroles = [\"release\"]\n[role.release]\nagents = [\"*\"]\napprove = [\"deploy\"]\n",
            alice.public()
        ),
    )
    .unwrap();
    // An action stored while the log still worked (put in by hand here).
    let db = rusqlite::Connection::open(data.path().join("state.db")).unwrap();
    db.execute(
        "INSERT INTO actions (task, agent, user, tool, params, hash, status, created_ms, expires_ms)
         VALUES (1, 'probe', '-', 'deploy', 'release', '', 'pending', 0, 9999999999999)",
        [],
    )
    .unwrap();
    let mut action = ledger.store().actions(1).unwrap().remove(0);
    action.hash = warden::approval::action_hash(&action);
    db.execute(
        "UPDATE actions SET hash = ?1 WHERE id = ?2",
        rusqlite::params![action.hash, action.id],
    )
    .unwrap();
    let approval = Approval::sign(&action, "alice", &alice);
    assert!(
        ledger
            .approve(
                &approval,
                &roles,
                &config,
                warden::capabilities::tools::perform
            )
            .is_err()
    );
    assert!(!deployed.exists(), "an action ran without its audit record");
}

/// Copies the data directory so each tampering starts from the clean log.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn audit_verify_passes_clean_and_names_the_first_bad_record_of_each_tampering() {
    let data = tempfile::tempdir().unwrap();
    let config = HostConfig {
        checkpoint_every: 5,
        ..HostConfig::default()
    };
    {
        let rt = ledger_runtime(data.path(), config);
        let hello = rt.load_file(&agent("hello"), policy("hello", "")).unwrap();
        // Each run's start and end are one batch (hello's start is deferred): a checkpoint
        // falls due every third run.
        for i in 0..10 {
            completed(
                &hello
                    .run(&format!("\"n{i}\""), &options(None))
                    .await
                    .unwrap(),
            );
        }
    }
    let report = verify_dir(data.path(), None).unwrap();
    assert!(report.records > 20 && report.checkpoints >= 4, "{report:?}");
    let lines: Vec<String> = std::fs::read_to_string(data.path().join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let scratch = tempfile::tempdir().unwrap();
    let tamper = |name: &str, edit: &dyn Fn(&mut Vec<String>)| -> String {
        let dir = scratch.path().join(name);
        copy_dir(data.path(), &dir);
        let mut l = lines.clone();
        edit(&mut l);
        std::fs::write(dir.join("audit.log"), l.join("\n") + "\n").unwrap();
        match verify_dir(&dir, None) {
            Ok(r) => panic!("{name}: tampering not detected ({r:?})"),
            Err(e) => e.to_string(),
        }
    };
    let edited = tamper("edited", &|l| {
        l[6] = l[6].replacen("\"n", "\"N", 1).replacen("task-", "TASK-", 1)
    });
    assert!(edited.contains('7'), "edited: {edited}");
    let deleted = tamper("deleted", &|l| {
        l.remove(9);
    });
    assert!(deleted.contains("10"), "deleted: {deleted}");
    let reordered = tamper("reordered", &|l| l.swap(3, 4));
    assert!(reordered.contains('4'), "reordered: {reordered}");
    let truncated = tamper("truncated", &|l| l.truncate(l.len() - 3));
    assert!(!truncated.is_empty());
    // Rolled back: an older copy of the whole log (a valid chain, just shorter).
    let rolled = tamper("rolled-back", &|l| l.truncate(12));
    assert!(!rolled.is_empty());

    // The CLI says the same.
    let out = Command::new(warden_bin())
        .args([
            "--data-dir",
            data.path().to_str().unwrap(),
            "audit",
            "verify",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(warden_bin())
        .args([
            "--data-dir",
            scratch.path().join("deleted").to_str().unwrap(),
            "audit",
            "verify",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn a_host_killed_mid_stream_loses_no_committed_record() {
    let data = tempfile::tempdir().unwrap();
    let batch = data.path().join("tasks.jsonl");
    let hello = agent("hello");
    let policy_path = root().join("policies/hello.toml");
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(
            &json!({"agent": hello, "policy": policy_path, "input": format!("n{i}")}).to_string(),
        );
        text.push('\n');
    }
    std::fs::write(&batch, text).unwrap();
    let data_dir = data.path().join("state");
    let start = || {
        Command::new(warden_bin())
            .args(["--data-dir", data_dir.to_str().unwrap(), "--cache-dir"])
            .arg(root().join("target/warden-test-cache"))
            .arg("batch")
            .arg(&batch)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let mut reported = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while reported.len() < 200 {
        let line = lines.next().expect("the batch reports tasks").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        reported.push(v["task"].as_u64().unwrap());
    }
    // SIGKILL: no chance to flush, checkpoint or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(t) = v["task"].as_u64() {
            reported.push(t);
        }
    }

    // Every task the host reported is committed, with its outcome; the chain is intact.
    verify_dir(&data_dir, None).unwrap();
    {
        let ledger = warden::ledger::Ledger::open(&data_dir, 1024).unwrap();
        for id in &reported {
            let t = ledger.store().task(*id).unwrap();
            assert_eq!(t.status, "completed", "task {id}");
            assert!(t.outcome.is_some() && t.trace.is_some());
        }
        // At most the one task in flight was interrupted; nothing is left running.
        let all = ledger.store().tasks(100_000).unwrap();
        assert!(all.iter().all(|t| t.status != "running"));
        assert!(all.iter().filter(|t| t.status == "interrupted").count() <= 1);
    }
    verify_dir(&data_dir, None).unwrap();

    // Restarted, the host goes on with the same chain.
    let mut child = start();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..20 {
        lines.next().unwrap().unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let report = verify_dir(&data_dir, None).unwrap();
    assert!(report.records as usize > reported.len());
}

#[tokio::test]
async fn an_api_that_does_not_exist_demotes_the_agent() {
    let data = tempfile::tempdir().unwrap();
    let rt = ledger_runtime(data.path(), HostConfig::default());
    let bytes = std::fs::read(root().join("tests/redteam/wat/unknown-interface.wat")).unwrap();
    let err = rt.load(&bytes, policy("ghost", "")).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let trust = rt.ledger().unwrap().store().trust_all().unwrap();
    assert_eq!(trust.len(), 1);
    assert!(
        trust[0].held
            && trust[0]
                .demoted_reason
                .as_deref()
                .unwrap()
                .contains("does not exist")
    );

    // A refused signature is audited too (it demotes nobody: the code never loaded).
    let mut pinned = policy("hello", "");
    pinned.agent.publishers = vec![SecretKey::generate().unwrap().public()];
    assert!(rt.load_file(&agent("hello"), pinned).is_err());
    drop(rt);
    let log = std::fs::read_to_string(data.path().join("audit.log")).unwrap();
    assert_eq!(log.matches("\"agent-refused\"").count(), 2, "{log}");
    assert_eq!(log.matches("\"trust-demoted\"").count(), 1);
}

/// The `warden` binary with its own data directory, run in `dir`.
fn warden_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", dir.join("data"))
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_TOKEN")
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(args)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_proposes_diffs_applies_reviews_reinstates_and_approves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ws = d.join("ws");
    std::fs::create_dir_all(ws.join("notes/out")).unwrap();
    std::fs::write(ws.join("notes/a.md"), "first note\n").unwrap();
    let (code, reviewer_pub, err) = warden_in(d, &["keygen", "reviewer"]);
    assert_eq!(code, 0, "{err}");
    let (_, dev_pub, _) = warden_in(d, &["keygen", "dev"]);
    std::fs::write(
        d.join("roles.toml"),
        format!(
            "[person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[person.dan]\nkey = \"{}\"\nroles = [\"dev\"]\n[role.reviewer]\nagents = [\"*\"]\nreview = true\napprove = [\"deploy\"]\n[role.dev]\nagents = [\"*\"]\nfs.read = [\"**\"]\n",
            reviewer_pub.trim(),
            dev_pub.trim()
        ),
    )
    .unwrap();
    // The tool runs in the OS jail and may write only its `writable` folder, open to the jail's
    // uid; the data dir beside it stays out of its reach.
    let effects = tempfile::tempdir().unwrap();
    std::fs::set_permissions(effects.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let deployed = effects.path().join("deployed.log");
    std::fs::write(
        d.join("warden.toml"),
        format!(
            "[host]\nroles = \"roles.toml\"\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}; echo done\"]\nwritable = [\"{}\"]\n",
            deployed.display(),
            effects.path().display()
        ),
    )
    .unwrap();
    let scribe = agent("scribe");
    let policy = root().join("policies/scribe.toml");
    let (code, _, err) = warden_in(
        d,
        &[
            "run",
            scribe.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--workspace",
            ws.to_str().unwrap(),
            "--input",
            r#"{"notes": "notes", "summary": "notes/out/summary.md"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("proposed"), "{err}");
    assert!(!ws.join("notes/out/summary.md").exists());

    let (code, list, _) = warden_in(d, &["task", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains("scribe") && list.contains("proposed"),
        "{list}"
    );
    let (code, diff, err) = warden_in(d, &["task", "diff", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(diff.contains("notes/out/summary.md"), "{diff}");
    let (code, trace, _) = warden_in(d, &["task", "trace", "1"]);
    assert_eq!(code, 0);
    assert!(
        trace.contains("fs") && trace.contains("write notes/out/summary.md"),
        "{trace}"
    );

    // A person without the review role may not apply; the reviewer may.
    let (code, _, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "task",
            "apply",
            "1",
            "--key",
            "dev.key",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("review"), "{err}");
    assert!(!ws.join("notes/out/summary.md").exists());
    let (code, out, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "task",
            "apply",
            "1",
            "--key",
            "reviewer.key",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reviewed by rita"), "{out}");
    assert!(ws.join("notes/out/summary.md").exists());

    // A kill demotes; review prints the trace and a code; reinstatement needs that code.
    let probe_agent = agent("probe");
    let probe_policy = d.join("probe.toml");
    std::fs::write(
        &probe_policy,
        "[agent]\nname = \"probe\"\n[tools]\nallow = [\"deploy\"]\n[trust]\npromote_after = 1\n",
    )
    .unwrap();
    let run_probe = |task: &str| {
        warden_in(
            d,
            &[
                "--config",
                "warden.toml",
                "run",
                probe_agent.to_str().unwrap(),
                "--policy",
                probe_policy.to_str().unwrap(),
                "--input",
                task,
            ],
        )
    };
    assert_eq!(run_probe(r#"{"op":"echo","text":"x"}"#).0, 0);
    let (code, _, err) = run_probe(r#"{"op":"raw-read-abs","path":"/etc/passwd"}"#);
    assert_eq!(code, 3, "{err}");
    let (_, levels, _) = warden_in(d, &["trust", "list"]);
    assert!(
        levels.contains("unsigned/probe") && levels.contains("HELD"),
        "{levels}"
    );
    let (code, review, _) = warden_in(d, &["trust", "review", "probe"]);
    assert_eq!(code, 0);
    assert!(review.contains("killed"), "{review}");
    let code_line = review
        .lines()
        .find_map(|l| l.strip_prefix("review code: "))
        .expect("a review code")
        .to_string();
    let (code, _, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "trust",
            "reinstate",
            "probe",
            "--key",
            "reviewer.key",
            "--code",
            "000000000000",
        ],
    );
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "trust",
            "reinstate",
            "probe",
            "--key",
            "reviewer.key",
            "--code",
            &code_line,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reinstated at level 2"), "{out}");

    // An irreversible tool: pending, approved by the CLI, replay refused.
    let (code, out, err) = run_probe(r#"{"op":"tool","name":"deploy","input":"v7"}"#);
    assert_eq!(code, 0, "{err}");
    let pending: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = pending["action"].to_string();
    assert!(!deployed.exists());
    let (code, _, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "approve",
            &id,
            "--key",
            "reviewer.key",
            "--save",
            "approval.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "approve",
            "--submit",
            "approval.json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("performed"), "{out}");
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "v7");
    let (code, _, err) = warden_in(
        d,
        &[
            "--config",
            "warden.toml",
            "approve",
            "--submit",
            "approval.json",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not pending"), "{err}");
    assert_eq!(std::fs::read_to_string(&deployed).unwrap(), "v7");

    let (code, out, err) = warden_in(d, &["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok:"), "{out}");
    let (code, tail, _) = warden_in(d, &["audit", "tail", "-n", "200"]);
    assert_eq!(code, 0);
    for kind in [
        "staging-proposed",
        "staging-applied",
        "apply-refused",
        "task-killed",
        "trust-demoted",
        "trust-reinstated",
        "action-performed",
        "approval-refused",
    ] {
        assert!(
            tail.contains(&format!("\"{kind}\"")),
            "no {kind} in the tail"
        );
    }
}
