//! The write filter: every write to the curated memory passes it before it is stored, and a
//! write it refuses names the rule that fired — never the text that matched.
//!
//! What it looks for, in this order, in each piece of text it is given:
//! 1. any secret the host holds (`[[secrets]]` of `warden.toml`: `host-secret:<name>`);
//! 2. its own rules for personal data and private keys (`pii:*`, `gov-id:*`, `key:*`; see
//!    `pii.rs`);
//! 3. the gitleaks default rules for API keys and tokens (`gitleaks:<id>`; see `gitleaks.rs`).
//!
//! Where it looks: the text as written, then every base64 and hex run in it decoded (and the runs
//! inside those, two levels down) — see `decode.rs`. [`Filter::check_write`] applies that to the
//! key, each tag and the text of a write, and to the text joined with the task's earlier writes
//! (a secret split across writes). Bounded: at most [`MAX_SCANNED`] bytes are examined per piece,
//! and a piece whose decodings would go past it is refused (`filter:too-much-encoded-text`)
//! rather than waved through.

mod decode;
mod gitleaks;
mod pii;

use warden_identity::secrets::SecretStore;

pub use decode::Encoding;
pub use gitleaks::{Gitleaks, Skipped, VERSION as GITLEAKS_VERSION};
pub use pii::Builtins;

/// How deep encodings inside encodings are decoded.
const MAX_DEPTH: usize = 2;

/// Most bytes (the text and its decodings) examined for one piece of text.
pub const MAX_SCANNED: usize = 1 << 20;

/// The rule that refused a piece whose decodings would pass [`MAX_SCANNED`].
pub const TOO_MUCH_ENCODED: &str = "filter:too-much-encoded-text";

/// Where the rule fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// In the text as written.
    Text,
    /// In the key.
    Key,
    /// In a tag.
    Tag,
    /// In the text, once decoded (outermost encoding first).
    Decoded(Vec<Encoding>),
    /// In this task's writes taken together (a secret split across writes).
    AcrossWrites,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::Text => f.write_str("in the text"),
            Found::Key => f.write_str("in the key"),
            Found::Tag => f.write_str("in a tag"),
            Found::Decoded(chain) => {
                let names: Vec<&str> = chain.iter().map(|e| e.name()).collect();
                write!(f, "in the text once decoded ({})", names.join(", then "))
            }
            Found::AcrossWrites => f.write_str("in this task's writes joined together"),
        }
    }
}

/// A refused write: the rule that fired and where. Never holds the matched text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the memory filter refused this write: rule `{rule}` fired {found}; nothing was stored")]
pub struct Refusal {
    /// The rule (`pii:email`, `gitleaks:aws-access-token`, `host-secret:<name>`, …).
    pub rule: String,
    /// Where it fired.
    pub found: Found,
}

/// The compiled filter. Build it once ([`Filter::new`] compiles some 220 regexes) and share it.
pub struct Filter {
    builtins: Builtins,
    gitleaks: Gitleaks,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("builtins", &self.builtins)
            .field("gitleaks", &self.gitleaks)
            .finish()
    }
}

/// One write, as the filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its key.
    pub key: &'a str,
    /// Its tags.
    pub tags: &'a [String],
    /// Its text.
    pub text: &'a str,
}

impl Filter {
    /// Compile the built-in rules and the vendored gitleaks rules.
    ///
    /// # Errors
    ///
    /// A sentence if the vendored rules cannot be built; memory writes must then be refused.
    pub fn new() -> Result<Filter, String> {
        Ok(Filter {
            builtins: Builtins::new()?,
            gitleaks: Gitleaks::vendored()?,
        })
    }

    /// The gitleaks rules in use.
    pub fn gitleaks(&self) -> &Gitleaks {
        &self.gitleaks
    }

