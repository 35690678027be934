//! End-to-end: the `ask` agent through a real model — llama.cpp's server with SmolLM2-135M,
//! started by the harness (`warden_tests::model_server`) — via the `warden` binary and a host
//! configuration naming it: an answer with its usage recorded, a model the policy does not allow
//! kills (and demotes), and a budget too small ends the task escalated (and does not demote).
//!
//! Model output is never asserted on by wording: only its structure, usage and finish reason.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;
use warden_tests::{model_server, root, warden_bin};

/// Held by the tests that send the server requests: its one slot keeps the last prompt's prefix
/// cached, and a test that checks for cache hits must not have another test's prompt in between.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `ask` component, built once per test process.
fn ask() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = warden_tests::cargo()
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
            .args(["-p", "ask"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the ask agent failed");
    });
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("wasm32-wasip2/release/ask.wasm")
}

/// A host of a test's own: a data directory (tasks, trust, audit log) and a configuration whose
/// `small` and `large` models are both the local server.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("a temp dir");
        let url = model_server::url();
        std::fs::write(
            dir.path().join("warden.toml"),
            format!(
                "[[model]]\nname = \"small\"\nurl = \"{url}\"\nid = \"smollm2-135m\"\ntimeout = \"60 s\"\n\
                 [[model]]\nname = \"large\"\nurl = \"{url}\"\nid = \"smollm2-135m\"\n\
                 price = {{ input = 1.0, cached = 0.5, output = 2.0 }}\n"
            ),
        )
        .expect("the config is written");
        Host { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warden --config … <args>`: exit code, stdout, stderr.
    fn warden(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(warden_bin())
            .current_dir(root())
            .env("WARDEN_DATA_DIR", self.path("data"))
            .env_remove("WARDEN_CONFIG")
            .env_remove("WARDEN_TOKEN")
            .arg("--cache-dir")
            .arg(root().join("target/warden-test-cache"))
            .arg("--config")
            .arg(self.path("warden.toml"))
            .args(args)
            .output()
            .expect("warden runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `warden run ask --policy <policy> --input <input> --json`: exit code and the report.
    fn ask(&self, policy: &Path, input: &str) -> (i32, Value) {
        let ask = ask();
        let (code, out, err) = self.warden(&[
            "run",
            ask.to_str().expect("a UTF-8 path"),
            "--policy",
            policy.to_str().expect("a UTF-8 path"),
            "--input",
            input,
            "--json",
        ]);
        let report = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("--json printed no report ({e}): {out}\n{err}"));
        (code, report)
    }

    /// `ask`'s line of `warden trust list`.
    fn trust(&self) -> String {
        let (code, out, err) = self.warden(&["trust", "list"]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .find(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|id| id.rsplit('/').next() == Some("ask"))
            })
            .unwrap_or_else(|| panic!("ask is not in trust list:\n{out}"))
            .to_owned()
    }
}

fn policy() -> PathBuf {
    root().join("policies/ask.toml")
}

fn number(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a count: {v}"))
}

/// POST `body` to `{base}{path}` over plain HTTP/1.1 (the harness's server is on 127.0.0.1):
/// the status line and the body, read with a bound.
fn post(base: &str, path: &str, body: &str) -> (String, String) {
    let authority = base
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .expect("an http:// URL");
    let prefix = base
        .strip_prefix("http://")
        .and_then(|r| r.find('/').map(|i| &r[i..]));
    let mut stream = std::net::TcpStream::connect(authority).expect("the server accepts");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST {}{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        prefix.unwrap_or(""),
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream
        .take(1 << 20)
        .read_to_string(&mut response)
        .expect("a UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers, then a body");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn the_local_server_speaks_openai_chat_with_cached_tokens() {
    let _alone = one_at_a_time();
    let base = model_server::url();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );
    let request = serde_json::json!({
        "model": "smollm2-135m",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Name a colour."},
        ],
        "max_tokens": 8,
    })
    .to_string();
    let mut cached = Vec::new();
    for _ in 0..2 {
        let (status, body) = post(base, "/chat/completions", &request);
        assert!(status.contains(" 200 "), "{status}\n{body}");
        let reply: Value = serde_json::from_str(&body).expect("a JSON reply");
        let choice = &reply["choices"][0];
        assert!(choice["message"]["content"].is_string(), "{reply}");
        let finish = choice["finish_reason"].as_str().unwrap_or("");
        assert!(matches!(finish, "stop" | "length"), "{reply}");
        let usage = &reply["usage"];
        assert!(number(&usage["prompt_tokens"], "prompt") > 0, "{usage}");
        assert!(
            number(&usage["completion_tokens"], "completion") <= 8,
            "{usage}"
        );
        cached.push(number(
            &usage["prompt_tokens_details"]["cached_tokens"],
            "cached",
        ));
    }
    assert!(
        cached[1] > 0,
        "the repeated prompt is served from the cache: {cached:?}"
    );
    // Only the one server per process: asking again gives the same address.
    assert_eq!(model_server::url(), base);
}

#[test]
fn ask_answers_through_the_real_model_with_its_usage_recorded() {
    let _alone = one_at_a_time();
    let host = Host::new();
    let mut answers = Vec::new();
    // The same question twice: the host's layers are byte-identical across calls, so the second
    // call's prompt starts with tokens the server has cached.
    for _ in 0..2 {
        let (code, report) = host.ask(&policy(), "\"What is 2+2?\"");
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report["outcome"]["status"], "completed", "{report:#}");
        let output = report["outcome"]["output"].as_str().expect("an output");
        let answer: Value = serde_json::from_str(output).expect("ask returns JSON");
        let text = answer["answer"].as_str().expect("an answer");
        assert!(!text.trim().is_empty(), "{answer}");
        let finish = answer["finish_reason"].as_str().expect("a finish reason");
        assert!(matches!(finish, "stop" | "length"), "{answer}");
        let usage = &answer["usage"];
        let prompt = number(&usage["prompt_tokens"], "prompt_tokens");
        let cached = number(&usage["cached_tokens"], "cached_tokens");
        let completion = number(&usage["completion_tokens"], "completion_tokens");
        assert!(prompt > 0 && cached <= prompt, "{usage}");
        assert!((1..=128).contains(&completion), "max_tokens 128: {usage}");
        if finish == "length" {
            assert_eq!(completion, 128, "cut at max_tokens: {answer}");
        }
        assert_eq!(
            number(&usage["cost_micro_usd"], "cost"),
            0,
            "no price: free"
        );

        // The run report accounts for the task's model calls.
        let model = &report["model"];
        assert_eq!(number(&model["calls"], "calls"), 1, "{report:#}");
        assert_eq!(number(&model["prompt_tokens"], "prompt"), prompt);
        assert_eq!(number(&model["cached_tokens"], "cached"), cached);
        assert_eq!(
            number(&model["completion_tokens"], "completion"),
            completion
        );
        assert_eq!(number(&model["cost_micro_usd"], "cost"), 0);
        assert!(model["models"].to_string().contains("\"small\""), "{model}");

        // And so does the task record.
        let task = report["task"].as_u64().expect("a task id").to_string();
        let (code, shown, err) = host.warden(&["task", "show", &task]);
        assert_eq!(code, 0, "{err}");
        assert!(
            shown.contains("small") && shown.contains(&prompt.to_string()),
            "task show names the model and its prompt tokens ({prompt}):\n{shown}"
        );
        answers.push((prompt, cached));
    }
    let (first, second) = (answers[0], answers[1]);
    assert_eq!(first.0, second.0, "the same question, the same prompt");
    assert!(
        second.1 > 0,
        "the second call's prompt prefix is served from the server's cache: {answers:?}"
    );
    assert!(!host.trust().contains("HELD"), "{}", host.trust());
}

#[test]
fn a_model_the_policy_does_not_allow_kills() {
    let host = Host::new();
    // `large` is configured on the host, but ask's policy allows only `small`.
    let (code, report) = host.ask(
        &policy(),
        r#"{"question": "What is 2+2?", "model": "large"}"#,
    );
    assert_eq!(code, 3, "{report:#}");
    let outcome = &report["outcome"];
    assert_eq!(outcome["status"], "killed", "{report:#}");
    assert_eq!(outcome["reason"], "out-of-scope", "{report:#}");
    assert_eq!(outcome["capability"], "model", "{report:#}");
    assert!(
        outcome["detail"]
            .as_str()
            .is_some_and(|d| d.contains("large")),
        "{report:#}"
    );
    // A violation demotes: the twin of the budget test below.
    assert!(host.trust().contains("HELD"), "{}", host.trust());
}

#[test]
fn a_budget_too_small_ends_escalated_and_does_not_demote() {
    let host = Host::new();
    let text = std::fs::read_to_string(policy()).expect("policies/ask.toml");
    let mut replaced = 0;
    let tiny: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("tokens") {
                replaced += 1;
                "tokens = 10".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(replaced, 1, "policies/ask.toml sets model.tokens once");
    let tiny_policy = host.path("ask-tiny.toml");
    std::fs::write(&tiny_policy, tiny).expect("the policy is written");

    let (code, report) = host.ask(&tiny_policy, "\"What is 2+2?\"");
    assert_eq!(code, 4, "{report:#}");
    let outcome = &report["outcome"];
    assert_eq!(outcome["status"], "escalated", "{report:#}");
    assert_eq!(outcome["reason"], "budget-cap", "{report:#}");
    assert!(
        outcome["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{report:#}"
    );
    // Refused before it was sent: the model generated nothing for this task.
    assert_eq!(
        number(&report["model"]["completion_tokens"], "completion"),
        0,
        "{report:#}"
    );
    // A budget overrun is for a person to decide, not a violation: the agent keeps its level.
    let trust = host.trust();
    assert!(!trust.contains("HELD"), "{trust}");
}
