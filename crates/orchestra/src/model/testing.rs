//! What the unit tests of the model modules share: a provider's configuration pointing at a
//! stub, a TLS configuration, a request.

use std::sync::Arc;
use std::time::Duration;

use warden_policy::{KeySource, ModelProvider, Price};
use warden_sandbox::capabilities::model::{ChatMessage, ChatRequest, ChatRole};

/// A client TLS configuration trusting `roots` (none: every certificate is refused).
pub(crate) fn tls_trusting(
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a test root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(store)
        .with_no_client_auth(),
    )
}

/// A client TLS configuration that trusts nothing (plain-HTTP tests never use it).
pub(crate) fn tls() -> Arc<rustls::ClientConfig> {
    tls_trusting(&[])
}

/// Provider `small` at `url`: model id `stub-1`, timeout 2 s, 2 retries, schemas honoured,
/// prices 1 / 0.5 / 2 USD per million tokens.
pub(crate) fn provider(url: &str) -> ModelProvider {
    ModelProvider {
        name: "small".into(),
        kind: warden_policy::ProviderKind::Http,
        url: url.into(),
        id: "stub-1".into(),
        key: KeySource::None,
        price: Price {
            input: 1_000_000,
            cached: 500_000,
            output: 2_000_000,
        },
        timeout: Duration::from_secs(2),
        retries: 2,
        json_schema: true,
    }
}

/// A request to `small` with one user message.
pub(crate) fn request(text: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "small".into(),
        knowledge: None,
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: text.into(),
        }],
        max_tokens,
        temperature: None,
        json_schema: None,
    }
}
