//! TLS for outbound `https`: the one client configuration every connection uses (the web PKI
//! roots plus the certificate authorities named in `[tls] ca` of `warden.toml`), and the
//! handshake, whose failure says in words which check failed.
//!
//! rustls on the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`. Certificate and host-name
//! checks are always on: nothing here builds a configuration without them, and no setting, in
//! a policy or in `warden.toml`, can turn them off. A host can only *add* authorities it trusts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use warden_policy::bounded::{self, Limit};
use wasmtime_wasi_http::Error as HttpTransportError;

/// Most bytes read of one CA file: a bundle of a few hundred certificates fits.
const CA_FILE: Limit = Limit::new("a CA certificate file ([tls] ca)", 1 << 20);

/// Why the TLS client configuration could not be built (a startup error: the host does not run
/// with a `[tls] ca` entry it cannot use).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The file could not be read, or is over its size limit.
    #[error("{error}; fix the path or remove it from `[tls] ca` in warden.toml")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        error: bounded::ReadError,
    },
    /// The file is not PEM text.
    #[error(
        "{path} ([tls] ca) is not a PEM file ({detail}); give the certificate authority's \
         certificate in PEM form (`-----BEGIN CERTIFICATE-----`)"
    )]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        detail: String,
    },
    /// The file holds no certificate.
    #[error(
        "{path} ([tls] ca) holds no certificate; give the certificate authority's certificate \
         in PEM form (`-----BEGIN CERTIFICATE-----`)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file is not one rustls can trust as an authority.
    #[error(
        "certificate {index} of {path} ([tls] ca) cannot be trusted: {detail}; give a valid \
         X.509 certificate authority in PEM form"
    )]
    Refused {
        /// The file.
        path: PathBuf,
        /// Which certificate of the file, from 1.
        index: usize,
        /// What rustls said.
        detail: String,
    },
    /// rustls refused the configuration itself (not expected with the ring provider).
    #[error("cannot build the TLS client configuration: {0}")]
    Build(String),
}

/// The client configuration of every outbound https connection: the web PKI roots plus every
/// certificate in each PEM file of `extra_ca` (`[tls] ca` in `warden.toml`), ALPN `http/1.1`.
///
/// Each file is read with a bound (1 MiB).
///
/// # Errors
///
/// [`TlsConfigError`] naming the file that cannot be read, holds no certificate or holds one
/// rustls refuses, and saying what to do.
pub fn client_config(extra_ca: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_ca {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The configuration with the web PKI roots only, built once per process.
///
/// # Errors
///
/// [`TlsConfigError::Build`] if rustls refuses it (not expected).
pub fn web_pki_config() -> Result<Arc<ClientConfig>, TlsConfigError> {
    static WEB_PKI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = WEB_PKI.get() {
        return Ok(config.clone());
    }
    let config = client_config(&[])?;
    Ok(WEB_PKI.get_or_init(|| config).clone())
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsConfigError> {
    let bytes = bounded::read(path, CA_FILE).map_err(|error| TlsConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| TlsConfigError::NotPem {
            path: path.to_path_buf(),
            detail: match e {
                pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_string(),
                pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_string(),
                other => other.to_string(),
            },
        })?;
        found += 1;
        roots.add(cert).map_err(|e| TlsConfigError::Refused {
            path: path.to_path_buf(),
            index: found,
            detail: e.to_string(),
        })?;
    }
    if found == 0 {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Why a TLS handshake failed, in words a person understands. The guest sees only the
/// `wasi:http` error code ([`TlsFailure::error_code`]); the task trace and the host's log get
/// this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The chain does not lead to an authority this host trusts.
    #[error(
        "the certificate of {host} is not signed by an authority this host trusts (for a \
         private server, add its CA to `[tls] ca` in warden.toml)"
    )]
    UnknownAuthority {
        /// The host connected to.
        host: String,
    },
    /// The certificate is valid, but for other names.
    #[error("the certificate of {host} is not valid for the name {host} (it is for {presented})")]
    WrongHost {
        /// The host connected to.
        host: String,
        /// The names the certificate is for (from the server: escaped, at most a few).
        presented: String,
    },
    /// The certificate's validity ended.
    #[error("the certificate of {host} has expired{when}")]
    Expired {
        /// The host connected to.
        host: String,
        /// ` (on 2001-01-01, UTC)` when known.
        when: String,
    },
    /// The certificate's validity has not begun.
    #[error("the certificate of {host} is not valid yet{when}")]
    NotYetValid {
        /// The host connected to.
        host: String,
        /// ` (from 2100-01-01, UTC)` when known.
        when: String,
    },
    /// Another certificate check failed (bad signature, revoked, wrong purpose, malformed).
    #[error("the certificate of {host} was refused: {reason}")]
    BadCertificate {
        /// The host connected to.
        host: String,
        /// Which check.
        reason: String,
    },
    /// The server ended the handshake with a TLS alert.
    #[error("{host} ended the TLS handshake with the alert `{alert}`")]
    Alert {
        /// The host connected to.
        host: String,
        /// The alert's name.
        alert: String,
        /// The alert's number.
        id: u8,
    },
    /// The handshake broke off: not a TLS server, an unsupported protocol, a closed connection.
    #[error("the TLS handshake with {host} failed: {reason} (is it an https server?)")]
    Protocol {
        /// The host connected to.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The host cannot be checked against a certificate (not a DNS name or an IP address).
    #[error("`{host}` is not a name a certificate can be checked against")]
    InvalidName {
        /// The host.
        host: String,
    },
}

impl TlsFailure {
    /// A short name of the failed check: `unknown-authority`, `wrong-host`, `expired`,
    /// `not-yet-valid`, `bad-certificate`, `alert`, `protocol`, `invalid-name`.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsFailure::UnknownAuthority { .. } => "unknown-authority",
            TlsFailure::WrongHost { .. } => "wrong-host",
            TlsFailure::Expired { .. } => "expired",
            TlsFailure::NotYetValid { .. } => "not-yet-valid",
            TlsFailure::BadCertificate { .. } => "bad-certificate",
            TlsFailure::Alert { .. } => "alert",
            TlsFailure::Protocol { .. } => "protocol",
            TlsFailure::InvalidName { .. } => "invalid-name",
        }
    }

    /// The `wasi:http` error the guest sees: `TLS-certificate-error` for a refused
    /// certificate, `TLS-alert-received` for an alert, `TLS-protocol-error` otherwise.
    pub fn error_code(&self) -> HttpTransportError {
        match self {
            TlsFailure::UnknownAuthority { .. }
            | TlsFailure::WrongHost { .. }
            | TlsFailure::Expired { .. }
            | TlsFailure::NotYetValid { .. }
            | TlsFailure::BadCertificate { .. } => HttpTransportError::TlsCertificateError,
            TlsFailure::Alert { alert, id, .. } => HttpTransportError::TlsAlertReceived {
                alert_id: Some(*id),
                alert_message: Some(alert.clone()),
            },
            TlsFailure::Protocol { .. } => HttpTransportError::TlsProtocolError,
            TlsFailure::InvalidName { .. } => HttpTransportError::HttpRequestUriInvalid,
        }
    }

    /// The failure behind an I/O error of the handshake with `host`.
    fn from_io(host: &str, error: &std::io::Error) -> TlsFailure {
        let host = host.to_string();
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            let reason = match error.kind() {
                std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                _ => error.to_string(),
            };
            return TlsFailure::Protocol { host, reason };
        };
        match tls {
            rustls::Error::InvalidCertificate(cert) => certificate_failure(host, cert),
            rustls::Error::AlertReceived(alert) => TlsFailure::Alert {
                host,
                alert: format!("{alert:?}"),
                id: u8::from(*alert),
            },
            rustls::Error::NoCertificatesPresented => TlsFailure::BadCertificate {
                host,
                reason: "the server presented no certificate".to_string(),
            },
            other => TlsFailure::Protocol {
                host,
                reason: other.to_string(),
            },
        }
    }
}

