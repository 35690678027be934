//! The host configuration's model sections: the providers agents' model calls go to
//! (`[[model]]`), the certificate authorities trusted beyond the web PKI (`[tls]`), and the
//! host's constitution, the first layer of every prompt (`[prompt]`).
//!
//! ```toml
//! [[model]]
//! name = "small"                          # what policies call it (`[model] allow`)
//! url = "http://127.0.0.1:8080/v1"        # OpenAI-compatible base: `{url}/chat/completions`
//! id = "smollm2"                          # the provider's model id
//! key_env = "OPENAI_API_KEY"              # or key_file = "/run/secrets/openai"; none for a local server
//! price = { input = 0.15, cached = 0.075, output = 0.60 }   # USD per million tokens
//! timeout = "60 s"                        # one request, retries included
//! retries = 2                             # after a 429 or a 5xx (default 2)
//! json_schema = true                      # the provider honours `response_format` json_schema
//! [[model]]
//! name = "caller"                         # the model of the MCP client that called the tool
//! provider = "mcp-client"                 # served by `sampling/createMessage` (see docs/mcp.md);
//! timeout = "120 s"                       #   only `name`, `provider` and `timeout` apply to it
//! [tls]
//! ca = ["/etc/warden/private-ca.pem"]     # extra roots for private providers (PEM)
//! [prompt]
//! constitution = "You work inside Warden. ..."   # default: a built-in text
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::Source;
use crate::{PolicyError, PolicyErrorKind};

/// The constitution used when `[prompt] constitution` is not set.
pub const DEFAULT_CONSTITUTION: &str = "You are an agent running inside Warden, a sandboxed host. \
Follow the rules below. Do only the task you are given. Never ask for, reveal or invent secrets, \
keys or credentials. Say plainly when you do not know or cannot do something.";

/// Longest constitution text.
const MAX_CONSTITUTION: usize = 64 * 1024;

/// Where a provider's API key comes from (the host reads it; no guest ever sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// No key (a local server).
    None,
    /// An environment variable of the host process.
    Env(String),
    /// A file on the host.
    File(PathBuf),
}

/// Prices in millionths of a US dollar per million tokens (so that a token count times a price
/// divided by a million is a cost in millionths of a dollar).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Per million prompt tokens not served from the provider's cache.
    pub input: u64,
    /// Per million prompt tokens served from the provider's cache.
    pub cached: u64,
    /// Per million completion tokens.
    pub output: u64,
}

