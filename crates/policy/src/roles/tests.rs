//! Tests of roles: unions, intersections, budgets, delegation, people.

use super::*;

const ROLES: &str = r#"
[role.docs-writer]
fs.read = ["**"]
fs.write = ["docs/**"]
tools.allow = ["echo"]

[role.operator]
fs.write = ["**"]
net.allow = ["api.example.com:443"]
limits = { cpu = "5 s", wall = "30 s", memory = "32 MiB" }
"#;

#[test]
fn union_of_roles() {
    let roles = Roles::parse("roles.toml", ROLES).unwrap();
    let (writer, unknown) = roles.grant_for(&["docs-writer".into(), "ghost".into()]);
    assert_eq!(unknown, vec!["ghost".to_string()]);
    assert!(writer.allows_write("docs/a.md") && !writer.allows_write("src/a.rs"));
    assert!(writer.allows_read("src/a.rs", false));
    assert!(writer.allows_tool("echo") && !writer.allows_tool("deploy"));
    assert!(!writer.allows_host("api.example.com", 443));
    let (both, _) = roles.grant_for(&["docs-writer".into(), "operator".into()]);
    assert!(both.allows_write("src/a.rs") && both.allows_host("api.example.com", 443));
    let (nobody, _) = roles.grant_for(&[]);
    assert!(!nobody.allows_read("docs/a.md", false) && !nobody.allows_tool("echo"));
}

#[test]
fn limits_take_the_smaller() {
    let roles = Roles::parse("roles.toml", ROLES).unwrap();
    let (op, _) = roles.grant_for(&["operator".into()]);
    let agent = Limits::default();
    let l = op.limit(&agent);
    assert_eq!(l.memory, 32 << 20);
    assert_eq!(l.cpu, agent.cpu.min(std::time::Duration::from_secs(5)));
    let (writer, _) = roles.grant_for(&["docs-writer".into()]);
    assert_eq!(writer.limit(&agent), agent);
}

#[test]
fn models_and_budgets_intersect() {
    let text = "[role.cheap]\nmodel = { allow = [\"small\"], tokens = 1000, usd = 0.01 }\n[role.rich]\nmodel.allow = [\"small\", \"large\"]\nmodel.tokens = 500000\n[role.none]\nfs.read = [\"**\"]\n";
    let roles = Roles::parse("roles.toml", text).unwrap();
    let agent = crate::Policy::parse(
        "p.toml",
        "[agent]\nname = \"a\"\n[model]\nallow = [\"small\", \"large\"]\ntokens = 4000\n",
    )
    .unwrap()
    .model;
    let (cheap, _) = roles.grant_for(&["cheap".into()]);
    assert!(cheap.allows_model("small") && !cheap.allows_model("large"));
    assert_eq!(cheap.model_budget(&agent), (1000, 10_000));
    let (both, _) = roles.grant_for(&["cheap".into(), "rich".into()]);
    assert!(both.allows_model("large"));
    assert_eq!(both.model_budget(&agent), (4000, 100_000));
    let (none, _) = roles.grant_for(&["none".into()]);
    assert!(!none.allows_model("small"));
    assert_eq!(none.model_budget(&agent), (0, 0));
    let e = Roles::parse("r.toml", "[role.x]\nmodel.tokens = 0\n").unwrap_err();
    assert_eq!((e.line, e.kind), (2, PolicyErrorKind::OutOfRange), "{e}");
}

#[test]
fn delegation_never_widens() {
    let roles = Roles::parse(
            "roles.toml",
            "[role.reader]\nfs.read = [\"**\"]\nmemory.read = [\"lessons\"]\n[role.all]\nfs.write = [\"**\"]\ntools.allow = [\"echo\"]\nmodel.allow = [\"small\"]\nmemory.write = [\"lessons\"]\n",
        )
        .unwrap();
    let caller = crate::Policy::parse(
            "c.toml",
            "[agent]\nname = \"caller\"\n[fs]\nread = [\"docs/**\"]\nwrite = [\"docs/out/**\"]\n[tools]\nallow = [\"echo\"]\n[limits]\ncpu = \"100 ms\"\n",
        )
        .unwrap();
    // A user who may do everything, through a caller that may only touch docs.
    let (all, _) = roles.grant_for(&["all".into()]);
    let through = all.delegated_by(&caller);
    assert!(through.allows_write("docs/out/a.md") && !through.allows_write("src/a.rs"));
    assert!(through.allows_read("docs/a.md", false) && !through.allows_read("src/a.rs", false));
    assert!(through.allows_tool("echo"));
    assert!(!through.allows_model("small"), "the caller has no model");
    assert!(
        !through.allows_memory_write("lessons"),
        "the caller writes no memory"
    );
    let callee = Limits::default();
    assert!(through.limit(&callee).cpu <= std::time::Duration::from_millis(100));
    // The confused deputy: a reader asks a writing caller; the callee may not write.
    let (reader, _) = roles.grant_for(&["reader".into()]);
    let deputy = reader.delegated_by(&caller);
    assert!(!deputy.allows_write("docs/out/a.md"));
    assert!(deputy.allows_read("docs/a.md", false));
    // Two hops: bounded by both callers.
    let narrow = crate::Policy::parse(
        "n.toml",
        "[agent]\nname = \"narrow\"\n[fs]\nwrite = [\"docs/out/x/**\"]\n",
    )
    .unwrap();
    let two = through.delegated_by(&narrow);
    assert!(two.allows_write("docs/out/x/a") && !two.allows_write("docs/out/a.md"));
    assert!(!two.allows_tool("echo"));
    // No user at all: the caller's policy alone bounds the callee.
    let alone = UserGrant::of_policy(&caller);
    assert!(alone.allows_write("docs/out/a") && !alone.allows_write("src/a"));
    // The caller's time left lowers its wall limit in the bound, and nothing else changes.
    let left = std::time::Duration::from_millis(40);
    for (within, by) in [
        (
            all.delegated_within(&caller, left),
            all.delegated_by(&caller),
        ),
        (UserGrant::of_policy_within(&caller, left), alone),
    ] {
        assert_eq!(within.limit(&callee).wall, left);
        assert_eq!(within.limit(&callee).cpu, by.limit(&callee).cpu);
        assert_eq!(
            within.allows_write("docs/out/a.md"),
            by.allows_write("docs/out/a.md")
        );
        assert!(!within.allows_write("src/a.rs") && within.allows_tool("echo"));
    }
    let long = std::time::Duration::from_secs(3600);
    assert_eq!(
        UserGrant::of_policy_within(&caller, long)
            .limit(&callee)
            .wall,
        callee.wall.min(caller.limits.wall),
        "never raised"
    );
}

