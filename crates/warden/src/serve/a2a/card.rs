//! Agent Cards: the server's at `/.well-known/agent-card.json` (one skill per agent the caller
//! may use, its interface `POST /a2a`), and each agent's own at
//! `/a2a/{agent}/.well-known/agent-card.json` (one skill, its interface `POST /a2a/{agent}`).
//! Without a token the server's card is its public face: how to reach it and that it wants a
//! bearer token, no skills (which agents exist is not a stranger's to learn); an agent's own
//! card always needs a token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::wire::{BINDING, PROTOCOL_VERSION};
use crate::serve::{AgentEntry, ApiError, Caller, ServerState};

/// The name of the bearer security scheme the cards declare.
const SCHEME: &str = "warden-identity";

/// `GET /.well-known/agent-card.json`.
pub(crate) async fn server_card(
    State(state): State<ServerState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let base = base_url(&headers)?;
    let skills = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let caller = state.caller(&headers)?;
        state.agents(&caller).await?
    } else {
        Vec::new()
    };
    Ok(Json(card(&format!("{base}/a2a"), None, &skills)))
}

/// `GET /a2a/{agent}/.well-known/agent-card.json`.
pub(crate) async fn agent_card(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path(agent): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers)?;
    let base = base_url(&headers)?;
    let entry = visible_agent(&state, &caller, &agent).await?;
    Ok(Json(card(
        &format!("{base}/a2a/{agent}"),
        Some(&entry),
        std::slice::from_ref(&entry),
    )))
}

/// The agent `name` if `caller` may use it, else the HTTP API's `404 no-agent`.
pub(crate) async fn visible_agent(
    state: &ServerState,
    caller: &Caller,
    name: &str,
) -> Result<AgentEntry, ApiError> {
    if !crate::calls::is_agent_name(name) {
        return Err(ApiError::bad_request(
            "bad-agent-name",
            "an agent name is 1 to 64 of a-z, 0-9 and -",
        ));
    }
    state.agent(caller, name).await.ok_or_else(|| {
        ApiError::not_found(
            "no-agent",
            format!(
                "no agent `{name}` for this user: the card's skills are the agents you may use"
            ),
        )
    })
}

/// The card for the interface at `url`: the server's (`agent` none) or one agent's, with
/// `skills`.
pub(crate) fn card(url: &str, agent: Option<&AgentEntry>, skills: &[AgentEntry]) -> Value {
    let (name, description, version) = match agent {
        Some(a) => (
            a.name.clone(),
            summary(a),
            if a.version.is_empty() {
                env!("CARGO_PKG_VERSION").to_owned()
            } else {
                a.version.clone()
            },
        ),
        None => (
            "Warden".to_owned(),
            "Agents run in Warden's WebAssembly sandbox, each bounded by its policy and the caller's roles. One skill per agent: name it as the `skill` in a message's metadata, or talk to the agent's own card at /a2a/{skill}.".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    };
    json!({
        "name": name,
        "description": description,
        "version": version,
        "supportedInterfaces": [{
            "url": url,
            "protocolBinding": BINDING,
            "protocolVersion": PROTOCOL_VERSION,
        }],
        "capabilities": {
            "streaming": true,
            "pushNotifications": false,
            "extendedAgentCard": true,
        },
        "securitySchemes": {
            SCHEME: {"httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "bearerFormat": "PASETO v4.public identity token",
                "description": "A Warden identity token (`warden token issue`, or the development token `warden serve` prints).",
            }},
        },
        "securityRequirements": [{"schemes": {SCHEME: {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills.iter().map(skill).collect::<Vec<_>>(),
    })
}

/// An agent as a skill: its name as id, its contract's summary, tags for what its policy allows.
fn skill(a: &AgentEntry) -> Value {
    let mut tags = vec!["warden"];
    tags.push(if a.writes { "writes" } else { "read-only" });
    if a.irreversible {
        tags.push("irreversible-actions");
    }
    if a.network {
        tags.push("network");
    }
    json!({
        "id": a.name,
        "name": a.name,
        "description": summary(a),
        "tags": tags,
        "inputModes": ["text/plain", "application/json"],
        "outputModes": ["text/plain", "application/json"],
    })
}

fn summary(a: &AgentEntry) -> String {
    if a.summary.is_empty() {
        format!("The Warden agent `{}` (it declares no contract).", a.name)
    } else {
        a.summary.clone()
    }
}

/// `http://<Host>`: where the client reached this server, for the card's interface URLs.
///
/// # Errors
///
/// `400 bad-host` for a missing `Host` header or one that is not a host and port.
pub(crate) fn base_url(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad-host",
                "the card's URLs are made from the Host header: send `Host: <host>:<port>`",
            )
        })?;
    Ok(format!("http://{host}"))
}
