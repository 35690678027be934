//! Secrets held by the host only. Their values come from the host's environment or files named
//! in `warden.toml`, never from a policy; the guest never sees one: not in its environment,
//! files, arguments or memory. The network capability injects a secret into the requests its
//! rule names (a header for `host:port`), redacts it from any response that echoes it before the
//! guest reads the response, and any guest output that contains a secret kills the instance.

use crate::policy::{HostConfig, SecretRule, SecretSource};

/// Why the host's secrets could not be loaded (the host does not start).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("secret `{name}`: environment variable {var} is not set")]
    MissingEnv {
        /// The secret.
        name: String,
        /// The variable.
        var: String,
    },
    /// The file cannot be read.
    #[error("secret `{name}`: cannot read {path}: {why}")]
    File {
        /// The secret.
        name: String,
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The value is empty or too short to redact safely.
    #[error(
        "secret `{name}` is shorter than 8 bytes; a value that short cannot be redacted reliably"
    )]
    TooShort {
        /// The secret.
        name: String,
    },
}

#[derive(Clone)]
struct Loaded {
    rule: SecretRule,
    value: String,
}

/// The host's secrets, loaded once. Its `Debug` never shows a value. A clone shares nothing but
/// the values: the host hands one to the sandbox (injection, output screening) and one to the
/// memory filter (a write holding a secret is refused).
#[derive(Default, Clone)]
pub struct SecretStore {
    secrets: Vec<Loaded>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|s| s.rule.name.as_str()).collect();
        f.debug_struct("SecretStore")
            .field("names", &names)
            .finish()
    }
}

/// What redaction puts in place of a secret.
pub const REDACTED: &str = "[REDACTED]";

impl SecretStore {
    /// Load every secret `config` names.
    ///
    /// # Errors
    ///
    /// [`SecretError`] for the first secret that cannot be loaded.
    pub fn load(config: &HostConfig) -> Result<SecretStore, SecretError> {
        let mut secrets = Vec::new();
        for rule in &config.secrets {
            let value = match &rule.source {
                SecretSource::Env(var) => {
                    std::env::var(var).map_err(|_| SecretError::MissingEnv {
                        name: rule.name.clone(),
                        var: var.clone(),
                    })?
                }
                SecretSource::File(path) => {
                    crate::bounded::read_to_string(path, crate::bounded::Limit::SECRET)
                        .map_err(|e| SecretError::File {
                            name: rule.name.clone(),
                            path: path.display().to_string(),
                            why: e.to_string(),
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string()
                }
            };
            if value.len() < 8 {
                return Err(SecretError::TooShort {
                    name: rule.name.clone(),
                });
            }
            secrets.push(Loaded {
                rule: rule.clone(),
                value,
            });
        }
        Ok(SecretStore { secrets })
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The headers to add to a request for `host:port`: (header, value, secret name).
    pub fn headers_for(&self, host: &str, port: u16) -> Vec<(&str, String, &str)> {
        self.secrets
            .iter()
            .filter(|s| s.rule.host.allows(host, port))
            .map(|s| {
                (
                    s.rule.header.as_str(),
                    s.rule.format.replacen("{}", &s.value, 1),
                    s.rule.name.as_str(),
                )
            })
            .collect()
    }

    /// `bytes` with every secret replaced by [`REDACTED`]; `None` when there was none.
    pub fn redact(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = bytes.to_vec();
        let mut changed = false;
        for s in &self.secrets {
            let needle = s.value.as_bytes();
            let mut i = 0;
            let mut next = Vec::with_capacity(out.len());
            while i < out.len() {
                if out[i..].starts_with(needle) {
                    next.extend_from_slice(REDACTED.as_bytes());
                    i += needle.len();
                    changed = true;
                } else {
                    next.push(out[i]);
                    i += 1;
                }
            }
            out = next;
        }
        changed.then_some(out)
    }

    /// The name of a secret that `bytes` contain, if any.
    pub fn found_in(&self, bytes: &[u8]) -> Option<&str> {
        self.secrets
            .iter()
            .find(|s| {
                bytes
                    .windows(s.value.len())
                    .any(|w| w == s.value.as_bytes())
            })
            .map(|s| s.rule.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(value: &str) -> SecretStore {
        let config = HostConfig::parse(
            "w.toml",
            "[[secrets]]\nname = \"t\"\nenv = \"WARDEN_TEST_SECRET_UNUSED\"\nhost = \"api.example.com:443\"\nheader = \"authorization\"\nformat = \"Bearer {}\"\n",
        )
        .unwrap();
        SecretStore {
            secrets: vec![Loaded {
                rule: config.secrets[0].clone(),
                value: value.to_string(),
            }],
        }
    }

    #[test]
    fn injects_only_where_the_rule_says() {
        let s = store("s3cr3t-value");
        assert_eq!(
            s.headers_for("api.example.com", 443),
            vec![("authorization", "Bearer s3cr3t-value".to_string(), "t")]
        );
        assert!(s.headers_for("api.example.com", 80).is_empty());
        assert!(s.headers_for("evil.example", 443).is_empty());
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn redacts_and_finds() {
        let s = store("s3cr3t-value");
        assert_eq!(
            s.redact(b"echo: Bearer s3cr3t-value!").unwrap(),
            b"echo: Bearer [REDACTED]!"
        );
        assert!(s.redact(b"nothing here").is_none());
        assert_eq!(s.found_in(b"xx s3cr3t-value yy"), Some("t"));
        assert_eq!(s.found_in(b"s3cr3t-valu"), None);
    }

    #[test]
    fn a_missing_source_stops_the_host() {
        let config = HostConfig::parse(
            "w.toml",
            "[[secrets]]\nname = \"t\"\nenv = \"WARDEN_TEST_SURELY_UNSET_VAR\"\nhost = \"a.example:443\"\nheader = \"x-key\"\n",
        )
        .unwrap();
        assert!(matches!(
            SecretStore::load(&config),
            Err(SecretError::MissingEnv { .. })
        ));
    }
}
