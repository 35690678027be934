//! A scripted OpenAI-compatible model server, for error-path tests and benchmarks — never what
//! a user runs: it answers what a test tells it to, not with a model.
//!
//! [`StubProvider::start`] listens on `127.0.0.1:0` (plain HTTP; [`StubProvider::start_tls`] for
//! HTTPS with a test certificate) and answers `POST …/chat/completions` with the next
//! [`StubReply`] of its script, or a normal answer when the script is empty. It records every
//! request it got ([`StubRequest`]) so a test can check the bytes the host sent (the context
//! stack, `max_tokens`, the `Authorization` header) and how many attempts were made.
//!
//! The server and its connections are tasks of their own, stopped when the [`StubProvider`] is
//! dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Most bytes of a request the stub reads.
const MAX_REQUEST: usize = 16 << 20;

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubReply {
    /// A chat completion with this text, finish reason and usage.
    Answer {
        /// The reply's text.
        text: String,
        /// Its finish reason.
        finish_reason: String,
        /// `usage.prompt_tokens`.
        prompt_tokens: u64,
        /// `usage.prompt_tokens_details.cached_tokens` (`None`: the field is absent).
        cached_tokens: Option<u64>,
        /// `usage.completion_tokens`.
        completion_tokens: u64,
    },
    /// `429 Too Many Requests` with `Retry-After: <secs>`.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Any status with this body.
    Status {
        /// The status code.
        code: u16,
        /// The body.
        body: String,
    },
    /// `200` with a body that is not JSON.
    Malformed,
    /// `200` with a completion that has no `usage`.
    NoUsage,
    /// `200` with a completion that has no choices.
    NoChoices,
    /// `200`, then a body longer than the host reads (8 MiB and one byte).
    Oversized,
    /// `200` and the headers, then part of the body, then nothing, ever.
    NeverEnds,
    /// The same answer as [`StubReply::answer`], its body sent one byte every `every`.
    Trickle {
        /// The pause before each byte.
        every: Duration,
    },
    /// `then`, after `delay` before the headers.
    Slow {
        /// The delay.
        delay: Duration,
        /// What follows.
        then: Box<StubReply>,
    },
    /// An answer whose text is the request's `Authorization` header.
    EchoAuthorization,
    /// A `401` whose OpenAI-shaped error message quotes the request's `Authorization` header.
    EchoAuthorizationError,
}

impl StubReply {
    /// A normal answer: `text`, `stop`, 10 prompt tokens (none cached), 5 completion tokens.
    pub fn answer(text: &str) -> StubReply {
        StubReply::Answer {
            text: text.to_owned(),
            finish_reason: "stop".into(),
            prompt_tokens: 10,
            cached_tokens: None,
            completion_tokens: 5,
        }
    }

    /// A `500` with a short error body.
    pub fn server_error() -> StubReply {
        StubReply::Status {
            code: 500,
            body: r#"{"error":{"message":"stub: internal error"}}"#.into(),
        }
    }
}

/// One request the stub got.
#[derive(Debug, Clone)]
pub struct StubRequest {
    /// `POST`, …
    pub method: String,
    /// The path (`/v1/chat/completions`).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body's bytes.
    pub body: Bytes,
}

impl StubRequest {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

#[derive(Debug)]
struct Script {
    replies: Mutex<VecDeque<StubReply>>,
    requests: Mutex<Vec<StubRequest>>,
}

/// The scripted server. Dropping it stops it.
#[derive(Debug)]
pub struct StubProvider {
    addr: SocketAddr,
    https: bool,
    script: Arc<Script>,
    server: JoinHandle<()>,
}

impl Drop for StubProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StubProvider {
    /// A plain-HTTP stub on `127.0.0.1:0`.
    ///
    /// # Errors
    ///
    /// The listener cannot be bound.
    pub async fn start() -> std::io::Result<StubProvider> {
        Self::listen(None).await
    }

