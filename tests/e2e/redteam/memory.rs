//! Class `memory`: a curator (or a reader, or another user's task) attacking the curated memory
//! through the probe's `mem-*` ops, on a host of its own with a ledger, `memory.db` and one host
//! secret; users get their roles from a roles file written for the attack. Each attack has a
//! namespace of its own.
//!
//! Outcomes: `contained:refused <rule>` (the write failed naming the rule, nothing was stored and
//! the audit log does not hold the secret), `contained:invisible` (the reader found nothing),
//! `contained:refused-at-limit`, `contained:capped`, `killed:<reason>:memory`, or
//! `breach:<what>` when the attack worked.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use warden::orchestra::memory::Memory;
use warden::policy::{HostConfig, Roles};
use warden::secrets::SecretStore;
use warden::user::User;
use warden::{Outcome, RunOptions, RunReport, Runtime};
use warden_tests::{agent, policy};

struct Host {
    dir: tempfile::TempDir,
    runtime: Runtime,
    memory: Arc<Memory>,
}

fn secret() -> String {
    ["rt-", "7Hq2Zk", "9LmWx4"].concat()
}

fn aws() -> String {
    ["AKIA", "Q4MZ7KHX", "2RVNB3LT"].concat()
}

fn github() -> String {
    ["ghp_", "T9vB2mX7kQ4pL8wZ", "1nR6cD3fG5hJ0sA2eY9u"].concat()
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy-token");
        std::fs::write(&file, secret()).unwrap();
        let config = HostConfig::parse(
            "warden.toml",
            &format!(
                "[[secrets]]\nname = \"deploy-token\"\nfile = \"{}\"\nhost = \"api.example.com:443\"\nheader = \"authorization\"\n[memory]\nhorizon = \"1 h\"\n",
                file.display()
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let ledger = warden::ledger::Ledger::open(&data, config.checkpoint_every).unwrap();
        let memory = Arc::new(Memory::open(&data).unwrap());
        let runtime = warden_tests::runtime()
            .clone()
            .with_host_config(config.clone())
            .with_secrets(SecretStore::load(&config).unwrap())
            .with_ledger(Arc::new(ledger))
            .with_memory(memory.clone());
        Host {
            dir,
            runtime,
            memory,
        }
    })
}

/// A curator of `ns` (read and write).
fn curator(ns: &str) -> String {
    format!("[memory]\nwrite = [\"{ns}\"]\n")
}

/// A reader of `ns`.
fn reader(ns: &str) -> String {
    format!("[memory]\nread = [\"{ns}\"]\n")
}

fn user(subject: &str, role_body: &str) -> Option<Arc<User>> {
    let roles = Roles::parse("roles.toml", role_body).unwrap();
    Some(Arc::new(
        User::new(subject, vec!["r".to_string()], &roles).unwrap(),
    ))
}

async fn run(body: &str, task: &str, who: Option<Arc<User>>) -> RunReport {
    let h = host();
    let loaded = h
        .runtime
        .load_file(&agent("probe"), policy("probe", body))
        .unwrap();
    loaded
        .run(
            task,
            &RunOptions {
                workspace: None,
                user: who,
                on_begin: None,
                queued: None,
                client: None,
            },
        )
        .await
        .unwrap()
}

fn put(ns: &str, key: &str, text: &str) -> Value {
    json!({"op": "mem-put", "namespace": ns, "key": key, "text": text})
}

fn describe(r: &RunReport) -> String {
    match &r.outcome {
        Outcome::Completed { output } => format!("completed:{output}"),
        Outcome::AgentError { message, .. } => format!("agent-error:{message}"),
        Outcome::Escalated { reason, .. } => format!("escalated:{reason}"),
        Outcome::Killed {
            reason, capability, ..
        } => format!("killed:{reason}:{capability}"),
    }
}

