use std::io::Write as _;

use super::*;
use crate::model::testing::tls;

const KEY: &str = "sk-file-key-0123456789";

fn config(entries: &str) -> HostConfig {
    HostConfig::parse("w.toml", entries).unwrap()
}

fn entry(name: &str, key: &str) -> String {
    format!(
        "[[model]]\nname = \"{name}\"\nurl = \"https://api.example.com/v1\"\nid = \"m-1\"\n{key}\n"
    )
}

#[test]
fn no_model_is_an_empty_registry() {
    let models = Models::from_config(&config(""), tls()).unwrap();
    assert!(models.is_empty());
    assert!(models.names().is_empty());
}

#[test]
fn keys_are_read_once_and_never_shown() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{KEY}").unwrap();
    let path = file.path().display().to_string();
    let text = format!(
        "{}{}",
        entry("large", &format!("key_file = \"{path}\"")),
        entry("small", "")
    );
    let models = Models::from_config(&config(&text), tls()).unwrap();
    assert_eq!(models.names(), ["large", "small"]);
    assert!(!models.is_empty());
    let shown = format!("{models:?}");
    assert!(
        !shown.contains("0123456789") && shown.contains(REDACTED_MARK),
        "{shown}"
    );
    let session = models.session(SessionScope {
        agent: "a".into(),
        rules: String::new(),
        memory: String::new(),
        tools: Vec::new(),
        tokens: 1,
        micro_usd: 1,
        observer: None,
        client: None,
    });
    assert!(!format!("{session:?}").contains("0123456789"));
    // The file is not read again: the key stays what it was at start-up.
    std::fs::write(file.path(), "").unwrap();
    assert!(format!("{models:?}").contains("large"));
}

const REDACTED_MARK: &str = crate::model::REDACTED;

#[test]
fn a_key_from_the_environment() {
    // Cargo sets CARGO_PKG_NAME for every test run: a variable that surely holds a value.
    let models = Models::from_config(&config(&entry("m", "key_env = \"CARGO_PKG_NAME\"")), tls());
    assert!(models.is_ok(), "{models:?}");
}

#[test]
fn keys_the_host_will_not_start_with() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("key_file = \"{}\"", path.display())
    };
    let cases = [
        (
            "key_env = \"WARDEN_TEST_NO_SUCH_VARIABLE\"".to_owned(),
            "environment variable WARDEN_TEST_NO_SUCH_VARIABLE (key_env) is not set",
        ),
        (file("empty", "\n"), "is empty"),
        (file("short", "sk-1234"), "shorter than 8 bytes"),
        (file("spaced", "sk-12345 6789"), "not printable ASCII"),
        (
            format!("key_file = \"{}\"", dir.path().join("missing").display()),
            "cannot read its key_file",
        ),
    ];
    for (key, says) in cases {
        let e = Models::from_config(&config(&entry("large", &key)), tls()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("model `large`") && text.contains(says),
            "{text}"
        );
        assert!(
            !text.contains("sk-12345") && !text.contains("sk-1234 "),
            "{text}"
        );
    }
}
