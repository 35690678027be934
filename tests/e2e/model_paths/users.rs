//! A user's roles bound the model grant, through tokens a test issuer signs: a user whose roles
//! allow everything but the model is refused (the run is killed at the call, which never reaches
//! the provider), and a role that allows the model with a smaller token budget than the policy's
//! makes that the task's budget.

use serde_json::json;
use warden::orchestra::model::stub::StubProvider;

use super::{Host, ask};

const ROLES: &str = r#"
[role.everything-but-small]
agents = ["*"]
fs.write = ["**"]
tools.allow = ["echo", "text.upper"]
model = { allow = ["large"], tokens = 1000000, usd = 100.0 }

[role.cheap]
agents = ["*"]
model = { allow = ["small"], tokens = 300 }

[role.rich]
agents = ["*"]
model = { allow = ["small"], tokens = 100000 }
"#;

/// The agent may call both models, with the default budget of 20 000 tokens.
const POLICY: &str = "[model]\nallow = [\"small\", \"large\"]\n[fs]\nwrite = [\"**\"]\n";

/// A host that requires tokens from the issuer `sso` and knows [`ROLES`]; a function that issues
/// a token for some roles.
async fn host_with_issuer(url: &str) -> Host {
    let host = Host::new(url, &[], "");
    let keygen = host.warden(&["keygen", "sso"]).await;
    assert_eq!(keygen.code, 0, "{}", keygen.err);
    let roles = host.path("roles.toml");
    std::fs::write(&roles, ROLES).unwrap();
    host.append_config(&format!(
        "[host]\nroles = \"{}\"\n[[issuers]]\nname = \"sso\"\nkey = \"{}\"\naudience = \"warden\"\n",
        roles.display(),
        keygen.out.trim()
    ));
    host
}

async fn token(host: &Host, role: &str) -> String {
    let key = host.path("sso.key");
    let ran = host
        .warden(&[
            "token",
            "issue",
            "--key",
            key.to_str().unwrap(),
            "--issuer",
            "sso",
            "--subject",
            "alice",
            "--role",
            role,
        ])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.err);
    ran.out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_roles_lack_the_model_is_refused() {
    let stub = StubProvider::start().await.unwrap();
    let host = host_with_issuer(&stub.url()).await;
    let broad = token(&host, "everything-but-small").await;
    let r = host
        .probe_as(&[], &["--token", &broad], POLICY, &ask("small", "hi"))
        .await;
    assert_eq!(r.code, 3, "{r}");
    let o = r.outcome();
    assert_eq!(
        (
            o["status"].as_str(),
            o["reason"].as_str(),
            o["capability"].as_str()
        ),
        (Some("killed"), Some("out-of-scope"), Some("model")),
        "{r}"
    );
    assert!(
        o["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not allowed to the user")),
        "{r}"
    );
    assert_eq!(stub.request_count(), 0, "the refused call was never sent");
    assert!(
        host.records("model-call", r.task()).is_empty(),
        "nothing to account for"
    );

    // The twin: a role that allows it.
    let rich = token(&host, "rich").await;
    let r = host
        .probe_as(&[], &["--token", &rich], POLICY, &ask("small", "hi"))
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(stub.request_count(), 1);
    host.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_the_smaller_of_the_role_and_the_policy() {
    let stub = StubProvider::start().await.unwrap();
    let host = host_with_issuer(&stub.url()).await;
    let cheap = token(&host, "cheap").await;
    let rich = token(&host, "rich").await;
    // 500 completion tokens and the prompt: over the role's 300, well under the policy's 20 000.
    let big = json!({"op": "model", "model": "small", "text": "hi", "max_tokens": 500});

    let r = host.probe_as(&[], &["--token", &rich], POLICY, &big).await;
    assert_eq!(r.code, 0, "under the policy's budget: {r}");
    assert_eq!(stub.request_count(), 1);

    let r = host.probe_as(&[], &["--token", &cheap], POLICY, &big).await;
    assert_eq!(r.code, 4, "{r}");
    assert_eq!(r.status(), "escalated", "{r}");
    assert_eq!(r.outcome()["reason"], "budget-cap", "{r}");
    assert_eq!(
        stub.request_count(),
        1,
        "the call over the role's budget was not sent"
    );
    let call = host.one_call(r.task());
    assert_eq!(call["outcome"], "budget-exceeded", "{call}");
    assert_eq!(call["attempts"], 0, "{call}");

    // The same role, a call that fits in its 300 tokens: the model itself is allowed.
    let r = host
        .probe_as(&[], &["--token", &cheap], POLICY, &ask("small", "hi"))
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(stub.request_count(), 2);
    assert!(
        !host.trust().await.contains("HELD"),
        "a budget cap does not demote"
    );
}
