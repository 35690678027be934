//! The gitleaks default rules (`gitleaks/gitleaks.toml`, vendored unchanged with its licence and
//! version; see `gitleaks/README.md`), compiled once into [`Gitleaks`]: a maintained rule set for
//! API keys and tokens rather than our own guesses.
//!
//! Each rule is applied as gitleaks applies it: its `keywords` first (a case-insensitive
//! Aho-Corasick pass over the text picks the rules worth running), then its `regex`; the secret
//! is its `secretGroup` (or the first non-empty group, or the whole match); a secret whose
//! Shannon entropy is at most the rule's `entropy` is no finding; then the global and the rule's
//! allowlists (`regexes` against the secret, the match or the line, `stopwords` in the secret).
//! Regexes are compiled byte-wise with ASCII classes, which is how Go's RE2 reads `\w`, `\d`,
//! `\s` and `(?i)`. A rule scoped to a file `path` never fires here (a memory entry has no path).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

/// The vendored rule file.
const CONFIG: &str = include_str!("gitleaks/gitleaks.toml");

/// The gitleaks release the rules come from.
pub const VERSION: &str = "v8.30.1";

/// Bound on one compiled regex (gitleaks' biggest alternations need more than the default).
const REGEX_SIZE: usize = 64 << 20;

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawAllowlist {
    regex_target: Option<String>,
    regexes: Vec<String>,
    stopwords: Vec<String>,
    paths: Vec<String>,
    commits: Vec<String>,
    condition: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: String,
    regex: Option<String>,
    #[serde(default)]
    entropy: f64,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    #[serde(default)]
    secret_group: usize,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

/// What an allowlist regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Secret,
    Match,
    Line,
}

struct Allowlist {
    target: Target,
    regexes: Vec<Regex>,
    stopwords: Vec<String>,
    /// `condition = "AND"`: every check must hold.
    all: bool,
}

struct Rule {
    id: String,
    regex: Regex,
    entropy: f64,
    secret_group: usize,
    allowlists: Vec<Allowlist>,
}

/// A rule of the file that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The rule's id.
    pub id: String,
    /// Why: `path-scoped`, `no regex`, or the regex compiler's error.
    pub why: String,
}

/// The compiled gitleaks rules.
pub struct Gitleaks {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// For each keyword (by pattern id), the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: always run.
    unkeyed: Vec<usize>,
    global: Vec<Allowlist>,
    skipped: Vec<Skipped>,
}

impl std::fmt::Debug for Gitleaks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitleaks")
            .field("version", &VERSION)
            .field("rules", &self.rules.len())
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

/// `pattern` as Rust's regex reads RE2's: a `{` that does not open a repetition (`{n}`, `{n,}`,
/// `{n,m}`) is a literal to RE2 and an error to Rust, so it is escaped. Nothing else changes.
fn from_re2(pattern: &str) -> std::borrow::Cow<'_, str> {
    let bytes = pattern.as_bytes();
    let opens_repetition = |at: usize| {
        let rest = &pattern[at + 1..];
        let Some(end) = rest.find('}') else {
            return false;
        };
        let inner = &rest[..end];
        let (min, max) = inner.split_once(',').unwrap_or((inner, "0"));
        !min.is_empty()
            && min.bytes().all(|b| b.is_ascii_digit())
            && max.bytes().all(|b| b.is_ascii_digit())
    };
    let mut out = String::with_capacity(pattern.len() + 8);
    let (mut i, mut class, mut changed) = (0, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' {
            out.push_str(&pattern[i..(i + 2).min(bytes.len())]);
            i += 2;
            continue;
        }
        match c {
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'{' if !class && !opens_repetition(i) => {
                out.push('\\');
                changed = true;
            }
            _ => {}
        }
        out.push(c as char);
        i += 1;
    }
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(pattern)
    }
}

fn compile(pattern: &str) -> Result<Regex, String> {
    let pattern = from_re2(pattern);
    let build = |unicode: bool| {
        RegexBuilder::new(&pattern)
            .unicode(unicode)
            .size_limit(REGEX_SIZE)
            .dfa_size_limit(REGEX_SIZE)
            .build()
    };
    // ASCII classes first (RE2's meaning); a pattern with a non-ASCII literal needs Unicode.
    build(false)
        .or_else(|_| build(true))
        .map_err(|e| e.to_string())
}

impl Allowlist {
    fn compile(raw: RawAllowlist) -> Result<Option<Allowlist>, String> {
        let all = raw
            .condition
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("and"));
        // An AND allowlist that needs a path or a commit can never hold for a memory entry.
        if all && !(raw.paths.is_empty() && raw.commits.is_empty()) {
            return Ok(None);
        }
        let target = match raw.regex_target.as_deref() {
            None | Some("secret") => Target::Secret,
            Some("match") => Target::Match,
            Some("line") => Target::Line,
            Some(other) => return Err(format!("unknown regexTarget `{other}`")),
        };
        let regexes = raw
            .regexes
            .iter()
            .map(|r| compile(r))
            .collect::<Result<Vec<_>, _>>()?;
        let stopwords = raw.stopwords.iter().map(|s| s.to_lowercase()).collect();
        Ok(Some(Allowlist {
            target,
            regexes,
            stopwords,
            all,
        }))
    }

    fn allows(&self, secret: &[u8], matched: &[u8], line: &[u8]) -> bool {
        let against = match self.target {
            Target::Secret => secret,
            Target::Match => matched,
            Target::Line => line,
        };
        let by_regex = self.regexes.iter().any(|r| r.is_match(against));
        let lower = String::from_utf8_lossy(secret).to_lowercase();
        let by_stopword = self.stopwords.iter().any(|w| lower.contains(w.as_str()));
        if self.all {
            (self.regexes.is_empty() || by_regex) && (self.stopwords.is_empty() || by_stopword)
        } else {
            by_regex || by_stopword
        }
    }
}

