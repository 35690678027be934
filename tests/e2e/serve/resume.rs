//! An escalated cascade decided through the API, as `warden task resume | stop` decide it: the
//! roster on the scripted stub, `[cascade] skeptic_rejections = 2`, the skeptic rejecting both
//! plans, so the task pauses `escalated` (`skeptic-rejected`).
//!
//! - Refused, changing nothing: another user's task (`404 no-task`, resume and stop), a
//!   malformed body (`400 bad-body`), a task id that is not a number, a task that is not an
//!   escalated cascade (one of its stages: `409 not-escalated`), a reviewer whose roles do not
//!   list `cascade` (`403 agent-not-granted`, audited `task-refused`).
//! - Resumed with a note while the next stage's model never answers: `202`, the task reads
//!   `running`, a second resume is `409 already-resuming`, a stop `409 task-resuming`, its
//!   events stream stays open; `DELETE` ends the resume (its stage `cancelled`, the stream's
//!   `end` `escalated`) and the task is escalated again.
//! - Resumed again: the skeptic overruled, the note reaching the implementer, the task
//!   `completed` with its change proposed, `task-resumed` audited with the waived trigger and the
//!   note, counted in `/metrics`; resuming it now is `409 not-escalated`.
//! - Another escalated cascade stopped by a reviewer (not its user): `stopped`, `stopped_by` the
//!   reviewer, its working copy deleted; stopping it again is `409 not-escalated`. The audit log
//!   verifies.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::orchestra::model::stub::{StubProvider, StubReply};
use warden_tests::served::dev_token;

use super::cascade::{roster_agents, roster_host};
use super::{Server, ended, error_code, launch, request, request_bytes, submit};

/// `calc.py` with `mean` fixed.
const FIXED: &str = "\"\"\"A tiny calculator.\"\"\"\n\n\ndef mean(values):\n    \"\"\"The arithmetic mean.\"\"\"\n    return sum(values) / len(values)\n";

fn say(value: Value) -> StubReply {
    StubReply::answer(&value.to_string())
}

fn write(path: &str, body: &str) -> StubReply {
    StubReply::answer(&format!(
        "Here is the change.\nFILE: {path}\n```\n{body}```\nSUMMARY: scripted change\nCONFIDENCE: 0.8\n"
    ))
}

/// The router sends the request to the team; the skeptic rejects both plans.
fn rejected_twice() -> Vec<StubReply> {
    let plan = || say(json!({"steps": [{"id": "1", "do": "fix mean in calc.py", "after": []}]}));
    let reject =
        || say(json!({"verdict": "reject", "reasons": ["scripted: the plan is too broad"]}));
    vec![
        say(json!({"route": "team", "complexity": "high", "risk": "low",
                   "confidence": 0.8, "reason": "scripted"})),
        plan(),
        reject(),
        plan(),
        reject(),
    ]
}

/// After the skeptic is overruled: tester, implementer, documenter, validator, curator.
pub(super) fn the_team_goes_on() -> Vec<StubReply> {
    vec![
        write(
            "test_mean.py",
            "import calc\n\n\ndef test_mean():\n    assert calc.mean([2, 4]) == 3\n",
        ),
        write("calc.py", FIXED),
        write(
            "README.md",
            "# calc\n\n`calc.mean(values)` is the arithmetic mean (fixed).\n",
        ),
        say(json!({"verdict": "pass", "reasons": ["the check passes"]})),
        say(
            json!({"lessons": [{"key": "check-the-divisor", "text": "Check the divisor.", "tags": ["python"]}]}),
        ),
    ]
}

pub(super) async fn post(s: &Server, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
    request(&s.addr, "POST", path, Some(token), body.to_vec()).await
}

/// The audit records of `kind` about `task`.
fn records(s: &Server, kind: &str, task: u64) -> Vec<Value> {
    super::queue::records(s.data.path(), kind, task)
}

