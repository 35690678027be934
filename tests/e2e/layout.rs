//! The workspace's shape is the architecture: each concern is a crate, and dependencies point
//! one way (policy ← identity ← sandbox, ledger ← warden). This test reads `cargo metadata` and
//! fails when a crate depends on one meant to sit above it, or when a source file outside the
//! tests grows past the size where nobody can find their way in it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use warden_tests::root;

/// Each crate of ours and the crates of ours it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("warden-policy", &[]),
    ("warden-identity", &["warden-policy"]),
    ("warden-sandbox", &["warden-policy", "warden-identity"]),
    ("warden-ledger", &["warden-policy", "warden-identity"]),
    (
        "warden-orchestra",
        &[
            "warden-policy",
            "warden-identity",
            "warden-sandbox",
            "warden-ledger",
        ],
    ),
    (
        "warden",
        &[
            "warden-policy",
            "warden-identity",
            "warden-sandbox",
            "warden-ledger",
            "warden-orchestra",
        ],
    ),
];

/// Longest source file (lines) outside tests; the style guide aims at ~400.
const MAX_LINES: usize = 500;

#[test]
fn crate_dependencies_point_one_way() {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut seen = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(allowed) = ours.get(name) else {
            continue;
        };
        seen.push(name);
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let normal = dep["kind"].is_null();
            if normal && dep_name.starts_with("warden") {
                assert!(
                    allowed.contains(&dep_name),
                    "{name} depends on {dep_name}, which sits above it or beside it (allowed: {allowed:?})"
                );
            }
        }
    }
    assert_eq!(
        seen.len(),
        ALLOWED.len(),
        "crates missing from the workspace: {seen:?}"
    );
}

#[test]
fn no_source_file_outside_tests_is_too_long() {
    fn walk(dir: &Path, long: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, long);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                if lines > MAX_LINES {
                    long.push(format!("{} ({lines} lines)", path.display()));
                }
            }
        }
    }
    let mut long = Vec::new();
    walk(&root().join("crates"), &mut long);
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines: {long:?}"
    );
}
