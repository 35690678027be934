//! End-to-end: a host-held secret is injected into the requests its rule names, never reaches the
//! guest (even when the server echoes it back), and guest output containing it is blocked.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::json;
use warden::policy::HostConfig;
use warden::secrets::SecretStore;
use warden::{KillReason, RunOptions};
use warden_tests::{completed, killed, probe, runtime};

const SECRET: &str = "sk-live-0123456789abcdef";

/// A loopback server that answers with the request's head, headers included, and keeps a copy.
fn echo_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            log.lock().unwrap().push(head.clone());
            let reply = format!(
                "HTTP/1.1 200 OK\r\nx-echo: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization"))
                    .unwrap_or("none"),
                head.len()
            );
            let _ = s.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

fn host_with_secret(port: u16, dir: &std::path::Path) -> warden::Runtime {
    let file = dir.join("token");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let config = HostConfig::parse(
        "warden.toml",
        &format!(
            "[[secrets]]\nname = \"api\"\nfile = \"{}\"\nhost = \"127.0.0.1:{port}\"\nheader = \"authorization\"\nformat = \"Bearer {{}}\"\n",
            file.display()
        ),
    )
    .unwrap();
    let secrets = SecretStore::load(&config).unwrap();
    runtime()
        .clone()
        .with_host_config(config)
        .with_secrets(secrets)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_is_injected_and_never_seen_by_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = echo_server();
    let (other, other_seen) = echo_server();
    let host = host_with_secret(port, dir.path());
    let policy = warden_tests::policy(
        "probe",
        &format!("[net]\nallow = [\"127.0.0.1:{port}\", \"127.0.0.1:{other}\"]\n"),
    );
    let agent = host
        .load_file(&warden_tests::agent("probe"), policy)
        .unwrap();

    let r = agent
        .run(
            &probe(
                "http",
                &[("url", json!(format!("http://127.0.0.1:{port}/echo")))],
            ),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    let out = completed(&r);
    // The server got it...
    assert!(
        seen.lock().unwrap()[0].contains(&format!("Bearer {SECRET}")),
        "{:?}",
        seen.lock().unwrap()
    );
    // ...the guest got the echo with the secret redacted, and nothing of the run holds it.
    assert!(out.contains("Bearer [REDACTED]"), "{out}");
    let report = serde_json::to_string(&r).unwrap();
    assert!(
        !report.contains(SECRET),
        "the secret reached the run report"
    );

    // A host the rule does not name never receives it.
    let r = agent
        .run(
            &probe(
                "http",
                &[("url", json!(format!("http://127.0.0.1:{other}/")))],
            ),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    completed(&r);
    assert!(
        !other_seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("authorization")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_holding_a_secret_is_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_secret(9, dir.path());
    let agent = host
        .load_file(
            &warden_tests::agent("probe"),
            warden_tests::policy("probe", ""),
        )
        .unwrap();
    // However the guest came by the value, it cannot hand it out (output and logs are screened
    // the same way, in output.rs).
    let r = agent
        .run(
            &probe("echo", &[("text", json!(format!("leak {SECRET}")))]),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    let (capability, detail) = killed(&r, KillReason::OutOfScope);
    assert_eq!(capability, "secrets");
    assert!(
        detail.contains("`api`") && !detail.contains(SECRET),
        "{detail}"
    );
}
