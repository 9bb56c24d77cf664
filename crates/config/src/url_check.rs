//! Outbound URLs: subscriber endpoints and OAuth2 token endpoints.
//!
//! URLs are never quoted in messages (a query string may hold a token).

use std::net::IpAddr;

use herald_core::{blocked_range, BlockedRange, SecurityPolicy};
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
    if target == Target::Endpoint && !security.allow_private_networks {
        if let Some(what) = private_host(&host) {
            return Err(format!(
                "points at {what}, refused unless [security] allow_private_networks = true \
                 in the daemon file"
            ));
        }
    }
    Ok(url)
}

/// What `host` is when it names this machine or a blocked range (herald-core's
/// [`blocked_range`], the classification the delivery guard applies to resolved addresses).
fn private_host(host: &Host<&str>) -> Option<&'static str> {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("a localhost name")
        }
        Host::Ipv4(ip) => blocked_range(IpAddr::V4(*ip)).map(BlockedRange::description),
        Host::Ipv6(ip) => blocked_range(IpAddr::V6(*ip)).map(BlockedRange::description),
    }
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

    /// Every range the delivery guard refuses is refused here too, named in the message
    /// (documentation, benchmarking, NAT64 and 6to4 literals used to load and then fail at
    /// every attempt).
    #[test]
    fn literals_follow_the_delivery_guard_ranges() {
        let open = SecurityPolicy {
            allow_http: false,
            allow_private_networks: true,
        };
        for (url, what) in [
            ("https://0.0.0.0/", "an unspecified address"),
            ("https://0.1.2.3/", "a \"this network\" address (0.0.0.0/8)"),
            ("https://127.0.0.1/", "a loopback address"),
            ("https://192.0.0.8/", "an IETF protocol assignment address"),
            ("https://192.0.2.1/", "a documentation address"),
            ("https://198.51.100.7/", "a documentation address"),
            ("https://203.0.113.9/", "a documentation address"),
            ("https://198.18.0.1/", "a benchmarking address"),
            ("https://224.0.0.1/", "a multicast address"),
            ("https://255.255.255.255/", "a broadcast address"),
            ("https://[::]/", "an unspecified address"),
            ("https://[::ffff:127.0.0.1]/", "a loopback address"),
            ("https://[::127.0.0.1]/", "a loopback address"),
            ("https://[::ffff:0.0.0.0]/", "an unspecified address"),
            ("https://[64:ff9b::7f00:1]/", "a loopback address"),
            ("https://[64:ff9b::a00:1]/", "a private address"),
            ("https://[2002:c0a8:101::1]/", "a private address"),
            ("https://[2001:db8::1]/", "a documentation address"),
            ("https://[100::1]/", "a discard-only address"),
            ("https://[fec0::1]/", "a site-local address"),
            ("https://[ff02::1]/", "a multicast address"),
            ("https://localhost/", "a localhost name"),
        ] {
            let err = outbound_url(url, &STRICT, Target::Endpoint).unwrap_err();
            assert!(err.contains(&format!("points at {what},")), "{url}: {err}");
            assert!(outbound_url(url, &open, Target::Endpoint).is_ok(), "{url}");
        }
        for url in [
            "https://8.8.8.8/",
            "https://[::ffff:8.8.8.8]/",
            "https://[64:ff9b::808:808]/",
            "https://[2002:808:808::1]/",
            "https://[2001:4860::8888]/",
        ] {
            assert!(
                outbound_url(url, &STRICT, Target::Endpoint).is_ok(),
                "{url}"
            );
        }
    }
}
