//! Approvals and trust over HTTP, by the CLI's rules: a `deploy` tool the host flags
//! irreversible, held for a person; a user whose roles may not approve it refused
//! (`403 may-not-approve`) and nothing written; a forged approval refused and nothing run; the
//! approver's own signed approval performing it once, a replay refused; a probe killed and
//! held, its review and reinstatement reviewer-only, a wrong code and a forged statement
//! refused, the signed statement reinstating it; the audit log paged and verified, reviewers
//! only.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};
use warden::approval::Approval;
use warden::identity::SecretKey;
use warden::review::Reinstatement;
use warden::store::ActionRecord;
use warden_tests::agent;
use warden_tests::served::dev_token;

use super::{Server, ended, error_code, get, launch, request, request_bytes, submit};

/// The value of the sample `line_start` (a name and its labels) in `GET /metrics`.
async fn sample(s: &Server, token: &str, line_start: &str) -> Option<f64> {
    let (status, _, body) =
        request_bytes(&s.addr, "GET", "/metrics", Some(token), Vec::new()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
}

/// A server whose roles file gives `rita` (role `reviewer`: review, approve `deploy`) and `dan`
/// (role `dev`: may use `deploy`, may not approve it) their keys, with the agent `probe` allowed
/// the irreversible tool `deploy`, which appends its input to `deployed.log` in `effects`.
pub(super) struct Host {
    pub(super) server: Server,
    pub(super) rita: SecretKey,
    pub(super) dan: SecretKey,
    pub(super) effects: tempfile::TempDir,
    pub(super) _keys: tempfile::TempDir,
}

impl Host {
    fn deployed(&self) -> Option<String> {
        std::fs::read_to_string(self.effects.path().join("deployed.log")).ok()
    }
}

pub(super) fn host() -> Host {
    let keys = tempfile::tempdir().unwrap();
    let rita = SecretKey::generate().unwrap();
    let dan = SecretKey::generate().unwrap();
    let agents = tempfile::tempdir().unwrap();
    let dir = agents.path();
    std::fs::copy(agent("probe"), dir.join("probe.wasm")).unwrap();
    std::fs::write(
        dir.join("probe.toml"),
        "[agent]\nname = \"probe\"\n[tools]\nallow = [\"deploy\"]\n[trust]\npromote_after = 1\n",
    )
    .unwrap();
    let roles = dir.join("roles.toml");
    std::fs::write(
        &roles,
        format!(
            "[person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n[person.dan]\nkey = \"{}\"\nroles = [\"dev\"]\n\
             [role.reviewer]\nreview = true\napprove = [\"deploy\"]\n\
             [role.dev]\nfs.write = [\"**\"]\ntools.allow = [\"deploy\"]\nagents = [\"probe\"]\n",
            rita.public(),
            dan.public()
        ),
    )
    .unwrap();
    // The tool runs in the OS jail and may write only its `writable` folder, open to its uid.
    let effects = tempfile::tempdir().unwrap();
    std::fs::set_permissions(effects.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[host]\nroles = {:?}\n[agents]\ndir = {:?}\n[[tools]]\nname = \"deploy\"\nirreversible = true\n\
             command = [\"/bin/sh\", \"-c\", \"cat >> {}; echo done\"]\nwritable = [{:?}]\n",
            roles.display().to_string(),
            dir.display().to_string(),
            effects.path().join("deployed.log").display(),
            effects.path().display().to_string()
        ),
    )
    .unwrap();
    Host {
        server: launch(&config, agents),
        rita,
        dan,
        effects,
        _keys: keys,
    }
}