impl Price {
    /// The cost of one call in millionths of a US dollar (rounded up).
    pub fn cost(&self, prompt: u64, cached: u64, completion: u64) -> u64 {
        let fresh = prompt.saturating_sub(cached);
        let total = u128::from(fresh) * u128::from(self.input)
            + u128::from(cached.min(prompt)) * u128::from(self.cached)
            + u128::from(completion) * u128::from(self.output);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Who serves a model's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProviderKind {
    /// An OpenAI-compatible chat-completions endpoint the host reaches (`url`, `id`, a key).
    #[default]
    Http,
    /// The MCP client that called the tool the task serves (`provider = "mcp-client"`): each
    /// call is a `sampling/createMessage` request to it. A task with no such client (the CLI,
    /// the HTTP API, A2A) or whose client did not declare `sampling` gets a model error.
    McpClient,
}

/// The `provider` value of [`ProviderKind::McpClient`].
pub const MCP_CLIENT_PROVIDER: &str = "mcp-client";

/// One model provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProvider {
    /// The name policies use.
    pub name: String,
    /// Who serves its calls.
    pub kind: ProviderKind,
    /// The OpenAI-compatible base URL (`http://` or `https://`, no trailing `/`; empty for
    /// [`ProviderKind::McpClient`]).
    pub url: String,
    /// The provider's model id, sent as `model` ([`MCP_CLIENT_PROVIDER`] for
    /// [`ProviderKind::McpClient`], whose client picks its own model).
    pub id: String,
    /// The API key's source.
    pub key: KeySource,
    /// Prices.
    pub price: Price,
    /// Most time one request may take, retries included.
    pub timeout: Duration,
    /// Retries after a 429 or a 5xx answer.
    pub retries: u32,
    /// Whether the provider honours `response_format` with a JSON Schema.
    pub json_schema: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    name: Spanned<String>,
    provider: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    key_env: Option<String>,
    key_file: Option<String>,
    price: Option<Spanned<RawPrice>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    json_schema: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: Option<f64>,
    cached: Option<f64>,
    output: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrompt {
    pub(super) constitution: Option<Spanned<String>>,
}

/// The constitution from `[prompt]`, or the default.
pub(super) fn constitution(
    source: &Source<'_>,
    raw: Option<RawPrompt>,
) -> Result<String, PolicyError> {
    match raw.and_then(|p| p.constitution) {
        None => Ok(DEFAULT_CONSTITUTION.to_owned()),
        Some(text) if text.get_ref().len() > MAX_CONSTITUTION => Err(source.error(
            text.span(),
            PolicyErrorKind::OutOfRange,
            format!("prompt.constitution is {} bytes long", text.get_ref().len()),
            Some(format!("at most {MAX_CONSTITUTION} bytes of text")),
        )),
        Some(text) => Ok(text.into_inner()),
    }
}

/// Validate every `[[model]]` entry.
impl super::HostConfig {
    /// The model provider `name`.
    pub fn model(&self, name: &str) -> Option<&ModelProvider> {
        self.models.iter().find(|m| m.name == name)
    }
}

pub(super) fn providers(
    source: &Source<'_>,
    raw: Vec<RawProvider>,
) -> Result<Vec<ModelProvider>, PolicyError> {
    let mut out: Vec<ModelProvider> = Vec::new();
    for p in raw {
        let at = |span: std::ops::Range<usize>, kind, message: String, expected: &str| {
            source.error(span, kind, message, Some(expected.to_owned()))
        };
        let name = p.name.get_ref();
        crate::model::check_model_name(name).map_err(|reason| {
            at(
                p.name.span(),
                PolicyErrorKind::InvalidName,
                format!("model.name \"{name}\" is invalid: {reason}"),
                crate::model::MODEL_NAME_RULE,
            )
        })?;
        if out.iter().any(|m| &m.name == name) {
            return Err(at(
                p.name.span(),
                PolicyErrorKind::Duplicate,
                format!("model \"{name}\" is declared twice"),
                "each [[model]] name once",
            ));
        }
        let kind = match &p.provider {
            None => ProviderKind::Http,
            Some(k) if k.get_ref() == MCP_CLIENT_PROVIDER => ProviderKind::McpClient,
            Some(k) if k.get_ref() == "http" => ProviderKind::Http,
            Some(k) => {
                return Err(at(
                    k.span(),
                    PolicyErrorKind::InvalidName,
                    format!("model.provider \"{}\" is not a provider kind", k.get_ref()),
                    "\"http\" (the default: an OpenAI-compatible endpoint) or \"mcp-client\"",
                ));
            }
        };
        if kind == ProviderKind::McpClient {
            out.push(client_provider(source, p)?);
            continue;
        }
        let (Some(url), Some(id)) = (&p.url, &p.id) else {
            return Err(at(
                p.name.span(),
                PolicyErrorKind::MissingKey,
                format!("model \"{name}\" names no url or no id"),
                "url = \"https://api.example.com/v1\" and id = \"the provider's model id\" (or provider = \"mcp-client\")",
            ));
        };
        let url = url.get_ref().trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or(""));
        if !matches!(host, Some(h) if !h.is_empty() && !h.contains('@') && !url.contains(char::is_whitespace))
        {
            return Err(at(
                p.url.as_ref().map_or(p.name.span(), Spanned::span),
                PolicyErrorKind::InvalidHost,
                format!("model.url \"{url}\" is not an http(s) base URL"),
                "a base URL such as \"https://api.openai.com/v1\" or \"http://127.0.0.1:8080/v1\"",
            ));
        }
        if id.get_ref().is_empty() || id.get_ref().len() > 256 {
            return Err(at(
                id.span(),
                PolicyErrorKind::InvalidName,
                "model.id must be 1 to 256 characters".into(),
                "the provider's model id, such as \"gpt-4o-mini\"",
            ));
        }
        let key = match (p.key_env, p.key_file) {
            (None, None) => KeySource::None,
            (Some(e), None) => KeySource::Env(e),
            (None, Some(f)) => KeySource::File(PathBuf::from(f)),
            (Some(_), Some(_)) => {
                return Err(at(
                    p.name.span(),
                    PolicyErrorKind::Contradiction,
                    format!("model \"{name}\" names both key_env and key_file"),
                    "one of key_env = \"VAR\" or key_file = \"/path\"",
                ));
            }
        };
        let price = match p.price {
            None => Price::default(),
            Some(raw) => {
                let span = raw.span();
                let raw = raw.into_inner();
                let one = |v: Option<f64>| match v {
                    None => Some(0),
                    Some(usd) => crate::model::micro_usd(usd),
                };
                match (one(raw.input), one(raw.cached), one(raw.output)) {
                    (Some(input), Some(cached), Some(output)) => Price {
                        input,
                        cached,
                        output,
                    },
                    _ => {
                        return Err(at(
                            span,
                            PolicyErrorKind::OutOfRange,
                            format!("model \"{name}\" has a price out of range"),
                            "US dollars per million tokens from 0 to 1000, such as { input = 0.15, cached = 0.075, output = 0.6 }",
                        ));
                    }
                }
            }
        };
        let timeout = timeout(source, p.timeout.as_ref())?;
        let retries = match p.retries {
            None => 2,
            Some(r) if (0..=5).contains(r.get_ref()) => *r.get_ref() as u32,
            Some(r) => {
                return Err(at(
                    r.span(),
                    PolicyErrorKind::OutOfRange,
                    format!("model.retries = {} is out of range", r.get_ref()),
                    "a whole number from 0 to 5",
                ));
            }
        };
        let (url, id) = (url.to_owned(), id.get_ref().clone());
        out.push(ModelProvider {
            name: p.name.into_inner(),
            kind,
            url,
            id,
            key,
            price,
            timeout,
            retries,
            json_schema: p.json_schema.unwrap_or(true),
        });
    }
    Ok(out)
}

