//! Host attacks of the `tls` class: a man in the middle on an agent's `https` request. Each
//! attack stands up its own loopback server (`../https/server.rs`) with a certificate that must
//! not pass — self-signed, forged in the name of an authority the host trusts, signed by a
//! trusted authority's ordinary server certificate, valid for another name, expired — or with no
//! TLS at all
//! (the request stripped down to plain HTTP, with a host-held secret for that host waiting to be
//! sent). The `probe` agent makes the request.
//!
//! `contained:refused-certificate`: the guest got `TLS-certificate-error` and the server no
//! request; `contained:no-plaintext`: the guest got `TLS-protocol-error` and the server never saw
//! the request or the secret in the clear. Anything else is `breach:<what happened>`.

#[path = "../https/server.rs"]
mod server;

use serde_json::json;
use server::{Server, TestCa, serve_plain, serve_tls};
use warden::policy::HostConfig;
use warden::secrets::SecretStore;
use warden::{Outcome, RunOptions, Runtime};

const SECRET: &str = "sk-live-redteam-tls-secret";

/// The outcome of the attack `name`, or `None` if it is not of this class.
pub async fn run(name: &str, task: &str, port: u16) -> Option<Vec<String>> {
    let _ = (task, port);
    let trusted = TestCa::new("Warden test CA");
    let (server, code, expect) = match name {
        "tls-self-signed" => (
            serve_tls(TestCa::self_signed(&["127.0.0.1"])).await,
            "TlsCertificateError",
            "refused-certificate",
        ),
        "tls-forged-in-a-trusted-name" => (
            // Same subject as the authority the host trusts, another key.
            serve_tls(TestCa::new("Warden test CA").leaf(&["127.0.0.1"])).await,
            "TlsCertificateError",
            "refused-certificate",
        ),
        "tls-valid-for-another-name" => (
            serve_tls(trusted.leaf(&["api.example.com"])).await,
            "TlsCertificateError",
            "refused-certificate",
        ),
        "tls-expired" => (
            serve_tls(trusted.leaf_valid(&["127.0.0.1"], 2000, 2001)).await,
            "TlsCertificateError",
            "refused-certificate",
        ),
        "tls-signed-by-a-trusted-leaf" => (
            // Whoever holds any certificate of a trusted authority signs one for this host.
            serve_tls(trusted.signed_by_a_leaf("attacker.example", &["127.0.0.1"])).await,
            "TlsCertificateError",
            "refused-certificate",
        ),
        "tls-downgrade-to-plaintext" => (serve_plain().await, "TlsProtocolError", "no-plaintext"),
        _ => return None,
    };
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), &trusted, &server);
    let url = format!("https://127.0.0.1:{}/", server.port);
    let task = json!({ "op": "http", "url": url });
    let policy = warden::policy::Policy::parse(
        "attack.toml",
        &format!(
            "[agent]\nname = \"redteam\"\n[net]\nallow = [\"127.0.0.1:{}\"]\n",
            server.port
        ),
    )
    .unwrap();
    let report = host
        .load_file(&warden_tests::agent("probe"), policy)
        .unwrap()
        .run(&task.to_string(), &RunOptions::default())
        .await
        .unwrap();
    Some(vec![judge(&report.outcome, &server, code, expect)])
}

/// A host that trusts `ca` besides the web PKI and holds a secret for `server`'s host.
fn host(dir: &std::path::Path, ca: &TestCa, server: &Server) -> Runtime {
    let token = dir.join("token");
    std::fs::write(&token, SECRET).unwrap();
    let text = format!(
        "[tls]\nca = [\"{}\"]\n[[secrets]]\nname = \"api\"\nfile = \"{}\"\nhost = \"127.0.0.1:{}\"\nheader = \"authorization\"\nformat = \"Bearer {{}}\"\n",
        ca.pem_file(dir).display(),
        token.display(),
        server.port
    );
    let config = HostConfig::parse("warden.toml", &text).unwrap();
    let secrets = SecretStore::load(&config).unwrap();
    let ca = config.tls_ca.clone();
    warden_tests::runtime()
        .clone()
        .with_host_config(config)
        .with_secrets(secrets)
        .with_tls_ca(&ca)
        .unwrap()
}

fn judge(outcome: &Outcome, server: &Server, code: &str, contained: &str) -> String {
    let seen = server.seen();
    if let Some(clear) = seen
        .iter()
        .find(|s| s.contains("GET ") || s.contains(SECRET))
    {
        let first = clear.lines().next().unwrap_or("");
        return format!("breach:the server read `{}`", first.escape_debug());
    }
    match outcome {
        Outcome::AgentError { message, .. } if message.contains(code) => {
            format!("contained:{contained}")
        }
        Outcome::AgentError { message, .. } => format!("breach:the guest got `{message}`"),
        other => format!("breach:{}", warden::outcome_name(other)),
    }
}
