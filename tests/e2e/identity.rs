//! End-to-end: signed agents and signed policies. Every refused case says which refusal it is,
//! and nothing of a refused component is compiled.

use std::path::{Path, PathBuf};

use warden::identity::{IdentityError, SecretKey};
use warden::policy::HostConfig;
use warden::policy::keys::Domain;
use warden::{LoadError, PolicyLoadError, Runtime};
use warden_tests::{agent, completed, runtime};

fn signed_hello(dir: &Path, key: &SecretKey) -> PathBuf {
    let path = dir.join("hello.wasm");
    std::fs::copy(agent("hello"), &path).unwrap();
    key.sign(Domain::Agent, &std::fs::read(&path).unwrap())
        .write_beside(&path)
        .unwrap();
    path
}

fn pinned(keys: &[&SecretKey]) -> warden::policy::Policy {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.public())).collect();
    warden_tests::policy("hello", &format!("publishers = [{}]\n", list.join(", ")))
}

fn host(config: HostConfig) -> Runtime {
    runtime().clone().with_host_config(config)
}

fn refusal(result: Result<warden::LoadedAgent, LoadError>) -> IdentityError {
    match result {
        Err(LoadError::Signature { refusal, .. }) => refusal,
        Err(other) => panic!("expected a signature refusal, got {other}"),
        Ok(_) => panic!("expected a signature refusal, but the agent loaded"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_agent_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let alice = SecretKey::generate().unwrap();
    let path = signed_hello(dir.path(), &alice);
    let loaded = runtime().load_file(&path, pinned(&[&alice])).unwrap();
    let r = loaded.run("\"signed\"", &Default::default()).await.unwrap();
    assert_eq!(completed(&r), "hello, signed");
}

#[test]
fn unsigned_other_key_tampered_and_revoked_agents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = SecretKey::generate().unwrap();
    let mallory = SecretKey::generate().unwrap();
    let path = signed_hello(dir.path(), &alice);
    let original = std::fs::read(&path).unwrap();

    // Another key.
    assert!(matches!(
        refusal(runtime().load_file(&path, pinned(&[&mallory]))),
        IdentityError::Untrusted { .. }
    ));
    // A changed byte, an appended custom section, a truncation.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let mut appended = original.clone();
    appended.extend_from_slice(b"\x00\x04evil");
    for bytes in [flipped, appended, original[..original.len() - 16].to_vec()] {
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            refusal(runtime().load_file(&path, pinned(&[&alice]))),
            IdentityError::Tampered { .. }
        ));
    }
    std::fs::write(&path, &original).unwrap();
    // Revoked by the host.
    let revoking = host(HostConfig {
        revoked: vec![alice.public()],
        ..HostConfig::default()
    });
    assert!(matches!(
        refusal(revoking.load_file(&path, pinned(&[&alice]))),
        IdentityError::Revoked { .. }
    ));
    // Pinned by the policy but not trusted by the host.
    let other_host = host(HostConfig {
        publishers: vec![mallory.public()],
        ..HostConfig::default()
    });
    assert!(matches!(
        refusal(other_host.load_file(&path, pinned(&[&alice]))),
        IdentityError::Untrusted { .. }
    ));
    // Unsigned.
    std::fs::remove_file(warden::identity::signature_path(&path)).unwrap();
    assert!(matches!(
        refusal(runtime().load_file(&path, pinned(&[&alice]))),
        IdentityError::Unsigned { .. }
    ));
}

#[test]
fn a_host_that_requires_signatures_refuses_unsigned_agents_even_without_pins() {
    let dir = tempfile::tempdir().unwrap();
    let alice = SecretKey::generate().unwrap();
    let path = signed_hello(dir.path(), &alice);
    let strict = host(HostConfig {
        publishers: vec![alice.public()],
        require_signed_agents: true,
        ..HostConfig::default()
    });
    let policy = warden_tests::policy("hello", "");
    assert!(strict.load_file(&path, policy.clone()).is_ok());
    assert!(matches!(
        refusal(strict.load(&std::fs::read(&path).unwrap(), policy.clone())),
        IdentityError::Unsigned { .. }
    ));
    std::fs::remove_file(warden::identity::signature_path(&path)).unwrap();
    assert!(matches!(
        refusal(strict.load_file(&path, policy)),
        IdentityError::Unsigned { .. }
    ));
}

