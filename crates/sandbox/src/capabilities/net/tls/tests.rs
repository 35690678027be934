//! Unit tests of the TLS client: the configuration from CA files (each refusal names its file),
//! and real handshakes with a local server whose certificates a test authority made: a good
//! certificate passes; a wrong name, an expired or not yet valid certificate, an unknown
//! authority, an alert and a server that does not speak TLS each fail with their own reason.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A certificate authority made for one test.
struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A server certificate for `names`, valid from `from` to `until` (years).
    fn leaf(&self, names: &[&str], from: i32, until: i32) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Leaf {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// The authority's certificate in a PEM file of `dir`.
    fn pem_file(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.0.pem()).unwrap();
        path
    }
}

struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A TLS server on loopback presenting `leaf`, answering every request with `hello`.
async fn serve(leaf: Leaf, alpn: &[&[u8]]) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert], leaf.key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// A plain TCP server that answers anything with an HTTP response (no TLS at all).
async fn serve_plain() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain")
                .await;
        }
    });
    port
}

/// Handshake with 127.0.0.1:`port` as `host`, then one request; the reply's last line.
async fn fetch(port: u16, host: &str, config: Arc<ClientConfig>) -> Result<String, TlsFailure> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = connect_tls(tcp, host, config).await?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    Ok(reply.lines().last().unwrap_or("").to_string())
}

/// A client configuration that trusts the web PKI and `ca`.
fn trusting(ca: &TestCa) -> (tempfile::TempDir, Arc<ClientConfig>) {
    let dir = tempfile::tempdir().unwrap();
    let config = client_config(&[ca.pem_file(dir.path())]).unwrap();
    (dir, config)
}