#[test]
fn agents_are_granted_by_name_or_star_and_none_by_default() {
    let roles = Roles::parse(
        "roles.toml",
        "[role.docs]\nagents = [\"documenter\", \"hello\"]\n[role.all]\nagents = [\"*\"]\n[role.none]\nfs.read = [\"**\"]\n",
    )
    .unwrap();
    let (docs, _) = roles.grant_for(&["docs".into()]);
    assert!(docs.allows_agent("documenter") && docs.allows_agent("hello"));
    assert!(!docs.allows_agent("implementer"));
    let (none, _) = roles.grant_for(&["none".into()]);
    assert!(!none.allows_agent("hello"), "no `agents` key: no agent");
    let (nobody, _) = roles.grant_for(&[]);
    assert!(!nobody.allows_agent("hello"));
    // Along a chain the user's list still holds, and a caller's `[agents] call` (checked at its
    // own call) does not narrow what its callees may call.
    let (all, _) = roles.grant_for(&["all".into()]);
    let caller = crate::Policy::parse(
        "c.toml",
        "[agent]\nname = \"caller\"\n[agents]\ncall = [\"tester\"]\n",
    )
    .unwrap();
    assert!(all.delegated_by(&caller).allows_agent("implementer"));
    assert!(!docs.delegated_by(&caller).allows_agent("implementer"));
    // A name that cannot be an agent's is a located mistake.
    let e = Roles::parse("roles.toml", "[role.x]\nagents = [\"../hello\"]\n").unwrap_err();
    assert_eq!((e.line, e.kind), (2, PolicyErrorKind::InvalidName), "{e}");
}

#[test]
fn mistakes_are_located() {
    let e = Roles::parse("roles.toml", "[role.x]\nfs.read = [\"/etc\"]\n").unwrap_err();
    assert_eq!((e.line, e.kind), (2, PolicyErrorKind::InvalidPath), "{e}");
    let e = Roles::parse("roles.toml", "[role.Bad]\n").unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::InvalidName, "{e}");
    let e = Roles::parse("roles.toml", "[role.x]\nexec = 1\n").unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::UnknownKey, "{e}");
}

#[test]
fn people_review_and_approve() {
    let key = "ed25519:ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    let text = format!(
        "[person.alice]\nkey = \"{key}\"\nroles = [\"release\"]\n[role.release]\nreview = true\napprove = [\"deploy\"]\n[role.dev]\nfs.read = [\"**\"]\n"
    );
    let roles = Roles::parse("r.toml", &text).unwrap();
    let alice = roles.person("alice").unwrap();
    assert_eq!(roles.person_with_key(&alice.key), Some(alice));
    assert!(roles.may_review(alice));
    assert!(roles.may_approve(alice, "deploy") && !roles.may_approve(alice, "rm"));

    let unknown_role = format!("[person.bob]\nkey = \"{key}\"\nroles = [\"ghost\"]\n");
    let e = Roles::parse("r.toml", &unknown_role).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (3, 10, PolicyErrorKind::Contradiction),
        "{e}"
    );
    let bad_key = "[person.bob]\nkey = \"ed25519:00\"\nroles = []\n";
    let e = Roles::parse("r.toml", bad_key).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (2, 7, PolicyErrorKind::InvalidName),
        "{e}"
    );
    let bad_tool = "[role.x]\napprove = [\"Deploy\"]\n";
    let e = Roles::parse("r.toml", bad_tool).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}