fn certificate_failure(host: String, cert: &CertificateError) -> TlsFailure {
    match cert {
        CertificateError::UnknownIssuer => TlsFailure::UnknownAuthority { host },
        CertificateError::NotValidForName => TlsFailure::WrongHost {
            host,
            presented: "other names".to_string(),
        },
        CertificateError::NotValidForNameContext { presented, .. } => TlsFailure::WrongHost {
            host,
            presented: presented_names(presented),
        },
        CertificateError::Expired => TlsFailure::Expired {
            host,
            when: String::new(),
        },
        CertificateError::ExpiredContext { not_after, .. } => TlsFailure::Expired {
            host,
            when: format!(" (on {}, UTC)", utc_date(*not_after)),
        },
        CertificateError::NotValidYet => TlsFailure::NotYetValid {
            host,
            when: String::new(),
        },
        CertificateError::NotValidYetContext { not_before, .. } => TlsFailure::NotYetValid {
            host,
            when: format!(" (from {}, UTC)", utc_date(*not_before)),
        },
        CertificateError::BadSignature => TlsFailure::BadCertificate {
            host,
            reason: "its signature does not verify against the authority it names (a forged or \
                     damaged certificate)"
                .to_string(),
        },
        other => TlsFailure::BadCertificate {
            host,
            reason: rustls::Error::InvalidCertificate(other.clone()).to_string(),
        },
    }
}

/// The names a certificate is for, as the server sent them: escaped, each cut short, at most
/// four (a hostile certificate can hold thousands of names, or control characters).
fn presented_names(names: &[String]) -> String {
    if names.is_empty() {
        return "no name".to_string();
    }
    let mut shown: Vec<String> = names
        .iter()
        .take(4)
        .map(|n| {
            // rustls gives each name in its debug form: `DnsName("a.example")`, `IpAddress(1.2.3.4)`.
            let bare = n
                .strip_prefix("DnsName(\"")
                .and_then(|r| r.strip_suffix("\")"))
                .or_else(|| {
                    n.strip_prefix("IpAddress(")
                        .and_then(|r| r.strip_suffix(')'))
                })
                .unwrap_or(n);
            let cut: String = bare.chars().take(64).collect();
            format!("`{}`", cut.escape_debug())
        })
        .collect();
    if names.len() > 4 {
        shown.push(format!("{} more", names.len() - 4));
    }
    shown.join(", ")
}

/// `YYYY-MM-DD` of a UNIX time (days to civil date, proleptic Gregorian).
fn utc_date(time: UnixTime) -> String {
    let days = (time.as_secs() / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Run the TLS handshake on `tcp` with `host` (the name the policy matched: it is the SNI and
/// the name the certificate must be valid for), trusting what `config` trusts.
///
/// The caller bounds it in time (a server that never answers keeps it waiting).
///
/// # Errors
///
/// [`TlsFailure`] saying which check failed.
pub async fn connect_tls(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, TlsFailure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|_| TlsFailure::InvalidName {
            host: host.to_string(),
        })?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TlsFailure::from_io(host, &e))
}

#[cfg(test)]
mod tests;
