//! End-to-end: the curated memory with a real agent (the probe's `mem-put`, `mem-get`,
//! `mem-list` ops) on a host with a ledger: only curators write (a write without
//! `[memory] write` kills), every PII and secret class is refused with its rule named (in the
//! error and the audit log, never the text), versions and revert, expiry, per-user isolation,
//! roles bounding reads and writes, and layer 2 in the model's prompt. The `warden memory`
//! commands (history, revert, forget, pin by a reviewer only) are in `memory/cli.rs`.
//!
//! Secret-shaped values are assembled at run time, so this file holds none whole.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use warden::orchestra::memory::Memory;
use warden::policy::{HostConfig, Roles};
use warden::secrets::SecretStore;
use warden::user::User;
use warden::{KillReason, Outcome, RunOptions, RunReport, Runtime};
use warden_tests::{agent, completed, killed, ledger_runtime, policy, probe};

#[path = "memory/cli.rs"]
mod cli;

/// A curator: reads `patterns`, reads and writes `lessons`.
const CURATOR: &str = "[memory]\nread = [\"patterns\"]\nwrite = [\"lessons\"]\n";
/// A reader of `lessons`.
const READER: &str = "[memory]\nread = [\"lessons\"]\n";

const ROLES: &str = r#"
[role.curator]
agents = ["*"]
memory.read = ["lessons", "patterns"]
memory.write = ["lessons"]
model.allow = ["small"]
[role.reader]
agents = ["*"]
memory.read = ["lessons"]
[role.nobody]
agents = ["*"]
fs.read = ["**"]
"#;

/// The host secret every test host holds (`deploy-token`).
fn host_secret() -> String {
    ["hs-", "9f3k2L", "mQ8zXv"].concat()
}

/// A host of a test's own: a data directory with the ledger and `memory.db`, one host secret,
/// a memory horizon.
struct Host {
    dir: tempfile::TempDir,
    runtime: Runtime,
    memory: Arc<Memory>,
}

impl Host {
    fn new(horizon: &str) -> Host {
        Host::with_config(horizon, "")
    }

