//! `[net]`: the hosts and ports an agent may connect to ([`NetGrant`]), built
//! from validated [`AllowedHost`] entries with duplicates refused.
//!
//! Deny by default: with no `[net]` section no connection is allowed. Loopback,
//! private, link-local and cloud-metadata addresses are reachable only when an
//! entry names the IP itself ([`NetGrant::names_ip`]); a DNS name that resolves
//! to one does not count.

use std::net::IpAddr;

use super::EntryError;
use super::diagnostic::{PolicyError, PolicyErrorKind, Source};
use super::host::AllowedHost;
use super::raw::{RawNet, Table};

/// The network grant: the `host:port` pairs the agent may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGrant {
    /// The `net.allow` entries, in file order.
    pub allow: Vec<AllowedHost>,
}

impl NetGrant {
    /// True if no connection is allowed.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// True if some entry allows `host` (as the guest wrote it) on `port`;
    /// see [`AllowedHost::allows`].
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|entry| entry.allows(host, port))
    }

    /// True if some entry is exactly the IP `ip` with this `port` (IPv4-mapped
    /// IPv6 compared as IPv4). The network capability requires this before it
    /// connects to a loopback, private, link-local or metadata address.
    pub fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.allow.iter().any(|entry| entry.names_ip(ip, port))
    }

    /// Validates `[net]`: every entry, and no entry twice (compared in
    /// canonical form, so `A.com:1` and `a.com.:1` are the same entry).
    pub(crate) fn from_raw(
        source: &Source<'_>,
        raw: Option<Table<RawNet>>,
    ) -> Result<NetGrant, PolicyError> {
        let entries = raw.and_then(|Table(raw)| raw.allow).unwrap_or_default();
        let allow = super::parse_list(source, "net.allow", &entries, |text| {
            AllowedHost::parse(text).map_err(|error| EntryError {
                kind: PolicyErrorKind::InvalidHost,
                reason: error.to_string(),
                expected: error.expected(),
            })
        })?;
        Ok(NetGrant { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    fn net(entries: &str) -> Result<NetGrant, PolicyError> {
        Policy::parse(
            "t.toml",
            &format!("[agent]\nname = \"t\"\n[net]\nallow = [{entries}]\n"),
        )
        .map(|p| p.net)
    }

    #[test]
    fn empty_grant_denies_everything() {
        let empty = net("").unwrap();
        assert!(empty.is_empty());
        assert!(!empty.allows("example.com", 443));
        assert!(!empty.names_ip("127.0.0.1".parse().unwrap(), 80));
        assert_eq!(NetGrant::default(), empty);
    }

    #[test]
    fn any_entry_allows() {
        let grant = net("\"a.com:443\", \"[::1]:8080\"").unwrap();
        let cases = [
            (("a.com", 443), ("a.com", 8080)),
            (("::1", 8080), ("::1", 443)),
            (("[::1]", 8080), ("b.com", 443)),
        ];
        for ((host, port), (denied, denied_port)) in cases {
            assert!(grant.allows(host, port), "{host}:{port}");
            assert!(!grant.allows(denied, denied_port), "{denied}:{denied_port}");
        }
        assert!(grant.names_ip("::1".parse().unwrap(), 8080));
        assert!(!grant.names_ip("::1".parse().unwrap(), 443));
    }

    #[test]
    fn entry_errors_are_located() {
        let error = net("\"a.com:443\", \"b.com\"").unwrap_err();
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::InvalidHost, 4, 23)
        );
        assert!(error.message.contains("port is missing"), "{error}");
        assert!(
            error
                .expected
                .as_deref()
                .is_some_and(|e| e.contains("65535")),
            "{error}"
        );

        // Duplicates are compared in canonical form and located at the second one.
        let error = net("\"a.com:443\", \"A.COM.:443\"").unwrap_err();
        assert_eq!(
            (error.kind, error.line, error.column),
            (PolicyErrorKind::Duplicate, 4, 23)
        );
        assert!(net("\"a.com:443\", \"a.com:444\"").is_ok());
    }
}
