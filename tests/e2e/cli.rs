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
    assert!(out.contains("warden:agent/tools@0.1.0"), "{out}");
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
