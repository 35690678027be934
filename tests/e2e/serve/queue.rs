//! The server's bounded queue over HTTP: a host with `[server] max_queued = 2, per_user = 1`
//! and a probe that spins until its CPU limit. The development user's spinning task holds their
//! one place, so their next submission is `429 user-busy` with `Retry-After: 1` while another
//! user's is accepted; with two tasks held, a third user's is `429 queue-full`. No refusal stores
//! a task (the ids stay consecutive), and a place comes back when its task ends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::{agent, root};

use super::{dev_token, ended, error_code, launch};

/// `POST /v1/tasks` with `body`: the status, the `Retry-After` header and the JSON answer.
async fn post(addr: &str, token: &str, body: &Value) -> (u16, Option<String>, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/tasks")
        .header("host", addr)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, retry, value)
}

/// Submit until accepted (a place is given back just after its task's row ends), for at most
/// `within`; the task's id.
async fn accepted(addr: &str, token: &str, body: &Value, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let (status, retry, v) = post(addr, token, body).await;
        if status == 202 {
            return v["task"]
                .as_u64()
                .unwrap_or_else(|| panic!("no task id: {v}"));
        }
        assert_eq!((status, retry.as_deref()), (429, Some("1")), "{v}");
        assert!(Instant::now() < deadline, "still refused: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_bounded_per_user_and_in_all() {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        "[agent]\nname = \"probe\"\n[limits]\ncpu = \"2 s\"\nwall = \"4 s\"\n",
    )
    .unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[agents]\ndir = {:?}\n[server]\nmax_queued = 2\nper_user = 1\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let s = launch(&config, agents);
    let (dev, alice) = (
        s.token.clone(),
        dev_token(s.data.path(), "alice", Duration::from_secs(120)),
    );
    let carol = dev_token(s.data.path(), "carol", Duration::from_secs(120));
    let spin = json!({"agent": "probe", "input": {"op": "spin"}});
    let hello = json!({"agent": "hello", "input": {"name": "bob"}});

    // dev's spinning task holds dev's one place: dev's next is refused, alice's is accepted.
    let spinning = accepted(&s.addr, &dev, &spin, Duration::ZERO).await;
    // Acknowledged as soon as its row is stored (the run tells the server), not at its end.
    let (status, row) = super::get(&s, &format!("/v1/tasks/{spinning}"), Some(&dev)).await;
    assert_eq!(
        (status, row["status"].as_str()),
        (200, Some("running")),
        "{row}"
    );
    let (status, retry, v) = post(&s.addr, &dev, &hello).await;
    assert_eq!((status, error_code(&v)), (429, "user-busy"), "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("per_user"),
        "{v}"
    );
    let alices = accepted(&s.addr, &alice, &hello, Duration::ZERO).await;
    assert_eq!(alices, spinning + 1, "the refusal stored a task");
    assert_eq!(ended(&s, &alice, alices).await["status"], "completed");

    // Two tasks held (dev's and alice's spinning): the queue is full for anyone.
    let alices_spin = accepted(&s.addr, &alice, &spin, Duration::from_secs(2)).await;
    assert_eq!(alices_spin, alices + 1);
    let (status, retry, v) = post(&s.addr, &carol, &hello).await;
    assert_eq!((status, error_code(&v)), (429, "queue-full"), "{v}");
    assert_eq!(retry.as_deref(), Some("1"));

    // The spinners end (killed by their limits) and give their places back; nothing refused
    // was stored in between.
    for (token, id) in [(&dev, spinning), (&alice, alices_spin)] {
        assert_eq!(ended(&s, token, id).await["status"], "killed");
    }
    let carols = accepted(&s.addr, &carol, &hello, Duration::from_secs(5)).await;
    assert_eq!(carols, alices_spin + 1, "a refusal stored a task");
    assert_eq!(ended(&s, &carol, carols).await["status"], "completed");
    let devs = accepted(&s.addr, &dev, &hello, Duration::from_secs(5)).await;
    assert_eq!(devs, carols + 1);
}