/// Shannon entropy of `s`, per character (gitleaks' `shannonEntropy`).
pub fn entropy(s: &[u8]) -> f64 {
    let text = String::from_utf8_lossy(s);
    let mut counts = std::collections::HashMap::new();
    let mut n = 0f64;
    for c in text.chars() {
        *counts.entry(c).or_insert(0f64) += 1.0;
        n += 1.0;
    }
    counts
        .values()
        .map(|c| {
            let p = c / n;
            -p * p.log2()
        })
        .sum()
}

impl Gitleaks {
    /// The vendored rules, compiled.
    ///
    /// # Errors
    ///
    /// A sentence when the vendored file does not parse or an allowlist regex does not compile
    /// (a rule whose own regex does not compile is [skipped](Gitleaks::skipped) instead).
    pub fn vendored() -> Result<Gitleaks, String> {
        Gitleaks::from_toml(CONFIG)
    }

    fn from_toml(text: &str) -> Result<Gitleaks, String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| format!("the gitleaks rules do not parse: {e}"))?;
        let mut global = Vec::new();
        if let Some(a) = raw.allowlist {
            global.extend(Allowlist::compile(a).map_err(|e| format!("global allowlist: {e}"))?);
        }
        let (mut rules, mut skipped) = (Vec::new(), Vec::new());
        let mut keyword_index: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut unkeyed = Vec::new();
        for r in raw.rules {
            let skip = |why: &str| Skipped {
                id: r.id.clone(),
                why: why.to_owned(),
            };
            if r.path.is_some() {
                skipped.push(skip("path-scoped"));
                continue;
            }
            let Some(pattern) = &r.regex else {
                skipped.push(skip("no regex"));
                continue;
            };
            let regex = match compile(pattern) {
                Ok(regex) => regex,
                Err(e) => {
                    skipped.push(skip(&e));
                    continue;
                }
            };
            let mut allowlists = Vec::new();
            for a in r.allowlists {
                allowlists
                    .extend(Allowlist::compile(a).map_err(|e| format!("rule `{}`: {e}", r.id))?);
            }
            let index = rules.len();
            if r.keywords.is_empty() {
                unkeyed.push(index);
            }
            for k in &r.keywords {
                let k = k.to_lowercase();
                match keyword_index.iter().position(|known| *known == k) {
                    Some(i) => keyword_rules[i].push(index),
                    None => {
                        keyword_index.push(k);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
            rules.push(Rule {
                id: r.id,
                regex,
                entropy: r.entropy,
                secret_group: r.secret_group,
                allowlists,
            });
        }
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keyword_index)
            .map_err(|e| format!("the gitleaks keywords do not build: {e}"))?;
        Ok(Gitleaks {
            rules,
            keywords,
            keyword_rules,
            unkeyed,
            global,
            skipped,
        })
    }

    /// How many rules are in use.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The rules of the file not in use, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The id of the first rule (in file order) that finds a secret in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<&str> {
        let mut enabled = vec![false; self.rules.len()];
        for i in &self.unkeyed {
            enabled[*i] = true;
        }
        for m in self.keywords.find_overlapping_iter(hay) {
            for i in &self.keyword_rules[m.pattern().as_usize()] {
                enabled[*i] = true;
            }
        }
        self.rules
            .iter()
            .zip(enabled)
            .filter(|(_, on)| *on)
            .find(|(rule, _)| self.fires(rule, hay))
            .map(|(rule, _)| rule.id.as_str())
    }

    fn fires(&self, rule: &Rule, hay: &[u8]) -> bool {
        rule.regex.captures_iter(hay).any(|caps| {
            let Some(whole) = caps.get(0) else {
                return false;
            };
            let secret = if rule.secret_group > 0 {
                match caps.get(rule.secret_group) {
                    Some(g) => g.as_bytes(),
                    None => return false,
                }
            } else {
                caps.iter()
                    .skip(1)
                    .flatten()
                    .map(|g| g.as_bytes())
                    .find(|g| !g.is_empty())
                    .unwrap_or(whole.as_bytes())
            };
            if rule.entropy != 0.0 && entropy(secret) <= rule.entropy {
                return false;
            }
            let line_start = hay[..whole.start()]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            let line_end = hay[whole.end()..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(hay.len(), |i| whole.end() + i);
            let line = &hay[line_start..line_end];
            let allowed = self
                .global
                .iter()
                .chain(&rule.allowlists)
                .any(|a| a.allows(secret, whole.as_bytes(), line));
            !allowed
        })
    }
}

#[cfg(test)]
mod tests;
