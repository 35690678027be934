use super::*;
use sha2::Digest;

#[test]
fn the_vendored_file_is_the_one_the_readme_names() {
    let digest = sha2::Sha256::digest(CONFIG.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "e163e53b9e7e8a8511e77271e2b323ed057759542a6d988258afe3a1fa329caf"
    );
}

#[test]
fn every_rule_compiles() {
    let g = Gitleaks::vendored().unwrap();
    let path_scoped = g
        .skipped()
        .iter()
        .filter(|s| s.why == "path-scoped")
        .count();
    let unusable: Vec<_> = g
        .skipped()
        .iter()
        .filter(|s| s.why != "path-scoped")
        .collect();
    // 222 rules in v8.30.1: 5 are scoped to a file path (one of them has no regex at all),
    // and every other regex compiles with Rust's regex crate.
    assert_eq!(g.rules() + g.skipped().len(), 222);
    assert_eq!(path_scoped, 5, "{:?}", g.skipped());
    assert!(
        unusable.is_empty(),
        "rules Rust's regex cannot take: {unusable:?}"
    );
}

#[test]
fn a_brace_that_opens_no_repetition_is_a_literal() {
    assert_eq!(from_re2(r"^\$(?:\d+|{\d+})$"), r"^\$(?:\d+|\{\d+})$");
    assert_eq!(from_re2(r"a{2,3}b{4}c{5,}"), r"a{2,3}b{4}c{5,}");
    assert_eq!(from_re2(r"x{,3}[{]\{"), r"x\{,3}[{]\{");
    assert!(compile(r"^\$\{\{[ \t]*[\w ().|]+[ \t]*}}$").is_ok());
}

#[test]
fn entropy_is_gitleaks_entropy() {
    assert_eq!(entropy(b"aaaa"), 0.0);
    assert!((entropy(b"ab") - 1.0).abs() < 1e-9);
    assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
}

#[test]
fn keywords_select_rules_and_allowlists_hold() {
    let g = Gitleaks::from_toml(
        r#"
[allowlist]
stopwords = ["example"]
[[rules]]
id = "tok"
regex = '''tok_([a-z0-9]{8})'''
keywords = ["TOK_"]
[[rules.allowlists]]
regexTarget = "line"
regexes = ['''^#''']
"#,
    )
    .unwrap();
    assert_eq!(g.find(b"x tok_a1b2c3d4 y"), Some("tok"));
    // The keyword prefilter is case-insensitive; the regex is not.
    assert_eq!(g.find(b"x TOK_a1b2c3d4 y"), None);
    assert_eq!(g.find(b"# tok_a1b2c3d4"), None, "line allowlist");
    assert_eq!(g.find(b"tok_examplez"), None, "global stopword");
}