pub(super) async fn post(s: &Server, path: &str, token: &str, body: &Value) -> (u16, Value) {
    request(&s.addr, "POST", path, Some(token), body.to_string().into()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_irreversible_action_is_approved_over_http_only_by_a_signed_approval() {
    let h = tokio::task::spawn_blocking(host).await.unwrap();
    let s = &h.server;
    let data = s.data.path();
    let (rita, dan) = (
        dev_token(data, "rita", &["reviewer"], Duration::from_secs(600)),
        dev_token(data, "dan", &["dev"], Duration::from_secs(600)),
    );
    let task = submit(
        s,
        &dan,
        &json!({"agent": "probe", "input": {"op": "tool", "name": "deploy", "input": "v7"}}),
    )
    .await;
    let row = ended(s, &dan, task).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(
        h.deployed(),
        None,
        "an irreversible action ran without approval"
    );

    // Dan may not approve deploys: nothing listed for him; his own signed approval refused
    // before anything is checked or written, with the rule the CLI states.
    let (status, v) = get(s, "/v1/approvals", Some(&dan)).await;
    assert_eq!((status, &v["approvals"]), (200, &json!([])), "{v}");
    let (status, v) = get(s, "/v1/approvals", Some(&rita)).await;
    assert_eq!(status, 200, "{v}");
    let listed = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["task"] == task)
        .unwrap_or_else(|| panic!("task {task}'s action not listed: {v}"))
        .clone();
    assert_eq!(
        (&listed["tool"], &listed["params"]),
        (&json!("deploy"), &json!("v7"))
    );
    let id = listed["id"].as_u64().unwrap();
    let action: ActionRecord = serde_json::from_value(listed.clone()).unwrap();
    assert_eq!(
        listed["to_sign"].as_str().unwrap().as_bytes(),
        Approval::message(id, &action.hash, "rita", action.expires_ms)
    );
    assert_eq!(sample(s, &dan, "warden_approvals_pending").await, Some(1.0));
    let path = format!("/v1/approvals/{id}");
    let by_dan = Approval::sign(&action, "dan", &h.dan);
    let (status, v) = post(s, &path, &dan, &json!(by_dan)).await;
    assert_eq!((status, error_code(&v)), (403, "may-not-approve"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holds no role that may approve `deploy`"),
        "{v}"
    );
    // Rita's token does not make Dan's approval hers.
    let (status, v) = post(s, &path, &rita, &json!(by_dan)).await;
    assert_eq!((status, error_code(&v)), (403, "not-the-approver"), "{v}");

    // Forged: altered after signing, or signed by a key that is not Rita's.
    let ok = Approval::sign(&action, "rita", &h.rita);
    let mut altered = ok.clone();
    altered.expires_ms += 1;
    let (status, v) = post(s, &path, &rita, &json!(altered)).await;
    assert_eq!((status, error_code(&v)), (403, "bad-signature"), "{v}");
    let stranger = Approval::sign(&action, "rita", &SecretKey::generate().unwrap());
    let (status, v) = post(s, &path, &rita, &json!(stranger)).await;
    assert_eq!((status, error_code(&v)), (403, "unknown-key"), "{v}");
    let (status, v) = post(s, "/v1/approvals/999999", &rita, &json!(ok)).await;
    assert_eq!((status, error_code(&v)), (400, "wrong-action"), "{v}");
    let (status, v) = post(s, &path, &rita, &json!({"action": id})).await;
    assert_eq!((status, error_code(&v)), (400, "bad-body"), "{v}");
    assert_eq!(h.deployed(), None, "a refused approval ran the tool");
    let (_, v) = get(s, "/v1/approvals", Some(&rita)).await;
    assert!(
        v["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id),
        "the action is no longer pending after refusals: {v}"
    );

    // Hers, signed by `warden approve --sign` from the listing alone (no data directory):
    // performed once; a replay is refused and runs nothing.
    let keys = h._keys.path();
    h.rita.write(&keys.join("rita")).unwrap();
    std::fs::write(keys.join("action.json"), listed.to_string()).unwrap();
    let out = std::process::Command::new(warden_tests::warden_bin())
        .current_dir(keys)
        .env_remove("WARDEN_CONFIG")
        .args([
            "approve",
            "--sign",
            "action.json",
            "--key",
            "rita.key",
            "--approver",
            "rita",
        ])
        .args(["--save", "approval.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Approval =
        serde_json::from_str(&std::fs::read_to_string(keys.join("approval.json")).unwrap())
            .unwrap();
    assert_eq!(signed.hash, ok.hash);
    // A listing whose fields were changed under its hash is not signed.
    let mut lied = listed.clone();
    lied["params"] = json!("v8");
    std::fs::write(keys.join("lied.json"), lied.to_string()).unwrap();
    let out = std::process::Command::new(warden_tests::warden_bin())
        .current_dir(keys)
        .env_remove("WARDEN_CONFIG")
        .args([
            "approve",
            "--sign",
            "lied.json",
            "--key",
            "rita.key",
            "--approver",
            "rita",
        ])
        .args(["--save", "lied-approval.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not sign"));
    assert!(!keys.join("lied-approval.json").exists());
    let ok = signed;
    let (status, v) = post(s, &path, &rita, &json!(ok)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["status"], &v["approver"]),
        (&json!("performed"), &json!("rita"))
    );
    assert_eq!(h.deployed().as_deref(), Some("v7"));
    assert_eq!(sample(s, &dan, "warden_approvals_pending").await, Some(0.0));
    let (status, v) = post(s, &path, &rita, &json!(ok)).await;
    assert_eq!((status, error_code(&v)), (409, "not-pending"), "{v}");
    assert_eq!(h.deployed().as_deref(), Some("v7"));

    // The audit log, for reviewers: the refusals and the approval recorded; the log verifies.
    let (status, v) = get(s, "/v1/audit", Some(&dan)).await;
    assert_eq!((status, error_code(&v)), (403, "not-a-reviewer"), "{v}");
    let (status, v) = get(s, "/v1/audit/verify", Some(&dan)).await;
    assert_eq!((status, error_code(&v)), (403, "not-a-reviewer"), "{v}");
    let mut kinds = Vec::new();
    let mut after = 0;
    loop {
        let (status, v) = get(s, &format!("/v1/audit?after={after}&limit=3"), Some(&rita)).await;
        assert_eq!(status, 200, "{v}");
        let records = v["records"].as_array().unwrap();
        assert!(records.len() <= 3);
        if records.is_empty() {
            assert_eq!(v["next"], after);
            break;
        }
        for r in records {
            assert_eq!(r["seq"], after + 1, "pages run on without gaps");
            after = r["seq"].as_u64().unwrap();
            kinds.push(r["kind"].as_str().unwrap().to_string());
        }
        assert_eq!(v["next"], after);
    }
    for kind in [
        "action-pending",
        "approval-refused",
        "action-approved",
        "action-performed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let (status, v) = get(s, "/v1/audit?limit=0", Some(&rita)).await;
    assert_eq!((status, error_code(&v)), (400, "bad-query"), "{v}");
    let (status, v) = get(s, "/v1/audit?after=x", Some(&rita)).await;
    assert_eq!((status, error_code(&v)), (400, "bad-query"), "{v}");
    let (status, v) = get(s, "/v1/audit/verify", Some(&rita)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["report"]["records"].as_u64().unwrap() >= after, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_agent_is_reinstated_over_http_only_by_a_reviewers_signed_statement() {
    let h = tokio::task::spawn_blocking(host).await.unwrap();
    let s = &h.server;
    let data = s.data.path();
    let (rita, dan) = (
        dev_token(data, "rita", &["reviewer"], Duration::from_secs(600)),
        dev_token(data, "dan", &["dev"], Duration::from_secs(600)),
    );
    let echo = json!({"agent": "probe", "input": {"op": "echo", "text": "x"}});
    let clean = submit(s, &dan, &echo).await;
    assert_eq!(ended(s, &dan, clean).await["status"], "completed");
    let bad = json!({"agent": "probe", "input": {"op": "raw-read-abs", "path": "/etc/passwd"}});
    let killed = submit(s, &dan, &bad).await;
    assert_eq!(ended(s, &dan, killed).await["status"], "killed");

    // Counted from the ledger: promoted after its clean run, then demoted.
    let agent = r#"{agent="probe"}"#;
    let promoted = format!("warden_trust_promotions_total{agent}");
    let demoted = format!("warden_trust_demotions_total{agent}");
    assert_eq!(sample(s, &dan, &promoted).await, Some(1.0));
    assert_eq!(sample(s, &dan, &demoted).await, Some(1.0));
    // Everyone sees the level; only a reviewer sees why.
    let probe = |v: &Value| {
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_id"] == "unsigned/probe")
            .cloned()
            .unwrap_or_else(|| panic!("no probe in {v}"))
    };
    let (status, v) = get(s, "/v1/trust", Some(&dan)).await;
    assert_eq!(status, 200, "{v}");
    let seen = probe(&v);
    assert_eq!(
        (&seen["held"], &seen["level"]),
        (&json!(true), &json!(1)),
        "{seen}"
    );
    assert!(seen.get("demoted_reason").is_none(), "{seen}");
    let (_, v) = get(s, "/v1/trust", Some(&rita)).await;
    assert_eq!(probe(&v)["demoted_by_task"], killed);

    let (status, v) = get(s, "/v1/trust/probe/review", Some(&dan)).await;
    assert_eq!((status, error_code(&v)), (403, "not-a-reviewer"), "{v}");
    let (status, v) = get(s, "/v1/trust/nobody/review", Some(&rita)).await;
    assert_eq!((status, error_code(&v)), (404, "no-trust-record"), "{v}");
    let (status, v) = get(s, "/v1/trust/probe/review", Some(&rita)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["task"], killed);
    let code = v["code"].as_str().unwrap().to_string();
    // The full id works too, its `/` percent-encoded.
    let (status, v) = get(s, "/v1/trust/unsigned%2Fprobe/review", Some(&rita)).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (200, Some(code.as_str())),
        "{v}"
    );

    let path = "/v1/trust/probe/reinstate";
    let by_dan = Reinstatement::sign("unsigned/probe", &code, "dan", &h.dan);
    let (status, v) = post(s, path, &dan, &json!(by_dan)).await;
    assert_eq!((status, error_code(&v)), (403, "not-a-reviewer"), "{v}");
    let wrong = Reinstatement::sign("unsigned/probe", "000000000000", "rita", &h.rita);
    let (status, v) = post(s, path, &rita, &json!(wrong)).await;
    assert_eq!((status, error_code(&v)), (403, "not-reviewed"), "{v}");
    let mut forged = Reinstatement::sign("unsigned/probe", &code, "rita", &h.rita);
    forged.agent_id = "unsigned/other".into();
    let (status, v) = post(s, path, &rita, &json!(forged)).await;
    assert_eq!((status, error_code(&v)), (403, "bad-signature"), "{v}");
    let (_, v) = get(s, "/v1/trust", Some(&rita)).await;
    assert_eq!(
        probe(&v)["held"],
        true,
        "a refused reinstatement changed the record"
    );

    let ok = Reinstatement::sign("unsigned/probe", &code, "rita", &h.rita);
    let (status, v) = post(s, path, &rita, &json!(ok)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["change"]["event"], "reinstated", "{v}");
    assert_eq!(v["change"]["by"], "rita", "{v}");
    let (_, v) = get(s, "/v1/trust", Some(&dan)).await;
    assert_eq!(probe(&v)["held"], false, "{v}");
    // Once reinstated, the same statement changes nothing.
    let (status, v) = post(s, path, &rita, &json!(ok)).await;
    assert_eq!((status, error_code(&v)), (409, "not-held"), "{v}");
}
