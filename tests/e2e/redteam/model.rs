//! The model host of the red-team class `model`: an attack whose policy has a `[model]` section
//! runs on a runtime of its own (the suite's, with `Runtime::with_models`) whose `small` and
//! `large` are a scripted stub provider of the attack's own, reached with a sentinel API key.
//! Well-behaved runs and every other attack keep the suite's runtime, which has no models.
//!
//! `stub` in `attacks.toml` says what the provider does: `echo-authorization` (answers with the
//! `Authorization` header it got), `echo-authorization-error` (quotes it in a 401), `slow` (each
//! copy's answer after 150 ms, so that the copies' calls overlap), or nothing (it answers
//! "stub reply" at once). Whatever an attack expects, the key must reach no report: an outcome or
//! captured output holding it is damage, and so are more requests at the provider than calls the
//! host accounts for as sent (a call refused by the gate, the shape check or the budget must never
//! reach the provider).

use std::sync::OnceLock;
use std::time::Duration;

use warden::orchestra::model::Models;
use warden::orchestra::model::stub::{StubProvider, StubReply};
use warden::policy::HostConfig;
use warden::{RunReport, Runtime};

/// The sentinel API key of every model attack.
const KEY: &str = "sk-redteam-model-Hq4Tz8Wm2Rv6";

/// A model attack's host: the stub, and the runtime that calls it.
pub struct ModelHost {
    /// The scripted provider (dropped with the host).
    pub stub: StubProvider,
    /// The suite's runtime with the stub as its models.
    pub runtime: Runtime,
    _dir: tempfile::TempDir,
}

/// The runtime the stubs serve on: a thread of their own, so that the suite's runaway guests,
/// which keep its workers busy until their limits, do not hold up a provider's answers.
fn stub_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redteam-model-stub")
            .enable_all()
            .build()
            .expect("the stubs' runtime")
    })
}

/// A host for one model attack: `script` (see the module docs) for `copies` runs at once.
pub async fn host(base: &Runtime, script: Option<&str>, copies: usize) -> ModelHost {
    let stub = stub_runtime()
        .spawn(StubProvider::start())
        .await
        .expect("the stub's start")
        .expect("the stub listens");
    match script {
        None => {}
        Some("echo-authorization") => stub.script([StubReply::EchoAuthorization]),
        Some("echo-authorization-error") => stub.script([StubReply::EchoAuthorizationError]),
        Some("slow") => stub.script((0..copies).map(|_| StubReply::Slow {
            delay: Duration::from_millis(150),
            then: Box::new(StubReply::answer("stub reply")),
        })),
        Some(other) => panic!("no stub script `{other}` (tests/e2e/redteam/model.rs)"),
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = dir.path().join("provider.key");
    std::fs::write(&key, KEY).expect("the key file");
    let mut text = String::new();
    for (name, id) in [("small", "stub-1"), ("large", "stub-2")] {
        text.push_str(&format!(
            "[[model]]\nname = \"{name}\"\nurl = \"{}\"\nid = \"{id}\"\nkey_file = \"{}\"\n\
             timeout = \"9 s\"\nretries = 0\nprice = {{ input = 1.0, cached = 0.5, output = 2.0 }}\n",
            stub.url(),
            key.display()
        ));
    }
    let config = HostConfig::parse("warden.toml", &text).expect("the model host's config");
    let models = Models::from_config(&config, base.tls()).expect("the models");
    ModelHost {
        stub,
        runtime: base.clone().with_models(models),
        _dir: dir,
    }
}

/// The most calls of `report`'s task the host may have sent to the provider: every call it
/// accounts for but the one refused for the budget (an escalated task's last). With
/// `retries = 0` each is at most one request, so the stub may have got no more.
pub fn sent(report: &RunReport) -> u64 {
    let calls = report.model.as_ref().map_or(0, |m| m.calls);
    let refused = matches!(report.outcome, warden::Outcome::Escalated { .. });
    calls.saturating_sub(u64::from(refused))
}

/// Whether `report` (outcome, captured output, logs) holds the API key.
pub fn leaks(report: &RunReport) -> bool {
    serde_json::to_string(report).is_ok_and(|text| text.contains(KEY))
}
