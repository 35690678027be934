//! A resume of an escalated cascade acknowledged while the server's one worker is busy is
//! stored before its `202`, so a SIGKILL before it starts loses nothing: the restarted server
//! runs it (the task completes, with its `task-resumed` record); a resume cancelled while it
//! waited is not stored any more; one whose user's role is gone at the restart is dropped with a
//! `resume-refused` record (the task stays escalated). The resume that was running at
//! the kill is not run again (its task stays `escalated`, its cut stages `interrupted`), and the
//! audit chain verifies.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden::orchestra::model::stub::{StubProvider, StubReply};

use super::cascade::{roster_agents, roster_host};
use super::resume::{escalated, post, status_becomes, the_team_goes_on};
use super::{launch, request};

/// `method` on task `id` at the server at `addr`: its status and the row it answers.
async fn on_task(addr: &str, method: &str, token: &str, id: u64) -> (u16, Value) {
    request(
        addr,
        method,
        &format!("/v1/tasks/{id}"),
        Some(token),
        Vec::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_acknowledged_before_a_kill_runs_after_the_restart() {
    let agents = roster_agents();
    let stub = StubProvider::start().await.unwrap();
    // `ops` (olga's role) is dropped from the roles file before the restart.
    let ops = "[role.ops]\nagents = [\"*\"]\nfs.write = [\"**\"]\nmodel = { allow = [\"small\", \"large\"], tokens = 100000, usd = 10.0 }\n";
    let (_host, config) = roster_host(agents.path(), &stub.url(), ops, "skeptic_rejections = 2");
    // One worker: a second resume waits behind the first.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[server]\n", "[server]\nworkers = 1\n", 1),
    )
    .unwrap();
    let launched = config.clone();
    let mut s = tokio::task::spawn_blocking(move || launch(&launched, agents))
        .await
        .unwrap();
    let dev = s.token.clone();
    let data = s.data.path().to_path_buf();
    let ws = _host.path().join("ws").display().to_string();
    let first = escalated(&s, &stub, &dev, &ws).await;
    let second = escalated(&s, &stub, &dev, &ws).await;
    let olga = warden_tests::served::dev_token(&data, "olga", &["ops"], Duration::from_secs(600));
    let third = escalated(&s, &stub, &olga, &ws).await;

    // The first resume takes the worker and waits on a model that never answers.
    stub.clear_requests();
    stub.script([StubReply::NeverEnds]);
    let (status, v) = post(&s, &format!("/v1/tasks/{first}/resume"), &dev, b"").await;
    assert_eq!((status, &v), (202, &json!({"task": first})), "{v}");
    status_becomes(&s.addr, &dev, first, "running").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stub.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first resume never asked the model"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A resume cancelled while it waits is taken back: the task reads `escalated` again, and
    // a new resume of it is acknowledged (not `409 already-resuming`).
    let (status, v) = post(&s, &format!("/v1/tasks/{second}/resume"), &dev, b"").await;
    assert_eq!((status, &v), (202, &json!({"task": second})), "{v}");
    status_becomes(&s.addr, &dev, second, "queued").await;
    let (status, row) = on_task(&s.addr, "DELETE", &dev, second).await;
    assert_eq!(
        (status, &row["status"]),
        (200, &json!("escalated")),
        "{row}"
    );
    // The second is acknowledged and waits.
    let note = "the second resume, stored";
    let body = json!({ "note": note }).to_string();
    let (status, v) = post(
        &s,
        &format!("/v1/tasks/{second}/resume"),
        &dev,
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, &v), (202, &json!({"task": second})), "{v}");
    status_becomes(&s.addr, &dev, second, "queued").await;
    // Olga's waits too, and her role is gone when the server starts again.
    let (status, v) = post(&s, &format!("/v1/tasks/{third}/resume"), &olga, b"").await;
    assert_eq!((status, &v), (202, &json!({"task": third})), "{v}");
    status_becomes(&s.addr, &olga, third, "queued").await;
    let roles = _host.path().join("roles.toml");
    let text = std::fs::read_to_string(&roles).unwrap();
    std::fs::write(&roles, text.replace(ops, "")).unwrap();

    // SIGKILL, then a start on the same data directory, the team scripted to go on.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    stub.clear_requests();
    stub.script(the_team_goes_on());
    let restarted = tokio::task::spawn_blocking({
        let (config, data) = (config.clone(), data.clone());
        move || super::queue::serve_on(&config, &data)
    })
    .await
    .unwrap();
    let row = status_becomes(&restarted.addr, &restarted.token, second, "completed").await;
    assert_eq!(row["staging"], "proposed", "{row}");
    let resumed = super::queue::records(&data, "task-resumed", second);
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert_eq!(resumed[0]["detail"]["note"], note, "{resumed:#?}");
    assert!(
        String::from_utf8_lossy(&stub.requests()[1].body).contains(note),
        "the stored note did not reach the implementer"
    );
    // The first, cut short by the kill, is not run again: it stays escalated.
    let (status, row) = on_task(&restarted.addr, "GET", &restarted.token, first).await;
    assert_eq!(
        (status, &row["status"]),
        (200, &json!("escalated")),
        "{row}"
    );
    assert_eq!(super::queue::records(&data, "task-resumed", first).len(), 1);
    // Olga's resume was dropped at the start, audited with why; her task never resumed.
    let dropped = super::queue::records(&data, "resume-refused", third);
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert!(
        dropped[0]["detail"]["why"]
            .as_str()
            .unwrap()
            .contains("ops"),
        "{dropped:#?}"
    );
    assert!(super::queue::records(&data, "task-resumed", third).is_empty());
    drop(restarted);
    super::queue::audit_verifies(&data);
}