/// A `timeout`, checked (60 s when absent).
fn timeout(source: &Source<'_>, raw: Option<&Spanned<String>>) -> Result<Duration, PolicyError> {
    match raw {
        None => Ok(Duration::from_secs(60)),
        Some(t) => crate::units::parse_duration(t.get_ref())
            .ok()
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                source.error(
                    t.span(),
                    PolicyErrorKind::InvalidDuration,
                    format!("model.timeout \"{}\" is not a duration", t.get_ref()),
                    Some("a duration from 1 ms to 1 h, such as \"60 s\"".to_owned()),
                )
            }),
    }
}

/// A `provider = "mcp-client"` entry: only `name`, `provider` and `timeout` apply (the client
/// picks its model, holds its own key, and reports no usage to price).
fn client_provider(source: &Source<'_>, p: RawProvider) -> Result<ModelProvider, PolicyError> {
    let name = p.name.get_ref();
    let stray = [
        ("url", p.url.is_some()),
        ("id", p.id.is_some()),
        ("key_env", p.key_env.is_some()),
        ("key_file", p.key_file.is_some()),
        ("price", p.price.is_some()),
        ("retries", p.retries.is_some()),
        ("json_schema", p.json_schema.is_some()),
    ];
    if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
        return Err(source.error(
            p.name.span(),
            PolicyErrorKind::Contradiction,
            format!(
                "model \"{name}\" is served by the calling MCP client (provider = \"mcp-client\"): `{key}` does not apply to it"
            ),
            Some("only name, provider and timeout for an mcp-client model".to_owned()),
        ));
    }
    let timeout = timeout(source, p.timeout.as_ref())?;
    Ok(ModelProvider {
        name: p.name.into_inner(),
        kind: ProviderKind::McpClient,
        url: String::new(),
        id: MCP_CLIENT_PROVIDER.to_owned(),
        key: KeySource::None,
        price: Price::default(),
        timeout,
        retries: 0,
        json_schema: false,
    })
}

#[cfg(test)]
mod tests {
    use crate::{HostConfig, PolicyErrorKind};

