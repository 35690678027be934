//! One `net.allow` entry: [`AllowedHost`], a host pattern and a port parsed
//! and validated at load, and the one place that answers "may the guest
//! connect to this host and port?" for it.
//!
//! Entry syntax: `name:port`, `*.suffix:port`, `1.2.3.4:port`, `[::1]:port`.
//! The port is required (1..=65535). Names are matched case-insensitively and
//! ignoring one trailing dot. A wildcard covers subdomains only
//! (`*.example.com` does not match `example.com`) and must cover at least two
//! labels (`*.com` is refused).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dns;

/// Why a `net.allow` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The entry is the empty string.
    #[error("the entry is empty")]
    Empty,
    /// The entry is a URL (`http://...`), not `host:port`.
    #[error("URLs are not allowed: write only the host and port")]
    Url,
    /// No `:port` after the host.
    #[error("the port is missing")]
    MissingPort,
    /// The port is not a decimal number.
    #[error("the port `{0}` is not a number")]
    BadPort(String),
    /// The port is 0 or above 65535.
    #[error("the port {0} is outside 1..=65535")]
    PortOutOfRange(String),
    /// An IPv6 address written without brackets.
    #[error("IPv6 addresses must be in brackets, as in \"[::1]:443\"")]
    UnbracketedIpv6,
    /// The text inside `[...]` is not an IPv6 address.
    #[error("`{0}` is not an IPv6 address")]
    BadIpv6(String),
    /// A `*` that is not a whole leading label, or a bare `*`.
    #[error("`*` may only appear as a whole leading label, as in \"*.example.com\"")]
    MisplacedWildcard,
    /// A wildcard over a single label (`*.com`).
    #[error("a wildcard must cover at least two labels, as in \"*.example.com\"")]
    WildcardTooBroad,
    /// A name whose last label is all digits, which resolvers may read as an IPv4 address.
    #[error("`{0}` looks like an IPv4 address but is not one")]
    NumericName(String),
    /// A name that breaks the DNS name rules.
    #[error("`{name}` is not a valid DNS name: {reason}")]
    InvalidName {
        /// The name as written.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl From<dns::NameError> for HostError {
    fn from(e: dns::NameError) -> Self {
        match e {
            dns::NameError::MisplacedWildcard => HostError::MisplacedWildcard,
            dns::NameError::NumericName(n) => HostError::NumericName(n),
            dns::NameError::InvalidName { name, reason } => HostError::InvalidName { name, reason },
        }
    }
}

impl HostError {
    /// What a valid entry looks like, for the error's "expected" note.
    pub(crate) fn expected(&self) -> &'static str {
        match self {
            HostError::MissingPort | HostError::BadPort(_) | HostError::PortOutOfRange(_) => {
                "host:port with a port from 1 to 65535, e.g. \"api.example.com:443\""
            }
            _ => "\"name:port\", \"*.suffix:port\", \"1.2.3.4:port\" or \"[::1]:port\"",
        }
    }
}

/// The host part of an [`AllowedHost`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this DNS name (lowercase, without trailing dot).
    Exact(String),
    /// From `*.example.com`: any name ending in `.example.com`, not `example.com` itself.
    /// Holds the suffix without the leading `*.` (`example.com`).
    Suffix(String),
    /// This IP address (IPv4-mapped IPv6 addresses are stored as IPv4).
    Ip(IpAddr),
}

/// One `net.allow` entry: a host pattern and the one port it opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowedHost {
    host: HostPattern,
    port: u16,
}

