//! Tests of `host_config`.

use super::*;

const A: &str = "ed25519:ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

#[test]
fn parses_a_full_config_and_defaults_to_nothing() {
    let text = format!(
        "[keys]\npublishers = [\"{A}\"]\n[agents]\nrequire_signed = true\n[policies]\nrequire_signed = true\n[host]\ncache_dir = \"/tmp/c\"\n"
    );
    let c = HostConfig::parse("w.toml", &text).unwrap();
    assert_eq!(c.publishers.len(), 1);
    assert!(c.require_signed_agents && c.require_signed_policies);
    assert_eq!(c.cache_dir.as_deref(), Some(Path::new("/tmp/c")));
    let empty = HostConfig::parse("w.toml", "").unwrap();
    assert!(!empty.require_signed_agents && empty.publishers.is_empty());
    assert_eq!(
        empty,
        HostConfig {
            source: "w.toml".into(),
            ..HostConfig::default()
        }
    );
    let tools = "[host]\ndata_dir = \"/var/lib/w\"\ncheckpoint_every = 8\n[[tools]]\nname = \"deploy\"\nirreversible = true\ncommand = [\"/bin/deploy\", \"--prod\"]\napproval_ttl = \"30 min\"\n[[tools]]\nname = \"notify\"\ncommand = [\"/bin/notify\"]\n";
    let c = HostConfig::parse("w.toml", tools).unwrap();
    assert_eq!(c.data_dir.as_deref(), Some(Path::new("/var/lib/w")));
    assert_eq!(c.checkpoint_every, 8);
    let deploy = c.tool("deploy").unwrap();
    assert!(deploy.irreversible && deploy.command == ["/bin/deploy", "--prod"]);
    assert_eq!(deploy.approval_ttl, std::time::Duration::from_secs(1800));
    assert!(!c.tool("notify").unwrap().irreversible);
    assert!(
        deploy.writable.is_empty(),
        "a tool writes nothing unless named"
    );
    let w =
        "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nwritable = [\"/srv/out\", \"/tmp/a b\"]\n";
    let w = HostConfig::parse("w.toml", w).unwrap();
    assert_eq!(
        w.tool("d").unwrap().writable,
        [Path::new("/srv/out"), Path::new("/tmp/a b")]
    );
    assert!(c.tool("rm").is_none());
    let capped = HostConfig::parse("w.toml", "[limits]\nmemory = \"16 MiB\"\n").unwrap();
    let l = capped.limits.unwrap();
    assert_eq!(l.memory, 16 * 1024 * 1024);
    let e = HostConfig::parse("w.toml", "[limits]\nmemory = \"lots\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.kind),
        (2, 10, PolicyErrorKind::InvalidSize),
        "{e}"
    );
}

#[test]
fn mistakes_are_located() {
    let cases = [
        (
            "[keys]\npublisher = []\n",
            2,
            1,
            PolicyErrorKind::UnknownKey,
        ),
        (
            "[keys]\nrevoked = [\"ed25519:00\"]\n",
            2,
            12,
            PolicyErrorKind::InvalidName,
        ),
        (
            "[agents]\nrequire_signed = \"yes\"\n",
            2,
            18,
            PolicyErrorKind::WrongType,
        ),
        (
            "[host]\ncheckpoint_every = 0\n",
            2,
            20,
            PolicyErrorKind::OutOfRange,
        ),
        (
            "[[tools]]\nname = \"Deploy\"\ncommand = [\"/bin/x\"]\n",
            2,
            8,
            PolicyErrorKind::InvalidName,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = []\n",
            3,
            11,
            PolicyErrorKind::MissingKey,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\napproval_ttl = \"soon\"\n",
            4,
            16,
            PolicyErrorKind::InvalidDuration,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\n[[tools]]\nname = \"d\"\ncommand = [\"/y\"]\n",
            5,
            8,
            PolicyErrorKind::Duplicate,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nwritable = [\"out\"]\n",
            4,
            12,
            PolicyErrorKind::InvalidPath,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nwritable = [\"/srv/../etc\"]\n",
            4,
            12,
            PolicyErrorKind::InvalidPath,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nwritable = [\"/\"]\n",
            4,
            12,
            PolicyErrorKind::InvalidPath,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nwritable = [\"/a\", \"/a\"]\n",
            4,
            12,
            PolicyErrorKind::Duplicate,
        ),
        (
            "[[tools]]\nname = \"d\"\ncommand = [\"/x\"]\nreversible = false\n",
            4,
            1,
            PolicyErrorKind::UnknownKey,
        ),
    ];
    for (text, line, column, kind) in cases {
        let e = HostConfig::parse("w.toml", text).unwrap_err();
        assert_eq!(
            (e.line, e.column, e.kind),
            (line, column, kind),
            "{text}: {e}"
        );
    }
    let both = format!("[keys]\npublishers = [\"{A}\"]\nrevoked = [\"{A}\"]\n");
    let e = HostConfig::parse("w.toml", &both).unwrap_err();
    assert_eq!((e.line, e.kind), (2, PolicyErrorKind::Contradiction), "{e}");
}
