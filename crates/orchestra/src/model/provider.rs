//! One model provider as the host reaches it: an OpenAI-compatible `POST {url}/chat/completions`
//! over HTTP/1.1 (plain, or TLS through rustls with host-name and certificate checks always on),
//! the API key, retries and the overall timeout. What the bodies say is [`super::wire`]'s.
//!
//! The connection's future is driven in the caller's task (selected together with the exchange,
//! never spawned), so the CPU of a call is the caller's. One connection per attempt: the host
//! keeps no idle connection between calls, so nothing runs between them.
//!
//! The API key is read once at start-up (see [`super::Models::from_config`]); it is sent as
//! `Authorization: Bearer …` (a header marked sensitive) and replaced by [`REDACTED`] in every
//! reply text and every error this module builds, so that a provider echoing it hands it to no
//! guest, log line or audit record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use warden_policy::ModelProvider;
use warden_sandbox::capabilities::model::{ChatRequest, ModelFailure};
use warden_sandbox::capabilities::net::tls::{TlsFailure, connect_tls};

use super::context::WireMessage;
use super::wire::{self, Completion};

/// Most bytes of a provider's reply the host reads.
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// What replaces the API key wherever a provider echoed it.
pub const REDACTED: &str = "[REDACTED]";
/// Longest wait between two attempts, whatever `Retry-After` asks.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// The first back-off after a 5xx or a failed connection; it doubles on each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Most characters of a provider's error body quoted in an error.
const QUOTED_CHARS: usize = 300;

/// Where `{url}/chat/completions` is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    /// The host as the TLS name and the resolver take it (no brackets around an IPv6 address).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    /// The path sent on the wire.
    path: String,
}

impl Endpoint {
    fn parse(base: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = format!("{}/chat/completions", base.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("`{base}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("`{base}` is not an http(s) URL")),
        };
        let authority = uri
            .authority()
            .filter(|a| !a.as_str().contains('@'))
            .ok_or_else(|| format!("`{base}` names no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{base}` names no host"));
        }
        Ok(Endpoint {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri.path().to_owned(),
        })
    }
}

/// The API key. Its `Debug` never shows it.
struct ApiKey {
    value: String,
    /// The key as a JSON encoder that escapes `/` writes it.
    escaped: Option<String>,
    header: HeaderValue,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// One call, retries included: its result and what it took.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The completion, or a sentence (the key redacted) saying what failed.
    pub(crate) result: Result<Completion, String>,
    /// Requests sent (or tried).
    pub(crate) attempts: u32,
    /// Time spent connecting to the provider and waiting on its answers (back-off excluded).
    pub(crate) provider: Duration,
}

/// Why one attempt has no answer.
enum AttemptError {
    /// Connecting, TLS or the exchange failed: worth another attempt.
    Transport(String),
    /// The reply is over [`MAX_REPLY_BYTES`]: not worth another attempt.
    TooLarge,
    /// The provider's certificate was refused: another attempt would be refused too.
    Certificate(String),
}

