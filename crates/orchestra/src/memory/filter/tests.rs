//! The filter, rule by rule: every class refused with its rule named (and the matched text never
//! in the refusal), every way of smuggling, and ordinary prose and code accepted.
//!
//! Secret-shaped test values are assembled at run time from pieces, so this file holds none whole.

use std::sync::OnceLock;

use warden_identity::secrets::SecretStore;
use warden_policy::HostConfig;

use super::*;

fn filter() -> &'static Filter {
    static FILTER: OnceLock<Filter> = OnceLock::new();
    FILTER.get_or_init(|| Filter::new().expect("the filter builds"))
}

fn none() -> SecretStore {
    SecretStore::default()
}

/// A store holding one host secret, `deploy-token`, read from a file.
fn host_secret(value: &str) -> (tempfile::TempDir, SecretStore) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, value).unwrap();
    let config = HostConfig::parse(
        "w.toml",
        &format!(
            "[[secrets]]\nname = \"deploy-token\"\nfile = \"{}\"\nhost = \"api.example.com:443\"\nheader = \"authorization\"\n",
            file.display()
        ),
    )
    .unwrap();
    (dir, SecretStore::load(&config).unwrap())
}

fn aws() -> String {
    ["AKIA", "Z3MHF4KQ", "7XBVNL2W"].concat()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rule(text: &str) -> Option<String> {
    filter().check(text, &none()).err().map(|r| r.rule)
}

#[test]
fn every_class_is_refused_with_its_rule_named() {
    let cases: Vec<(String, &str)> = vec![
        ("write to jane.doe@corp.example.com".into(), "pii:email"),
        ("ring +1 415 555 2671".into(), "pii:phone"),
        ("ring (415) 555-2671".into(), "pii:phone"),
        (
            format!("card {} 1111 1111 1111", "4111"),
            "pii:payment-card",
        ),
        (format!("amex {}", "378282246310005"), "pii:payment-card"),
        (
            format!("iban GB82 WEST {} 7654 32", "1234 5698"),
            "pii:iban",
        ),
        (format!("ssn {}-45-6789", "123"), "gov-id:us-ssn"),
        ("nino AB 12 34 56 C".into(), "gov-id:uk-nino"),
        ("sin 123 456 782".into(), "gov-id:ca-sin"),
        ("dni 12345678Z".into(), "gov-id:es-dni"),
        (
            format!("-----BEGIN {}PRIVATE KEY-----\nMIIEvQ...", "RSA "),
            "key:pem-private-key",
        ),
        (format!("aws {}", aws()), "gitleaks:aws-access-token"),
        (
            format!("token ghp_{}", "x7Kp2mQ9vL4tR8wZ1nB6cD3fG5hJ0sA2eY9u"),
            "gitleaks:github-pat",
        ),
        (
            format!(
                "slack {}-1234567890-0987654321-{}",
                "xoxb", "AbCdEfGhIjKlMnOpQrStUvWx"
            ),
            "gitleaks:slack-bot-token",
        ),
        (
            format!("stripe {}_live_{} ", "sk", "4eC39HqLyjWDarjtT1zdp7dc"),
            "gitleaks:stripe-access-token",
        ),
        (
            format!("api_key = \"{}\"", ["a8Fk29XmQ0", "pL3vZr7T"].concat()),
            "gitleaks:generic-api-key",
        ),
    ];
    for (text, expected) in &cases {
        let refusal = filter().check(text, &none()).expect_err(text);
        assert_eq!(refusal.rule, *expected, "{text}");
        assert_eq!(refusal.found, Found::Text);
        let message = refusal.to_string();
        assert!(message.contains(expected), "{message}");
        // The refusal names the rule and never the text it matched.
        let sensitive =
            |w: &&str| w.len() >= 4 && w.bytes().any(|b| b.is_ascii_digit() || b == b'@');
        for word in text.split_whitespace().filter(sensitive) {
            assert!(!message.contains(word), "`{message}` quotes `{word}`");
        }
    }
    let (_dir, secrets) = host_secret("hs-9f3k2LmQ8zXv");
    let refusal = filter()
        .check("the token is hs-9f3k2LmQ8zXv, keep it", &secrets)
        .unwrap_err();
    assert_eq!(refusal.rule, "host-secret:deploy-token");
    assert!(!refusal.to_string().contains("hs-9f3k2LmQ8zXv"));
}

#[test]
fn encoded_secrets_are_decoded_first() {
    let key = aws();
    let wrapped = [
        (
            format!("blob {}", b64(key.as_bytes())),
            vec![Encoding::Base64],
        ),
        (format!("blob {}", hex(key.as_bytes())), vec![Encoding::Hex]),
        (
            format!("blob {}", b64(hex(key.as_bytes()).as_bytes())),
            vec![Encoding::Base64, Encoding::Hex],
        ),
        (
            format!(
                "blob {}",
                b64(format!("jane.doe@{}", "corp.example.com").as_bytes())
            ),
            vec![Encoding::Base64],
        ),
    ];
    for (text, chain) in wrapped {
        let r = filter().check(&text, &none()).unwrap_err();
        assert_eq!(r.found, Found::Decoded(chain), "{text}");
    }
    let (_dir, secrets) = host_secret("hs-9f3k2LmQ8zXv");
    let r = filter()
        .check(&format!("note {}", b64(b"hs-9f3k2LmQ8zXv")), &secrets)
        .unwrap_err();
    assert_eq!(
        (r.rule.as_str(), r.found),
        (
            "host-secret:deploy-token",
            Found::Decoded(vec![Encoding::Base64])
        )
    );
}

#[test]
fn a_secret_split_across_writes_is_refused() {
    let key = aws();
    let (a, b) = key.split_at(9);
    fn write(text: &str) -> Candidate<'_> {
        Candidate {
            key: "notes",
            tags: &[],
            text,
        }
    }
    // Each half alone passes.
    assert!(filter().check(a, &none()).is_ok() && filter().check(b, &none()).is_ok());
    let r = filter()
        .check_write(write(b), &[a.to_string()], &none())
        .unwrap_err();
    assert_eq!(
        (r.rule.as_str(), &r.found),
        ("gitleaks:aws-access-token", &Found::AcrossWrites)
    );
    // With other writes in between, and in the other order.
    let between = vec![a.to_string(), "filler one".into(), "filler two".into()];
    assert!(filter().check_write(write(b), &between, &none()).is_err());
    let before = vec![b.to_string(), "filler".into()];
    assert!(filter().check_write(write(a), &before, &none()).is_err());
    // Three pieces written in order.
    let (a1, a2) = a.split_at(4);
    let three = vec![a1.to_string(), a2.to_string()];
    assert!(filter().check_write(write(b), &three, &none()).is_err());
}

