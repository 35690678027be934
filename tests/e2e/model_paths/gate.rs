//! The gate at the command line: a model name a guest made 5 MB long kills like any name not
//! granted, and the kill quotes only its first characters — in the report, the host's stderr,
//! the task record and the audit log — so one call cannot write megabytes into the host's
//! records (before the detail was cut, this run grew the audit log by 10 MB).

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{Host, POLICY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_name_of_megabytes_kills_with_a_short_detail() {
    let stub = StubProvider::start().await.unwrap();
    let host = Host::new(&stub.url(), &[], "");
    // "small" a million times: it starts with the granted name, and is not it.
    let task = json!({"op": "model", "model": "small", "depth": 1_000_000, "text": "hi"});
    let r = host.probe(POLICY, &task).await;
    assert_eq!(r.code, 3, "exit {}: {}", r.code, r.outcome());
    let o = r.outcome();
    assert_eq!(
        (o["reason"].as_str(), o["capability"].as_str()),
        (Some("out-of-scope"), Some("model"))
    );
    let detail = o["detail"].as_str().unwrap_or("");
    let (kept, size) = detail
        .rsplit_once("… (")
        .unwrap_or_else(|| panic!("not cut: {} bytes", detail.len()));
    assert!(kept.starts_with("model `smallsmall"), "{kept}");
    assert!(
        size.strip_suffix(" bytes in all)")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 5_000_000),
        "{size}"
    );
    assert!(detail.len() < 2048, "{} bytes", detail.len());
    assert!(r.err.len() < 16 << 10, "stderr: {} bytes", r.err.len());
    assert_eq!(stub.request_count(), 0);
    let shown = host.task_show(r.task()).await.to_string();
    assert!(shown.len() < 16 << 10, "task show: {} bytes", shown.len());
    let log = std::fs::metadata(host.path("data/audit.log"))
        .unwrap()
        .len();
    assert!(log < 64 << 10, "the audit log is {log} bytes");
    host.verify().await;
}