/// One configured provider, ready to call.
pub(crate) struct Provider {
    pub(crate) config: ModelProvider,
    endpoint: Endpoint,
    key: Option<ApiKey>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .field("key", &self.key)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Provider {
    /// A provider of `config`, with its key (already read) and, for `https`, TLS under `tls`.
    ///
    /// # Errors
    ///
    /// A sentence (never containing the key) when the URL or the key cannot be used.
    pub(crate) fn new(
        config: &ModelProvider,
        key: Option<String>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Provider, String> {
        let endpoint = Endpoint::parse(&config.url)?;
        let key = match key {
            None => None,
            Some(value) => {
                let mut header = HeaderValue::from_str(&format!("Bearer {value}"))
                    .map_err(|_| "the key is not printable ASCII".to_owned())?;
                header.set_sensitive(true);
                let escaped = value.contains('/').then(|| value.replace('/', "\\/"));
                Some(ApiKey {
                    value,
                    escaped,
                    header,
                })
            }
        };
        let tls = endpoint.https.then(|| tls.clone());
        Ok(Provider {
            config: config.clone(),
            endpoint,
            key,
            tls,
        })
    }

    /// The JSON body of one request to this provider (see [`wire::request_body`]).
    ///
    /// # Errors
    ///
    /// As [`wire::request_body`].
    pub(crate) fn body(
        &self,
        messages: &[WireMessage<'_>],
        request: &ChatRequest,
    ) -> Result<Bytes, ModelFailure> {
        wire::request_body(&self.config, messages, request)
    }

    /// Send `body`, retrying as configured, all within the provider's timeout.
    pub(crate) async fn complete(&self, body: Bytes) -> Exchange {
        let timeout = self.config.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let name = &self.config.name;
        let mut attempts = 0;
        let mut provider = Duration::ZERO;
        let mut backoff = FIRST_BACKOFF;
        let result = loop {
            attempts += 1;
            let started = Instant::now();
            let got = tokio::time::timeout_at(deadline, self.attempt(body.clone())).await;
            provider += started.elapsed();
            let (why, wait) = match got {
                Err(_) => {
                    break Err(format!(
                        "model `{name}` gave no complete answer within its timeout of {timeout:?} \
                         ({attempts} attempt(s))"
                    ));
                }
                Ok(Err(AttemptError::TooLarge)) => {
                    break Err(format!(
                        "model `{name}` sent a reply over {MAX_REPLY_BYTES} bytes; it was not read"
                    ));
                }
                Ok(Err(AttemptError::Certificate(e))) => {
                    break Err(format!("model `{name}`: {e}"));
                }
                Ok(Err(AttemptError::Transport(e))) => (format!("cannot reach it: {e}"), backoff),
                Ok(Ok((status, _, bytes))) if status.is_success() => {
                    break wire::parse_reply(name, &bytes);
                }
                Ok(Ok((StatusCode::TOO_MANY_REQUESTS, retry_after, bytes))) => (
                    format!("rate limited (429): {}", self.quote(&bytes)),
                    retry_after.unwrap_or(backoff),
                ),
                Ok(Ok((status, _, bytes))) if status.is_server_error() => {
                    (format!("{status}: {}", self.quote(&bytes)), backoff)
                }
                Ok(Ok((status, _, bytes))) => {
                    break Err(format!(
                        "model `{name}` refused the request with {status}: {}",
                        self.quote(&bytes)
                    ));
                }
            };
            if attempts > self.config.retries {
                break Err(format!(
                    "model `{name}`: {why} (gave up after {attempts} attempt(s))"
                ));
            }
            let wait = wait.min(MAX_RETRY_WAIT);
            if tokio::time::Instant::now() + wait >= deadline {
                break Err(format!(
                    "model `{name}`: {why} (waiting {wait:?} more would pass its timeout of \
                     {timeout:?}; {attempts} attempt(s))"
                ));
            }
            tracing::debug!(target: "warden::model", model = %name, attempts, ?wait, "retrying");
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2);
        };
        Exchange {
            result: result
                .map(|c| Completion {
                    text: self.redact(c.text),
                    finish_reason: self.redact(c.finish_reason),
                    ..c
                })
                .map_err(|e| self.redact(e)),
            attempts,
            provider,
        }
    }

    /// `text` with the API key replaced by [`REDACTED`].
    pub(crate) fn redact(&self, text: String) -> String {
        let Some(key) = &self.key else {
            return text;
        };
        let text = if text.contains(&key.value) {
            text.replace(&key.value, REDACTED)
        } else {
            text
        };
        match &key.escaped {
            Some(escaped) if text.contains(escaped.as_str()) => text.replace(escaped, REDACTED),
            _ => text,
        }
    }

    /// One request on a fresh connection: the status, `Retry-After` and the body (bounded).
    async fn attempt(
        &self,
        body: Bytes,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), AttemptError> {
        let mut request = Request::post(self.endpoint.path.as_str())
            .header(header::HOST, self.endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "warden")
            .body(Full::new(body))
            .map_err(|e| AttemptError::Transport(e.to_string()))?;
        if let Some(key) = &self.key {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, key.header.clone());
        }
        let host = self.endpoint.host.as_str();
        let tcp = tokio::net::TcpStream::connect((host, self.endpoint.port))
            .await
            .map_err(|e| {
                AttemptError::Transport(format!("connecting to {}: {e}", self.endpoint.authority))
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => exchange(TokioIo::new(tcp), request).await,
            Some(tls) => {
                // The sandbox's one TLS connect: host-name and certificate checks always on.
                let stream = connect_tls(tcp, host, tls.clone()).await.map_err(|e| {
                    let why = format!("TLS with {}: {e}", self.endpoint.authority);
                    match e {
                        TlsFailure::UnknownAuthority { .. }
                        | TlsFailure::WrongHost { .. }
                        | TlsFailure::Expired { .. }
                        | TlsFailure::NotYetValid { .. }
                        | TlsFailure::BadCertificate { .. } => AttemptError::Certificate(why),
                        _ => AttemptError::Transport(why),
                    }
                })?;
                exchange(TokioIo::new(stream), request).await
            }
        }
    }

    /// A provider's error body as an error quotes it: its `error.message` when it is OpenAI-shaped
    /// JSON, else the text; control characters dropped, at most [`QUOTED_CHARS`] characters.
    fn quote(&self, bytes: &[u8]) -> String {
        // Before truncating, so that no part of a key survives at the cut.
        let message = self.redact(wire::error_text(bytes));
        let mut out: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(QUOTED_CHARS)
            .collect();
        if message.chars().count() > QUOTED_CHARS {
            out.push('…');
        }
        if out.trim().is_empty() {
            out = "(no body)".into();
        }
        out
    }
}

/// Send `request` on `io` and read the reply, driving the connection in this task.
async fn exchange<T>(
    io: T,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<Duration>, Bytes), AttemptError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| AttemptError::Transport(e.to_string());
    let (mut sender, conn) = http1::handshake(io).await.map_err(transport)?;
    let reply = async move {
        let response = sender.send_request(request).await.map_err(transport)?;
        let (parts, body) = response.into_parts();
        let bytes = Limited::new(body, MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    AttemptError::TooLarge
                } else {
                    AttemptError::Transport(format!("reading the reply: {e}"))
                }
            })?
            .to_bytes();
        Ok((parts.status, retry_after(&parts.headers), bytes))
    };
    let mut reply = std::pin::pin!(reply);
    let mut conn = std::pin::pin!(conn);
    let mut driving = true;
    loop {
        tokio::select! {
            done = &mut reply => return done,
            // A connection that ended cleanly has handed the reply over; keep reading it.
            ended = &mut conn, if driving => {
                driving = false;
                ended.map_err(transport)?;
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured: the back-off applies).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    secs.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests;
