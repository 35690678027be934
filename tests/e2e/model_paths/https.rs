//! HTTPS to a model provider: the stub behind TLS with a certificate from a test authority
//! (`rcgen`). Trusted through `[tls] ca`, the call works; without it, or with a certificate for
//! another name, the guest gets a provider error naming the certificate problem, and the stub
//! never got a request (nothing was sent before the handshake failed, and nothing is retried).

#[path = "../https/server.rs"]
mod server;

use server::TestCa;
use warden::orchestra::model::stub::StubProvider;

use super::{Host, POLICY, ask, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_behind_tls_works_only_when_its_authority_is_trusted() {
    let ca = TestCa::new("Warden model test CA");
    let stub = StubProvider::start_tls(ca.leaf(&["127.0.0.1"]).server_config())
        .await
        .unwrap();
    assert!(
        stub.url().starts_with("https://127.0.0.1:"),
        "{}",
        stub.url()
    );

    // Trusted through [tls] ca.
    let trusting = Host::new(&stub.url(), &[], "");
    let pem = ca.pem_file(trusting.dir.path());
    trusting.append_config(&format!("[tls]\nca = [\"{}\"]\n", pem.display()));
    let r = trusting.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.text(), "stub reply", "{r}");
    assert_eq!(stub.request_count(), 1);

    // Not trusted: the web PKI alone does not know the test authority.
    let stranger = Host::new(&stub.url(), &[], "");
    let r = stranger.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    let message = r.text();
    assert!(
        message.starts_with("provider: model `small`: TLS with 127.0.0.1:")
            && message.contains("certificate")
            && message.contains("not signed by an authority this host trusts"),
        "names the certificate problem: {r}"
    );
    assert_eq!(stub.request_count(), 1, "nothing was sent");
    let call = stranger.one_call(r.task());
    assert_eq!(
        (call["outcome"].as_str(), count(&call["attempts"])),
        (Some("provider-error"), 1),
        "a refused certificate is not retried: {call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_certificate_for_another_name_is_refused() {
    let ca = TestCa::new("Warden model test CA");
    let stub = StubProvider::start_tls(ca.leaf(&["models.example.com"]).server_config())
        .await
        .unwrap();
    let host = Host::new(&stub.url(), &[], "");
    let pem = ca.pem_file(host.dir.path());
    host.append_config(&format!("[tls]\nca = [\"{}\"]\n", pem.display()));
    let r = host.probe(POLICY, &ask("small", "hi")).await;
    assert_eq!(r.status(), "agent-error", "{r}");
    assert!(
        r.text().contains("certificate") && r.text().contains("is not valid for the name"),
        "{r}"
    );
    assert_eq!(stub.request_count(), 0, "nothing was sent");
}