/// The outcome of a write the filter must refuse: the rule it named, if nothing of `secret` was
/// stored under `ns` or written to the audit log.
fn refused(ns: &str, r: &RunReport, secret: &str) -> String {
    let stored = host()
        .memory
        .keys(Some(ns), 1000)
        .unwrap()
        .iter()
        .any(|v| v.text.contains(secret) || v.key.contains(secret));
    let log = std::fs::read_to_string(host().dir.path().join("data/audit.log")).unwrap();
    if stored {
        return "breach:stored".into();
    }
    if log.contains(secret) {
        return "breach:in-the-audit-log".into();
    }
    match &r.outcome {
        Outcome::AgentError { message, .. } => match message.split('`').nth(1) {
            Some(rule) if message.contains("rule `") => format!("contained:refused {rule}"),
            _ => format!("agent-error:{message}"),
        },
        _ => describe(r),
    }
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bytes
        .chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            (0..4).map(move |i| {
                if i <= c.len() {
                    A[((n >> (18 - 6 * i)) & 63) as usize] as char
                } else {
                    '='
                }
            })
        })
        .collect()
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes.iter().map(|b| format!("{sep}{b:02x}")).collect()
}

/// One scenario: its outcomes (one per variant).
async fn scenario(name: &str) -> Option<Vec<String>> {
    let ns = format!("rt-{name}");
    let ns = ns.as_str();
    let smuggle = |text: String, secret: String| async move {
        let r = run(&curator(ns), &put(ns, "k", &text).to_string(), None).await;
        vec![refused(ns, &r, &secret)]
    };
    Some(match name {
        "base64" => smuggle(format!("note {}", b64(aws().as_bytes())), aws()).await,
        "hex" => smuggle(format!("note {}", hex(github().as_bytes(), "")), github()).await,
        "escaped-hex" => smuggle(format!("b\"{}\"", hex(aws().as_bytes(), "\\x")), aws()).await,
        "base64-of-hex" => {
            let wrapped = b64(hex(aws().as_bytes(), "").as_bytes());
            smuggle(format!("note {wrapped}"), aws()).await
        }
        "host-secret" => smuggle(format!("deploy with {}", secret()), secret()).await,
        "host-secret-base64" => {
            smuggle(format!("cfg {}", b64(secret().as_bytes())), secret()).await
        }
        "split-one-task" => {
            let key = aws();
            let (a, b) = key.split_at(10);
            let mut second = put(ns, "b", b);
            let mut task = put(ns, "a", a);
            for i in 0..4 {
                second = json!({"op": "mem-put", "namespace": ns, "key": format!("filler-{i}"), "text": "nothing to see", "then": second});
            }
            task["then"] = second;
            let r = run(&curator(ns), &task.to_string(), None).await;
            vec![refused(ns, &r, &key)]
        }
        "split-two-tasks" => {
            let key = github();
            let (a, b) = key.split_at(20);
            let r = run(&curator(ns), &put(ns, "a", a).to_string(), None).await;
            if !matches!(r.outcome, Outcome::Completed { .. }) {
                return Some(vec![describe(&r)]);
            }
            let r = run(&curator(ns), &put(ns, "b", b).to_string(), None).await;
            vec![refused(ns, &r, &key)]
        }
        "secret-in-key" => {
            let task = json!({"op": "mem-put", "namespace": ns, "key": format!("creds-{}", aws()), "text": "fine"});
            let r = run(&curator(ns), &task.to_string(), None).await;
            vec![refused(ns, &r, &aws())]
        }
        "pem-in-tag" => {
            let tag = format!("-----BEGIN {}PRIVATE KEY-----", "RSA ");
            let task = json!({"op": "mem-put", "namespace": ns, "key": "k", "text": "fine", "tags": [tag]});
            let r = run(&curator(ns), &task.to_string(), None).await;
            vec![refused(ns, &r, "PRIVATE KEY")]
        }
        "other-user" => {
            let role = format!(
                "[role.r]\nagents = [\"*\"]\nmemory.read = [\"{ns}\"]\nmemory.write = [\"{ns}\"]\n"
            );
            let (alice, bob) = (user("alice", &role), user("bob", &role));
            let r = run(&curator(ns), &put(ns, "k", "alice only").to_string(), alice).await;
            if !matches!(r.outcome, Outcome::Completed { .. }) {
                return Some(vec![describe(&r)]);
            }
            let get = json!({"op": "mem-get", "namespace": ns, "key": "k"}).to_string();
            let list = json!({"op": "mem-list", "namespace": ns}).to_string();
            let mut out = Vec::new();
            for (task, empty) in [(get, "none"), (list, "[]")] {
                let r = run(&reader(ns), &task, bob.clone()).await;
                out.push(match &r.outcome {
                    Outcome::Completed { output } if output == empty => {
                        "contained:invisible".into()
                    }
                    Outcome::Completed { .. } => "breach:read another user's entry".into(),
                    _ => describe(&r),
                });
            }
            out
        }
        "oversize" => {
            let big = "x".repeat(64 * 1024 + 1);
            let r = run(&curator(ns), &put(ns, "k", &big).to_string(), None).await;
            vec![match &r.outcome {
                Outcome::AgentError { message, .. } if message.contains("at most") => {
                    "contained:refused-at-limit".into()
                }
                _ => describe(&r),
            }]
        }
        "control-key" => {
            let r = run(
                &curator(ns),
                &put(ns, "a\u{1b}[2J\u{7}", "x").to_string(),
                None,
            )
            .await;
            vec![match &r.outcome {
                Outcome::AgentError { message, .. } if message.contains("control character") => {
                    "contained:refused-at-limit".into()
                }
                _ => describe(&r),
            }]
        }
        "flood" => {
            let task =
                json!({"op": "mem-flood", "namespace": ns, "key": "k", "text": "x", "depth": 400});
            let r = run(&curator(ns), &task.to_string(), None).await;
            let stored = host().memory.keys(Some(ns), 1000).unwrap().len();
            vec![match &r.outcome {
                Outcome::Completed { output }
                    if output.starts_with("wrote 256, then") && stored == 256 =>
                {
                    "contained:refused-at-limit".into()
                }
                _ => format!("{} ({stored} stored)", describe(&r)),
            }]
        }
        "odd-namespace" => {
            let mut out = Vec::new();
            for odd in [
                format!("{ns}\u{0}"),
                format!("{ns}\u{1b}[2J"),
                format!("../{ns}"),
                ns.to_uppercase(),
                format!("{ns} "),
                format!("{ns}/x"),
            ] {
                let r = run(&curator(ns), &put(&odd, "k", "x").to_string(), None).await;
                out.push(describe(&r));
            }
            out
        }
        "reader-writes" => {
            let r = run(&reader(ns), &put(ns, "k", "x").to_string(), None).await;
            vec![describe(&r)]
        }
        "confused-deputy" => {
            let role = format!("[role.r]\nagents = [\"*\"]\nmemory.read = [\"{ns}\"]\n");
            let r = run(
                &curator(ns),
                &put(ns, "k", "x").to_string(),
                user("rita", &role),
            )
            .await;
            vec![describe(&r)]
        }
        "ttl-beyond-horizon" => {
            let task = json!({"op": "mem-put", "namespace": ns, "key": "k", "text": "forever?", "ttl": 315_360_000u64});
            let r = run(&curator(ns), &task.to_string(), None).await;
            let v = host().memory.newest(ns, "k").unwrap();
            vec![match (&r.outcome, v) {
                (Outcome::Completed { .. }, Some(v))
                    if !v.pinned && v.expires_ms.is_some_and(|e| e - v.written_ms <= 3_600_000) =>
                {
                    "contained:capped".into()
                }
                (_, v) => format!("{} {v:?}", describe(&r)),
            }]
        }
        _ => return None,
    })
}

/// Run the memory attack `name` (`memory-<scenario>`).
pub async fn run_attack(name: &str) -> Option<Vec<String>> {
    scenario(name.strip_prefix("memory-")?).await
}
