//! The attacks of class `server` that need a setup of their own: a request whose body is bigger
//! than it sends, a pending action approved without a valid signature, a flood past one user's
//! cap (see `attacks.rs` for the rest).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::attacks::contained;
use super::{Reply, Served};

/// A request declaring a 2 MiB body, of which it sends only the start (raw TCP: the server
/// answers from the declared length without reading on).
pub fn oversized(s: &Served, token: &str) -> Result<Reply, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&s.addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{\"agent\": \"hello\", \"input\": \"xxxx",
        s.addr,
        2 * 1024 * 1024
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text}"))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(Reply {
        status,
        headers: hyper::HeaderMap::new(),
        body: body.to_owned().into(),
    })
}

/// `bob`'s probe calls the irreversible `deploy` (held for approval); `rita`, who may approve
/// it, posts approvals with her token but no valid signature: none signed, one with a signature
/// of zeros, one signed by a key that is no one's. Each is refused, the action stays pending and
/// nothing is deployed.
pub async fn approval_unsigned(s: &Served) -> Result<String, String> {
    let bob = s.token("bob", &["worker"]);
    let rita = s.token("rita", &["release"]);
    let task = s
        .submit(
            &bob,
            &json!({"agent": "probe", "input": {"op": "tool", "name": "deploy", "input": "pwned"}}),
        )
        .await?;
    s.until(&bob, task, |st| !matches!(st, "queued" | "running"))
        .await?;
    let listing = s
        .api("GET", "/v1/approvals", Some(&rita), &Value::Null)
        .await?
        .json();
    let action = listing["approvals"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["task"] == task))
        .cloned()
        .ok_or_else(|| format!("no pending action for task {task}: {listing}"))?;
    let id = action["id"].as_u64().unwrap();
    let expires = action["expires_ms"].as_u64().unwrap();
    let hash = action["hash"].as_str().unwrap();
    let stranger = warden::identity::SecretKey::generate().unwrap();
    let to_sign = action["to_sign"].as_str().unwrap();
    let forged = stranger.sign(warden::policy::keys::Domain::Approval, to_sign.as_bytes());
    let base = json!({"action": id, "hash": hash, "approver": "rita", "expires_ms": expires});
    let mut unsigned = base.clone();
    unsigned["key"] = json!(forged.key);
    let mut zeros = unsigned.clone();
    zeros["signature"] = json!("00".repeat(64));
    let mut strangers = unsigned.clone();
    strangers["signature"] = json!(forged.signature);
    let path = format!("/v1/approvals/{id}");
    let refused = contained(s, Some("approval-refused"), async {
        Ok(vec![
            s.api("POST", &path, Some(&rita), &base).await?,
            s.api("POST", &path, Some(&rita), &unsigned).await?,
            s.api("POST", &path, Some(&rita), &zeros).await?,
            s.api("POST", &path, Some(&rita), &strangers).await?,
        ])
    })
    .await?;
    if s.deployed().exists() {
        return Err("the action was performed".into());
    }
    Ok(refused)
}

/// `mallory` fills her three places with waiting probes; her fourth task is `429 user-busy`
/// with `Retry-After`, stores nothing, and `bob` is not disturbed: his victim runs and his new
/// `hello` completes.
pub async fn flood(s: &Served) -> Result<String, String> {
    let mallory = s.token("mallory", &["worker"]);
    let url = format!("http://{}/", s.silent.local_addr().unwrap());
    let wait = json!({"agent": "probe", "input": {"op": "http", "url": url}});
    for _ in 0..3 {
        let id = s.submit(&mallory, &wait).await?;
        s.until(&mallory, id, |st| st == "running").await?;
    }
    let mut retry = None;
    let refused = contained(s, None, async {
        let mut out = Vec::new();
        for _ in 0..20 {
            let r = s.api("POST", "/v1/tasks", Some(&mallory), &wait).await?;
            retry = r.headers.get("retry-after").cloned();
            out.push(r);
        }
        Ok(out)
    })
    .await?;
    if retry.is_none() {
        return Err("the 429 carries no Retry-After".into());
    }
    let bob = s.token("bob", &["worker"]);
    let started = Instant::now();
    let id = s
        .submit(&bob, &json!({"agent": "hello", "input": "bob"}))
        .await?;
    let row = s
        .until(&bob, id, |st| !matches!(st, "queued" | "running"))
        .await?;
    if row["outcome"]["output"] != "hello, bob" {
        return Err(format!("bob's task after the flood: {row}"));
    }
    if started.elapsed() > Duration::from_secs(10) {
        return Err(format!(
            "bob waited {:?} behind the flood",
            started.elapsed()
        ));
    }
    Ok(refused)
}
