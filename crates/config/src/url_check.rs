//! Outbound URLs: subscriber endpoints and OAuth2 token endpoints.
//!
//! URLs are never quoted in messages (a query string may hold a token).

use std::net::{Ipv4Addr, Ipv6Addr};

use herald_core::SecurityPolicy;
use url::{Host, Url};

/// Whether literal private addresses are refused for this URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A subscriber endpoint: the `allow_private_networks` guard applies to literal addresses
    /// (`https://10.0.0.5/`, `https://localhost/`) at load time. Names that resolve to such
    /// addresses are caught by the delivery layer, which checks the resolved IP.
    Endpoint,
    /// An OAuth2 token endpoint: operator infrastructure, only the scheme rules apply.
    TokenEndpoint,
}

/// Parses and checks an outbound URL against `[security]`.
pub(crate) fn outbound_url(
    raw: &str,
    security: &SecurityPolicy,
    target: Target,
) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if security.allow_http => {}
        "http" => {
            return Err(
                "is an http:// URL, refused unless [security] allow_http = true in the daemon file"
                    .to_owned(),
            )
        }
        _ => return Err("must be an http:// or https:// URL".to_owned()),
    }
    let Some(host) = url.host() else {
        return Err("has no host".to_owned());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (user:password@); use [auth]".to_owned());
    }
    if target == Target::Endpoint && !security.allow_private_networks && is_private_host(&host) {
        return Err(
            "points at a loopback, private or link-local address, refused unless \
             [security] allow_private_networks = true in the daemon file"
                .to_owned(),
        );
    }
    Ok(url)
}

fn is_private_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Host::Ipv4(ip) => is_special_v4(*ip),
        Host::Ipv6(ip) => is_special_v6(*ip),
    }
}

/// Loopback, private, link-local, shared (CGNAT, 100.64/10), "this network" (0/8),
/// broadcast, multicast and reserved (240/4) IPv4 ranges.
pub(crate) fn is_special_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

/// Loopback, unspecified, unique-local, link-local, multicast, and IPv4-mapped special ranges.
pub(crate) fn is_special_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_special_v4(v4);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || ip.is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: SecurityPolicy = SecurityPolicy {
        allow_http: false,
        allow_private_networks: false,
    };
    const OPEN: SecurityPolicy = SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    };

    #[test]
    fn https_is_the_norm() {
        let ok = outbound_url(
            "https://hooks.acme.example/webhook",
            &STRICT,
            Target::Endpoint,
        );
        assert_eq!(ok.unwrap().host_str(), Some("hooks.acme.example"));
        assert!(
            outbound_url("http://hooks.acme.example/", &STRICT, Target::Endpoint)
                .unwrap_err()
                .contains("allow_http")
        );
        assert!(outbound_url("http://hooks.acme.example/", &OPEN, Target::Endpoint).is_ok());
        assert!(outbound_url("ftp://x.example/", &OPEN, Target::Endpoint).is_err());
        assert!(outbound_url("file:///etc/passwd", &OPEN, Target::Endpoint).is_err());
        assert!(outbound_url("/relative", &OPEN, Target::Endpoint).is_err());
        assert!(outbound_url("https://", &OPEN, Target::Endpoint).is_err());
    }

    #[test]
    fn no_credentials_in_urls() {
        let e = outbound_url("https://u:hunter2@x.example/", &OPEN, Target::Endpoint).unwrap_err();
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn literal_private_addresses_need_permission() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.0.1:8443/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://localhost:9000/",
            "https://api.localhost/",
        ] {
            assert!(
                outbound_url(url, &STRICT, Target::Endpoint).is_err(),
                "{url}"
            );
            let open = SecurityPolicy {
                allow_http: false,
                allow_private_networks: true,
            };
            assert!(outbound_url(url, &open, Target::Endpoint).is_ok(), "{url}");
        }
        assert!(outbound_url("https://93.184.215.14/", &STRICT, Target::Endpoint).is_ok());
        assert!(outbound_url("https://[2606:4700::1111]/", &STRICT, Target::Endpoint).is_ok());
        assert!(outbound_url("https://10.0.0.1/token", &STRICT, Target::TokenEndpoint).is_ok());
    }
}
