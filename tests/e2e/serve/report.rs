//! `POST /v1/trust/{agent}/report` over HTTP, as `warden trust report <task> --why …`: on the
//! approvals host (`review.rs`: `rita` a reviewer, `dan` not), `dan`'s `probe` task completes;
//! `dan` cannot report it (`403 not-a-reviewer`, nothing written); a report naming another
//! agent, no such task, an empty reason and an unknown field are refused and change nothing;
//! `rita`'s report demotes `probe` to level 1 and holds it, the reason stored, audited
//! `trust-demoted` with `reported_by`, and a review then shows the reporting task.

use std::time::Duration;

use serde_json::{Value, json};
use warden_tests::served::dev_token;

use super::review::{host, post};
use super::{Server, ended, error_code, get, submit};

/// `probe`'s record in `GET /v1/trust`, as `token` sees it.
async fn probe_standing(s: &Server, token: &str) -> Option<Value> {
    let (status, v) = get(s, "/v1/trust", Some(token)).await;
    assert_eq!(status, 200, "{v}");
    v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "unsigned/probe")
        .cloned()
}

fn demotions(s: &Server) -> Vec<Value> {
    std::fs::read_to_string(s.data.path().join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "trust-demoted")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regression_is_reported_over_http_by_a_reviewer_only() {
    let h = tokio::task::spawn_blocking(host).await.unwrap();
    let s = &h.server;
    let data = s.data.path();
    let (rita, dan) = (
        dev_token(data, "rita", &["reviewer"], Duration::from_secs(600)),
        dev_token(data, "dan", &["dev"], Duration::from_secs(600)),
    );
    let task = submit(
        s,
        &dan,
        &json!({"agent": "probe", "input": {"op": "echo", "text": "x"}}),
    )
    .await;
    let row = ended(s, &dan, task).await;
    assert_eq!(row["status"], "completed", "{row}");
    let before = probe_standing(s, &rita).await.expect("probe has a record");
    assert_eq!(before["held"], false, "{before}");
    let report = json!({"task": task, "why": "its output broke the build"});

    // Refused, nothing written: no reviewer's role; another agent; no such task; no reason;
    // an unknown field.
    let (status, v) = post(s, "/v1/trust/probe/report", &dan, &report).await;
    assert_eq!((status, error_code(&v)), (403, "not-a-reviewer"), "{v}");
    for (path, body, want) in [
        (
            "/v1/trust/hello/report",
            report.clone(),
            (400, "wrong-agent"),
        ),
        (
            "/v1/trust/probe/report",
            json!({"task": task + 100, "why": "x"}),
            (404, "no-task"),
        ),
        (
            "/v1/trust/probe/report",
            json!({"task": task, "why": "  "}),
            (400, "bad-reason"),
        ),
        (
            "/v1/trust/probe/report",
            json!({"task": task, "why": "x", "level": 3}),
            (400, "bad-body"),
        ),
        (
            "/v1/trust/probe/report",
            json!({"task": task}),
            (400, "bad-body"),
        ),
    ] {
        let (status, v) = post(s, path, &rita, &body).await;
        assert_eq!((status, error_code(&v)), want, "{path} {body}: {v}");
    }
    assert_eq!(probe_standing(s, &rita).await.as_ref(), Some(&before));
    assert!(demotions(s).is_empty());

    // The reviewer's report, by the agent's full id: demoted, held, audited with the reporter.
    let (status, v) = post(s, "/v1/trust/unsigned%2Fprobe/report", &rita, &report).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            &v["agent"]["level"],
            &v["agent"]["held"],
            &v["agent"]["demoted_by_task"]
        ),
        (&json!(1), &json!(true), &json!(task)),
        "{v}"
    );
    assert_eq!(
        v["agent"]["demoted_reason"],
        "regression reported: its output broke the build"
    );
    assert_eq!(
        (&v["change"]["event"], &v["change"]["reason"]),
        (&json!("demoted"), &v["agent"]["demoted_reason"]),
        "{v}"
    );
    let after = probe_standing(s, &dan).await.unwrap();
    assert_eq!((&after["level"], &after["held"]), (&json!(1), &json!(true)));
    let records = demotions(s);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        (&records[0]["task"], &records[0]["detail"]["reported_by"]),
        (&json!(task), &json!("rita")),
        "{records:#?}"
    );
    // Its review shows the reporting task.
    let (status, v) = get(s, "/v1/trust/probe/review", Some(&rita)).await;
    assert_eq!((status, &v["task"]), (200, &json!(task)), "{v}");
}
