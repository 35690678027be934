//! Import classes and verdicts, table-driven: each grant with its refusal.

use super::*;

fn verdicts(wat: &str, policy: &str) -> Vec<ImportVerdict> {
    let engine = Engine::default();
    let component = Component::new(&engine, wat).unwrap();
    let policy = Policy::parse("t.toml", &format!("[agent]\nname = \"t\"\n{policy}")).unwrap();
    report(&engine, &component, &policy)
        .into_iter()
        .map(|r| r.verdict)
        .collect()
}

#[test]
fn verdict_table() {
    use ImportVerdict::*;
    let random = r#"(component (import "wasi:random/random@0.2.0" (instance
        (export "get-random-u64" (func (result u64))))))"#;
    let network = r#"(component (import "wasi:sockets/network@0.2.0" (instance
        (export "network" (type (sub resource))))))"#;
    let not_granted = |name: &str| {
        Refused(ImportError::NotGranted {
            name: name.into(),
            key: "random.secure",
        })
    };
    let cases: Vec<(&str, &str, Vec<ImportVerdict>)> = vec![
        (
            r#"(component (import "wasi:io/error@0.2.0" (instance (export "error" (type (sub resource))))))"#,
            "strict = true",
            vec![Granted],
        ),
        // A capability: linked when granted, else a kill stub, else (strict) refused.
        (random, "[random]\nsecure = true", vec![Granted]),
        (random, "", vec![KillsOnFirstCall]),
        (
            random,
            "strict = true",
            vec![not_granted("wasi:random/random@0.2.0")],
        ),
        // Types only (a resource, no function): no grant needed, strict or not.
        (network, "", vec![TypesOnly]),
        (network, "strict = true", vec![TypesOnly]),
        (
            r#"(component (import "acme:evil/backdoor@1.0.0" (instance)))"#,
            "",
            vec![Refused(ImportError::Unknown {
                name: "acme:evil/backdoor@1.0.0".into(),
            })],
        ),
        (
            r#"(component (import "wasi:io/error@0.2.0" (func)))"#,
            "",
            vec![Refused(ImportError::NotAnInterface {
                name: "wasi:io/error@0.2.0".into(),
                kind: "function",
            })],
        ),
        (
            r#"(component (import "wasi:io/error@0.2.0" (instance))
                          (import "wasi:io/error@0.2.1" (instance)))"#,
            "",
            vec![
                Granted,
                Refused(ImportError::Duplicate {
                    name: "wasi:io/error@0.2.1".into(),
                    other: "wasi:io/error@0.2.0".into(),
                }),
            ],
        ),
    ];
    for (wat, policy, want) in cases {
        assert_eq!(verdicts(wat, policy), want, "{wat} under `{policy}`");
    }
}

#[test]
fn check_acts_on_the_verdicts() {
    let engine = Engine::default();
    let wat = r#"(component
        (import "wasi:sockets/network@0.2.0" (instance (export "network" (type (sub resource)))))
        (import "wasi:random/random@0.2.0" (instance (export "get-random-u64" (func (result u64)))))
        (import "wasi:io/error@0.2.0" (instance)))"#;
    let component = Component::new(&engine, wat).unwrap();
    let policy =
        |body: &str| Policy::parse("t.toml", &format!("[agent]\nname = \"t\"\n{body}")).unwrap();
    // Every ungranted capability is stubbed, the types-only one too (its resource needs a
    // definition); nothing granted or baseline is.
    let stubs = check(&engine, &component, &policy("")).unwrap();
    assert_eq!(
        stubs,
        ["wasi:sockets/network@0.2.0", "wasi:random/random@0.2.0"]
    );
    let stubs = check(&engine, &component, &policy("[random]\nsecure = true")).unwrap();
    assert_eq!(stubs, ["wasi:sockets/network@0.2.0"]);
    let err = check(&engine, &component, &policy("strict = true")).unwrap_err();
    assert!(matches!(err, ImportError::NotGranted { .. }), "{err}");
}