#[test]
fn signed_policies_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let reviewer = SecretKey::generate().unwrap();
    let stranger = SecretKey::generate().unwrap();
    let path = dir.path().join("hello.toml");
    let text = "[agent]\nname = \"hello\"\n";
    std::fs::write(&path, text).unwrap();
    let strict = host(HostConfig {
        reviewers: vec![reviewer.public()],
        require_signed_policies: true,
        ..HostConfig::default()
    });
    let refused = |r: Result<warden::policy::Policy, PolicyLoadError>| match r {
        Err(PolicyLoadError::Signature(e)) => e,
        other => panic!("expected a signature refusal, got {other:?}"),
    };
    assert!(matches!(
        refused(strict.load_policy(&path)),
        IdentityError::Unsigned { .. }
    ));
    reviewer
        .sign(Domain::Policy, text.as_bytes())
        .write_beside(&path)
        .unwrap();
    assert_eq!(strict.load_policy(&path).unwrap().agent.name, "hello");
    // Edited after review: a grant slipped in.
    std::fs::write(
        &path,
        format!("{text}[net]\nallow = [\"evil.example:443\"]\n"),
    )
    .unwrap();
    assert!(matches!(
        refused(strict.load_policy(&path)),
        IdentityError::Tampered { .. }
    ));
    std::fs::write(&path, text).unwrap();
    stranger
        .sign(Domain::Policy, text.as_bytes())
        .write_beside(&path)
        .unwrap();
    assert!(matches!(
        refused(strict.load_policy(&path)),
        IdentityError::Untrusted { .. }
    ));
    // An agent signature is not a policy signature.
    reviewer
        .sign(Domain::Agent, text.as_bytes())
        .write_beside(&path)
        .unwrap();
    assert!(matches!(
        refused(strict.load_policy(&path)),
        IdentityError::WrongKind { .. }
    ));
    // Without the requirement, an unsigned policy loads.
    std::fs::remove_file(warden::identity::signature_path(&path)).unwrap();
    assert!(runtime().load_policy(&path).is_ok());
}