    fn with_config(horizon: &str, extra: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("deploy-token");
        std::fs::write(&secret, host_secret()).unwrap();
        let config = HostConfig::parse(
            "warden.toml",
            &format!(
                "[[secrets]]\nname = \"deploy-token\"\nfile = \"{}\"\nhost = \"api.example.com:443\"\nheader = \"authorization\"\n\
                 [memory]\nhorizon = \"{horizon}\"\n{extra}",
                secret.display()
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let secrets = SecretStore::load(&config).unwrap();
        let runtime = ledger_runtime(&data, config).with_secrets(secrets);
        let memory = Arc::new(Memory::open(&data).unwrap());
        let runtime = runtime.with_memory(memory.clone());
        Host {
            dir,
            runtime,
            memory,
        }
    }

    /// Run the probe under `body` with `task`, for `user`.
    async fn run(&self, body: &str, task: &str, user: Option<Arc<User>>) -> RunReport {
        let loaded = self
            .runtime
            .load_file(&agent("probe"), policy("probe", body))
            .unwrap();
        let options = RunOptions {
            workspace: None,
            user,
            on_begin: None,
            queued: None,
            client: None,
        };
        loaded.run(task, &options).await.unwrap()
    }

    /// Every audit record of `kind`.
    fn audit(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("data/audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["kind"] == kind)
            .collect()
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/audit.log")).unwrap()
    }
}

fn user(subject: &str, roles: &[&str]) -> Option<Arc<User>> {
    let file = Roles::parse("roles.toml", ROLES).unwrap();
    let roles = roles.iter().map(|r| r.to_string()).collect();
    Some(Arc::new(User::new(subject, roles, &file).unwrap()))
}

fn put(key: &str, text: &str) -> String {
    put_with(key, text, &[])
}

fn put_with(key: &str, text: &str, more: &[(&str, Value)]) -> String {
    let mut fields = vec![
        ("namespace", json!("lessons")),
        ("key", json!(key)),
        ("text", json!(text)),
    ];
    fields.extend(more.iter().cloned());
    probe("mem-put", &fields)
}

fn get(namespace: &str, key: &str) -> String {
    probe(
        "mem-get",
        &[("namespace", json!(namespace)), ("key", json!(key))],
    )
}

/// The text a `mem-get` found, or `None`.
fn read_text(report: &RunReport) -> Option<String> {
    let out = completed(report);
    (out != "none").then(|| {
        serde_json::from_str::<Value>(out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// The message of a failed run.
fn failure(report: &RunReport) -> &str {
    match &report.outcome {
        Outcome::AgentError { message, .. } => message,
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_curators_write() {
    let host = Host::new("1 h");
    // A reader's write kills; so does a write with no [memory] at all, and a write to a
    // namespace the curator may only read.
    let r = host.run(READER, &put("k", "a lesson"), None).await;
    let (capability, detail) = killed(&r, KillReason::OutOfScope);
    assert_eq!(capability, "memory");
    assert!(detail.contains("memory.write"), "{detail}");
    let r = host.run("", &put("k", "a lesson"), None).await;
    killed(&r, KillReason::NotGranted);
    let patterns = probe(
        "mem-put",
        &[
            ("namespace", json!("patterns")),
            ("key", json!("k")),
            ("text", json!("x")),
        ],
    );
    killed(
        &host.run(CURATOR, &patterns, None).await,
        KillReason::OutOfScope,
    );
    assert!(
        host.memory.keys(None, 10).unwrap().is_empty(),
        "nothing was stored"
    );
    // The curator writes; a reader reads.
    let r = host
        .run(CURATOR, &put("k", "retry with jitter"), None)
        .await;
    assert_eq!(completed(&r), "version 1");
    let r = host.run(READER, &get("lessons", "k"), None).await;
    assert_eq!(read_text(&r).as_deref(), Some("retry with jitter"));
    // Reading a namespace the policy does not name kills.
    killed(
        &host.run(READER, &get("secrets", "k"), None).await,
        KillReason::OutOfScope,
    );
    let written = host.audit("memory-write");
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["agent"], "probe");
    assert_eq!(written[0]["detail"]["version"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pii_and_secret_class_is_refused_with_its_rule_named() {
    let host = Host::new("1 h");
    let classes: Vec<(String, &str)> = vec![
        (format!("mail jane.doe@{}", "corp.example.com"), "pii:email"),
        ("call +1 415 555 2671".into(), "pii:phone"),
        (
            format!("card {} 1111 1111 1111", "4111"),
            "pii:payment-card",
        ),
        (
            format!("iban GB82 WEST {} 7654 32", "1234 5698"),
            "pii:iban",
        ),
        (format!("ssn {}-45-6789", "123"), "gov-id:us-ssn"),
        ("nino AB 12 34 56 C".into(), "gov-id:uk-nino"),
        ("sin 123 456 782".into(), "gov-id:ca-sin"),
        ("dni 12345678Z".into(), "gov-id:es-dni"),
        (
            format!("-----BEGIN {}PRIVATE KEY-----\nMIIE", "EC "),
            "key:pem-private-key",
        ),
        (
            format!("aws {}", ["AKIA", "Z3MHF4KQ", "7XBVNL2W"].concat()),
            "gitleaks:aws-access-token",
        ),
        (
            format!("gh ghp_{}", "x7Kp2mQ9vL4tR8wZ1nB6cD3fG5hJ0sA2eY9u"),
            "gitleaks:github-pat",
        ),
        (
            format!("password = \"{}\"", ["a8Fk29XmQ0", "pL3vZr7T"].concat()),
            "gitleaks:generic-api-key",
        ),
        (
            format!("deploy with {}", host_secret()),
            "host-secret:deploy-token",
        ),
    ];
    for (i, (text, rule)) in classes.iter().enumerate() {
        let key = format!("class-{i}");
        let r = host.run(CURATOR, &put(&key, text), None).await;
        let message = failure(&r);
        assert!(
            message.contains(&format!("rule `{rule}`")),
            "{text}: {message}"
        );
        assert!(!message.contains(text.as_str()), "{message}");
        assert!(host.memory.newest("lessons", &key).unwrap().is_none());
    }
    let refused = host.audit("memory-refused");
    let rules: Vec<&str> = refused
        .iter()
        .map(|r| r["detail"]["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, classes.iter().map(|(_, r)| *r).collect::<Vec<_>>());
    let log = host.audit_text();
    for (text, _) in &classes {
        let secret = text.split_once(' ').unwrap().1;
        assert!(!log.contains(secret), "the audit log holds `{secret}`");
    }
    // Clean text is stored.
    let r = host
        .run(
            CURATOR,
            &put("clean", "Back off exponentially; cap retries at 30 s."),
            None,
        )
        .await;
    assert_eq!(completed(&r), "version 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_is_a_version_and_revert_brings_one_back() {
    let host = Host::new("1 h");
    for (text, version) in [("first", "version 1"), ("second", "version 2")] {
        assert_eq!(
            completed(&host.run(CURATOR, &put("k", text), None).await),
            version
        );
    }
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "k"), None).await).as_deref(),
        Some("second")
    );
    let horizon = host.runtime.host_config().memory_horizon;
    let now = warden::orchestra::memory::now_ms();
    assert_eq!(
        host.memory
            .revert("lessons", "k", 1, horizon, "operator", now)
            .unwrap(),
        3
    );
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "k"), None).await).as_deref(),
        Some("first")
    );
    let history = host.memory.history("lessons", "k", 10).unwrap();
    let shown: Vec<(u32, &str)> = history
        .iter()
        .map(|v| (v.version, v.text.as_str()))
        .collect();
    assert_eq!(shown, [(3, "first"), (2, "second"), (1, "first")]);
    assert_eq!(
        (history[1].agent.as_str(), history[0].agent.as_str()),
        ("probe", "operator")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_expire_at_their_ttl_or_the_horizon() {
    let host = Host::new("2 s");
    let short = put_with("short", "gone soon", &[("ttl", json!(1))]);
    completed(&host.run(CURATOR, &short, None).await);
    // A ttl over the horizon is capped by it.
    let long = put_with("long", "capped", &[("ttl", json!(3600))]);
    completed(&host.run(CURATOR, &long, None).await);
    let v = host.memory.newest("lessons", "long").unwrap().unwrap();
    assert_eq!(v.expires_ms.unwrap() - v.written_ms, 2000);
    assert!(read_text(&host.run(READER, &get("lessons", "short"), None).await).is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "short"), None).await),
        None
    );
    assert!(read_text(&host.run(READER, &get("lessons", "long"), None).await).is_some());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "long"), None).await),
        None
    );
    let list = probe("mem-list", &[("namespace", json!("lessons"))]);
    assert_eq!(completed(&host.run(READER, &list, None).await), "[]");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_entry_is_not_read_in_another_users_task_unless_general() {
    let host = Host::new("1 h");
    let (alice, bob) = (user("alice", &["curator"]), user("bob", &["curator"]));
    completed(
        &host
            .run(CURATOR, &put("note", "alice's private note"), alice.clone())
            .await,
    );
    assert_eq!(
        read_text(
            &host
                .run(READER, &get("lessons", "note"), alice.clone())
                .await
        )
        .as_deref(),
        Some("alice's private note")
    );
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "note"), bob.clone()).await),
        None
    );
    assert_eq!(
        read_text(&host.run(READER, &get("lessons", "note"), None).await),
        None
    );
    let list = probe("mem-list", &[("namespace", json!("lessons"))]);
    assert_eq!(completed(&host.run(READER, &list, bob.clone()).await), "[]");
    let general = put_with("shared", "for everyone", &[("general", json!(true))]);
    completed(&host.run(CURATOR, &general, alice.clone()).await);
    assert_eq!(
        read_text(
            &host
                .run(READER, &get("lessons", "shared"), bob.clone())
                .await
        )
        .as_deref(),
        Some("for everyone")
    );
    let v = host.memory.newest("lessons", "note").unwrap().unwrap();
    assert_eq!(v.owner, "alice");
    assert_eq!(host.audit("memory-write")[0]["user"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_roles_bound_reads_and_writes() {
    let host = Host::new("1 h");
    // A curator agent acting for a user who may only read: the write kills.
    let r = host
        .run(CURATOR, &put("k", "x"), user("rita", &["reader"]))
        .await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(
        detail.contains("not allowed (memory.write) to the user"),
        "{detail}"
    );
    // A user with no memory role: even a read kills.
    let r = host
        .run(READER, &get("lessons", "k"), user("nina", &["nobody"]))
        .await;
    let (_, detail) = killed(&r, KillReason::OutOfScope);
    assert!(detail.contains("memory.read"), "{detail}");
    assert!(host.memory.keys(None, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn layer_two_of_the_prompt_is_the_memory_the_user_may_read() {
    use warden::orchestra::model::stub::StubProvider;
    let stub = StubProvider::start().await.unwrap();
    let host = Host::with_config(
        "1 h",
        &format!(
            "[[model]]\nname = \"small\"\nurl = \"{}\"\nid = \"stub\"\n",
            stub.url()
        ),
    );
    let models =
        warden::orchestra::Models::from_config(host.runtime.host_config(), host.runtime.tls())
            .unwrap();
    let runtime = host.runtime.clone().with_models(models);
    let (alice, bob) = (user("alice", &["curator"]), user("bob", &["curator"]));
    for (key, text, who, general) in [
        ("zeta", "Prefer small commits.", &alice, false),
        ("alpha", "Run the tests before pushing.", &alice, true),
        ("bob-only", "Bob's private habit.", &bob, false),
    ] {
        let task = put_with(key, text, &[("general", json!(general))]);
        completed(&host.run(CURATOR, &task, who.clone()).await);
    }
    let asker = format!("{READER}[model]\nallow = [\"small\"]\ntokens = 10000\n");
    let loaded = runtime
        .load_file(&agent("probe"), policy("probe", &asker))
        .unwrap();
    let ask = probe(
        "model",
        &[
            ("model", json!("small")),
            ("max_tokens", json!(8)),
            ("text", json!("hi")),
        ],
    );
    let options = RunOptions {
        workspace: None,
        user: alice,
        on_begin: None,
        queued: None,
        client: None,
    };
    for _ in 0..2 {
        completed(&loaded.run(&ask, &options).await.unwrap());
    }
    let systems: Vec<String> = stub
        .requests()
        .iter()
        .map(|r| {
            r.json()["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(systems.len(), 2);
    assert_eq!(
        systems[0], systems[1],
        "consecutive calls are byte-identical"
    );
    let layer = "# Memory\n## lessons/alpha\nRun the tests before pushing.\n\n## lessons/zeta\nPrefer small commits.";
    assert!(systems[0].contains(layer), "{}", systems[0]);
    assert!(!systems[0].contains("Bob's"), "{}", systems[0]);
}
