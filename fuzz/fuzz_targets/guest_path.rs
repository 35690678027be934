//! The guest path rule against a small reference model: both must agree on every input, and an
//! accepted path is always normalized and inside the folder it was named through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_policy::path::resolve;

/// The model: a depth counter over the same components, written independently.
fn model(base: &str, floor: &str, path: &str) -> Option<Vec<String>> {
    if path.starts_with('/') || path.starts_with('\\') || path.contains('\0') {
        return None;
    }
    let floor: Vec<String> = floor
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let mut out: Vec<String> = base
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let dots = |v: &[String]| v.iter().any(|c| c == "." || c == "..");
    if dots(&floor) || dots(&out) || out.len() < floor.len() || out[..floor.len()] != floor[..] {
        return None;
    }
    for c in path.split('/') {
        if c == ".." {
            if out.len() == floor.len() {
                return None;
            }
            out.pop();
        } else if !c.is_empty() && c != "." {
            out.push(c.to_string());
        }
    }
    Some(out)
}

fuzz_target!(|input: (String, String, String)| {
    let (base, floor, path) = input;
    let got = resolve(&base, &floor, &path);
    let want = model(&base, &floor, &path);
    match (&got, &want) {
        (Ok(rel), Some(parts)) => {
            assert_eq!(rel, &parts.join("/"));
            assert!(!rel.starts_with('/'));
            assert!(rel.split('/').all(|c| c != ".." && c != "."));
        }
        (Err(_), None) => {}
        _ => panic!(
            "rule and model disagree on ({base:?}, {floor:?}, {path:?}): {got:?} vs {want:?}"
        ),
    }
});
