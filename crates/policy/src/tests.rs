//! Whole-policy tests: a complete policy, the malformed-policy fixtures in
//! `tests/fixtures/policies/` (each with the error it must produce), loading
//! from disk, and a garbage-input sweep that must never panic.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

const FULL: &str = r#"
[agent]
name = "files"
strict = true

[limits]
memory = "128 MiB"
tables = 20000
cpu = "500 ms"
wall = "5 s"
output = "2 MiB"

[fs]
read = ["docs/**"]
write = ["data/out/**"]

[net]
allow = ["api.example.com:443", "[::1]:8080"]

[tools]
allow = ["echo"]

[clocks]
wall = true
monotonic = true

[random]
secure = true
"#;

#[test]
fn full_policy() {
    let policy = Policy::parse("full.toml", FULL).unwrap();
    assert_eq!(
        policy.agent,
        AgentSection {
            name: "files".into(),
            strict: true,
            publishers: Vec::new(),
        }
    );
    let limits = Limits {
        memory: 128 * 1024 * 1024,
        tables: 20_000,
        cpu: Duration::from_millis(500),
        wall: Duration::from_secs(5),
        output: 2 * 1024 * 1024,
    };
    assert_eq!(policy.limits, limits);
    assert!(policy.fs.allows_read("docs/a.md") && !policy.fs.allows_write("docs/a.md"));
    assert!(policy.fs.allows_write("data/out/r.csv"));
    assert!(policy.net.allows("api.example.com", 443) && !policy.net.allows("api.example.com", 80));
    assert!(policy.net.names_ip("::1".parse().unwrap(), 8080));
    assert!(policy.tools.allows("echo") && !policy.tools.allows("rm"));
    assert_eq!(
        policy.clocks,
        ClockGrant {
            wall: true,
            monotonic: true
        }
    );
    assert!(policy.random.secure);
    assert_eq!(policy.source, "full.toml");
}

/// The smallest valid policy grants exactly what `deny_all` grants.
#[test]
fn minimal_policy_is_deny_all() {
    let policy = Policy::parse("min.toml", "[agent]\nname = \"files\"\n").unwrap();
    let deny_all = Policy {
        source: "min.toml".into(),
        ..Policy::deny_all("files")
    };
    assert_eq!(policy, deny_all);
    let empty_sections =
        "[agent]\nname = \"files\"\n[limits]\n[fs]\n[net]\n[tools]\n[clocks]\n[random]\n";
    assert_eq!(Policy::parse("min.toml", empty_sections).unwrap(), deny_all);

    let none = Policy::deny_all("x");
    assert!(none.fs.is_empty() && none.net.is_empty() && none.tools.is_empty());
    assert!(
        !none.clocks.wall && !none.clocks.monotonic && !none.random.secure && !none.agent.strict
    );
    assert!(none.fs.mounts().is_empty() && !none.fs.allows_traverse(""));
}

/// (agent name accepted, its refused twin)
#[test]
fn agent_names() {
    let long = "a".repeat(64);
    let too_long = "a".repeat(65);
    let cases = [
        ("files", "Files"),
        ("web-agent-2", "web.agent"),
        ("read_file", "read/file"),
        ("a", ""),
        (long.as_str(), too_long.as_str()),
        ("x", "x.y"),
    ];
    for (good, bad) in cases {
        let policy = |name: &str| Policy::parse("t.toml", &format!("[agent]\nname = \"{name}\"\n"));
        assert!(policy(good).is_ok(), "{good}");
        let error = policy(bad).expect_err(bad);
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::InvalidName, 2, 8),
            "{bad}"
        );
    }
}

struct Fixture {
    file: &'static str,
    text: &'static str,
    kind: PolicyErrorKind,
    line: usize,
    column: usize,
    message: &'static str,
}