impl AllowedHost {
    /// Parses and validates an entry.
    ///
    /// # Errors
    ///
    /// See [`HostError`]: URLs, a missing/zero/oversized port, unbracketed
    /// IPv6, misplaced or too-broad wildcards, invalid DNS names.
    ///
    /// # Examples
    ///
    /// ```
    /// use warden_policy::AllowedHost;
    /// let entry = AllowedHost::parse("*.example.com:443").unwrap();
    /// assert!(entry.allows("API.example.com.", 443));
    /// assert!(!entry.allows("example.com", 443));
    /// assert!(AllowedHost::parse("https://example.com").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<AllowedHost, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.contains("://") {
            return Err(HostError::Url);
        }
        let (host, port) = split_host_port(text)?;
        let port = parse_port(port)?;
        let host = match host {
            HostPart::Bracketed(inner) => {
                let ip = inner
                    .parse::<Ipv6Addr>()
                    .map_err(|_| HostError::BadIpv6(inner.to_owned()))?;
                HostPattern::Ip(IpAddr::V6(ip).to_canonical())
            }
            HostPart::Plain(host) => parse_host(host)?,
        };
        Ok(AllowedHost { host, port })
    }

    /// True if the guest may connect to `host` on `port`. `host` is what the
    /// guest wrote: a DNS name (any case, one trailing dot allowed) or an IP
    /// literal (IPv6 with or without brackets). Malformed hosts never match.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return self.host == HostPattern::Ip(ip.to_canonical());
        }
        let Ok(name) = dns::canonical_name(host) else {
            return false;
        };
        match &self.host {
            HostPattern::Exact(exact) => name == *exact,
            HostPattern::Suffix(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Ip(_) => false,
        }
    }

    /// True if this entry names exactly `ip` (compared after mapping
    /// IPv4-mapped IPv6 to IPv4) on `port`.
    pub fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        port == self.port && self.host == HostPattern::Ip(ip.to_canonical())
    }

    /// The host pattern.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for AllowedHost {
    /// The canonical form: lowercase, IPv6 bracketed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(name) => write!(f, "{name}:{}", self.port),
            HostPattern::Suffix(suffix) => write!(f, "*.{suffix}:{}", self.port),
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// The host text of an entry: inside `[...]` (IPv6 only) or not.
enum HostPart<'a> {
    Bracketed(&'a str),
    Plain(&'a str),
}

fn split_host_port(text: &str) -> Result<(HostPart<'_>, &str), HostError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| HostError::BadIpv6(rest.to_owned()))?;
        let port = after.strip_prefix(':').ok_or(HostError::MissingPort)?;
        return Ok((HostPart::Bracketed(inner), port));
    }
    if text.matches(':').count() > 1 {
        return Err(HostError::UnbracketedIpv6);
    }
    let (host, port) = text.rsplit_once(':').ok_or(HostError::MissingPort)?;
    Ok((HostPart::Plain(host), port))
}

