//! End-to-end: the `warden` binary's commands, output and exit codes.

use std::process::Command;

use warden_tests::{agent, root, warden_bin};

fn warden(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(warden_bin())
        .current_dir(root())
        .env("WARDEN_DATA_DIR", warden_tests::test_data_dir())
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(args)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_exit_codes_distinguish_success_agent_error_kill_and_bad_input() {
    let hello = agent("hello");
    let hello = hello.to_str().unwrap();
    let (code, out, _) = warden(&[
        "run",
        hello,
        "--policy",
        "policies/hello.toml",
        "--input",
        "\"world\"",
    ]);
    assert_eq!((code, out.trim()), (0, "hello, world"));
    let (code, _, err) = warden(&[
        "run",
        hello,
        "--policy",
        "policies/hello.toml",
        "--input",
        "\"\"",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("agent error (invalid-input)"), "{err}");
    let (code, _, err) = warden(&[
        "run",
        hello,
        "--policy",
        "policies/hello.toml",
        "--input",
        "not json",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--input is not JSON"), "{err}");
    let (code, _, err) = warden(&["run", "no-such-agent", "--policy", "policies/hello.toml"]);
    assert_eq!(code, 2, "{err}");

    let probe = agent("probe");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("probe.toml");
    std::fs::write(&policy, "[agent]\nname = \"probe\"\n").unwrap();
    let (code, _, err) = warden(&[
        "run",
        probe.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--input",
        r#"{"op":"clock"}"#,
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("killed: not-granted"), "{err}");
}

#[test]
fn strict_policy_refusal_is_bad_input() {
    let probe = agent("probe");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("strict.toml");
    std::fs::write(&policy, "[agent]\nname = \"probe\"\nstrict = true\n").unwrap();
    let (code, _, err) = warden(&[
        "run",
        probe.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--input",
        "{}",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not granted by the policy (strict mode)"),
        "{err}"
    );
}

#[test]
fn policy_check_accepts_the_shipped_policies() {
    let mut args = vec!["policy", "check"];
    let files: Vec<String> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(!files.is_empty());
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = warden(&args);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn policy_check_locates_every_malformed_fixture() {
    let dir = root().join("tests/fixtures/policies");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (code, _, err) = warden(&["policy", "check", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{} should fail:\n{err}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        // `file:line:column` appears in the rendered diagnostic.
        let located = err
            .lines()
            .any(|l| l.contains(name) && l.matches(':').count() >= 2);
        assert!(located, "{name}: no file:line:column in\n{err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures");
}

#[test]
fn inspect_lists_imports_against_a_policy() {
    let probe = agent("probe");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("probe.toml");
    std::fs::write(
        &policy,
        "[agent]\nname = \"probe\"\n[tools]\nallow = [\"echo\"]\n",
    )
    .unwrap();
    let (code, out, err) = warden(&[
        "inspect",
        probe.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warden:agent/tools@0.2.1"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("wasi:filesystem/types") && l.contains("kills on first call")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("warden:agent/tools") && l.contains("granted")),
        "{out}"
    );
    assert!(out.contains("describe: probe"), "{out}");
}

#[test]
fn agent_output_cannot_drive_the_operators_terminal() {
    let probe = agent("probe");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("probe.toml");
    std::fs::write(&policy, "[agent]\nname = \"probe\"\n").unwrap();
    let (code, out, err) = warden(&[
        "run",
        probe.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--input",
        r#"{"op":"escapes","depth":3}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    for (name, text) in [("stdout", &out), ("stderr", &err)] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'),
            "raw control characters on {name}: {text:?}"
        );
    }
    assert!(
        out.contains("\\u{1b}[2J"),
        "escapes are shown, escaped: {out}"
    );
}

/// `warden` with its stdout a pipe whose reader is already gone (`warden … | head` after
/// `head` exits): the exit code and stderr.
fn warden_into_closed_pipe(data: &std::path::Path, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(warden_bin())
        .current_dir(root())
        .env("WARDEN_DATA_DIR", data)
        .env_remove("WARDEN_CONFIG")
        .arg("--cache-dir")
        .arg(root().join("target/warden-test-cache"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let data = tempfile::tempdir().unwrap();
    let hello = agent("hello");
    let hello = hello.to_str().unwrap();
    let probe = agent("probe");
    let batch = data.path().join("tasks.jsonl");
    std::fs::write(
        &batch,
        format!(
            "{{\"agent\":{hello:?},\"policy\":\"policies/hello.toml\",\"input\":\"a\"}}\n{{\"agent\":{hello:?},\"policy\":\"policies/hello.toml\",\"input\":\"b\"}}\n"
        ),
    )
    .unwrap();
    let batch = batch.to_str().unwrap();
    let run = [
        "run",
        hello,
        "--policy",
        "policies/hello.toml",
        "--input",
        "\"x\"",
    ];
    // Each command with the exit code it has when its output is read.
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (run.to_vec(), 0),
        ([&run[..], &["--json"]].concat(), 0),
        (vec!["task", "list"], 0),
        (vec!["task", "list", "--json"], 0),
        (vec!["task", "show", "1"], 0),
        (vec!["task", "trace", "1"], 0),
        (vec!["audit", "tail"], 0),
        (vec!["audit", "verify"], 0),
        (vec!["inspect", probe.to_str().unwrap()], 0),
        (vec!["policy", "check", "policies/hello.toml"], 0),
        (vec!["batch", batch], 0),
        (vec!["--help"], 0),
    ];
    for (args, expected) in commands {
        let (code, err) = warden_into_closed_pipe(data.path(), &args);
        assert_eq!(code, expected, "{args:?}: {err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
    }
    // A batch nobody reads stops after its first result rather than running every task.
    let listed = Command::new(warden_bin())
        .current_dir(root())
        .env("WARDEN_DATA_DIR", data.path())
        .args(["task", "list", "--limit", "100"])
        .output()
        .unwrap();
    let tasks = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert_eq!(tasks, 3, "two runs and one batch task");
}

#[test]
fn batch_lines_say_what_the_cli_says() {
    let hello = agent("hello");
    let probe = agent("probe");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("probe.toml");
    std::fs::write(&policy, "[agent]\nname = \"probe\"\n").unwrap();
    let file = dir.path().join("tasks.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"agent\":{h:?},\"policy\":\"policies/hello.toml\",\"input\":\"world\"}}\n{{\"agent\":{h:?},\"policy\":\"policies/hello.toml\",\"input\":\"\"}}\n{{\"agent\":{p:?},\"policy\":{pp:?},\"input\":{{\"op\":\"clock\"}}}}\n",
            h = hello.to_str().unwrap(),
            p = probe.to_str().unwrap(),
            pp = policy.to_str().unwrap(),
        ),
    )
    .unwrap();
    let (code, out, err) = warden(&["batch", file.to_str().unwrap()]);
    assert_eq!(code, 3, "the worst outcome: killed\n{out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    let completed = &lines[0];
    assert_eq!(
        (completed["line"].as_u64(), completed["status"].as_str()),
        (Some(1), Some("completed"))
    );
    assert_eq!(completed["output"], "hello, world");
    assert!(completed["task"].as_u64().is_some() && completed["staging"].is_string());
    let failed = &lines[1];
    assert_eq!(failed["status"], "agent-error");
    assert_eq!(failed["kind"], "invalid-input");
    assert!(failed["message"].as_str().is_some_and(|m| !m.is_empty()));
    let killed = &lines[2];
    assert_eq!(killed["status"], "killed");
    assert_eq!(killed["reason"], "not-granted");
    assert!(
        killed["capability"]
            .as_str()
            .is_some_and(|c| c.starts_with("wasi:clocks")),
        "{killed}"
    );
    assert!(killed["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[test]
fn an_empty_token_is_missing_not_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, sso, err) = warden(&["keygen", dir.path().join("sso").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nname = \"sso\"\nkey = \"{}\"\naudience = \"warden\"\n",
            sso.trim()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = |token: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(warden_bin());
        cmd.current_dir(root())
            .env("WARDEN_DATA_DIR", dir.path().join("data"))
            .env_remove("WARDEN_TOKEN")
            .args(["--config", config, "run", "hello", "--policy"])
            .arg("policies/hello.toml")
            .args(token);
        if let Some(v) = env {
            cmd.env("WARDEN_TOKEN", v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (token, env) in [
        (&[][..], None),
        (&["--token", ""][..], None),
        (&["--token", "  "][..], None),
        (&[][..], Some("")),
    ] {
        let (code, err) = run(token, env);
        assert_eq!(code, 2, "{token:?} {env:?}: {err}");
        assert!(
            err.contains("no identity token"),
            "{token:?} {env:?}: {err}"
        );
    }
    // The deny twin: a token that is there but is not one is malformed.
    let (code, err) = run(&["--token", "v4.public.not-a-token"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("malformed"), "{err}");
}
