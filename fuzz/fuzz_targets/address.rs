//! The address rules against a reference model of the special-purpose ranges (written as CIDR
//! blocks), and the authority splitter and host rule parser on arbitrary text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use warden_policy::AllowedHost;
use warden_policy::address::{is_public, split_authority};

const V4_SPECIAL: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // this network
    (0x0a00_0000, 8),  // private
    (0x6440_0000, 10), // CGNAT
    (0x7f00_0000, 8),  // loopback
    (0xa9fe_0000, 16), // link-local, cloud metadata
    (0xac10_0000, 12), // private
    (0xc000_0000, 24), // IETF assignments
    (0xc000_0200, 24), // documentation
    (0xc0a8_0000, 16), // private
    (0xc612_0000, 15), // benchmarking
    (0xc633_6400, 24), // documentation
    (0xcb00_7100, 24), // documentation
    (0xe000_0000, 4),  // multicast
    (0xf000_0000, 4),  // reserved, broadcast
];

fn v4_public(ip: Ipv4Addr) -> bool {
    let x = u32::from(ip);
    !V4_SPECIAL
        .iter()
        .any(|&(net, len)| (x >> (32 - len)) == (net >> (32 - len)))
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let x = u128::from(ip);
    let within = |net: u128, len: u32| (x >> (128 - len)) == (net >> (128 - len));
    let v4 = |bits: u128| Ipv4Addr::from(bits as u32);
    if within(0xffff_0000_0000, 96) && (x >> 32) == 0xffff {
        return v4_public(v4(x)); // IPv4-mapped
    }
    if x >> 32 == 0 && x > 1 {
        return v4_public(v4(x)); // IPv4-compatible
    }
    if within(0x0064_ff9b_u128 << 96, 96) {
        return v4_public(v4(x)); // NAT64 well-known prefix
    }
    if within(0x2002_u128 << 112, 16) {
        return v4_public(v4(x >> 80)); // 6to4
    }
    // Only global unicast, minus documentation.
    within(0x2000_u128 << 112, 3) && !within(0x2001_0db8_u128 << 96, 32)
}

fuzz_target!(|input: (u32, u128, String)| {
    let (a, b, text) = input;
    let v4 = Ipv4Addr::from(a);
    assert_eq!(is_public(IpAddr::V4(v4)), v4_public(v4), "{v4}");
    let v6 = Ipv6Addr::from(b);
    assert_eq!(is_public(IpAddr::V6(v6)), v6_public(v6), "{v6}");

    if let Some((host, port)) = split_authority(&text, false) {
        assert!(
            !host.is_empty() && port != 0,
            "empty host or port 0 from {text:?}"
        );
        assert!(!text.contains('@'), "userinfo accepted: {text:?}");
    }
    if let Ok(rule) = AllowedHost::parse(&text) {
        // A rule allows its own canonical form.
        let canonical = rule.to_string();
        if let Some((host, port)) = split_authority(&canonical, false) {
            let host = host.trim_start_matches("*.");
            if !canonical.starts_with("*.") {
                assert!(rule.allows(host, port), "{canonical} does not allow itself");
            }
        }
    }
});
