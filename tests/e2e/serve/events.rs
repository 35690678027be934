//! `GET /v1/tasks/{id}/events` over real HTTP: a running task's events streamed as they happen
//! (its audit records, in log order, and no other task's), then `end` with its status, and the
//! stream closes; an ended task's at once; resuming with `Last-Event-ID`; another user's task
//! and a bad `Last-Event-ID` refused.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use warden_tests::agent;

use super::{Server, dev_token, ended, error_code, get, launch, request, submit};

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: Value,
}

/// The whole stream of `path` (it closes after `end`), within 60 s.
async fn stream(s: &Server, path: &str, token: &str, last: Option<u64>) -> (u16, String, Vec<Sse>) {
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header("host", &s.addr)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"));
    if let Some(seq) = last {
        req = req.header("last-event-id", seq.to_string());
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = tokio::time::timeout(Duration::from_secs(60), response.into_body().collect())
        .await
        .expect("the stream closes after its end")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    (status, content_type, parse(&text))
}

/// Events of an SSE body (comments, such as keep-alives, left out).
fn parse(text: &str) -> Vec<Sse> {
    text.split("\n\n")
        .filter_map(|block| {
            let (mut event, mut id, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            Some(Sse {
                event: event?,
                id,
                data: serde_json::from_str(&data).unwrap_or_else(|_| panic!("{data}")),
            })
        })
        .collect()
}

fn server() -> Server {
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("probe"), dir.join("spinner.wasm")).unwrap();
    // Spins until its CPU limit kills it: the task runs about half a second.
    std::fs::write(
        dir.join("spinner.toml"),
        "[agent]\nname = \"spinner\"\n[limits]\ncpu = \"500 ms\"\n",
    )
    .unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!("[agents]\ndir = {:?}\n", dir.display().to_string()),
    )
    .unwrap();
    launch(&config, agents)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_events_stream_as_they_happen_then_its_end() {
    let s = tokio::task::spawn_blocking(server).await.unwrap();
    let dev = s.token.clone();
    let spin = json!({"agent": "spinner", "input": {"op": "spin"}});
    // Another task of the same user before and during it: its records are not this stream's.
    let before = submit(
        &s,
        &dev,
        &json!({"agent": "spinner", "input": {"op": "echo", "text": "x"}}),
    )
    .await;
    ended(&s, &dev, before).await;
    let task = submit(&s, &dev, &spin).await;
    // Acknowledged queued; a loaded machine may take a moment to start it.
    let mut row = json!(null);
    for _ in 0..200 {
        row = get(&s, &format!("/v1/tasks/{task}"), Some(&dev)).await.1;
        if row["status"] != "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        row["status"], "running",
        "the stream must start while it runs: {row}"
    );
    let path = format!("/v1/tasks/{task}/events");
    let during = submit(
        &s,
        &dev,
        &json!({"agent": "spinner", "input": {"op": "echo", "text": "y"}}),
    )
    .await;
    let (status, content_type, events) = stream(&s, &path, &dev, None).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (last, records) = events.split_last().expect("events");
    assert_eq!(last.event, "end", "{events:?}");
    assert_eq!(
        (&last.data["task"], &last.data["status"]),
        (&json!(task), &json!("killed"))
    );
    assert_eq!(last.data["outcome"]["reason"], "cpu-limit", "{last:?}");
    assert!(records.iter().all(|e| e.event != "end"));
    // Every record is the task's, in log order, named by its kind and seq.
    for pair in records.windows(2) {
        assert!(pair[0].id < pair[1].id, "{events:?}");
    }
    for e in records {
        assert_eq!(e.data["kind"], e.event.as_str());
        assert_eq!(e.data["seq"].as_u64(), e.id);
        assert_eq!(
            e.data["task"], task,
            "{e:?} (before {before}, during {during})"
        );
    }
    let kinds: Vec<&str> = records.iter().map(|e| e.event.as_str()).collect();
    assert!(kinds.contains(&"task-started"), "{kinds:?}");
    assert!(kinds.contains(&"task-killed"), "{kinds:?}");

    // Ended: the same records at once; resumed after the first, all but the first.
    let (_, _, again) = stream(&s, &path, &dev, None).await;
    assert_eq!(again, events);
    let first = records[0].id.unwrap();
    let (_, _, resumed) = stream(&s, &path, &dev, Some(first)).await;
    assert_eq!(resumed, events[1..]);

    // Another user's task is not there for them; a bad Last-Event-ID is refused.
    let eve = dev_token(s.data.path(), "eve", &["dev"], Duration::from_secs(600));
    let (status, v) = get(&s, &path, Some(&eve)).await;
    assert_eq!((status, error_code(&v)), (404, "no-task"), "{v}");
    let (status, v) = request(&s.addr, "GET", "/v1/tasks/x/events", Some(&dev), Vec::new()).await;
    assert_eq!((status, error_code(&v)), (400, "bad-task-id"), "{v}");
}
