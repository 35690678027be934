//! End-to-end: real agents under real policies. Every allowed case completes; every violation
//! ends in the expected kill or refusal, and the host keeps serving afterwards.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use serde_json::json;
use warden::imports::ImportError;
use warden::{KillReason, LoadError, Outcome};
use warden_tests::{completed, killed, load, probe, run, runtime};

/// A workspace with `notes/` (read), `notes/out/` (write) and a canary outside both.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("notes/out")).unwrap();
    std::fs::create_dir_all(dir.path().join("secret")).unwrap();
    std::fs::write(dir.path().join("notes/a.md"), "# Alpha\nfirst note").unwrap();
    std::fs::write(dir.path().join("notes/b.md"), "# Beta\nsecond note here").unwrap();
    std::fs::write(dir.path().join("secret/canary"), "CANARY").unwrap();
    dir
}

const NOTES: &str = "[fs]\nread = [\"notes/**\"]\nwrite = [\"notes/out/**\"]\n";

fn canary_intact(ws: &Path) {
    assert_eq!(
        std::fs::read_to_string(ws.join("secret/canary")).unwrap(),
        "CANARY"
    );
}

/// A one-shot HTTP server on loopback that answers every request with `body`.
fn http_server(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_completes_and_reports_agent_errors() {
    let r = run("hello", "", "\"world\"", None).await;
    assert_eq!(completed(&r), "hello, world");
    let r = run("hello", "", "\"\"", None).await;
    assert!(
        matches!(
            r.outcome,
            Outcome::AgentError {
                kind: "invalid-input",
                ..
            }
        ),
        "{:?}",
        r.outcome
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_reports_the_contract() {
    let agent = load("hello", "").unwrap();
    let d = agent.describe().await.unwrap();
    assert_eq!(d.name, "hello");
    assert!(!d.input_schema.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_of_a_file_agent_needs_no_workspace() {
    let agent = load("scribe", NOTES).unwrap();
    assert_eq!(agent.describe().await.unwrap().name, "scribe");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_agent_without_a_workspace_does_not_start() {
    let agent = load("scribe", NOTES).unwrap();
    let err = agent
        .run(
            r#"{"notes": "notes", "summary": "notes/out/s.md"}"#,
            &warden::RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--workspace"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_ambient_no_env_no_args() {
    let r = run("probe", "", &probe("env", &[]), None).await;
    assert_eq!(completed(&r), "0 vars, 0 args");
}

#[tokio::test(flavor = "multi_thread")]
async fn scribe_reads_its_folder_and_its_write_is_applied() {
    let ws = workspace();
    let task = json!({"notes": "notes", "summary": "notes/out/summary.md"}).to_string();
    let r = run("scribe", NOTES, &task, Some(ws.path())).await;
    assert!(completed(&r).contains("Alpha"));
    let written = std::fs::read_to_string(ws.path().join("notes/out/summary.md")).unwrap();
    assert!(written.contains("- b.md: Beta"), "{written}");
    assert_eq!(r.applied.unwrap().written, vec!["notes/out/summary.md"]);
    canary_intact(ws.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn file_escapes_are_killed() {
    let ws = workspace();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            ws.path().join("secret/canary"),
            ws.path().join("notes/leak"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", ws.path().join("notes/etc")).unwrap();
    }
    let cases = [
        (
            "dotdot via std",
            probe("read", &[("path", json!("/notes/../secret/canary"))]),
        ),
        (
            "dotdot raw",
            probe("raw-open", &[("path", json!("../secret/canary"))]),
        ),
        (
            "absolute raw",
            probe("raw-open", &[("path", json!("/etc/passwd"))]),
        ),
        (
            "write to a read-only file",
            probe(
                "write",
                &[("path", json!("/notes/a.md")), ("text", json!("x"))],
            ),
        ),
        (
            "create outside the write grant",
            probe(
                "raw-open",
                &[("path", json!("new.md")), ("write", json!(true))],
            ),
        ),
        (
            "planted symlink to a file outside",
            probe("read", &[("path", json!("/notes/leak"))]),
        ),
        (
            "planted symlink to /etc",
            probe("read", &[("path", json!("/notes/etc/passwd"))]),
        ),
        (
            "guest-made symlink out",
            probe(
                "raw-symlink",
                &[
                    ("target", json!("../../secret/canary")),
                    ("path", json!("out/evil")),
                ],
            ),
        ),
        (
            "rename a read-only file into the writable folder",
            probe(
                "raw-rename",
                &[("path", json!("a.md")), ("target", json!("out/a.md"))],
            ),
        ),
    ];
    for (name, task) in cases {
        let r = run("probe", NOTES, &task, Some(ws.path())).await;
        let (capability, detail) = match &r.outcome {
            Outcome::Killed {
                reason: KillReason::OutOfScope,
                capability,
                detail,
            } => (capability, detail),
            other => panic!("{name}: expected an out-of-scope kill, got {other:?}"),
        };
        assert_eq!(capability, "fs", "{name}: {detail}");
    }
    canary_intact(ws.path());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes/a.md")).unwrap(),
        "# Alpha\nfirst note"
    );
    assert!(!ws.path().join("notes/out/evil").exists());
    assert!(!ws.path().join("notes/out/a.md").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_file_operations_succeed() {
    let ws = workspace();
    let read = run(
        "probe",
        NOTES,
        &probe("read", &[("path", json!("/notes/a.md"))]),
        Some(ws.path()),
    )
    .await;
    assert_eq!(completed(&read), "# Alpha\nfirst note");
    let list = run(
        "probe",
        NOTES,
        &probe("list", &[("path", json!("/notes"))]),
        Some(ws.path()),
    )
    .await;
    assert_eq!(completed(&list), "a.md,b.md,out");
    let write = run(
        "probe",
        NOTES,
        &probe(
            "write",
            &[("path", json!("/notes/out/x.txt")), ("text", json!("hi"))],
        ),
        Some(ws.path()),
    )
    .await;
    completed(&write);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes/out/x.txt")).unwrap(),
        "hi"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_task_leaves_nothing_staged() {
    let ws = workspace();
    let then = json!({"op": "raw-open", "path": "../secret/canary"});
    let task = json!({"op": "write", "path": "/notes/out/staged.txt", "text": "must vanish", "then": then}).to_string();
    let r = run("probe", NOTES, &task, Some(ws.path())).await;
    killed(&r, KillReason::OutOfScope);
    assert!(
        !ws.path().join("notes/out/staged.txt").exists(),
        "a killed task's write survived"
    );
    assert!(r.applied.is_none());
    // An agent error is not committed either.
    let then = json!({"op": "nonsense"});
    let task = json!({"op": "write", "path": "/notes/out/staged.txt", "text": "x", "then": then})
        .to_string();
    let r = run("probe", NOTES, &task, Some(ws.path())).await;
    assert!(matches!(r.outcome, Outcome::AgentError { .. }));
    assert!(!ws.path().join("notes/out/staged.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_to_an_allowed_host_succeeds() {
    let port = http_server("pong");
    let policy = format!("[net]\nallow = [\"127.0.0.1:{port}\"]\n");
    let task = json!({"url": format!("http://127.0.0.1:{port}/ping")}).to_string();
    let r = run("fetch", &policy, &task, None).await;
    let out: serde_json::Value = serde_json::from_str(completed(&r)).unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["first_line"], "pong");
}

#[tokio::test(flavor = "multi_thread")]
async fn network_reach_outside_the_allowlist_is_killed() {
    let port = http_server("pong");
    let policy = format!("[net]\nallow = [\"127.0.0.1:{port}\"]\n");
    let cases = [
        (
            "another port (scan)",
            format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1)),
        ),
        (
            "cloud metadata",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        ("another host", "http://example.com/".to_string()),
        (
            "loopback in another spelling",
            format!("http://127.1:{port}/"),
        ),
        ("ipv6 loopback", format!("http://[::1]:{port}/")),
        (
            "userinfo trick",
            format!("http://127.0.0.1:{port}@evil.example/"),
        ),
    ];
    for (name, url) in cases {
        let r = run(
            "probe",
            &policy,
            &probe("http", &[("url", json!(url))]),
            None,
        )
        .await;
        match &r.outcome {
            Outcome::Killed {
                reason: KillReason::OutOfScope,
                capability,
                ..
            } => assert_eq!(capability, "net", "{name}"),
            other => panic!("{name} ({url}): expected an out-of-scope kill, got {other:?}"),
        }
    }
    // A name on the allowlist that resolves to loopback: the address is checked after DNS.
    let by_name = format!("[net]\nallow = [\"localhost:{port}\"]\n");
    let r = run(
        "probe",
        &by_name,
        &probe(
            "http",
            &[("url", json!(format!("http://localhost:{port}/")))],
        ),
        None,
    )
    .await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(detail.contains("non-public address"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_outside_the_grant_are_killed() {
    let allowed = run(
        "probe",
        "[tools]\nallow = [\"text.upper\"]\n",
        &probe(
            "tool",
            &[("name", json!("text.upper")), ("input", json!("hi"))],
        ),
        None,
    )
    .await;
    assert_eq!(completed(&allowed), "HI");
    let r = run(
        "probe",
        "[tools]\nallow = [\"text.upper\"]\n",
        &probe("tool", &[("name", json!("echo"))]),
        None,
    )
    .await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(detail.contains("not in tools.allow"), "{detail}");
    let r = run(
        "probe",
        "[tools]\nallow = [\"deploy\"]\n",
        &probe("tool", &[("name", json!("deploy"))]),
        None,
    )
    .await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(detail.contains("not registered"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensitive_tool_is_not_performed_and_the_task_escalates() {
    let policy = "[tools]\nallow = [\"text.upper\", \"echo\"]\nsensitive = [\"text.upper\"]\n";
    let r = run(
        "probe",
        policy,
        &probe(
            "tool",
            &[("name", json!("text.upper")), ("input", json!("hi"))],
        ),
        None,
    )
    .await;
    match &r.outcome {
        Outcome::Escalated { reason, detail } => {
            assert_eq!(reason, "sensitive-tool");
            assert!(detail.contains("text.upper"), "{detail}");
        }
        other => panic!("expected escalated, got {other:?}"),
    }
    // Its unlabelled twin runs.
    let r = run(
        "probe",
        policy,
        &probe("tool", &[("name", json!("echo")), ("input", json!("hi"))]),
        None,
    )
    .await;
    assert_eq!(completed(&r), "hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn ungranted_interfaces_kill_on_first_call() {
    let cases = [
        (
            "http",
            probe("http", &[("url", json!("http://127.0.0.1:1/"))]),
            "wasi:http",
        ),
        (
            "tools",
            probe("tool", &[("name", json!("echo"))]),
            "warden:agent/tools",
        ),
        ("wall clock", probe("clock", &[]), "wasi:clocks/wall-clock"),
    ];
    for (name, task, iface) in cases {
        let r = run("probe", "", &task, None).await;
        let (capability, _) = killed(&r, KillReason::NotGranted);
        assert!(capability.starts_with(iface), "{name}: {capability}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_policies_refuse_ungranted_imports_at_load() {
    let err = load("probe", "").err();
    assert!(err.is_none(), "the non-strict load must succeed");
    let policy = warden_tests::policy("probe", "strict = true\n");
    let err = runtime()
        .load_file(&warden_tests::agent("probe"), policy)
        .unwrap_err();
    match err {
        LoadError::Import {
            refusal: ImportError::NotGranted { name, .. },
            ..
        } => {
            let class = warden::imports::classify(&name);
            assert!(
                matches!(class, warden::imports::ImportClass::Capability(_)),
                "{name}"
            );
        }
        other => panic!("expected a not-granted refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_imports_and_corrupt_modules_are_refused_at_load() {
    let cases: [(&str, &[u8]); 4] = [
        (
            "unknown interface",
            b"(component (import \"acme:evil/backdoor@1.0.0\" (instance)))",
        ),
        (
            "future wasi",
            b"(component (import \"wasi:http/types@0.3.0\" (instance)))",
        ),
        ("bare function", b"(component (import \"evil\" (func)))"),
        ("garbage", b"\0asm\x0d\0\x01\0garbage"),
    ];
    for (name, bytes) in cases {
        let policy = warden_tests::policy("bad", "");
        match runtime().load(bytes, policy) {
            Err(LoadError::Import {
                refusal: ImportError::Unknown { .. },
                ..
            }) if name != "garbage" => {}
            Err(LoadError::Engine(_)) if name == "garbage" => {}
            other => panic!(
                "{name}: expected a refusal, got {:?}",
                other.map(|_| "loaded")
            ),
        }
    }
    // A core module is not a component.
    let core = b"(module)";
    assert!(matches!(
        runtime().load(core, warden_tests::policy("core", "")),
        Err(LoadError::Engine(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_keeps_serving_while_agents_are_killed_beside_it() {
    let mut handles = Vec::new();
    for i in 0..64 {
        handles.push(tokio::spawn(async move {
            if i % 4 == 0 {
                let r = run(
                    "probe",
                    "",
                    &probe("alloc", &[("bytes", json!(512u64 << 20))]),
                    None,
                )
                .await;
                killed(&r, KillReason::MemoryLimit);
                None
            } else {
                let r = run("hello", "", &format!("\"agent {i}\""), None).await;
                Some(completed(&r).to_string())
            }
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        if let Some(out) = h.await.unwrap() {
            assert_eq!(out, format!("hello, agent {i}"));
        }
    }
}

/// Load-time refusals: compile cost, bytes that are not wasm, sockets and other known interfaces.
#[path = "sandbox/load.rs"]
mod load_refusals;