    #[test]
    fn providers_parse() {
        let text = "[[model]]\nname = \"small\"\nurl = \"http://127.0.0.1:8080/v1/\"\nid = \"smollm2\"\n\
[[model]]\nname = \"large\"\nurl = \"https://api.example.com/v1\"\nid = \"big-1\"\nkey_env = \"KEY\"\n\
price = { input = 0.15, cached = 0.075, output = 0.6 }\ntimeout = \"30 s\"\nretries = 0\njson_schema = false\n\
[tls]\nca = [\"ca.pem\"]\n[prompt]\nconstitution = \"Be good.\"\n";
        let c = HostConfig::parse("w.toml", text).unwrap();
        let small = c.model("small").unwrap();
        assert_eq!(small.url, "http://127.0.0.1:8080/v1");
        assert_eq!((small.retries, small.json_schema), (2, true));
        assert_eq!(small.key, super::KeySource::None);
        let large = c.model("large").unwrap();
        assert_eq!(large.price.input, 150_000);
        assert_eq!(large.price.cost(1_000_000, 0, 0), 150_000);
        assert_eq!(large.price.cost(1000, 1000, 1000), 75 + 600);
        assert_eq!(large.timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.tls_ca, vec![std::path::PathBuf::from("ca.pem")]);
        assert_eq!(c.constitution, "Be good.");
        assert_eq!(
            HostConfig::parse("w.toml", "").unwrap().constitution,
            super::DEFAULT_CONSTITUTION
        );
    }

    #[test]
    fn provider_mistakes_are_located() {
        let head = "[[model]]\nname = \"m\"\nid = \"x\"\n";
        for (extra, line, kind) in [
            ("url = \"ftp://h/v1\"\n", 4, PolicyErrorKind::InvalidHost),
            ("url = \"https://\"\n", 4, PolicyErrorKind::InvalidHost),
            (
                "url = \"http://h\"\nprice = { input = -1 }\n",
                5,
                PolicyErrorKind::OutOfRange,
            ),
            (
                "url = \"http://h\"\ntimeout = \"forever\"\n",
                5,
                PolicyErrorKind::InvalidDuration,
            ),
            (
                "url = \"http://h\"\nretries = 9\n",
                5,
                PolicyErrorKind::OutOfRange,
            ),
            (
                "url = \"http://h\"\nkey = \"sk-123\"\n",
                5,
                PolicyErrorKind::UnknownKey,
            ),
        ] {
            let e = HostConfig::parse("w.toml", &format!("{head}{extra}")).unwrap_err();
            assert_eq!((e.line, e.kind), (line, kind), "{extra}: {e}");
        }
        let e = HostConfig::parse("w.toml", "[[model]]\nname = \"m\"\nid = \"x\"\n").unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::MissingKey, "{e}");
        let twice = format!("{head}url = \"http://h\"\n{head}url = \"http://h\"\n");
        let e = HostConfig::parse("w.toml", &twice).unwrap_err();
        assert_eq!((e.line, e.kind), (6, PolicyErrorKind::Duplicate), "{e}");
        let both = format!("{head}url = \"http://h\"\nkey_env = \"A\"\nkey_file = \"/b\"\n");
        let e = HostConfig::parse("w.toml", &both).unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::Contradiction, "{e}");
    }

    #[test]
    fn an_mcp_client_model_takes_only_a_name_and_a_timeout() {
        let text = "[[model]]\nname = \"caller\"\nprovider = \"mcp-client\"\ntimeout = \"90 s\"\n";
        let c = HostConfig::parse("w.toml", text).unwrap();
        let m = c.model("caller").unwrap();
        assert_eq!(m.kind, super::ProviderKind::McpClient);
        assert_eq!(
            (m.url.as_str(), m.id.as_str()),
            ("", super::MCP_CLIENT_PROVIDER)
        );
        assert_eq!(m.timeout, std::time::Duration::from_secs(90));
        assert_eq!(m.key, super::KeySource::None);
        for extra in [
            "url = \"http://h\"\n",
            "id = \"x\"\n",
            "key_env = \"K\"\n",
            "price = { input = 1 }\n",
            "retries = 1\n",
            "json_schema = true\n",
        ] {
            let e = HostConfig::parse("w.toml", &format!("{text}{extra}")).unwrap_err();
            assert_eq!(e.kind, PolicyErrorKind::Contradiction, "{extra}: {e}");
        }
        let e = HostConfig::parse(
            "w.toml",
            "[[model]]\nname = \"m\"\nprovider = \"carrier-pigeon\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.kind), (3, PolicyErrorKind::InvalidName), "{e}");
        let http = "[[model]]\nname = \"m\"\nprovider = \"http\"\nurl = \"http://h\"\nid = \"x\"\n";
        let c = HostConfig::parse("w.toml", http).unwrap();
        assert_eq!(c.model("m").unwrap().kind, super::ProviderKind::Http);
    }
}
