//! Outbound HTTP through the standard `wasi:http` interface.
//!
//! The host checks every request against the policy's `[net] allow` list on the address it actually
//! connects to. A request to a host or port that is not listed, or to a loopback, private or cloud
//! metadata address that the policy does not name, kills the instance: there is no error to handle.
//! Errors this module returns are the network's own (refused connection, bad response, timeout).

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// A response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, in the order received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum HttpError {
    /// The URL could not be parsed (`http://host[:port]/path` or `https://…`).
    InvalidUrl(String),
    /// The request could not be built (a header or the method was refused).
    InvalidRequest(String),
    /// The network or the peer failed the request.
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::InvalidUrl(u) => {
                write!(f, "invalid URL `{u}`: expected http(s)://host[:port]/path")
            }
            HttpError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            HttpError::Transport(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        HttpError::Transport(format!("{code:?}"))
    }
}

/// `GET url`.
///
/// # Errors
///
/// See [`HttpError`]. A request outside the policy does not return: the instance is killed.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request("GET", url, &[], &[])
}

/// `POST url` with `body`.
///
/// # Errors
///
/// See [`HttpError`].
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, HttpError> {
    request("POST", url, headers, body)
}

/// Send one request and read the whole response.
///
/// # Errors
///
/// See [`HttpError`].
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let (scheme, authority, path) = split_url(url)?;
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&fields)
        .map_err(|e| HttpError::InvalidRequest(format!("header refused: {e:?}")))?;
    let req = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    let invalid = |what: &str| HttpError::InvalidRequest(format!("{what} refused"));
    req.set_method(&method).map_err(|_| invalid("method"))?;
    req.set_scheme(Some(&scheme))
        .map_err(|_| invalid("scheme"))?;
    req.set_authority(Some(authority))
        .map_err(|_| invalid("authority"))?;
    req.set_path_with_query(Some(path))
        .map_err(|_| invalid("path"))?;

    let out_body = req.body().map_err(|_| invalid("body"))?;
    let pending = outgoing_handler::handle(req, None)?;
    write_body(&out_body, body)?;
    OutgoingBody::finish(out_body, None)?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(code.into()),
        Some(Err(())) | None => return Err(HttpError::Transport("response already taken".into())),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|_| HttpError::Transport("body already consumed".into()))?;
    let body = read_body(&incoming)?;
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let bad = || HttpError::InvalidUrl(url.to_string());
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, path))
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|_| HttpError::InvalidRequest("body stream refused".into()))?;
    // `blocking-write-and-flush` takes at most 4096 bytes per call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| HttpError::Transport(format!("writing body: {e:?}")))?;
    }
    Ok(())
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, HttpError> {
    let stream = body
        .stream()
        .map_err(|_| HttpError::Transport("body stream refused".into()))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(HttpError::Transport(e.to_debug_string()));
            }
        }
    }
    Ok(out)
}
