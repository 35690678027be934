//! A local https world made in the test: a certificate authority (`rcgen`, ring), server
//! certificates it signs (good, for another name, expired), and loopback servers — one speaking
//! TLS, one that only pretends (plain HTTP on the port a client dials as https). Each server keeps
//! every byte it read, so a test can tell what reached it in the clear.

#![allow(dead_code)] // each test binary that includes this uses part of it

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A certificate authority made for one test.
pub struct TestCa(CertifiedIssuer<'static, KeyPair>);

/// A server certificate (with the chain the server sends after it) and its key.
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new authority called `name` (two authorities of one name have different keys).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_valid(names, 2020, 4000)
    }

    /// A server certificate for `names`, valid from 1 January `from` to 1 January `until`.
    pub fn leaf_valid(&self, names: &[&str], from: i32, until: i32) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// A certificate for `names` signed with the key of an ordinary server certificate this
    /// authority gave to `holder` (not an authority): the chain a holder of any trusted leaf
    /// could forge. The server sends both.
    pub fn signed_by_a_leaf(&self, holder: &str, names: &[&str]) -> Leaf {
        let mut params = CertificateParams::new(vec![holder.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, holder);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let holder =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.0).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &holder).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), holder.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// A self-signed certificate for `names`: its own authority, which nobody trusts.
    pub fn self_signed(names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// The authority's certificate as a PEM file in `dir` (for `[tls] ca`).
    pub fn pem_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, self.0.pem()).unwrap();
        path
    }
}

/// A loopback server and every byte it read, per connection.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Server {
    /// What each connection sent, as text (after TLS, for a TLS server).
    pub fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

impl Leaf {
    /// A rustls server configuration presenting this certificate (for a server of a test's own,
    /// such as the model stub's `start_tls`).
    pub fn server_config(self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.chain, self.key)
                .unwrap(),
        )
    }
}

/// An https server on 127.0.0.1 presenting `leaf`. Every request gets `200` with the request's
/// head as its body (so a test sees what the server received, headers included).
pub async fn serve_tls(leaf: Leaf) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    echo(tls, &log).await;
                }
            });
        }
    });
    Server { port, seen }
}

/// A server on 127.0.0.1 that speaks plain HTTP whatever it is sent: what a man in the middle
/// who strips TLS offers. It keeps the raw bytes (a ClientHello, or a request in the clear).
pub async fn serve_plain() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move { echo(tcp, &log).await });
        }
    });
    Server { port, seen }
}

/// Read one request head (at most 16 KiB, 5 s), keep it, answer with it. A TLS record (a
/// ClientHello sent to the plain server) is answered at once.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, log: &Mutex<Vec<Vec<u8>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while head.len() < 16 << 10
            && head.first() != Some(&0x16)
            && !head.windows(4).any(|w| w == b"\r\n\r\n")
        {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    log.lock().unwrap().push(head.clone());
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        head.len()
    )
    .into_bytes();
    reply.extend_from_slice(&head);
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}
