//! `warden serve`'s A2A endpoint driven by a client nobody here wrote: Python's official
//! `a2a-sdk` (`.venv-clients`, made by `scripts/setup`) runs `tests/clients/a2a_client.py`
//! against the real binary on loopback. A host with `hello`, and `probe` under a policy that
//! allows the irreversible tool `deploy` (the development role may use it; a person `rita` may
//! approve it) and spins for at most 3 s of CPU. Checked: the public card has no skills, the
//! caller's has one per agent, an agent's own card one; `hello` answers streamed and not
//! streamed (text and data parts), at the shared endpoint (skill in metadata) and at its own;
//! GetTask and ListTasks (paged, per agent) show the caller's tasks and another user's show none;
//! that user (role `guest`: `hello` only) sees one skill and is refused `probe`;
//! a spinning probe is answered at once and cancelled (or, while the queue cannot stop a run,
//! refused as not cancellable and followed with SubscribeToTask to its CPU-limit kill), an ended
//! task is not cancellable; a `deploy` (streamed, and sent blocking) is `AUTH_REQUIRED`
//! saying `warden approve N`, nothing deployed, and `COMPLETED` once rita's approval settles it;
//! a model call over the probe's budget escalates it: `INPUT_REQUIRED`, saying why;
//! no token is a 401; malformed requests are JSON-RPC errors with A2A's codes and store nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_tests::{agent, root, warden_bin};

#[path = "a2a/checks.rs"]
mod checks;

/// A running `warden serve`, killed if the test fails before it ends.
struct Server {
    child: Child,
    base: String,
    token: String,
    data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host: agents `hello` and `probe`, the tool `deploy` (irreversible, appending to
/// `deployed`), roles giving `dev` both agents and the tool, `guest` only `hello`, and the person
/// whose key is `approver` the tool's approval;
/// a model `small` the probe may call within 10 tokens (a call over that is refused before it is
/// sent, so the model's address is never reached, and the task ends escalated).
fn host(dir: &Path, deployed: &Path, approver: &str) -> std::path::PathBuf {
    std::fs::copy(agent("hello"), dir.join("hello.wasm")).unwrap();
    std::fs::copy(root().join("policies/hello.toml"), dir.join("hello.toml")).unwrap();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        "[agent]\nname = \"probe\"\n[tools]\nallow = [\"deploy\"]\n[model]\nallow = [\"small\"]\ntokens = 10\n[limits]\ncpu = \"3 s\"\nwall = \"6 s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("roles.toml"),
        format!(
            "[person.rita]\nkey = \"{approver}\"\nroles = [\"release\"]\n[role.release]\napprove = [\"deploy\"]\n[role.guest]\nagents = [\"hello\"]\n[role.dev]\nagents = [\"hello\", \"probe\"]\ntools.allow = [\"deploy\"]\nmodel = {{ allow = [\"small\"], tokens = 100000, usd = 1.0 }}\n"
        ),
    )
    .unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[[model]]\nname = \"small\"\nurl = \"http://127.0.0.1:9/v1\"\nid = \"unreachable\"\ntimeout = \"5 s\"\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\napproval_ttl = \"10 min\"\nwritable = [{:?}]\n",
            dir.join("roles.toml").display().to_string(),
            dir.display().to_string(),
            deployed.display(),
            deployed.parent().unwrap().display().to_string(),
        ),
    )
    .unwrap();
    config
}

fn launch(config: &Path) -> Server {
    let data = tempfile::tempdir().unwrap();
    let (child, addr, token) = warden_tests::served::start(
        warden_tests::served::command(config, data.path()),
        &data.path().join("stderr"),
    );
    Server {
        child,
        base: format!("http://{addr}"),
        token,
        data,
    }
}

/// The Python of `.venv-clients`, with a clear message when `scripts/setup` has not made it.
fn python() -> std::path::PathBuf {
    let python = root().join(".venv-clients/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import a2a.client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import the a2a-sdk client: run scripts/setup (it installs the protocol clients into .venv-clients)",
        python.display()
    );
    python
}

/// Run `tests/clients/<script>` with `args` for at most `limit`; its stdout's JSON.
fn client(script: &str, args: &[&str], limit: Duration) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(python())
        .arg(root().join("tests/clients").join(script))
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{script} still running after {limit:?}: {}",
                std::fs::read_to_string(&err).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "{script} failed: {stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_a2a_client_against_warden_serve() {
    let host_dir = tempfile::tempdir().unwrap();
    let dir = host_dir.path();
    let effects = tempfile::tempdir().unwrap();
    // The tool would run in the OS jail (uid 65534 as root): its folder is open to it.
    std::fs::set_permissions(effects.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let deployed = effects.path().join("deployed.log");
    let keygen = Command::new(warden_bin())
        .current_dir(dir)
        .args(["keygen", "rita"])
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let rita = String::from_utf8(keygen.stdout).unwrap();
    let config = host(dir, &deployed, rita.trim());
    let s = tokio::task::spawn_blocking(move || launch(&config))
        .await
        .unwrap();
    let alice = warden_tests::served::dev_token(
        s.data.path(),
        "alice",
        &["guest"],
        Duration::from_secs(600),
    );
    let (base, token) = (s.base.clone(), s.token.clone());
    let out = tokio::task::spawn_blocking(move || {
        client(
            "a2a_client.py",
            &[&base, &token, &alice],
            Duration::from_secs(180),
        )
    })
    .await
    .unwrap();

    checks::cards(&out);
    checks::hello(&out);
    checks::tasks(&out);
    checks::cancel(&out);
    checks::escalation(&out);
    let action = checks::approval(&out);
    assert!(!deployed.exists(), "the irreversible action ran unapproved");
    checks::refusals(&out);

    // Rita's approval settles the action: the task is no longer waiting, and says so.
    let deploy = out["deploy_get"]["id"].as_str().unwrap().to_string();
    let approve = |args: &[&str]| {
        let o = Command::new(warden_bin())
            .current_dir(dir)
            .arg("--config")
            .arg(dir.join("warden.toml"))
            .arg("--data-dir")
            .arg(s.data.path())
            .arg("--cache-dir")
            .arg(root().join("target/warden-test-cache"))
            .arg("approve")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "warden approve {args:?}: {o:?}");
    };
    let id = action.to_string();
    approve(&[&id, "--key", "rita.key", "--save", "approval.json"]);
    approve(&["--submit", "approval.json"]);
    let (status, answer) = checks::post(
        &s.base,
        &s.token,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": deploy}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{answer}"
    );
}