fn parse_port(port: &str) -> Result<u16, HostError> {
    if port.is_empty() {
        return Err(HostError::MissingPort);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort(port.to_owned()));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(HostError::PortOutOfRange(port.to_owned())),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, HostError> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(HostPattern::Ip(IpAddr::V4(ip)));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        let suffix = dns::canonical_name(suffix)?;
        if !suffix.contains('.') {
            return Err(HostError::WildcardTooBroad);
        }
        return Ok(HostPattern::Suffix(suffix));
    }
    dns::canonical_name(host)
        .map(HostPattern::Exact)
        .map_err(HostError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (entry, its canonical form)
    #[test]
    fn parsed_forms() {
        let cases = [
            ("api.example.com:443", "api.example.com:443"),
            ("API.Example.COM.:443", "api.example.com:443"),
            ("localhost:8080", "localhost:8080"),
            ("*.Example.com:1", "*.example.com:1"),
            ("1.2.3.4:1", "1.2.3.4:1"),
            ("[0:0::1]:65535", "[::1]:65535"),
            ("[::ffff:10.0.0.1]:80", "10.0.0.1:80"),
        ];
        for (text, canonical) in cases {
            let entry = AllowedHost::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(entry.to_string(), canonical);
        }
        let entry = AllowedHost::parse("*.example.com:443").unwrap();
        assert_eq!(entry.host(), &HostPattern::Suffix("example.com".into()));
        assert_eq!(entry.port(), 443);
        let entry = AllowedHost::parse("[::ffff:10.0.0.1]:80").unwrap();
        assert_eq!(
            entry.host(),
            &HostPattern::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    #[test]
    fn refused_entries() {
        let name = |n: &str, reason| HostError::InvalidName {
            name: n.into(),
            reason,
        };
        let cases = [
            ("", HostError::Empty),
            ("http://x:80", HostError::Url),
            ("x", HostError::MissingPort),
            ("x:", HostError::MissingPort),
            ("[::1]", HostError::MissingPort),
            ("x:0", HostError::PortOutOfRange("0".into())),
            ("x:99999", HostError::PortOutOfRange("99999".into())),
            ("x:-1", HostError::BadPort("-1".into())),
            ("x:443/path", HostError::BadPort("443/path".into())),
            ("x:https", HostError::BadPort("https".into())),
            ("::1:80", HostError::UnbracketedIpv6),
            ("::1", HostError::UnbracketedIpv6),
            ("[1.2.3.4]:80", HostError::BadIpv6("1.2.3.4".into())),
            ("[::1:80", HostError::BadIpv6("::1:80".into())),
            ("*:80", HostError::MisplacedWildcard),
            ("a.*.com:80", HostError::MisplacedWildcard),
            ("*a.com:80", HostError::MisplacedWildcard),
            ("*.*.com:80", HostError::MisplacedWildcard),
            ("*.com:80", HostError::WildcardTooBroad),
            ("1.2.3.999:80", HostError::NumericName("1.2.3.999".into())),
            ("01.2.3.4:80", HostError::NumericName("01.2.3.4".into())),
            (":80", name("", "it is empty")),
            ("a..b:80", name("a..b", "it has an empty label")),
        ];
        for (text, error) in cases {
            assert_eq!(AllowedHost::parse(text), Err(error), "{text}");
        }
    }

    /// (entry, host it allows on the entry's port, its twin it denies on that port)
    #[test]
    fn allows_and_denies() {
        let cases = [
            ("api.example.com:443", "api.example.com", "example.com"),
            (
                "api.example.com:443",
                "API.EXAMPLE.COM",
                "api.example.com.evil.net",
            ),
            (
                "api.example.com:443",
                "api.example.com.",
                "api.example.com..",
            ),
            ("*.example.com:443", "a.example.com", "example.com"),
            ("*.example.com:443", "a.b.example.com", "badexample.com"),
            ("*.example.com:443", "A.Example.Com.", ".example.com"),
            (
                "*.example.com:443",
                "a.example.com",
                "evil.com\0.example.com",
            ),
            ("1.2.3.4:80", "1.2.3.4", "1.2.3.5"),
            ("1.2.3.4:80", "::ffff:1.2.3.4", "1.2.3.4.example.com"),
            ("[::1]:80", "::1", "127.0.0.1"),
            ("[::1]:80", "[::1]", "[::2]"),
            ("[::1]:80", "0:0:0:0:0:0:0:1", "[::1"),
            ("localhost:80", "localhost", "127.0.0.1"),
            ("example.com:80", "example.com", "127.1"),
        ];
        for (text, allowed, denied) in cases {
            let entry = AllowedHost::parse(text).unwrap();
            let port = entry.port();
            assert!(entry.allows(allowed, port), "{text} should allow {allowed}");
            assert!(!entry.allows(denied, port), "{text} should deny {denied:?}");
            assert!(
                !entry.allows(allowed, port - 1),
                "{text} should deny port {}",
                port - 1
            );
        }
    }

    /// (entry, IP it names on the entry's port, its twin it does not)
    #[test]
    fn names_ip_twins() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("127.0.0.1:8080", "127.0.0.1", "127.0.0.2"),
            ("127.0.0.1:8080", "::ffff:127.0.0.1", "::1"),
            (
                "[::ffff:169.254.169.254]:80",
                "169.254.169.254",
                "169.254.169.253",
            ),
            ("[fe80::1]:80", "fe80::1", "fe80::2"),
        ];
        for (text, named, other) in cases {
            let entry = AllowedHost::parse(text).unwrap();
            let port = entry.port();
            assert!(entry.names_ip(ip(named), port), "{text} names {named}");
            assert!(
                !entry.names_ip(ip(other), port),
                "{text} does not name {other}"
            );
            assert!(
                !entry.names_ip(ip(named), port + 1),
                "{text} on another port"
            );
        }
        // A DNS name never names an IP, even one it may resolve to.
        let by_name = AllowedHost::parse("localhost:80").unwrap();
        assert!(!by_name.names_ip(ip("127.0.0.1"), 80));
    }
}
