//! The SSRF guard: which addresses a delivery may connect to.
//!
//! Unless `[security] allow_private_networks` is set, Herald refuses to connect to addresses that
//! reach the sender's own network rather than the internet: loopback, private, link-local,
//! CGNAT, unique-local, multicast, broadcast, unspecified, documentation and other reserved
//! ranges, including IPv4 addresses smuggled inside IPv6 (IPv4-mapped, IPv4-compatible, NAT64,
//! 6to4).
//!
//! The check runs on the *resolved* address, inside the HTTP client's DNS resolver
//! (`GuardedResolver`), so a public name that resolves to `10.0.0.5` is refused too and the
//! address that was checked is the one that is dialled (no second lookup to rebind). The client
//! does not call the resolver for IP-literal hosts, so [`Endpoint`](crate::Endpoint) checks those
//! itself before sending. A refused attempt sends nothing to the target.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use herald_core::{blocked_range, BlockedRange};
use hyper_util::client::legacy::connect::dns::Name;
use url::{Host, Url};

/// Why `ip` must not be dialled (e.g. `"a loopback address"`), or `None` when it is a public
/// address. The classification is herald-core's [`blocked_range`], the one the config loader
/// also uses for literal addresses.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    blocked_range(ip).map(BlockedRange::description)
}

/// A refused target: the text is what an attempt reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The host as written in the URL.
    host: String,
    /// The address that was refused.
    ip: IpAddr,
    /// Why, e.g. `"a loopback address"`.
    reason: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host == self.ip.to_string() {
            write!(f, "blocked: {} is {}", self.ip, self.reason)
        } else {
            write!(
                f,
                "blocked: {} resolves to {}, {}",
                self.host, self.ip, self.reason
            )
        }
    }
}

impl std::error::Error for Blocked {}

/// For a URL whose host is an IP literal, the refusal (if that address is not allowed).
/// Hostnames are checked later, at resolution time, by [`GuardedResolver`].
pub(crate) fn check_literal(url: &Url) -> Option<Blocked> {
    let ip = match url.host()? {
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
        Host::Domain(_) => return None,
    };
    blocked_reason(ip).map(|reason| Blocked {
        host: ip.to_string(),
        ip,
        reason,
    })
}

/// A DNS lookup that failed (as opposed to one that was refused).
#[derive(Debug)]
pub(crate) struct LookupFailed {
    host: String,
    source: std::io::Error,
}

impl fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dns lookup failed for {}: {}", self.host, self.source)
    }
}

impl std::error::Error for LookupFailed {}

/// The client's DNS resolver: the system resolver (`tokio::net::lookup_host`), and, when
/// guarded, the SSRF check of every address it returns.
///
/// A guarded lookup keeps only allowed addresses and fails with [`Blocked`] when none is left.
/// Dropping (rather than failing on) a refused address among public ones keeps dual-homed names
/// working while still never dialling the refused one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver {
    guarded: bool,
}

impl Resolver {
    pub(crate) fn new(guarded: bool) -> Self {
        Self { guarded }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(resolve(name.as_str().to_owned(), self.guarded))
    }
}

async fn resolve(host: String, guarded: bool) -> Result<std::vec::IntoIter<SocketAddr>, BoxError> {
    let found = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|source| LookupFailed {
            host: host.clone(),
            source,
        })?;
    if !guarded {
        return Ok(found.collect::<Vec<_>>().into_iter());
    }
    let mut allowed: Vec<SocketAddr> = Vec::new();
    let mut refused: Option<Blocked> = None;
    for addr in found {
        match blocked_reason(addr.ip()) {
            None => allowed.push(addr),
            Some(reason) => {
                refused.get_or_insert(Blocked {
                    host: host.clone(),
                    ip: addr.ip(),
                    reason,
                });
            }
        }
    }
    if allowed.is_empty() {
        if let Some(blocked) = refused {
            return Err(blocked.into());
        }
    }
    Ok(allowed.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        blocked_reason(s.parse().expect("test address"))
    }

    #[test]
    fn special_ipv4_ranges_are_refused() {
        for (ip, why) in [
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a link-local address"),
            ("100.64.0.1", "a shared (CGNAT) address"),
            ("100.127.255.255", "a shared (CGNAT) address"),
            ("0.0.0.0", "an unspecified address"),
            ("0.1.2.3", "a \"this network\" address (0.0.0.0/8)"),
            ("255.255.255.255", "a broadcast address"),
            ("224.0.0.1", "a multicast address"),
            ("192.0.2.10", "a documentation address"),
            ("198.51.100.1", "a documentation address"),
            ("203.0.113.7", "a documentation address"),
            ("198.18.0.1", "a benchmarking address"),
            ("240.0.0.1", "a reserved address"),
        ] {
            assert_eq!(reason(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(reason(ip), None, "{ip}");
        }
    }

    #[test]
    fn special_ipv6_ranges_and_embedded_ipv4_are_refused() {
        for (ip, why) in [
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("fe80::1", "a link-local address"),
            ("febf::1", "a link-local address"),
            ("fc00::1", "a unique-local address"),
            ("fd12:3456::1", "a unique-local address"),
            ("ff02::1", "a multicast address"),
            ("2001:db8::1", "a documentation address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:10.0.0.1", "a private address"),
            ("::ffff:169.254.169.254", "a link-local address"),
            ("::127.0.0.1", "a loopback address"),
            ("64:ff9b::a00:1", "a private address"),
            ("2002:c0a8:0101::1", "a private address"),
            ("100::1", "a discard-only address"),
        ] {
            assert_eq!(reason(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_are_left_to_the_resolver() {
        let url = |s: &str| Url::parse(s).expect("test url");
        let blocked = check_literal(&url("http://127.0.0.1:8080/x")).expect("refused");
        assert_eq!(
            blocked.to_string(),
            "blocked: 127.0.0.1 is a loopback address"
        );
        let blocked = check_literal(&url("http://[::1]/")).expect("refused");
        assert_eq!(blocked.to_string(), "blocked: ::1 is a loopback address");
        assert!(check_literal(&url("https://8.8.8.8/")).is_none());
        assert!(check_literal(&url("https://localhost/")).is_none());
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let err = match resolve("localhost".to_owned(), true).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        let text = err.to_string();
        assert!(
            text.starts_with("blocked: localhost resolves to "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_unguarded_resolver_keeps_loopback() {
        let addrs: Vec<SocketAddr> = resolve("localhost".to_owned(), false)
            .await
            .expect("resolves")
            .collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
