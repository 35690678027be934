//! `warden memory` end to end, through the binary: a curator writes with `warden run`, then the
//! operator lists, shows (escaped), reads the history, reverts, pins (a reviewer's key only;
//! anyone else is refused and audited) and forgets; each change is a new version and an audit
//! record, and the audit log still verifies.

use std::path::Path;

use serde_json::{Value, json};
use warden_tests::{agent, probe, root, warden_with_data};

fn warden(data: &Path, args: &[&str]) -> (i32, String, String) {
    warden_with_data(data, args)
}

fn ok(data: &Path, args: &[&str]) -> String {
    let (code, out, err) = warden(data, args);
    assert_eq!(code, 0, "warden {args:?}: {out}{err}");
    out
}

#[test]
fn the_operator_lists_shows_reverts_pins_and_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let curator = dir.path().join("curator.toml");
    // The shipped curator policy, with the probe in the curator's place (the probe imports more
    // than a curator needs, so not strict).
    let shipped = std::fs::read_to_string(root().join("policies/curator.toml")).unwrap();
    let as_probe = shipped
        .replace("name = \"curator\"", "name = \"probe\"")
        .replace("strict = true", "strict = false");
    assert!(as_probe.contains("write = [\"lessons\"]"), "{as_probe}");
    std::fs::write(&curator, as_probe).unwrap();
    let probe_wasm = agent("probe");
    let run = |task: &str| {
        ok(
            &data,
            &[
                "run",
                probe_wasm.to_str().unwrap(),
                "--policy",
                curator.to_str().unwrap(),
                "--input",
                task,
            ],
        )
    };
    let put = |text: &str| {
        probe(
            "mem-put",
            &[
                ("namespace", json!("lessons")),
                ("key", json!("k")),
                ("text", json!(text)),
            ],
        )
    };
    assert!(run(&put("first")).contains("version 1"));
    // Text is the agent's: it may hold bytes that drive a terminal.
    assert!(run(&put("second \u{1b}[2J\u{1b}]0;pwned\u{7}")).contains("version 2"));

    let list = ok(&data, &["memory", "list"]);
    assert!(list.starts_with("lessons/k  v2"), "{list}");
    let history = ok(&data, &["memory", "history", "lessons", "k"]);
    assert_eq!(history.lines().count(), 2, "{history}");
    assert!(
        history.lines().all(|l| l.contains("by probe (task ")),
        "{history}"
    );
    let shown = ok(&data, &["memory", "show", "lessons", "k"]);
    assert!(
        shown.contains("second") && !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );

    let reverted = ok(&data, &["memory", "revert", "lessons", "k", "--to", "1"]);
    assert!(
        reverted.contains("version 3 is version 1 again"),
        "{reverted}"
    );
    assert!(
        ok(&data, &["memory", "show", "lessons", "k"])
            .trim_end()
            .ends_with("first")
    );
    let (code, _, err) = warden(&data, &["memory", "revert", "lessons", "k", "--to", "9"]);
    assert!(code == 2 && err.contains("has no version 9"), "{err}");

    // Pinning needs a reviewer.
    let public = |name: &str| {
        ok(&data, &["keygen", dir.path().join(name).to_str().unwrap()])
            .trim()
            .to_owned()
    };
    let (rita, otto) = (public("rita"), public("otto"));
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        format!(
            "[role.reviewer]\nagents = [\"*\"]\nreview = true\n[role.reader]\nagents = [\"*\"]\nfs.read = [\"**\"]\n\
             [person.rita]\nkey = \"{rita}\"\nroles = [\"reviewer\"]\n\
             [person.otto]\nkey = \"{otto}\"\nroles = [\"reader\"]\n"
        ),
    )
    .unwrap();
    let pin = |who: &str| {
        let key = dir.path().join(format!("{who}.key"));
        warden(
            &data,
            &[
                "memory",
                "pin",
                "lessons",
                "k",
                "--key",
                key.to_str().unwrap(),
                "--roles-file",
                roles.to_str().unwrap(),
            ],
        )
    };
    let (code, _, err) = pin("otto");
    assert!(
        code == 2 && err.contains("only a reviewer may pin"),
        "{err}"
    );
    let (code, out, err) = pin("rita");
    assert!(
        code == 0 && out.contains("version 4 pinned by rita"),
        "{out}{err}"
    );
    let v: Value =
        serde_json::from_str(&ok(&data, &["memory", "show", "lessons", "k", "--json"])).unwrap();
    assert_eq!(
        (v["pinned"].as_bool(), v["expires_ms"].is_null()),
        (Some(true), true)
    );

    let forgotten = ok(&data, &["memory", "forget", "lessons", "k"]);
    assert!(forgotten.contains("forgotten (version 5)"), "{forgotten}");
    let reader = dir.path().join("reader.toml");
    std::fs::write(
        &reader,
        "[agent]\nname = \"probe\"\n[memory]\nread = [\"lessons\"]\n",
    )
    .unwrap();
    let get = probe(
        "mem-get",
        &[("namespace", json!("lessons")), ("key", json!("k"))],
    );
    let out = ok(
        &data,
        &[
            "run",
            probe_wasm.to_str().unwrap(),
            "--policy",
            reader.to_str().unwrap(),
            "--input",
            &get,
        ],
    );
    assert!(out.contains("none"), "{out}");

    let (code, _, err) = warden(&data, &["memory", "show", "Bad/Ns", "k"]);
    assert!(code == 2 && err.contains("namespace"), "{err}");

    let log = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let kinds: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .filter(|k| k.starts_with("memory-"))
        .collect();
    assert_eq!(
        kinds,
        [
            "memory-write",
            "memory-write",
            "memory-reverted",
            "memory-pin-refused",
            "memory-pinned",
            "memory-forgotten"
        ]
    );
    ok(&data, &["audit", "verify"]);
}
