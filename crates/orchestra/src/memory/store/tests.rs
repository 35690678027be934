use std::time::Duration;

use warden_identity::keys::SecretKey;
use warden_policy::Roles;

use super::*;

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn memory() -> (tempfile::TempDir, Memory) {
    let dir = tempfile::tempdir().unwrap();
    let m = Memory::open(dir.path()).unwrap();
    (dir, m)
}

/// A write by `owner` at `at`, living an hour.
fn put(m: &Memory, key: &str, text: &str, owner: &str, general: bool, at: u64) -> u32 {
    m.write(&NewVersion {
        namespace: "lessons",
        key,
        change: Change::Write,
        text,
        tags: &["ops".to_string()],
        owner,
        general,
        written_ms: at,
        expires_ms: Some(at + HOUR),
        pinned: false,
        agent: "curator",
        task: Some(7),
    })
    .unwrap()
}

fn text(m: &Memory, key: &str, user: &str, at: u64) -> Option<String> {
    m.get("lessons", key, user, at).unwrap().map(|v| v.text)
}

#[test]
fn every_write_is_a_new_version_and_reads_see_the_newest() {
    let (_d, m) = memory();
    assert_eq!(put(&m, "retry", "one", "alice", false, T0), 1);
    assert_eq!(put(&m, "retry", "two", "alice", false, T0 + 1), 2);
    assert_eq!(put(&m, "other", "x", "alice", false, T0 + 2), 1);
    assert_eq!(text(&m, "retry", "alice", T0 + 3).as_deref(), Some("two"));
    let h = m.history("lessons", "retry", 10).unwrap();
    assert_eq!(h.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!((h[0].agent.as_str(), h[0].task), ("curator", Some(7)));
    assert_eq!(m.history("lessons", "retry", 1).unwrap().len(), 1);
}

#[test]
fn a_users_entry_is_not_anothers_unless_general() {
    let (_d, m) = memory();
    put(&m, "k", "alice's", "alice", false, T0);
    assert_eq!(text(&m, "k", "alice", T0).as_deref(), Some("alice's"));
    assert_eq!(text(&m, "k", "bob", T0), None);
    // Bob's own version is his; Alice still sees hers.
    put(&m, "k", "bob's", "bob", false, T0 + 1);
    assert_eq!(text(&m, "k", "bob", T0 + 2).as_deref(), Some("bob's"));
    assert_eq!(text(&m, "k", "alice", T0 + 2).as_deref(), Some("alice's"));
    // A general version is everyone's newest.
    put(&m, "k", "for all", "alice", true, T0 + 3);
    for user in ["alice", "bob", "-"] {
        assert_eq!(text(&m, "k", user, T0 + 4).as_deref(), Some("for all"));
    }
    assert!(m.list("lessons", "carol", None, T0 + 4, 100).unwrap().len() == 1);
    put(&m, "private", "p", "alice", false, T0 + 5);
    assert!(m.list("lessons", "carol", None, T0 + 6, 100).unwrap().len() == 1);
    assert!(m.list("lessons", "alice", None, T0 + 6, 100).unwrap().len() == 2);
}

#[test]
fn entries_expire_unless_pinned() {
    let (_d, m) = memory();
    put(&m, "k", "short-lived", "alice", false, T0);
    assert!(text(&m, "k", "alice", T0 + HOUR - 1).is_some());
    assert!(text(&m, "k", "alice", T0 + HOUR).is_none());
    assert!(
        m.list("lessons", "alice", None, T0 + HOUR, 100)
            .unwrap()
            .is_empty()
    );
    // An expired newest version does not bring back an older one.
    put(&m, "k2", "old", "alice", false, T0);
    m.write(&NewVersion {
        namespace: "lessons",
        key: "k2",
        change: Change::Write,
        text: "new",
        tags: &[],
        owner: "alice",
        general: false,
        written_ms: T0,
        expires_ms: Some(T0 + 10),
        pinned: false,
        agent: "curator",
        task: None,
    })
    .unwrap();
    assert!(text(&m, "k2", "alice", T0 + 20).is_none());
}

fn roles(reviewer: &SecretKey, other: &SecretKey) -> Roles {
    Roles::parse(
        "roles.toml",
        &format!(
            "[role.reviewer]\nreview = true\n[role.reader]\n\
             [person.rita]\nkey = \"{}\"\nroles = [\"reviewer\"]\n\
             [person.otto]\nkey = \"{}\"\nroles = [\"reader\"]\n",
            reviewer.public(),
            other.public()
        ),
    )
    .unwrap()
}

#[test]
fn pin_needs_a_reviewer_and_makes_an_entry_permanent() {
    let (_d, m) = memory();
    let (rk, ok) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let roles = roles(&rk, &ok);
    let (rita, otto) = (roles.person("rita").unwrap(), roles.person("otto").unwrap());
    put(&m, "k", "worth keeping", "alice", false, T0);
    assert!(matches!(
        m.pin("lessons", "k", otto, &roles, T0 + 1),
        Err(MemoryError::NotReviewer { .. })
    ));
    assert_eq!(m.pin("lessons", "k", rita, &roles, T0 + 1).unwrap(), 2);
    let v = m
        .get("lessons", "k", "alice", T0 + 1000 * HOUR)
        .unwrap()
        .unwrap();
    assert!(v.pinned && v.expires_ms.is_none() && v.agent == "reviewer rita");
    assert_eq!(v.clone().into_entry().expires_ms, None);
    assert!(matches!(
        m.pin("lessons", "k", rita, &roles, T0 + 2),
        Err(MemoryError::Invalid(_))
    ));
    // An expired entry is not pinned: permanence is earned by what is live.
    put(&m, "gone", "x", "alice", false, T0);
    assert!(matches!(
        m.pin("lessons", "gone", rita, &roles, T0 + HOUR),
        Err(MemoryError::Invalid(_))
    ));
    assert!(matches!(
        m.pin("lessons", "missing", rita, &roles, T0),
        Err(MemoryError::NotFound { .. })
    ));
}

#[test]
fn revert_copies_an_older_version_and_forget_hides_all() {
    let (_d, m) = memory();
    put(&m, "k", "good", "alice", false, T0);
    put(&m, "k", "bad", "alice", false, T0 + 1);
    let horizon = Duration::from_secs(24 * 3600);
    assert_eq!(
        m.revert("lessons", "k", 1, horizon, "operator", T0 + 2)
            .unwrap(),
        3
    );
    let v = m.get("lessons", "k", "alice", T0 + 3).unwrap().unwrap();
    assert_eq!(
        (v.text.as_str(), v.change, v.owner.as_str()),
        ("good", Change::Revert, "alice")
    );
    // It lives as long as version 1 was meant to, from now.
    assert_eq!(v.expires_ms, Some(T0 + 2 + HOUR));
    assert!(matches!(
        m.revert("lessons", "k", 9, horizon, "operator", T0),
        Err(MemoryError::NoVersion { version: 9, .. })
    ));
    assert_eq!(m.forget("lessons", "k", "operator", T0 + 4).unwrap(), 4);
    assert!(text(&m, "k", "alice", T0 + 5).is_none());
    assert!(matches!(
        m.forget("lessons", "k", "operator", T0 + 5),
        Err(MemoryError::Invalid(_))
    ));
    assert!(matches!(
        m.revert("lessons", "k", 4, horizon, "operator", T0 + 6),
        Err(MemoryError::Invalid(_))
    ));
    // A revert past the forget brings the text back; a later write is seen again.
    assert_eq!(
        m.revert("lessons", "k", 3, horizon, "operator", T0 + 6)
            .unwrap(),
        5
    );
    assert_eq!(text(&m, "k", "alice", T0 + 7).as_deref(), Some("good"));
    assert_eq!(m.history("lessons", "k", 100).unwrap().len(), 5);
}

#[test]
fn list_is_newest_first_by_tag_and_bounded() {
    let (_d, m) = memory();
    for i in 0..(MAX_LIST + 5) {
        put(&m, &format!("k{i:03}"), "x", "alice", false, T0 + i as u64);
    }
    let all = m.list("lessons", "alice", None, T0 + 500, 1000).unwrap();
    assert_eq!(all.len(), MAX_LIST);
    assert_eq!(all[0].key, format!("k{:03}", MAX_LIST + 4));
    assert_eq!(
        m.list("lessons", "alice", Some("ops"), T0 + 500, 3)
            .unwrap()
            .len(),
        3
    );
    assert!(
        m.list("lessons", "alice", Some("op"), T0 + 500, 3)
            .unwrap()
            .is_empty()
    );
    assert_eq!(m.keys(None, 7).unwrap().len(), 7);
    assert!(m.keys(Some("other"), 7).unwrap().is_empty());
}

#[test]
fn layer_two_is_stable_sorted_and_bounded() {
    let (_d, m) = memory();
    put(&m, "zeta", "last", "alice", false, T0);
    put(&m, "alpha", "first", "alice", false, T0 + 1);
    put(&m, "hidden", "bob's", "bob", false, T0 + 2);
    let ns = vec!["lessons".to_string()];
    let a = m.context(&ns, "alice", T0 + 3, 8192).unwrap();
    assert_eq!(a, "## lessons/alpha\nfirst\n\n## lessons/zeta\nlast\n\n");
    assert_eq!(m.context(&ns, "alice", T0 + 4, 8192).unwrap(), a);
    // Whole entries only.
    assert_eq!(
        m.context(&ns, "alice", T0 + 3, 30).unwrap(),
        "## lessons/alpha\nfirst\n\n"
    );
    assert_eq!(m.context(&[], "alice", T0 + 3, 8192).unwrap(), "");
}

#[test]
fn bounds_are_refused() {
    let (_d, m) = memory();
    let long_key = "k".repeat(MAX_KEY + 1);
    let big = "x".repeat(MAX_TEXT + 1);
    let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
    let tab = ["a\tb".to_string()];
    let cases: [(&str, &str, &str, &[String]); 7] = [
        ("lessons", "", "x", &[]),
        ("lessons", &long_key, "x", &[]),
        ("lessons", "a\u{1b}[2J", "x", &[]),
        ("Lessons", "k", "x", &[]),
        ("a/b", "k", "x", &[]),
        ("lessons", "k", &big, &[]),
        ("lessons", "k", "x", &many),
    ];
    for (namespace, key, text, tags) in cases.iter().chain([("lessons", "k", "x", &tab[..])].iter())
    {
        let r = m.write(&NewVersion {
            namespace,
            key,
            change: Change::Write,
            text,
            tags,
            owner: "alice",
            general: false,
            written_ms: T0,
            expires_ms: None,
            pinned: false,
            agent: "curator",
            task: None,
        });
        assert!(
            matches!(r, Err(MemoryError::Invalid(_))),
            "{namespace} {key}"
        );
    }
    assert!(m.keys(None, 10).unwrap().is_empty());
}