#[test]
fn classify_table() {
    use Capability::*;
    let cases = [
        ("wasi:io/streams@0.2.12", ImportClass::Baseline),
        ("wasi:cli/stdout@0.2.6", ImportClass::Baseline),
        ("wasi:cli/environment@0.2.0", ImportClass::Baseline),
        ("warden:agent/log@0.2.0", ImportClass::Baseline),
        ("wasi:random/insecure-seed@0.2.4", ImportClass::Baseline),
        (
            "wasi:random/random@0.2.4",
            ImportClass::Capability(SecureRandom),
        ),
        ("wasi:filesystem/types@0.2.12", ImportClass::Capability(Fs)),
        (
            "wasi:filesystem/preopens@0.2.12",
            ImportClass::Capability(Fs),
        ),
        (
            "wasi:http/outgoing-handler@0.2.12",
            ImportClass::Capability(Net),
        ),
        ("wasi:sockets/tcp@0.2.0", ImportClass::Capability(Sockets)),
        (
            "wasi:clocks/wall-clock@0.2.0",
            ImportClass::Capability(WallClock),
        ),
        ("warden:agent/tools@0.2.0", ImportClass::Capability(Tools)),
        // Unknown: other versions, other packages, made-up interfaces, no version.
        ("wasi:http/types@0.3.0-rc-2025-09-16", ImportClass::Unknown),
        ("wasi:io/streams@0.3.0", ImportClass::Unknown),
        ("wasi:io/streams@0.2.0-rc", ImportClass::Unknown),
        ("wasi:filesystem/magic@0.2.0", ImportClass::Unknown),
        ("warden:agent/secrets@0.2.0", ImportClass::Unknown),
        ("warden:agent/log@0.1.0", ImportClass::Unknown),
        ("warden:agent/log@0.3.0", ImportClass::Unknown),
        ("warden:agent/agents@0.2.0", ImportClass::Capability(Agents)),
        ("warden:agent/memory@0.2.0", ImportClass::Capability(Memory)),
        ("warden:agent/model@0.2.0", ImportClass::Capability(Model)),
        ("warden:agent/human@0.2.1", ImportClass::Capability(Human)),
        ("warden:agent/model@0.2.1", ImportClass::Capability(Model)),
        ("acme:evil/backdoor@1.0.0", ImportClass::Unknown),
        ("wasi:io/streams", ImportClass::Unknown),
        ("streams", ImportClass::Unknown),
        ("", ImportClass::Unknown),
    ];
    for (name, want) in cases {
        assert_eq!(classify(name), want, "{name}");
    }
}

#[test]
fn the_class_column_has_one_pair_of_brackets() {
    for (class, shown) in [
        (ImportClass::Baseline, "baseline"),
        (
            ImportClass::Capability(Capability::Net),
            "capability (net.allow)",
        ),
        (
            ImportClass::Capability(Capability::Fs),
            "capability (fs.read / fs.write)",
        ),
        (
            ImportClass::Capability(Capability::Sockets),
            "capability (raw sockets cannot be granted; use net.allow for HTTP)",
        ),
        (ImportClass::Unknown, "UNKNOWN to this host"),
    ] {
        let label = class.describe();
        assert_eq!(label, shown);
        assert!(!label.contains("((") && !label.contains("))"), "{label}");
    }
}

/// A component built against warden:agent 0.2.0 links on this host, which defines 0.2.1
/// (wasmtime resolves an import to a semver-compatible definition): the agents built before
/// `human` existed load unchanged.
#[test]
fn a_component_of_warden_agent_0_2_0_links_on_the_0_2_1_host() {
    let engine = Engine::default();
    let wat = r#"(component (import "warden:agent/tools@0.2.0" (instance
        (export "call" (func (param "name" string) (param "input" string)
            (result (result string (error string))))))))"#;
    let component = Component::new(&engine, wat).unwrap();
    let policy = Policy::parse(
        "t.toml",
        "[agent]\nname = \"t\"\nstrict = true\n[tools]\nallow = [\"echo\"]\n",
    )
    .unwrap();
    assert_eq!(check(&engine, &component, &policy), Ok(Vec::new()));
    let linker = crate::linker::build(&engine, &component, &policy, &[]).unwrap();
    linker.instantiate_pre(&component).unwrap();
}

/// `human` is a capability like the others: refused at load by a strict policy without
/// `[human] ask`, linked with it.
#[test]
fn asking_a_person_needs_the_grant() {
    use ImportVerdict::*;
    let wat = r#"(component (import "warden:agent/human@0.2.1" (instance
        (export "ask" (func (param "message" string) (param "requested-schema" string))))))"#;
    assert_eq!(
        verdicts(wat, "strict = true\n"),
        [Refused(ImportError::NotGranted {
            name: "warden:agent/human@0.2.1".into(),
            key: "human.ask",
        })]
    );
    assert_eq!(verdicts(wat, ""), [KillsOnFirstCall]);
    assert_eq!(verdicts(wat, "[human]\nask = true\n"), [Granted]);
}
