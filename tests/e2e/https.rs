//! End-to-end: agents' `https` through real agents (`fetch`, `probe`) against a local TLS server
//! whose certificates a test authority made, trusted through the host configuration's
//! `[tls] ca`. A good certificate passes; a wrong host name, an expired certificate, an unknown
//! authority and a server that does not speak TLS each fail: the guest gets the `wasi:http` TLS
//! error code, the task trace the reason in words (`tls-failed`). The address check still comes
//! first, host-held secrets still reach the server, and a CA file the host cannot use stops it.

use std::path::Path;

use serde_json::json;
use warden::policy::HostConfig;
use warden::secrets::SecretStore;
use warden::{KillReason, Outcome, RunOptions, RunReport, Runtime};
use warden_tests::{agent, completed, killed, ledger_runtime, policy, probe};

#[path = "https/server.rs"]
mod server;

use server::{Server, TestCa, serve_plain, serve_tls};

const SECRET: &str = "sk-live-tls-0123456789abcdef";

/// A host with a ledger (so each task keeps its trace) that trusts `ca` besides the web PKI,
/// with `more` appended to its configuration.
fn host(dir: &Path, ca: Option<&TestCa>, more: &str) -> Runtime {
    let mut text = String::new();
    if let Some(ca) = ca {
        let pem = ca.pem_file(dir);
        text.push_str(&format!("[tls]\nca = [\"{}\"]\n", pem.display()));
    }
    text.push_str(more);
    let config = HostConfig::parse("warden.toml", &text).unwrap();
    let secrets = SecretStore::load(&config).unwrap();
    let ca = config.tls_ca.clone();
    ledger_runtime(&dir.join("data"), config)
        .with_tls_ca(&ca)
        .expect("the test CA is usable")
        .with_secrets(secrets)
}

/// Run `agent_name` on `host` under a policy allowing `127.0.0.1:port`.
async fn run(host: &Runtime, agent_name: &str, allow: &str, task: &str) -> RunReport {
    let policy = policy(agent_name, &format!("[net]\nallow = [\"{allow}\"]\n"));
    host.load_file(&agent(agent_name), policy)
        .unwrap()
        .run(task, &RunOptions::default())
        .await
        .unwrap()
}

/// `fetch` of `https://127.0.0.1:<port>/status`.
async fn fetch(host: &Runtime, server: &Server) -> RunReport {
    let allow = format!("127.0.0.1:{}", server.port);
    let task = json!({ "url": format!("https://{allow}/status") }).to_string();
    run(host, "fetch", &allow, &task).await
}

/// The guest's error message, or a panic showing what happened instead.
fn agent_error(report: &RunReport) -> &str {
    match &report.outcome {
        Outcome::AgentError { message, .. } => message,
        other => panic!("expected an agent error, got {other:?}"),
    }
}

