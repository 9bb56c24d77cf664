//! Which IP addresses an outbound request may reach: the one SSRF classification.
//!
//! Used by `herald-config` (to refuse a literal address in a URL when the config loads) and by
//! `herald-delivery` (to refuse a resolved address before dialling it), so the two can never
//! disagree about a range again. Unless `[security] allow_private_networks` is set, every
//! [`BlockedRange`] is refused.
//!
//! IPv4 addresses carried inside IPv6 are classified as the IPv4 address they route to:
//! IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64
//! (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::/48`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A named range Herald refuses to connect to (unless private networks are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockedRange {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `0.0.0.0/8` other than `0.0.0.0`.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64/10` (carrier-grade NAT).
    Shared,
    /// `192.0.0.0/24`.
    IetfProtocol,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18/15`.
    Benchmarking,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `240/4` (except broadcast), and `::/96` addresses that embed no IPv4 host.
    Reserved,
    /// `100::/64`.
    DiscardOnly,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated).
    SiteLocal,
}

impl BlockedRange {
    /// How the range reads in a sentence, e.g. `"a loopback address"`.
    pub fn description(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Broadcast => "a broadcast address",
            Self::ThisNetwork => "a \"this network\" address (0.0.0.0/8)",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (CGNAT) address",
            Self::IetfProtocol => "an IETF protocol assignment address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Multicast => "a multicast address",
            Self::Reserved => "a reserved address",
            Self::DiscardOnly => "a discard-only address",
            Self::UniqueLocal => "a unique-local address",
            Self::SiteLocal => "a site-local address",
        }
    }
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// The blocked range `ip` is in, or `None` for a public (internet-routable) address.
pub fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<BlockedRange> {
    use BlockedRange as R;
    let [a, b, c, _] = ip.octets();
    let range = match (a, b, c) {
        _ if ip.is_unspecified() => R::Unspecified,
        _ if ip.is_broadcast() => R::Broadcast,
        (0, _, _) => R::ThisNetwork,
        (127, _, _) => R::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => R::Private,
        (169, 254, _) => R::LinkLocal,
        (100, 64..=127, _) => R::Shared,
        (192, 0, 0) => R::IetfProtocol,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => R::Documentation,
        (198, 18..=19, _) => R::Benchmarking,
        (224..=239, _, _) => R::Multicast,
        (240..=255, _, _) => R::Reserved,
        _ => return None,
    };
    Some(range)
}

fn v6_range(ip: Ipv6Addr) -> Option<BlockedRange> {
    use BlockedRange as R;
    if let Some(v4) = embedded_v4(ip) {
        return v4_range(v4);
    }
    let s = ip.segments();
    let range = match s[0] {
        _ if ip.is_unspecified() => R::Unspecified,
        _ if ip.is_loopback() => R::Loopback,
        // ::/96 (IPv4-compatible, deprecated) other than ::, ::1 and those embedding an IPv4.
        0 if s[1..6] == [0; 5] => R::Reserved,
        0x0100 if s[1..4] == [0; 3] => R::DiscardOnly,
        0x2001 if s[1] == 0x0db8 => R::Documentation,
        0x3fff if s[1] <= 0x0fff => R::Documentation,
        x if x & 0xfe00 == 0xfc00 => R::UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => R::LinkLocal,
        x if x & 0xffc0 == 0xfec0 => R::SiteLocal,
        x if x & 0xff00 == 0xff00 => R::Multicast,
        _ => return None,
    };
    Some(range)
}

/// The IPv4 address carried inside an IPv6 one, for the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = || Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::BlockedRange as R;
    use super::*;

    fn range(s: &str) -> Option<BlockedRange> {
        blocked_range(s.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        for (ip, want) in [
            ("0.0.0.0", Some(R::Unspecified)),
            ("0.1.2.3", Some(R::ThisNetwork)),
            ("255.255.255.255", Some(R::Broadcast)),
            ("127.0.0.1", Some(R::Loopback)),
            ("127.255.0.9", Some(R::Loopback)),
            ("10.1.2.3", Some(R::Private)),
            ("172.16.0.1", Some(R::Private)),
            ("172.31.255.255", Some(R::Private)),
            ("192.168.1.1", Some(R::Private)),
            ("169.254.169.254", Some(R::LinkLocal)),
            ("100.64.0.1", Some(R::Shared)),
            ("100.127.255.255", Some(R::Shared)),
            ("192.0.0.8", Some(R::IetfProtocol)),
            ("192.0.2.10", Some(R::Documentation)),
            ("198.51.100.1", Some(R::Documentation)),
            ("203.0.113.7", Some(R::Documentation)),
            ("198.18.0.1", Some(R::Benchmarking)),
            ("198.19.255.255", Some(R::Benchmarking)),
            ("224.0.0.1", Some(R::Multicast)),
            ("239.255.255.255", Some(R::Multicast)),
            ("240.0.0.1", Some(R::Reserved)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("192.169.0.1", None),
            ("198.20.0.1", None),
            ("223.255.255.255", None),
        ] {
            assert_eq!(range(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        for (ip, want) in [
            ("::", Some(R::Unspecified)),
            ("::1", Some(R::Loopback)),
            ("fe80::1", Some(R::LinkLocal)),
            ("febf::1", Some(R::LinkLocal)),
            ("fec0::1", Some(R::SiteLocal)),
            ("fc00::1", Some(R::UniqueLocal)),
            ("fd12:3456::1", Some(R::UniqueLocal)),
            ("ff02::1", Some(R::Multicast)),
            ("2001:db8::1", Some(R::Documentation)),
            ("3fff::1", Some(R::Documentation)),
            ("100::1", Some(R::DiscardOnly)),
            ("::2", Some(R::Reserved)),
            ("::ffff", Some(R::Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:82b::200e", None),
            ("2001:4860::8888", None),
        ] {
            assert_eq!(range(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_classified_as_the_ipv4_it_carries() {
        for (ip, want) in [
            // IPv4-mapped.
            ("::ffff:127.0.0.1", Some(R::Loopback)),
            ("::ffff:0.0.0.0", Some(R::Unspecified)),
            ("::ffff:10.0.0.1", Some(R::Private)),
            ("::ffff:169.254.169.254", Some(R::LinkLocal)),
            ("::ffff:192.0.2.1", Some(R::Documentation)),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible (deprecated).
            ("::127.0.0.1", Some(R::Loopback)),
            ("::10.0.0.1", Some(R::Private)),
            ("::8.8.8.8", None),
            // NAT64.
            ("64:ff9b::a00:1", Some(R::Private)),
            ("64:ff9b::7f00:1", Some(R::Loopback)),
            ("64:ff9b::808:808", None),
            // 6to4.
            ("2002:c0a8:0101::1", Some(R::Private)),
            ("2002:7f00:1::", Some(R::Loopback)),
            ("2002:c612:1::", Some(R::Benchmarking)),
            ("2002:808:808::1", None),
        ] {
            assert_eq!(range(ip), want, "{ip}");
        }
    }

    #[test]
    fn descriptions_read_as_sentences() {
        assert_eq!(R::Loopback.to_string(), "a loopback address");
        assert_eq!(
            R::ThisNetwork.description(),
            "a \"this network\" address (0.0.0.0/8)"
        );
    }
}