    /// The names of the built-in rules.
    pub fn builtin_rules(&self) -> Vec<&'static str> {
        self.builtins.names()
    }

    /// The first rule that fires on `hay` as it is, without decoding.
    fn rule_on(&self, hay: &[u8], secrets: &SecretStore) -> Option<String> {
        if let Some(name) = secrets.found_in(hay) {
            return Some(format!("host-secret:{name}"));
        }
        if let Some(name) = self.builtins.find(hay) {
            return Some(name.to_owned());
        }
        self.gitleaks.find(hay).map(|id| format!("gitleaks:{id}"))
    }

    /// Check one piece of text, as written and decoded.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] of the first rule that fires (`found` is [`Found::Text`] or
    /// [`Found::Decoded`]).
    pub fn check(&self, text: &str, secrets: &SecretStore) -> Result<(), Refusal> {
        let mut budget = MAX_SCANNED;
        self.check_bytes(text.as_bytes(), secrets, &mut Vec::new(), &mut budget)
    }

    fn check_bytes(
        &self,
        hay: &[u8],
        secrets: &SecretStore,
        chain: &mut Vec<Encoding>,
        budget: &mut usize,
    ) -> Result<(), Refusal> {
        let found = || {
            if chain.is_empty() {
                Found::Text
            } else {
                Found::Decoded(chain.clone())
            }
        };
        if hay.len() > *budget {
            return Err(Refusal {
                rule: TOO_MUCH_ENCODED.into(),
                found: found(),
            });
        }
        *budget -= hay.len();
        if let Some(rule) = self.rule_on(hay, secrets) {
            return Err(Refusal {
                rule,
                found: found(),
            });
        }
        if chain.len() < MAX_DEPTH {
            for (encoding, decoded) in decode::segments(hay) {
                chain.push(encoding);
                let checked = self.check_bytes(&decoded, secrets, chain, budget);
                chain.pop();
                checked?;
            }
        }
        Ok(())
    }

    /// Check a write: its key, each tag, its text; then its text joined with `earlier` (the
    /// texts this task wrote before, oldest first): all of them in order, and each one beside
    /// the new text on either side (a secret split in two, with other writes in between).
    ///
    /// # Errors
    ///
    /// The [`Refusal`] of the first rule that fires.
    pub fn check_write(
        &self,
        write: Candidate<'_>,
        earlier: &[String],
        secrets: &SecretStore,
    ) -> Result<(), Refusal> {
        let at = |found: Found| move |r: Refusal| Refusal { found, ..r };
        self.check(write.key, secrets).map_err(at(Found::Key))?;
        for tag in write.tags {
            self.check(tag, secrets).map_err(at(Found::Tag))?;
        }
        self.check(write.text, secrets)?;
        if earlier.is_empty() {
            return Ok(());
        }
        let mut joined = String::new();
        for e in earlier {
            joined.push_str(e);
        }
        joined.push_str(write.text);
        // The end of the joined text is what the new write adds to: a bounded window of it.
        let start = floor_char_boundary(&joined, joined.len().saturating_sub(JOIN_WINDOW));
        self.check(&joined[start..], secrets)
            .map_err(at(Found::AcrossWrites))?;
        let head = prefix(write.text, PAIR_WINDOW);
        let tail = suffix(write.text, PAIR_WINDOW);
        for e in earlier {
            for pair in [
                format!("{}{head}", suffix(e, PAIR_WINDOW)),
                format!("{tail}{}", prefix(e, PAIR_WINDOW)),
            ] {
                self.check(&pair, secrets)
                    .map_err(at(Found::AcrossWrites))?;
            }
        }
        Ok(())
    }
}

/// How much of the writes joined together is checked with each new write: as much as one write
/// may hold, so the join stays within [`MAX_SCANNED`] like a single text (pieces further apart
/// are still checked pairwise).
const JOIN_WINDOW: usize = warden_sandbox::capabilities::memory::MAX_TEXT;
/// How much of each end of two writes is checked side by side.
const PAIR_WINDOW: usize = 512;

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn prefix(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn suffix(s: &str, n: usize) -> &str {
    &s[floor_char_boundary(s, s.len().saturating_sub(n))..]
}

#[cfg(test)]
mod tests;