/// The `tls-failed` events of the task's trace (their `call`: the reason).
fn tls_failures(host: &Runtime, report: &RunReport) -> Vec<String> {
    let task = host.ledger().unwrap().store().task(report.task).unwrap();
    let trace = task.trace.expect("the task has a trace");
    trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["decision"] == "tls-failed")
        .map(|e| {
            assert_eq!(e["capability"], "net");
            e["call"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_certificate_passes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf(&["127.0.0.1"])).await;
    let host = host(dir.path(), Some(&ca), "");
    let report = fetch(&host, &server).await;
    let out: serde_json::Value = serde_json::from_str(completed(&report)).unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["first_line"], "GET /status HTTP/1.1", "{out}");
    // The server got the request, over TLS, with the host the policy matched.
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].contains(&format!("host: 127.0.0.1:{}", server.port)),
        "{seen:?}"
    );
    assert!(tls_failures(&host, &report).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_host_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf(&["api.example.com"])).await;
    let host = host(dir.path(), Some(&ca), "");
    let report = fetch(&host, &server).await;
    assert!(
        agent_error(&report).contains("TlsCertificateError"),
        "{report:?}"
    );
    assert_eq!(
        tls_failures(&host, &report),
        [
            "the certificate of 127.0.0.1 is not valid for the name 127.0.0.1 (it is for `api.example.com`)"
        ]
    );
    assert!(server.seen().is_empty(), "the request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf_valid(&["127.0.0.1"], 2000, 2001)).await;
    let host = host(dir.path(), Some(&ca), "");
    let report = fetch(&host, &server).await;
    assert!(
        agent_error(&report).contains("TlsCertificateError"),
        "{report:?}"
    );
    assert_eq!(
        tls_failures(&host, &report),
        ["the certificate of 127.0.0.1 has expired (on 2001-01-01, UTC)"]
    );
    assert!(server.seen().is_empty(), "the request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_certificate_authority_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf(&["127.0.0.1"])).await;
    // A host that trusts only the web PKI, and one that trusts another private authority.
    for trusted in [None, Some(TestCa::new("Another CA"))] {
        let host = host(dir.path(), trusted.as_ref(), "");
        let report = fetch(&host, &server).await;
        assert!(
            agent_error(&report).contains("TlsCertificateError"),
            "{report:?}"
        );
        let failures = tls_failures(&host, &report);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "the certificate of 127.0.0.1 is not signed by an authority this host trusts"
            ) && failures[0].contains("`[tls] ca`"),
            "{failures:?}"
        );
    }
    assert!(server.seen().is_empty(), "the request was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_does_not_speak_tls_gets_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_plain().await;
    let host = host(dir.path(), None, "");
    let report = fetch(&host, &server).await;
    assert!(
        agent_error(&report).contains("TlsProtocolError"),
        "{report:?}"
    );
    let failures = tls_failures(&host, &report);
    assert!(
        failures.len() == 1 && failures[0].starts_with("the TLS handshake with 127.0.0.1 failed"),
        "{failures:?}"
    );
    // It got a ClientHello, never the request in the clear.
    let seen = server.seen();
    assert!(seen.iter().all(|s| !s.contains("GET")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_address_check_still_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf(&["localhost", "127.0.0.1"])).await;
    let host = host(dir.path(), Some(&ca), "");
    // `localhost` resolves to loopback, which the policy does not name as an address.
    let allow = format!("localhost:{}", server.port);
    let task = json!({ "url": format!("https://{allow}/") }).to_string();
    let report = run(&host, "fetch", &allow, &task).await;
    let (capability, detail) = killed(&report, KillReason::OutOfScope);
    assert_eq!(capability, "net");
    assert!(detail.contains("non-public address"), "{detail}");
    assert!(server.seen().is_empty(), "the server was reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_injected_into_an_https_request_and_redacted_from_its_reply() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Warden test CA");
    let server = serve_tls(ca.leaf(&["127.0.0.1"])).await;
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{SECRET}\n")).unwrap();
    let secrets = format!(
        "[[secrets]]\nname = \"api\"\nfile = \"{}\"\nhost = \"127.0.0.1:{}\"\nheader = \"authorization\"\nformat = \"Bearer {{}}\"\n",
        token.display(),
        server.port
    );
    let host = host(dir.path(), Some(&ca), &secrets);
    let allow = format!("127.0.0.1:{}", server.port);
    let task = probe("http", &[("url", json!(format!("https://{allow}/echo")))]);
    let report = run(&host, "probe", &allow, &task).await;
    let out = completed(&report);
    assert!(
        server.seen()[0].contains(&format!("Bearer {SECRET}")),
        "{:?}",
        server.seen()
    );
    assert!(out.contains("Bearer [REDACTED]"), "{out}");
    assert!(!serde_json::to_string(&report).unwrap().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_the_host_cannot_use_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("notes.pem");
    std::fs::write(&not_a_cert, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, says) in [
        (&missing, "fix the path or remove it from `[tls] ca`"),
        (&not_a_cert, "holds no certificate"),
    ] {
        let err = warden_tests::runtime()
            .clone()
            .with_tls_ca(std::slice::from_ref(file))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&file.display().to_string()) && err.contains(says),
            "{err}"
        );
    }
}