/// The task's row once its status is `want` (within 60 s).
pub(super) async fn status_becomes(addr: &str, token: &str, id: u64, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, row) = request(
            addr,
            "GET",
            &format!("/v1/tasks/{id}"),
            Some(token),
            Vec::new(),
        )
        .await;
        assert_eq!(status, 200, "{row}");
        if row["status"] == want {
            return row;
        }
        assert!(Instant::now() < deadline, "task {id} never {want}: {row}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rows of `task`'s stages so far (the tasks after it whose parent it is, up to the first
/// id not stored yet).
async fn children(s: &Server, token: &str, task: u64) -> Vec<Value> {
    let mut found = Vec::new();
    for id in task + 1.. {
        let (status, row) = request(
            &s.addr,
            "GET",
            &format!("/v1/tasks/{id}"),
            Some(token),
            Vec::new(),
        )
        .await;
        if status == 404 {
            return found;
        }
        if row["parent"] == task {
            found.push(row);
        }
    }
    found
}

/// A cascade submitted by `token`, ended `escalated` by the skeptic.
pub(super) async fn escalated(s: &Server, stub: &StubProvider, token: &str, ws: &str) -> u64 {
    stub.script(rejected_twice());
    let task = submit(
        s,
        token,
        &json!({"cascade": "fix mean in calc.py", "workspace": ws}),
    )
    .await;
    let row = ended(s, token, task).await;
    assert_eq!(
        (&row["status"], &row["outcome"]["reason"]),
        (&json!("escalated"), &json!("skeptic-rejected")),
        "{row}"
    );
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_cascade_is_resumed_and_stopped_through_the_api() {
    let agents = roster_agents();
    let stub = StubProvider::start().await.unwrap();
    let (host, config) = roster_host(
        agents.path(),
        &stub.url(),
        "[role.reviewer]\nreview = true\n",
        "skeptic_rejections = 2",
    );
    let s = tokio::task::spawn_blocking(move || launch(&config, agents))
        .await
        .unwrap();
    let dev = s.token.clone();
    let data = s.data.path().to_path_buf();
    let mallory = dev_token(&data, "mallory", &["dev"], Duration::from_secs(600));
    let rita = dev_token(&data, "rita", &["reviewer"], Duration::from_secs(600));
    let ws = host.path().join("ws");
    let ws_text = ws.display().to_string();
    let broken = std::fs::read_to_string(ws.join("calc.py")).unwrap();

    let task = escalated(&s, &stub, &dev, &ws_text).await;
    let resume = format!("/v1/tasks/{task}/resume");
    let stop = format!("/v1/tasks/{task}/stop");

    // Refused, nothing changed: another user's task is not there for them.
    for path in [&resume, &stop] {
        let (status, v) = post(&s, path, &mallory, b"").await;
        assert_eq!((status, error_code(&v)), (404, "no-task"), "{path}: {v}");
    }
    // A malformed body, a task id that is not a number, no such task.
    for body in [&b"{\"notes\": \"typo\"}"[..], b"{\"note\": 7}", b"note=hi"] {
        let (status, v) = post(&s, &resume, &dev, body).await;
        assert_eq!((status, error_code(&v)), (400, "bad-body"), "{v}");
    }
    let (status, v) = post(&s, "/v1/tasks/seven/resume", &dev, b"").await;
    assert_eq!((status, error_code(&v)), (400, "bad-task-id"), "{v}");
    let (status, v) = post(&s, "/v1/tasks/999/stop", &dev, b"").await;
    assert_eq!((status, error_code(&v)), (404, "no-task"), "{v}");
    // One of its stages (the router, completed) is not an escalated cascade.
    let stage = task + 1;
    for path in [
        format!("/v1/tasks/{stage}/resume"),
        format!("/v1/tasks/{stage}/stop"),
    ] {
        let (status, v) = post(&s, &path, &dev, b"").await;
        assert_eq!((status, error_code(&v)), (409, "not-escalated"), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("router"),
            "{v}"
        );
    }
    // A reviewer sees the task, but none of their roles lists `cascade`: refused, audited.
    let (status, v) = post(&s, &resume, &rita, b"{}").await;
    assert_eq!((status, error_code(&v)), (403, "agent-not-granted"), "{v}");
    let refusals = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(
        refusals.lines().any(|l| l.contains("\"task-refused\"")
            && l.contains("\"rita\"")
            && l.contains("agent-not-granted")),
        "{refusals}"
    );
    assert!(records(&s, "task-resumed", task).is_empty());
    let (_, row) = request(
        &s.addr,
        "GET",
        &format!("/v1/tasks/{task}"),
        Some(&dev),
        Vec::new(),
    )
    .await;
    assert_eq!(row["status"], "escalated", "{row}");

    // Resumed while the tester's model never answers: running, held once, then cancelled.
    stub.script([StubReply::NeverEnds]);
    let (status, v) = post(&s, &resume, &dev, br#"{"note": "first try"}"#).await;
    assert_eq!((status, &v), (202, &json!({"task": task})), "{v}");
    status_becomes(&s.addr, &dev, task, "running").await;
    // Its first stage, the tester, waits on the model.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !children(&s, &dev, task)
        .await
        .last()
        .is_some_and(|t| t["agent"] == "tester" && t["status"] == "running")
    {
        assert!(Instant::now() < deadline, "the tester never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, v) = post(&s, &resume, &dev, b"").await;
    assert_eq!((status, error_code(&v)), (409, "already-resuming"), "{v}");
    let (status, v) = post(&s, &stop, &dev, b"").await;
    assert_eq!((status, error_code(&v)), (409, "task-resuming"), "{v}");
    // Its events stream stays open while the resume runs (the task reads `running`), and
    // closes with `end` once the resume is cancelled.
    let events = tokio::spawn({
        let (addr, dev, path) = (
            s.addr.clone(),
            dev.clone(),
            format!("/v1/tasks/{task}/events"),
        );
        async move { request_bytes(&addr, "GET", &path, Some(&dev), Vec::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !events.is_finished(),
        "the stream ended while the resume ran"
    );
    let (status, v) = request(
        &s.addr,
        "DELETE",
        &format!("/v1/tasks/{task}"),
        Some(&dev),
        Vec::new(),
    )
    .await;
    assert_eq!((status, &v["status"]), (200, &json!("escalated")), "{v}");
    assert_eq!(records(&s, "task-resumed", task).len(), 1);
    let (_, row) = request(
        &s.addr,
        "GET",
        &format!("/v1/tasks/{task}"),
        Some(&dev),
        Vec::new(),
    )
    .await;
    assert_eq!(row["status"], "escalated", "{row}");
    let (status, _, stream) = events.await.unwrap();
    let stream = String::from_utf8(stream.to_vec()).unwrap();
    assert_eq!(status, 200, "{stream}");
    let end = stream.rfind("event: end").expect("an end event");
    assert!(
        stream[end..].contains("\"status\":\"escalated\""),
        "{stream}"
    );
    let resumed_at = stream
        .find("event: task-resumed")
        .expect("the resume's record");
    assert!(
        stream[resumed_at..end].contains("\"cancelled\""),
        "the stage's cancellation is not in the stream: {stream}"
    );
    // The stage that was waiting on the model ended cancelled, by dev.
    let stages = children(&s, &dev, task).await;
    let tester = stages.last().unwrap();
    assert_eq!(
        (
            &tester["agent"],
            &tester["status"],
            &tester["outcome"]["by"]
        ),
        (&json!("tester"), &json!("cancelled"), &json!("dev")),
        "{stages:#?}"
    );

    // Resumed again, to the end: the skeptic overruled, the note reaching the implementer.
    stub.clear_requests();
    stub.script(the_team_goes_on());
    let note = "only touch calc.py, keep the fix to one line";
    let (status, v) = post(
        &s,
        &resume,
        &dev,
        json!({"note": note}).to_string().as_bytes(),
    )
    .await;
    assert_eq!((status, &v), (202, &json!({"task": task})), "{v}");
    let row = status_becomes(&s.addr, &dev, task, "completed").await;
    assert_eq!(row["staging"], "proposed", "{row}");
    assert_eq!(std::fs::read_to_string(ws.join("calc.py")).unwrap(), broken);
    let implementer = &stub.requests()[1];
    assert!(
        String::from_utf8_lossy(&implementer.body).contains(note),
        "the note did not reach the implementer"
    );
    let resumed = records(&s, "task-resumed", task);
    assert_eq!(resumed.len(), 2, "{resumed:#?}");
    assert_eq!(
        (
            &resumed[1]["detail"]["waived"],
            &resumed[1]["detail"]["note"],
            &resumed[1]["user"]
        ),
        (&json!("skeptic-rejected"), &json!(note), &json!("dev")),
        "{resumed:#?}"
    );
    let (status, v) = post(&s, &resume, &dev, b"").await;
    assert_eq!((status, error_code(&v)), (409, "not-escalated"), "{v}");
    let (_, _, text) = request_bytes(&s.addr, "GET", "/metrics", Some(&dev), Vec::new()).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    for line in [
        r#"warden_runs_total{agent="cascade",outcome="verified"} 1"#,
        r#"warden_runs_total{agent="cascade",outcome="escalated"} 1"#,
        r#"warden_runs_total{agent="cascade",outcome="cancelled"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in {text}");
    }

    // Another, stopped by a reviewer: nothing applied, its working copy gone.
    let other = escalated(&s, &stub, &dev, &ws_text).await;
    let working = data.join("cascades").join(other.to_string());
    assert!(working.join("work").is_dir(), "{}", working.display());
    let stop = format!("/v1/tasks/{other}/stop");
    let (status, v) = post(&s, &stop, &rita, b"").await;
    assert_eq!((status, &v["status"]), (200, &json!("stopped")), "{v}");
    assert_eq!(v["outcome"]["stopped_by"], "rita", "{v}");
    assert!(!working.join("work").exists());
    assert_eq!(std::fs::read_to_string(ws.join("calc.py")).unwrap(), broken);
    let ended_records = records(&s, "task-ended", other);
    assert!(
        ended_records
            .iter()
            .any(|r| r["detail"]["status"] == "stopped"
                && r["detail"]["outcome"]["stopped_by"] == "rita"),
        "{ended_records:#?}"
    );
    let (status, v) = post(&s, &stop, &dev, b"").await;
    assert_eq!((status, error_code(&v)), (409, "not-escalated"), "{v}");

    // Stopped (its data directory kept until `s` drops), then the chain checked.
    let mut s = s;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    super::queue::audit_verifies(&data);
}
