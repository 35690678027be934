//! Address rules of the network grant, free of any I/O: which IP addresses count as public
//! (everything else must be named by the policy) and how an HTTP authority splits into host
//! and port. The network capability applies them to the address it actually connects to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is an ordinary public unicast address. Everything else (loopback, private,
/// link-local and metadata, CGNAT, unspecified, broadcast, multicast, documentation, benchmark,
/// reserved, and IPv6 forms that embed such an IPv4 address) must be named by the policy.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            // Outside global unicast (2000::/3) nothing is public: loopback, unspecified,
            // unique local (incl. fd00:ec2::254), link-local, site-local, multicast, discard-only,
            // the local-use NAT64 prefix 64:ff9b:1::/48 and everything IANA has not assigned.
            let s = v6.segments();
            (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata lives here
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10 (Alibaba metadata 100.100.100.200)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail()); // IPv4-compatible (deprecated)
    }
    if s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        return Some(tail()); // NAT64 well-known prefix 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Split an authority into host and port (default by scheme), the host in the one form that is
/// matched, resolved and sent: a DNS name lowercased and without its trailing dot (the FQDN
/// `api.example.com.` is the host `api.example.com`), an IP address as written without brackets.
/// `None` when it is malformed, including a host that is neither an IP address nor a valid DNS
/// name (see the name rules of `net.allow`).
pub fn split_authority(authority: &str, https: bool) -> Option<(String, u16)> {
    let default = if https { 443 } else { 80 };
    if authority.contains('@') || authority.is_empty() {
        return None; // userinfo is never needed and hides the real host from a careless reader
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        let ip = host.parse::<Ipv6Addr>().ok()?;
        return (port != 0).then(|| (ip.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()?),
        Some(_) => return None,
        None => (authority, default),
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Some((host.to_string(), port));
    }
    let name = super::dns::canonical_name(host).ok()?;
    Some((name, port))
}

/// The authority `host` and `port` are sent as (the `Host` header): IPv6 in brackets, the port
/// left out when it is the scheme's default. `host` is in [`split_authority`]'s form.
pub fn authority(host: &str, port: u16, https: bool) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == if https { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_not_public() {
        let refused = [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "64:ff9b:1ff:9bf9:ff55::6464",
            "100::1",
            "::2:0:0:1",
            "fd00:ec2::254",
            "2002:7f00:1::",
            "2001:db8::1",
            "fec0::1",
        ];
        for ip in refused {
            assert!(
                !is_public(ip.parse().unwrap()),
                "{ip} must not count as public"
            );
        }
        let public = [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
        ];
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn split_authority_table() {
        let cases = [
            ("example.com", false, Some(("example.com", 80))),
            ("example.com", true, Some(("example.com", 443))),
            ("example.com:8080", false, Some(("example.com", 8080))),
            ("127.0.0.1:9", false, Some(("127.0.0.1", 9))),
            ("[::1]:8080", false, Some(("::1", 8080))),
            ("[::1]", true, Some(("::1", 443))),
            ("[0:0::1]", true, Some(("::1", 443))),
            // The FQDN form is the same host, in the form it is resolved and sent in...
            ("api.example.com.", false, Some(("api.example.com", 80))),
            (
                "API.Example.COM.:8080",
                false,
                Some(("api.example.com", 8080)),
            ),
            ("localhost.:9", false, Some(("localhost", 9))),
            // ...and its twins that are not a host at all.
            ("api.example.com..", false, None),
            ("api..example.com", false, None),
            (".:80", false, None),
            ("1.2.3.4.:80", false, None),
            ("127.1:80", false, None),
            ("exa_mple.com", false, None),
            ("[1.2.3.4]:80", false, None),
            ("user@evil.com", false, None),
            ("a.com:99999", false, None),
            ("::1:80", false, None),
            ("", false, None),
            (":0", false, None),
            (":80", false, None),
            ("[]:80", false, None),
            ("a.com:0", false, None),
            ("[::1]x", false, None),
        ];
        for (auth, https, want) in cases {
            let got = split_authority(auth, https);
            assert_eq!(got.as_ref().map(|(h, p)| (h.as_str(), *p)), want, "{auth}");
        }
    }

    /// (authority as the guest wrote it, as it is sent)
    #[test]
    fn authorities_are_sent_canonical() {
        let cases = [
            ("Api.Example.com.", false, "api.example.com"),
            ("api.example.com.:80", false, "api.example.com"),
            ("api.example.com.:443", false, "api.example.com:443"),
            ("api.example.com.:443", true, "api.example.com"),
            ("127.0.0.1:8080", false, "127.0.0.1:8080"),
            ("[0::1]:8080", false, "[::1]:8080"),
        ];
        for (written, https, sent) in cases {
            let (host, port) = split_authority(written, https).unwrap();
            assert_eq!(authority(&host, port, https), sent, "{written}");
        }
    }

    /// A rule written either way allows a request written either way, and the host the
    /// request is resolved by is the one the rule names.
    #[test]
    fn the_trailing_dot_means_the_same_host_everywhere() {
        for rule in ["api.example.com:443", "api.example.com.:443"] {
            let rule = crate::AllowedHost::parse(rule).unwrap();
            for written in ["api.example.com", "api.example.com.", "API.EXAMPLE.COM."] {
                let (host, port) = split_authority(written, true).unwrap();
                assert!(rule.allows(&host, port), "{rule} allows {written}");
                assert_eq!(host, "api.example.com");
            }
            for other in ["api.example.com..", "api.example.co", "xapi.example.com."] {
                let allowed = split_authority(other, true).is_some_and(|(h, p)| rule.allows(&h, p));
                assert!(!allowed, "{rule} must not allow {other}");
            }
        }
    }
}