    /// An HTTPS stub on `127.0.0.1:0` presenting the certificate of `tls`.
    ///
    /// # Errors
    ///
    /// The listener cannot be bound.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> std::io::Result<StubProvider> {
        Self::listen(Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn listen(tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<StubProvider> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Arc::new(Script {
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        });
        let https = tls.is_some();
        let shared = script.clone();
        let server = tokio::spawn(async move {
            // Dropped with the server task: every connection stops with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let script = shared.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        None => serve(TokioIo::new(stream), script).await,
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve(TokioIo::new(stream), script).await;
                            }
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(StubProvider {
            addr,
            https,
            script,
            server,
        })
    }

    /// The base URL to configure (`http://127.0.0.1:<port>/v1`).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Add `replies` to the end of the script.
    pub fn script(&self, replies: impl IntoIterator<Item = StubReply>) {
        lock(&self.script.replies).extend(replies);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<StubRequest> {
        lock(&self.script.requests).clone()
    }

    /// How many requests it got.
    pub fn request_count(&self) -> usize {
        lock(&self.script.requests).len()
    }

    /// Forget the requests seen so far (a benchmark's memory stays flat).
    pub fn clear_requests(&self) {
        lock(&self.script.requests).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve<IO>(io: IO, script: Arc<Script>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let script = script.clone();
        async move { Ok::<_, Infallible>(respond(&script, request).await) }
    });
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

async fn respond(script: &Script, request: Request<Incoming>) -> Response<StubBody> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&script.requests).push(StubRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        authorization: authorization.clone(),
        body,
    });
    let mut reply = lock(&script.replies)
        .pop_front()
        .unwrap_or_else(|| StubReply::answer("stub reply"));
    while let StubReply::Slow { delay, then } = reply {
        tokio::time::sleep(delay).await;
        reply = *then;
    }
    let auth = authorization.unwrap_or_default();
    match reply {
        StubReply::Answer {
            text,
            finish_reason,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
        } => {
            let mut usage = serde_json::json!({
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            });
            if let Some(cached) = cached_tokens {
                usage["prompt_tokens_details"] = serde_json::json!({ "cached_tokens": cached });
            }
            json(200, &completion(&text, &finish_reason, Some(usage)))
        }
        StubReply::RateLimited { retry_after_secs } => {
            let mut r = json(429, &serde_json::json!({"error": {"message": "slow down"}}));
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs.into());
            r
        }
        StubReply::Status { code, body } => full(code, body.into_bytes()),
        StubReply::Malformed => full(200, b"<html>not json</html>".to_vec()),
        StubReply::NoUsage => json(200, &completion("no usage", "stop", None)),
        StubReply::NoChoices => json(
            200,
            &serde_json::json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}),
        ),
        StubReply::Oversized => full(200, vec![b' '; crate::model::MAX_REPLY_BYTES + 1]),
        StubReply::NeverEnds => {
            let mut r = Response::new(StubBody::Hang(Some(Bytes::from_static(b"{\"choices\":["))));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, 100_000.into());
            r
        }
        StubReply::Trickle { every } => {
            let usage = serde_json::json!({"prompt_tokens": 10, "completion_tokens": 5});
            let body = serde_json::to_vec(&completion("stub reply", "stop", Some(usage)))
                .unwrap_or_default();
            let mut r = Response::new(StubBody::Trickle {
                rest: Bytes::from(body.clone()),
                every,
                pause: None,
            });
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, body.len().into());
            r
        }
        StubReply::EchoAuthorization => {
            let usage = serde_json::json!({"prompt_tokens": 10, "completion_tokens": 5});
            json(
                200,
                &completion(&format!("you sent: {auth}"), "stop", Some(usage)),
            )
        }
        StubReply::EchoAuthorizationError => json(
            401,
            &serde_json::json!({"error": {"message": format!("invalid key: {auth}")}}),
        ),
        StubReply::Slow { .. } => unreachable!("unwrapped above"),
    }
}

fn completion(
    text: &str,
    finish_reason: &str,
    usage: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": "stub",
        "object": "chat.completion",
        "model": "stub",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason,
        }],
    });
    if let Some(usage) = usage {
        v["usage"] = usage;
    }
    v
}

fn json(code: u16, value: &serde_json::Value) -> Response<StubBody> {
    let mut r = full(code, serde_json::to_vec(value).unwrap_or_default());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn full(code: u16, body: Vec<u8>) -> Response<StubBody> {
    let mut r = Response::new(StubBody::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The bodies the stub sends.
enum StubBody {
    Full(Full<Bytes>),
    /// Sends its bytes, then never ends.
    Hang(Option<Bytes>),
    /// Sends one byte after each pause.
    Trickle {
        rest: Bytes,
        every: Duration,
        pause: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl http_body::Body for StubBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            StubBody::Full(full) => Pin::new(full).poll_frame(cx),
            StubBody::Hang(first) => match first.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Pending,
            },
            StubBody::Trickle { rest, every, pause } => {
                if rest.is_empty() {
                    return Poll::Ready(None);
                }
                let sleep = pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(*every)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *pause = None;
                Poll::Ready(Some(Ok(Frame::data(rest.split_to(1)))))
            }
        }
    }
}
