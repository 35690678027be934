//! `[model]`: which of the host's models an agent may call, and what one task may spend on them
//! ([`ModelGrant`]).
//!
//! ```toml
//! [model]
//! allow = ["small"]       # names of the host's [[model]] entries
//! tokens = 20000          # per-task budget: prompt + completion tokens (default 20 000)
//! usd = 0.05              # per-task budget in US dollars (default 0.10)
//! rules = "Answer in English. Never invent file names."   # the policy's part of the constitution
//! ```
//!
//! Deny by default: with no `[model]` section no model may be called. A user's roles bound it like
//! every other grant: a model must be allowed by both, and each budget is the smaller of the two.

use serde::Deserialize;
use toml::Spanned;

use super::EntryError;
use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::raw::{Integer, Section, SpannedList, Table};

/// Default per-task token budget.
pub const DEFAULT_TOKENS: u64 = 20_000;
/// Default per-task money budget, in millionths of a US dollar (0.10 USD).
pub const DEFAULT_MICRO_USD: u64 = 100_000;
/// Largest token budget a policy may set.
const MAX_TOKENS: i128 = 1_000_000_000;
/// Largest money budget a policy may set (1,000 USD).
const MAX_USD: f64 = 1_000.0;
/// Longest `rules` text.
const MAX_RULES: usize = 16 * 1024;

/// `[model]`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub(crate) allow: Option<SpannedList>,
    pub(crate) tokens: Option<Spanned<Integer>>,
    pub(crate) usd: Option<Spanned<f64>>,
    pub(crate) rules: Option<Spanned<String>>,
}

impl Section for RawModel {
    const EXPECTING: &'static str = "the [model] table (keys `allow`, `tokens`, `usd`, `rules`)";
}

/// The model grant: model names the agent may call and the budget of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelGrant {
    /// Model names (as the host configuration's `[[model]]` entries name them), in file order.
    pub allow: Vec<String>,
    /// Most prompt + completion tokens one task may use.
    pub tokens: u64,
    /// Most money one task may spend, in millionths of a US dollar.
    pub micro_usd: u64,
    /// The policy's rules, appended to the host's constitution in every prompt.
    pub rules: String,
}

impl Default for ModelGrant {
    fn default() -> Self {
        ModelGrant {
            allow: Vec::new(),
            tokens: DEFAULT_TOKENS,
            micro_usd: DEFAULT_MICRO_USD,
            rules: String::new(),
        }
    }
}

impl ModelGrant {
    /// True if the model `name` may be called (exact match).
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|m| m == name)
    }

    /// True if no model may be called.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// Validates `[model]`.
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawModel>>,
    ) -> Result<ModelGrant, PolicyError> {
        let Some(Table(raw)) = raw else {
            return Ok(ModelGrant::default());
        };
        let entries = raw.allow.unwrap_or_default();
        let allow = super::parse_list(source, "model.allow", &entries, |name| {
            check_model_name(name)
                .map(|()| name.to_owned())
                .map_err(|reason| EntryError {
                    kind: PolicyErrorKind::InvalidName,
                    reason: reason.to_owned(),
                    expected: MODEL_NAME_RULE,
                })
        })?;
        let tokens = match raw.tokens {
            None => DEFAULT_TOKENS,
            Some(t) => {
                let span = t.span();
                let Integer(n) = t.into_inner();
                if !(1..=MAX_TOKENS).contains(&n) {
                    return Err(source.error(
                        span,
                        PolicyErrorKind::OutOfRange,
                        format!("model.tokens = {n} is out of range"),
                        Some(format!("a whole number from 1 to {MAX_TOKENS}")),
                    ));
                }
                n as u64
            }
        };
        let micro_usd = match raw.usd {
            None => DEFAULT_MICRO_USD,
            Some(u) => {
                let span = u.span();
                let usd = u.into_inner();
                micro_usd(usd).ok_or_else(|| {
                    source.error(
                        span,
                        PolicyErrorKind::OutOfRange,
                        format!("model.usd = {usd} is out of range"),
                        Some(format!(
                            "an amount in US dollars from 0 to {MAX_USD}, such as 0.05"
                        )),
                    )
                })?
            }
        };
        let rules = match raw.rules {
            None => String::new(),
            Some(r) => {
                let span = r.span();
                let text = r.into_inner();
                if text.len() > MAX_RULES {
                    return Err(source.error(
                        span,
                        PolicyErrorKind::OutOfRange,
                        format!("model.rules is {} bytes long", text.len()),
                        Some(format!("at most {MAX_RULES} bytes of text")),
                    ));
                }
                text
            }
        };
        Ok(ModelGrant {
            allow,
            tokens,
            micro_usd,
            rules,
        })
    }
}

/// US dollars as millionths, if the amount is in range.
pub(crate) fn micro_usd(usd: f64) -> Option<u64> {
    (usd.is_finite() && (0.0..=MAX_USD).contains(&usd)).then(|| (usd * 1e6).round() as u64)
}

/// The rule for a model name, as errors state it.
pub(crate) const MODEL_NAME_RULE: &str =
    "a model name of 1 to 64 characters from a-z, 0-9, '_', '.', '-'";

/// Checks a model name (the same alphabet as tool names).
pub(crate) fn check_model_name(name: &str) -> Result<(), &'static str> {
    super::check_name(name, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
    })
}

#[cfg(test)]
mod tests {
    use crate::{Policy, PolicyErrorKind};

    fn parse(model: &str) -> Result<Policy, crate::PolicyError> {
        Policy::parse(
            "p.toml",
            &format!("[agent]\nname = \"a\"\n[model]\n{model}"),
        )
    }

    #[test]
    fn deny_by_default_and_defaults() {
        let p = Policy::parse("p.toml", "[agent]\nname = \"a\"\n").unwrap();
        assert!(p.model.is_empty() && !p.model.allows("small"));
        let p = parse("allow = [\"small\", \"large\"]\n").unwrap();
        assert!(p.model.allows("small") && p.model.allows("large") && !p.model.allows("huge"));
        assert_eq!(p.model.tokens, super::DEFAULT_TOKENS);
        assert_eq!(p.model.micro_usd, super::DEFAULT_MICRO_USD);
        let p = parse("allow = [\"small\"]\ntokens = 500\nusd = 0.0125\nrules = \"Be brief.\"\n")
            .unwrap();
        assert_eq!((p.model.tokens, p.model.micro_usd), (500, 12_500));
        assert_eq!(p.model.rules, "Be brief.");
        let p = parse("allow = [\"small\"]\nusd = 2\n").unwrap();
        assert_eq!(p.model.micro_usd, 2_000_000);
        let e = parse("usd = \"2\"\n").unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::WrongType, "{e}");
    }

    #[test]
    fn mistakes_are_located() {
        for (text, line, kind) in [
            ("allow = [\"Small\"]\n", 4, PolicyErrorKind::InvalidName),
            ("allow = [\"a\", \"a\"]\n", 4, PolicyErrorKind::Duplicate),
            ("tokens = 0\n", 4, PolicyErrorKind::OutOfRange),
            ("tokens = -5\n", 4, PolicyErrorKind::OutOfRange),
            ("\nusd = -0.5\n", 5, PolicyErrorKind::OutOfRange),
            ("usd = 1e9\n", 4, PolicyErrorKind::OutOfRange),
            ("usd = nan\n", 4, PolicyErrorKind::OutOfRange),
            ("budget = 3\n", 4, PolicyErrorKind::UnknownKey),
            ("allow = \"small\"\n", 4, PolicyErrorKind::WrongType),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{text}: {e}");
        }
    }
}