#[test]
fn keys_and_tags_are_filtered_too() {
    let tags = vec!["ok".to_string(), format!("to-{}", "jane@corp.example.com")];
    let r = filter()
        .check_write(
            Candidate {
                key: "k",
                tags: &tags,
                text: "fine",
            },
            &[],
            &none(),
        )
        .unwrap_err();
    assert_eq!((r.rule.as_str(), r.found), ("pii:email", Found::Tag));
    let key = format!("creds-{}", aws());
    let r = filter()
        .check_write(
            Candidate {
                key: &key,
                tags: &[],
                text: "fine",
            },
            &[],
            &none(),
        )
        .unwrap_err();
    assert_eq!(r.found, Found::Key);
}

#[test]
fn too_much_encoded_text_is_refused_not_waved_through() {
    // Long base64 runs decode within the budget; the budget itself is a bound, not a bypass.
    let text = "QUJD".repeat(16 * 1024);
    assert!(text.len() <= crate::memory::MAX_TEXT);
    assert!(filter().check(&text, &none()).is_ok());
    let mut budget = 10;
    let r = filter()
        .check_bytes(
            b"more than ten bytes",
            &none(),
            &mut Vec::new(),
            &mut budget,
        )
        .unwrap_err();
    assert_eq!(r.rule, TOO_MUCH_ENCODED);
}

const PROSE: &str = "
The retry policy that worked best for the payments service was exponential backoff with full
jitter, capped at thirty seconds. We learned this after the outage of March 3rd, when 1,200
clients retried in lockstep every 500 ms. The access log showed the key insight: the token bucket
refilled too slowly, so the secret to recovery was shedding load early. Version 2.4.1 fixed it;
see the post-mortem in docs/incidents/2024-03-03.md, section 4.2, and the dashboard at
https://grafana.internal/d/abc123/payments?orgId=1&from=now-6h. Passwords were never involved.
Call the on-call engineer through the pager rotation, not by phone. The build took 12 min 30 s
on 8 cores; throughput rose from 256 512 to 1024 2048 requests per second across the four runs.
Commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f and sha256 e163e53b9e7e8a8511e77271e2b323ed057759542a6d988258afe3a1fa329caf
were reviewed. Session 550e8400-e29b-41d4-a716-446655440000 ended at 2024-11-27T21:29:00Z.
";

const CODE: &str = r#"
[memory]
horizon = "30 d"
[model]
allow = ["small"]
tokens = 4000
cache_dir = "/var/cache/warden"

def authenticate(user, password_hash):
    token = session.get_token(user.id)
    if not token or token.expired():
        raise AuthError("token expired; sign in again")
    return api_client.call("/v1/keys", headers={"Authorization": f"Bearer {token.value}"})

const apiKey = process.env.API_KEY;
const secretName = config.secretName ?? "default";
fetch(`${baseUrl}/api/v2/items?page=${page}`, { credentials: "include" });

git clone git@github.com:example/warden.git && cd warden
export WARDEN_DATA_DIR=$HOME/.local/state/warden
cargo test --release -p warden-orchestra memory::filter
"#;

#[test]
fn ordinary_prose_and_code_pass() {
    let sources = [
        ("prose", PROSE),
        ("code", CODE),
        ("store.rs", include_str!("../store.rs")),
        ("access.rs", include_str!("../access.rs")),
        ("curate.rs", include_str!("../curate.rs")),
        ("context.rs", include_str!("../../model/context.rs")),
        ("session.rs", include_str!("../../model/session.rs")),
        ("registry.rs", include_str!("../../model/registry.rs")),
        ("Cargo.toml", include_str!("../../../Cargo.toml")),
    ];
    // Digests and binary blobs: many runs that decode to noise, within the scan budget.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut digests = String::new();
    while digests.len() < 30 * 1024 {
        let bytes: Vec<u8> = (0..32).map(|_| noise() as u8).collect();
        digests.push_str(&format!(
            "sha256 {}  file\nblob {}\n",
            hex(&bytes),
            b64(&bytes)
        ));
    }
    let sources = sources.into_iter().chain([("digests", digests.as_str())]);
    for (name, text) in sources {
        assert_eq!(
            filter().check(text, &none()),
            Ok(()),
            "false positive on {name}"
        );
    }
}

#[test]
fn the_rule_sets_are_all_there() {
    let f = filter();
    assert_eq!(f.builtin_rules().len(), 9);
    assert!(f.gitleaks().rules() >= 200, "{:?}", f.gitleaks());
    assert_eq!(GITLEAKS_VERSION, "v8.30.1");
    assert_eq!(rule("nothing to see here"), None);
}