#[test]
fn the_cli_keygen_sign_and_run_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let bin = warden_tests::warden_bin();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .current_dir(dir.path())
            .env("WARDEN_DATA_DIR", dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, public, err) = run(&["keygen", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(public.trim().starts_with("ed25519:"));
    std::fs::copy(agent("hello"), dir.path().join("hello.wasm")).unwrap();
    let (code, _, err) = run(&["sign", "hello.wasm", "--key", "alice.key"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        dir.path().join("hello.toml"),
        format!(
            "[agent]\nname = \"hello\"\npublishers = [\"{}\"]\n",
            public.trim()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "--no-cache",
        "run",
        "./hello.wasm",
        "--policy",
        "hello.toml",
        "--input",
        "\"cli\"",
    ]);
    assert_eq!((code, out.trim()), (0, "hello, cli"), "{err}");
    // Reviewer signs the policy; a host that requires signed policies accepts it, then refuses an edit.
    let (_, reviewer, _) = run(&["keygen", "rita"]);
    std::fs::write(
        dir.path().join("warden.toml"),
        format!(
            "[keys]\nreviewers = [\"{}\"]\n[policies]\nrequire_signed = true\n",
            reviewer.trim()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["--config", "warden.toml", "policy", "check", "hello.toml"]);
    assert_eq!(code, 2, "unsigned policy must be refused: {err}");
    assert!(err.contains("not signed"), "{err}");
    let (code, _, err) = run(&["policy", "sign", "hello.toml", "--key", "rita.key"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["--config", "warden.toml", "policy", "check", "hello.toml"]);
    assert_eq!(code, 0, "{err}");
    // keygen never overwrites a key.
    let (code, _, err) = run(&["keygen", "alice"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_cli_runs_for_the_user_its_token_names() {
    let dir = tempfile::tempdir().unwrap();
    let bin = warden_tests::warden_bin();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .current_dir(dir.path())
            .env("WARDEN_DATA_DIR", dir.path().join("data"))
            .env_remove("WARDEN_TOKEN")
            .args(["--no-cache"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, sso, _) = run(&["keygen", "sso"]);
    let (_, _, _) = run(&["keygen", "mallory"]);
    std::fs::write(
        dir.path().join("warden.toml"),
        format!("[host]\nroles = \"roles.toml\"\n[[issuers]]\nname = \"sso\"\nkey = \"{}\"\naudience = \"warden\"\n", sso.trim()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("roles.toml"),
        format!(
            "[person.dora]\nkey = \"{}\"\nroles = [\"docs-writer\"]\n[role.docs-writer]\nagents = [\"*\"]\nfs.read = [\"**\"]\nfs.write = [\"docs/**\"]\n",
            sso.trim()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("probe.toml"),
        "[agent]\nname = \"probe\"\n[fs]\nwrite = [\"**\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("ws/docs")).unwrap();
    std::fs::create_dir_all(dir.path().join("ws/src")).unwrap();
    let probe = agent("probe");
    let probe = probe.to_str().unwrap();
    let issue = |key: &str, audience: &str| {
        run(&[
            "token",
            "issue",
            "--key",
            key,
            "--issuer",
            "sso",
            "--subject",
            "alice",
            "--role",
            "docs-writer",
            "--audience",
            audience,
        ])
        .1
        .trim()
        .to_string()
    };
    let token = issue("sso.key", "warden");
    let write = |path: &str| format!(r#"{{"op":"write","path":"{path}","text":"x"}}"#);
    let base = [
        "--config",
        "warden.toml",
        "run",
        probe,
        "--policy",
        "probe.toml",
        "--workspace",
        "ws",
    ];

    let with = |token: &str, input: &str| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--token", token, "--input", input]);
        run(&args)
    };
    let (code, _, err) = with(&token, &write("/docs/a.md"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = with(&token, &write("/src/a.rs"));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not allowed to the user"), "{err}");
    assert!(!dir.path().join("ws/src/a.rs").exists());

    // No token, a forged one, one for another audience: no run.
    let mut args: Vec<&str> = base.to_vec();
    let input = write("/docs/b.md");
    args.extend(["--input", &input]);
    let (code, _, err) = run(&args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no identity token"), "{err}");
    let (code, _, err) = with(&issue("mallory.key", "warden"), &write("/docs/b.md"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not signed by a trusted issuer"), "{err}");
    let (code, _, err) = with(&issue("sso.key", "elsewhere"), &write("/docs/b.md"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another audience"), "{err}");
    let (code, _, err) = with("v4.public.AAAA", &write("/docs/b.md"));
    assert_eq!(code, 2, "{err}");
    assert!(!dir.path().join("ws/docs/b.md").exists());

    // `explain` shows what the agent could do for that user.
    let (code, out, err) = run(&[
        "--config",
        "warden.toml",
        "policy",
        "explain",
        "probe.toml",
        "--as",
        "docs-writer",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("role docs-writer write: docs/**"), "{out}");
    // …or for a person of the roles file, by name.
    let (code, out, err) = run(&[
        "--config",
        "warden.toml",
        "policy",
        "explain",
        "probe.toml",
        "--as",
        "dora",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("acting for dora") && out.contains("role docs-writer write: docs/**"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_credential_is_refused_in_another_task() {
    use std::sync::{Arc, Mutex};
    use warden::capabilities::tools::ToolRegistry;

    // Two host tools: one keeps the credential of the task that calls it, the other checks the
    // kept credential against the task that calls it (as an agent-to-agent hop would).
    let kept: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tools = ToolRegistry::new();
    let keep = kept.clone();
    tools.register_with_context("task.keep", "", true, move |_, task| {
        *keep.lock().unwrap() = Some(task.credential().unwrap().to_string());
        Ok(format!("kept credential of task {}", task.claims().task))
    });
    let check = kept.clone();
    tools.register_with_context("task.check", "", true, move |_, task| {
        let presented = check.lock().unwrap().clone().ok_or("nothing kept")?;
        task.verify(&presented)
            .map(|c| format!("accepted task {}", c.task))
            .map_err(|e| e.to_string())
    });
    let config = warden::EngineConfig {
        max_instances: 8,
        ..Default::default()
    };
    let host = Runtime::new(config, tools).unwrap();
    let policy = warden_tests::policy(
        "probe",
        "[tools]\nallow = [\"task.keep\", \"task.check\"]\n",
    );
    let agent = host
        .load_file(&warden_tests::agent("probe"), policy)
        .unwrap();
    let keep_then_check = serde_json::json!({"op": "tool", "name": "task.keep", "then": {"op": "tool", "name": "task.check"}}).to_string();
    let r = agent
        .run(&keep_then_check, &Default::default())
        .await
        .unwrap();
    assert!(
        completed(&r).starts_with("accepted task"),
        "its own credential is accepted"
    );

    let only_check = serde_json::json!({"op": "tool", "name": "task.check"}).to_string();
    let r = agent.run(&only_check, &Default::default()).await.unwrap();
    match &r.outcome {
        warden::Outcome::AgentError { message, .. } => {
            assert!(message.contains("another task"), "{message}")
        }
        other => panic!("a replayed credential must be refused, got {other:?}"),
    }
}