macro_rules! fixture {
    ($file:literal, $kind:ident, $line:literal:$column:literal, $message:literal) => {
        Fixture {
            file: $file,
            text: include_str!(concat!("../../../tests/fixtures/policies/", $file)),
            kind: PolicyErrorKind::$kind,
            line: $line,
            column: $column,
            message: $message,
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    vec![
        fixture!("unknown-key.toml", UnknownKey, 7:1, "unknown key `exec`"),
        fixture!("unknown-section.toml", UnknownKey, 5:2, "unknown key `env`"),
        fixture!("wrong-type.toml", WrongType, 6:8, "wrong type: found string \"yes\""),
        fixture!("not-toml.toml", Syntax, 3:8, "not valid TOML"),
        fixture!("duplicate-key.toml", Duplicate, 4:1, "key `name` is set twice"),
        fixture!("missing-agent.toml", MissingKey, 1:1, "the [agent] section is missing"),
        fixture!("missing-agent-name.toml", MissingKey, 2:1, "[agent] has no `name`"),
        fixture!("bad-agent-name.toml", InvalidName, 3:8, "agent.name \"My Agent\" is invalid"),
        fixture!("bad-size.toml", InvalidSize, 6:10, "the unit `MB` is ambiguous: write `MiB`"),
        fixture!("bad-duration.toml", InvalidDuration, 6:8, "unknown unit `hours`"),
        fixture!("out-of-range.toml", OutOfRange, 6:10, "limits.memory = \"8 GiB\" is outside the allowed range"),
        fixture!("cpu-over-wall.toml", Contradiction, 7:7, "limits.cpu (30 s) exceeds limits.wall (10 s)"),
        fixture!("bad-glob.toml", InvalidPath, 6:9, "invalid glob: unclosed character class"),
        fixture!("absolute-path.toml", InvalidPath, 6:9, "absolute paths are not allowed"),
        fixture!("dotdot-path.toml", InvalidPath, 6:10, "`..` components are not allowed"),
        fixture!("read-and-write.toml", Contradiction, 7:10, "write implies read: list it once, under write"),
        fixture!("duplicate-entry.toml", Duplicate, 6:31, "tools.allow lists \"echo\" more than once"),
        fixture!("bad-host.toml", InvalidHost, 6:10, "URLs are not allowed"),
        fixture!("missing-port.toml", InvalidHost, 6:33, "the port is missing"),
        fixture!("unbracketed-ipv6.toml", InvalidHost, 6:10, "IPv6 addresses must be in brackets"),
        fixture!("broad-wildcard.toml", InvalidHost, 6:10, "a wildcard must cover at least two labels"),
    ]
}

#[test]
fn every_fixture_produces_its_error() {
    for fixture in fixtures() {
        let error = Policy::parse(fixture.file, fixture.text).expect_err(fixture.file);
        let got = (error.kind, error.line, error.column);
        assert_eq!(
            got,
            (fixture.kind, fixture.line, fixture.column),
            "{}: {error}",
            fixture.file
        );
        assert!(
            error.message.contains(fixture.message),
            "{}: {error}",
            fixture.file
        );
        assert!(
            error.expected.is_some(),
            "{}: no expected note: {error}",
            fixture.file
        );
        let prefix = format!("{}:{}:{}: ", fixture.file, fixture.line, fixture.column);
        assert!(
            error.to_string().starts_with(&prefix),
            "{}: {error}",
            fixture.file
        );
        let rendered = error.render(false);
        let offending_line = fixture
            .text
            .lines()
            .nth(fixture.line - 1)
            .unwrap_or_default();
        assert!(
            rendered.contains(offending_line) && rendered.contains('^'),
            "{rendered}"
        );
        assert!(rendered.contains("expected "), "{rendered}");
    }
}

#[test]
fn fixture_readme_lists_every_fixture() {
    let readme = include_str!("../../../tests/fixtures/policies/README.md");
    for fixture in fixtures() {
        assert!(
            readme.contains(&format!("`{}`", fixture.file)),
            "README does not list {}",
            fixture.file
        );
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("warden-policy-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn load_reads_the_file_and_labels_errors_with_its_path() {
    let good = temp_file("good.toml", FULL.as_bytes());
    let policy = Policy::load(&good).unwrap();
    assert_eq!(policy.source, good.display().to_string());

    let bad = temp_file("bad.toml", b"[agent]\nname = 5\n");
    let error = Policy::load(&bad).unwrap_err();
    assert_eq!(
        (error.file.as_str(), error.line),
        (bad.display().to_string().as_str(), 2)
    );

    let binary = temp_file("binary.toml", b"[agent]\nname = \"\xff\"\n");
    let huge = temp_file("huge.toml", &vec![b'#'; 1024 * 1024 + 1]);
    let missing = std::env::temp_dir().join("warden-policy-does-not-exist.toml");
    for (path, fragment) in [
        (&binary, "not valid UTF-8"),
        (&huge, "larger than 1 MiB"),
        (&missing, "cannot open"),
    ] {
        let error = Policy::load(path).unwrap_err();
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Io, 0, 0),
            "{error}"
        );
        assert!(error.message.contains(fragment), "{error}");
        assert!(error.render(false).contains(fragment));
    }
    for path in [good, bad, binary, huge] {
        let _ = std::fs::remove_file(path);
    }
}

/// Truncations and single-character corruptions of a valid policy, plus
/// random byte soup, must give a policy or a well-located error, never a panic.
#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<String> = Vec::new();
    for (index, _) in FULL.char_indices() {
        inputs.push(FULL[..index].to_owned());
        for junk in [
            "\"", "[", "]", "=", "\n", "*", "/", ".", ":", "0", "é", "\\", "{", " ", "#", "\0",
            "-", "",
        ] {
            let mut mutated = FULL.to_owned();
            let end = FULL[index..]
                .chars()
                .next()
                .map_or(index, |c| index + c.len_utf8());
            mutated.replace_range(index..end, junk);
            inputs.push(mutated);
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet = b"[]{}=\"'.,:*/\\#\n -_0123456789abcdefgmsKMGiB\t\xc3\xa9";
    for _ in 0..2000 {
        let mut bytes = Vec::new();
        for _ in 0..(state % 80) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for input in &inputs {
        if let Err(error) = Policy::parse("fuzz.toml", input) {
            let lines = input.split('\n').count();
            assert!(error.line >= 1 && error.line <= lines, "{input:?}: {error}");
            assert!(error.column >= 1, "{input:?}: {error}");
            assert!(
                error.expected.as_deref().is_none_or(|e| !e.is_empty()),
                "{input:?}: {error}"
            );
            assert!(!error.render(false).is_empty());
        }
    }
}

#[test]
fn publishers_are_parsed_strictly() {
    let key = "ed25519:ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    let ok = format!("[agent]\nname = \"a\"\npublishers = [\"{key}\"]\n");
    let policy = Policy::parse("p.toml", &ok).unwrap();
    assert_eq!(policy.agent.publishers[0].to_string(), key);
    for bad in ["ed25519:00", "rsa:abcd", key.trim_start_matches("ed25519:")] {
        let text = format!("[agent]\nname = \"a\"\npublishers = [\"{bad}\"]\n");
        let e = Policy::parse("p.toml", &text).unwrap_err();
        assert_eq!((e.line, e.column), (3, 15), "{e}");
    }
    let twice = format!("[agent]\nname = \"a\"\npublishers = [\"{key}\", \"{key}\"]\n");
    assert_eq!(
        Policy::parse("p.toml", &twice).unwrap_err().kind,
        PolicyErrorKind::Duplicate
    );
}
