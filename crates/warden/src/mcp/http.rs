//! MCP over streamable HTTP on `warden serve`: `/mcp`, an OAuth 2.1 protected resource in the
//! MCP spec's sense. Every request to `/mcp` needs `Authorization: Bearer <identity token>`,
//! verified as on the rest of the server (a trusted issuer's signature, unexpired, for the
//! issuer's audience, roles the roles file defines); without a valid one the answer is `401`
//! with `WWW-Authenticate: Bearer resource_metadata="…"` pointing at the protected resource
//! metadata (RFC 9728), served at `/.well-known/oauth-protected-resource` and
//! `/.well-known/oauth-protected-resource/mcp`. Warden runs no OAuth authorization server: its
//! tokens come from `warden token issue` (or the development token `warden serve` prints), so
//! the metadata names no `authorization_servers`.
//!
//! Against DNS rebinding, `Host` must be a loopback name (`localhost`, `127.0.0.1`, `::1`) and a
//! browser's `Origin`, when sent, a loopback origin — unless the host configuration's
//! `[server] allowed_hosts` / `allowed_origins` (e.g. `mcp.example.com` and
//! `https://app.example.com`) name others ([`HttpOptions::from_settings`]).
//!
//! A refusal (`401`, `403`, …) to a request with a body is answered with `Connection: close`
//! (`close_refused`): the refusal comes before the body is read, and hyper then closes the
//! connection after the answer; without the header a client that reuses the connection for its
//! next request may send it into the closing socket and see "disconnected without a response".

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::{AgentTools, Identity};
use crate::serve::{MAX_BODY, ServerState};

/// The path of the MCP endpoint.
pub const PATH: &str = "/mcp";

/// The path of the protected resource metadata (RFC 9728) of [`PATH`].
pub const RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource/mcp";

/// Which `Host` and `Origin` headers `/mcp` accepts.
///
/// Defaults: the loopback names (`localhost`, `127.0.0.1`, `::1`, any port) and the loopback
/// origins (`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port); a request without `Origin`
/// (not from a browser) passes the origin check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Accepted `Host` values (`name` or `name:port`).
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values (`scheme://name` or `scheme://name:port`).
    pub allowed_origins: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        let loopback = ["localhost", "127.0.0.1", "[::1]"];
        HttpOptions {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: ["http", "https"]
                .iter()
                .flat_map(|s| loopback.iter().map(move |h| format!("{s}://{h}")))
                .collect(),
        }
    }
}

impl HttpOptions {
    /// The defaults, widened by the host configuration's `[server] allowed_hosts` and
    /// `allowed_origins` (validated there).
    pub fn from_settings(settings: &warden_policy::ServerSettings) -> Self {
        let mut options = HttpOptions::default();
        options
            .allowed_hosts
            .extend(settings.allowed_hosts.iter().cloned());
        options
            .allowed_origins
            .extend(settings.allowed_origins.iter().cloned());
        options
    }
}

/// The routes of MCP over HTTP on `state`: [`PATH`] and the protected resource metadata.
pub fn routes(state: ServerState, options: HttpOptions) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(options.allowed_hosts)
        .with_allowed_origins(options.allowed_origins)
        .with_max_request_body_bytes(MAX_BODY);
    let tools = AgentTools::new(state.clone(), Identity::PerRequest, None);
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let mcp = Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
        .layer(axum::middleware::from_fn(close_refused));
    Router::new()
        .route(RESOURCE_METADATA, get(resource_metadata))
        .route(
            "/.well-known/oauth-protected-resource",
            get(resource_metadata),
        )
        .merge(mcp)
}

/// Admit a request to `/mcp` only with a valid identity token; the caller rides along in the
/// request's extensions, where [`AgentTools`] finds it.
async fn authenticate(
    State(state): State<ServerState>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.caller(request.headers()) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => {
            let had_token = request.headers().contains_key(header::AUTHORIZATION);
            let mut challenge = format!(
                "Bearer resource_metadata=\"{}\"",
                base_url(request.headers()) + RESOURCE_METADATA
            );
            if had_token {
                challenge.push_str(", error=\"invalid_token\"");
            }
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED
                && let Ok(value) = HeaderValue::from_str(&challenge)
            {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

/// Add `Connection: close` to a refusal (4xx, 5xx) of a request that carried a body (see the
/// module docs): the body may be left unread, so the connection cannot serve another request.
async fn close_refused(request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0");
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `http://<Host>` of a request (a `Host` that is not a plain authority becomes `localhost`: the
/// value goes into a header and a JSON document, never unchecked).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<axum::http::uri::Authority>().is_ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The protected resource metadata (RFC 9728) of `/mcp`.
async fn resource_metadata(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let base = base_url(&headers);
    axum::Json(serde_json::json!({
        "resource": format!("{base}{PATH}"),
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden agents (MCP)",
        "resource_documentation": "docs/mcp.md: Warden identity tokens (PASETO v4.public) from `warden token issue`",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_never_carries_a_header_it_was_not_given_as_an_authority() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8787"));
        assert_eq!(base_url(&h), "http://127.0.0.1:8787");
        h.insert(header::HOST, HeaderValue::from_static("a\"b, c"));
        assert_eq!(base_url(&h), "http://localhost");
        assert_eq!(base_url(&HeaderMap::new()), "http://localhost");
    }

    #[test]
    fn the_defaults_allow_loopback_only() {
        let o = HttpOptions::default();
        assert!(
            o.allowed_hosts
                .iter()
                .all(|h| ["localhost", "127.0.0.1", "::1"].contains(&h.as_str()))
        );
        assert!(o.allowed_origins.contains(&"http://localhost".to_string()));
        assert!(!o.allowed_origins.iter().any(|h| h.contains("example")));
    }
}
