//! Agents' contracts end to end, through the `warden` command: the schemas `inspect` prints, a
//! task refused before any instance starts, a result that breaks the agent's own output schema
//! (a breach: killed, demoted, audited), a component built against `warden:agent@0.1` (refused
//! with a rebuild message, not demoted), and the audit log verifying after all of it.

use std::path::{Path, PathBuf};

use warden_tests::{agent, root, warden_with_data};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn warden(&self, args: &[&str]) -> (i32, String, String) {
        warden_with_data(&self.path("data"), args)
    }

    fn policy(&self, name: &str) -> PathBuf {
        let p = self.path(&format!("{name}.toml"));
        std::fs::write(&p, format!("[agent]\nname = \"{name}\"\n")).unwrap();
        p
    }

    /// `name`'s line of `warden trust list`, if it has one.
    fn trust(&self, name: &str) -> Option<String> {
        let (code, out, err) = self.warden(&["trust", "list"]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|id| id.rsplit('/').next() == Some(name))
            })
            .map(str::to_owned)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn wat(name: &str) -> PathBuf {
    root().join("tests/redteam/wat").join(name)
}

#[test]
fn inspect_prints_the_contract() {
    let host = Host::new();
    let hello = agent("hello");
    let (code, out, err) = host.warden(&["inspect", s(&hello)]);
    assert_eq!(code, 0, "{err}");
    let input = out
        .lines()
        .find(|l| l.trim_start().starts_with("input schema:"))
        .unwrap_or_else(|| panic!("no input schema line:\n{out}"));
    assert!(
        input.contains("anyOf") && input.contains("\"name\""),
        "{input}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("output schema:") && l.contains("\"type\":\"string\"")),
        "{out}"
    );
}

#[test]
fn a_task_that_breaks_the_input_schema_never_starts() {
    let host = Host::new();
    let hello = agent("hello");
    let policy = host.policy("hello");
    let (code, out, err) =
        host.warden(&["run", s(&hello), "--policy", s(&policy), "--input", "42"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("does not match the contract of `hello`") && err.contains("at /"),
        "{err}"
    );
    // No task was opened, no instance ran; the refusal is audited.
    let (_, list, _) = host.warden(&["task", "list"]);
    assert!(list.trim().is_empty(), "{list}");
    let log = std::fs::read_to_string(host.path("data/audit.log")).unwrap_or_default();
    assert!(
        log.contains("task-refused") && log.contains("input-contract"),
        "{log}"
    );
    // The deny twin: a task that fits runs.
    let (code, out, err) = host.warden(&[
        "run",
        s(&hello),
        "--policy",
        s(&policy),
        "--input",
        "{\"name\": \"ada\"}",
    ]);
    assert_eq!((code, out.trim()), (0, "hello, ada"), "{err}");
    let (code, _, err) = host.warden(&["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_result_that_breaks_the_output_schema_is_a_breach_and_demotes() {
    let host = Host::new();
    let policy = host.policy("breaker");
    let component = wat("contract-integer.wat");
    // A result that keeps the promise (the task echoed is an integer) completes.
    let (code, out, err) =
        host.warden(&["run", s(&component), "--policy", s(&policy), "--input", "7"]);
    assert_eq!((code, out.trim()), (0, "7"), "{err}");
    assert!(
        !host.trust("breaker").unwrap_or_default().contains("HELD"),
        "not demoted yet"
    );
    let (code, out, err) = host.warden(&[
        "run",
        s(&component),
        "--policy",
        s(&policy),
        "--input",
        "\"seven\"",
        "--json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(report["outcome"]["status"], "killed", "{report}");
    assert_eq!(report["outcome"]["reason"], "contract-breach", "{report}");
    assert_eq!(report["outcome"]["capability"], "contract", "{report}");
    let trust = host.trust("breaker").expect("a trust record");
    assert!(trust.contains("HELD"), "a breach demotes: {trust}");
    let log = std::fs::read_to_string(host.path("data/audit.log")).unwrap_or_default();
    assert!(log.contains("contract-breach"), "{log}");
    let (code, _, err) = host.warden(&["audit", "verify"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_component_built_against_0_1_is_refused_with_how_to_rebuild() {
    let host = Host::new();
    let policy = host.policy("old");
    let (code, out, err) = host.warden(&[
        "run",
        s(&wat("outdated.wat")),
        "--policy",
        s(&policy),
        "--input",
        "\"x\"",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("warden:agent 0.1") && err.contains("rebuild"),
        "{err}"
    );
    // A build problem, not a breach: the agent is not demoted.
    assert!(
        !host.trust("old").unwrap_or_default().contains("HELD"),
        "an outdated build must not demote"
    );
}

#[test]
fn a_contract_the_host_cannot_use_is_refused() {
    let host = Host::new();
    for file in ["contract-not-json.wat", "contract-remote-ref.wat"] {
        let policy = host.policy("odd");
        let (code, out, err) = host.warden(&[
            "run",
            s(&wat(file)),
            "--policy",
            s(&policy),
            "--input",
            "\"x\"",
        ]);
        assert_eq!(code, 2, "{file}: {out}{err}");
        assert!(
            err.contains("declares a contract the host cannot use"),
            "{file}: {err}"
        );
    }
}
