//! `/mcp` on `warden serve`: the Python SDK's streamable HTTP client with the development token
//! in both spec eras; and plain HTTP for the authorization and DNS-rebinding rules (401 with
//! `WWW-Authenticate: Bearer resource_metadata=…` for no token and a forged one, 401 for a token
//! of another audience; the protected resource metadata; a foreign `Host` or `Origin` refused, a
//! loopback one accepted).

use std::process::{Child, Command};

use super::{Host, check_session, client, warden};

/// A running `warden serve`, killed when dropped.
pub(super) struct Served {
    child: Child,
    pub(super) url: String,
    pub(super) token: String,
    pub(super) host: Host,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `warden serve` on a loopback port over a fresh [`Host`].
pub(super) fn serve() -> Served {
    let host = Host::new();
    let mut command = Command::new(warden());
    command
        .env_remove("WARDEN_CONFIG")
        .env_remove("WARDEN_DATA_DIR")
        .args(host.warden_args(&["serve", "--listen", "127.0.0.1:0", "--grace-secs", "2"]));
    let (child, addr, token) =
        warden_tests::served::start(command, &host.data.path().join("stderr"));
    Served {
        child,
        url: format!("http://{addr}/mcp"),
        token,
        host,
    }
}

fn session(s: &Served, mode: &str) -> serde_json::Value {
    client(&[
        "session".into(),
        "--mode".into(),
        mode.into(),
        "--url".into(),
        s.url.clone(),
        "--token".into(),
        s.token.clone(),
    ])
}

#[test]
fn http_both_eras_list_and_call_tools_and_the_server_keeps_serving() {
    let s = serve();
    let legacy = session(&s, "legacy");
    assert_eq!(legacy["protocol"], "2025-11-25", "{legacy}");
    check_session(&legacy);
    let modern = session(&s, "auto");
    assert_eq!(modern["protocol"], "2026-07-28", "{modern}");
    check_session(&modern);
}

/// A caller whose token the server refuses neither lists nor calls any tool; a valid user whose
/// roles list only `hello` sees only `hello`, and calling `probe` anyway runs nothing.
#[test]
fn a_refused_caller_neither_sees_nor_runs_an_agent_and_rebinding_is_refused() {
    let s = serve();
    let key = s.host.data.path().join("serve/dev-issuer.key");
    let hal = warden_tests::served::dev_token(
        s.host.data.path(),
        "hal",
        &["hello-only"],
        std::time::Duration::from_secs(600),
    );
    let narrow = client(&[
        "session".into(),
        "--url".into(),
        s.url.clone(),
        "--token".into(),
        hal,
    ]);
    let names: Vec<&str> = narrow["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello"], "{narrow}");
    let unlisted = &narrow["unlisted_probe"];
    assert!(
        unlisted["isError"] == true || unlisted.as_str().is_some_and(|e| e.starts_with("error")),
        "calling an unlisted agent must fail: {narrow}"
    );
    assert!(
        !unlisted.to_string().contains("\"x\""),
        "the probe must not have run: {narrow}"
    );
    // A token signed by the trusted issuer, for another audience (another resource).
    let out = Command::new(warden())
        .args(["token", "issue", "--key"])
        .arg(&key)
        .args([
            "--issuer",
            "warden-dev",
            "--subject",
            "dev",
            "--role",
            "dev",
        ])
        .args(["--audience", "elsewhere"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let raw = client(&[
        "raw".into(),
        "--url".into(),
        s.url.clone(),
        "--token".into(),
        s.token.clone(),
        "--wrong-audience".into(),
        elsewhere,
    ]);
    assert_eq!(raw["wrong_audience"]["status"], 401, "{raw}");
    assert!(
        raw["wrong_audience"]["body"]
            .as_str()
            .unwrap()
            .contains("audience"),
        "{raw}"
    );
    for case in ["no_token", "forged"] {
        assert_eq!(raw[case]["status"], 401, "{case}: {raw}");
        let www = raw[case]["www"].as_str().unwrap_or_default();
        let addr = s.url.trim_start_matches("http://").trim_end_matches("/mcp");
        assert_eq!(
            www.split(',').next().unwrap(),
            format!(
                "Bearer resource_metadata=\"http://{addr}/.well-known/oauth-protected-resource/mcp\""
            ),
            "{case}: {raw}"
        );
    }
    assert!(
        raw["forged"]["www"]
            .as_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(raw["metadata"]["status"], 200);
    assert_eq!(raw["metadata"]["body"]["resource"], s.url);
    assert_eq!(
        raw["metadata"]["body"]["bearer_methods_supported"][0],
        "header"
    );
    assert_eq!(raw["rebinding_host"], 403, "{raw}");
    // Refused before its body was read: the connection is not reused (no client sends its next
    // request into a socket the server is closing).
    assert_eq!(raw["rebinding_connection"], "close", "{raw}");
    // Named in `[server] allowed_hosts` / `allowed_origins`: accepted.
    assert_eq!(raw["allowed_host"], 200, "{raw}");
    assert_eq!(raw["allowed_origin"], 200, "{raw}");
    assert_eq!(raw["foreign_origin"], 403, "{raw}");
    assert_eq!(raw["loopback_origin"], 200, "{raw}");
}