#[tokio::test]
async fn a_good_certificate_passes_by_name_and_by_address() {
    let ca = TestCa::new("Warden test CA");
    let (_dir, config) = trusting(&ca);
    let port = serve(ca.leaf(&["localhost", "127.0.0.1"], 2020, 4000), &[]).await;
    assert_eq!(
        fetch(port, "localhost", config.clone()).await.unwrap(),
        "hello"
    );
    assert_eq!(fetch(port, "127.0.0.1", config).await.unwrap(), "hello");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_as_wrong_host() {
    let ca = TestCa::new("Warden test CA");
    let (_dir, config) = trusting(&ca);
    let port = serve(ca.leaf(&["api.example.com"], 2020, 4000), &[]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(failure.kind(), "wrong-host", "{failure}");
    assert_eq!(
        failure.to_string(),
        "the certificate of 127.0.0.1 is not valid for the name 127.0.0.1 (it is for `api.example.com`)"
    );
    assert!(matches!(
        failure.error_code(),
        HttpTransportError::TlsCertificateError
    ));
}

#[tokio::test]
async fn an_expired_certificate_fails_with_its_date() {
    let ca = TestCa::new("Warden test CA");
    let (_dir, config) = trusting(&ca);
    let port = serve(ca.leaf(&["127.0.0.1"], 2000, 2001), &[]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(
        failure.to_string(),
        "the certificate of 127.0.0.1 has expired (on 2001-01-01, UTC)"
    );
    assert!(matches!(
        failure.error_code(),
        HttpTransportError::TlsCertificateError
    ));
}

#[tokio::test]
async fn a_certificate_not_valid_yet_fails_with_its_date() {
    let ca = TestCa::new("Warden test CA");
    let (_dir, config) = trusting(&ca);
    let port = serve(ca.leaf(&["127.0.0.1"], 2999, 3000), &[]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(failure.kind(), "not-yet-valid", "{failure}");
    assert!(failure.to_string().contains("2999-01-01"), "{failure}");
}

#[tokio::test]
async fn an_unknown_authority_fails_and_says_where_to_add_one() {
    let ca = TestCa::new("Warden test CA");
    let stranger = TestCa::new("Someone else's CA");
    let (_dir, config) = trusting(&ca);
    let port = serve(stranger.leaf(&["127.0.0.1"], 2020, 4000), &[]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(failure.kind(), "unknown-authority", "{failure}");
    assert!(failure.to_string().contains("[tls] ca"), "{failure}");
    // The web PKI alone does not trust the test authority either.
    let port = serve(ca.leaf(&["127.0.0.1"], 2020, 4000), &[]).await;
    let failure = fetch(port, "127.0.0.1", web_pki_config().unwrap())
        .await
        .unwrap_err();
    assert_eq!(failure.kind(), "unknown-authority", "{failure}");
}

#[tokio::test]
async fn a_certificate_forged_in_a_trusted_authoritys_name_fails() {
    let ca = TestCa::new("Warden test CA");
    let forger = TestCa::new("Warden test CA"); // the same name, another key
    let (_dir, config) = trusting(&ca);
    let port = serve(forger.leaf(&["127.0.0.1"], 2020, 4000), &[]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(failure.kind(), "bad-certificate", "{failure}");
    assert!(failure.to_string().contains("forged"), "{failure}");
    assert!(matches!(
        failure.error_code(),
        HttpTransportError::TlsCertificateError
    ));
}

#[tokio::test]
async fn a_server_alert_is_named() {
    let ca = TestCa::new("Warden test CA");
    let (_dir, config) = trusting(&ca);
    // The server speaks only h2; the client offers only http/1.1: the server says so.
    let port = serve(ca.leaf(&["127.0.0.1"], 2020, 4000), &[b"h2"]).await;
    let failure = fetch(port, "127.0.0.1", config).await.unwrap_err();
    assert_eq!(failure.kind(), "alert", "{failure}");
    assert!(
        failure.to_string().contains("NoApplicationProtocol"),
        "{failure}"
    );
    assert!(matches!(
        failure.error_code(),
        HttpTransportError::TlsAlertReceived {
            alert_id: Some(120),
            ..
        }
    ));
}

#[tokio::test]
async fn a_server_without_tls_is_a_protocol_failure() {
    let port = serve_plain().await;
    let failure = fetch(port, "127.0.0.1", web_pki_config().unwrap())
        .await
        .unwrap_err();
    assert_eq!(failure.kind(), "protocol", "{failure}");
    assert!(matches!(
        failure.error_code(),
        HttpTransportError::TlsProtocolError
    ));
}

#[tokio::test]
async fn a_name_no_certificate_can_hold_is_refused_before_connecting_tls() {
    let port = serve_plain().await;
    let failure = fetch(port, "not a name", web_pki_config().unwrap())
        .await
        .unwrap_err();
    assert_eq!(failure.kind(), "invalid-name");
}

#[tokio::test]
async fn the_configuration_trusts_every_certificate_of_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (TestCa::new("A"), TestCa::new("B"), TestCa::new("C"));
    let both = dir.path().join("both.pem");
    std::fs::write(&both, format!("{}\n{}", a.0.pem(), b.0.pem())).unwrap();
    let config = client_config(&[both, c.pem_file(dir.path())]).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    for ca in [&a, &b, &c] {
        let port = serve(ca.leaf(&["127.0.0.1"], 2020, 4000), &[]).await;
        assert_eq!(
            fetch(port, "127.0.0.1", config.clone()).await.unwrap(),
            "hello"
        );
    }
    let web = web_pki_config().unwrap();
    assert_eq!(web.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(Arc::ptr_eq(&web, &web_pki_config().unwrap()), "built once");
}

#[test]
fn a_ca_file_that_cannot_be_used_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let key_only = write(
        "key.pem",
        KeyPair::generate().unwrap().serialize_pem().as_bytes(),
    );
    let text = write("notes.txt", b"just some text\n");
    let broken = write(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let unterminated = write("cut.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n");
    let huge = write("huge.pem", &vec![b'A'; (1 << 20) + 1]);
    let missing = dir.path().join("missing.pem");
    let cases: [(&PathBuf, &str); 6] = [
        (&missing, "fix the path or remove it from `[tls] ca`"),
        (&key_only, "holds no certificate"),
        (&text, "holds no certificate"),
        (&broken, "certificate 1 of"),
        (&unterminated, "is not a PEM file"),
        (&huge, "over the 1 MiB limit"),
    ];
    for (path, expected) in cases {
        let err = client_config(std::slice::from_ref(path))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(expected), "{path:?}: {err}");
    }
}

#[test]
fn dates_and_names_from_the_server_are_shown_safely() {
    assert_eq!(
        utc_date(UnixTime::since_unix_epoch(std::time::Duration::ZERO)),
        "1970-01-01"
    );
    let day = |secs: u64| {
        utc_date(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            secs,
        )))
    };
    assert_eq!(day(951_782_400), "2000-02-29");
    assert_eq!(day(978_307_200), "2001-01-01");
    assert_eq!(day(4_102_444_799), "2099-12-31");
    let names: Vec<String> = (0..6).map(|i| format!("n{i}\u{1b}[2J")).collect();
    let shown = presented_names(&names);
    assert!(!shown.contains('\u{1b}'), "{shown}");
    assert!(shown.ends_with("2 more"), "{shown}");
    assert_eq!(
        presented_names(&["x".repeat(100)]),
        format!("`{}`", "x".repeat(64))
    );
    let debug_forms = [
        "DnsName(\"a.example\")".to_string(),
        "IpAddress(10.0.0.1)".to_string(),
    ];
    assert_eq!(presented_names(&debug_forms), "`a.example`, `10.0.0.1`");
}
