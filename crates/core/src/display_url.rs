//! [`DisplayUrl`]: how a URL is shown to people (API answers, CLI output, logs, `Debug`).
//!
//! SPEC §10: URLs are shown without their query string and user info. A query string often
//! carries a token (`?token=${TOKEN}`) and user info a password, so a `DisplayUrl` keeps only
//! `scheme://host[:port]/path`: no user info, no query, no fragment. Requests still go to the
//! full [`Url`]; a `DisplayUrl` is only ever printed.

use std::fmt;

use serde::{Serialize, Serializer};
use url::Url;

/// `scheme://host[:port]/path` of a URL, for display. Its `Debug`, `Display` and `Serialize`
/// all print that form and nothing else.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DisplayUrl(String);

impl DisplayUrl {
    /// The display form of `url`.
    pub fn new(url: &Url) -> Self {
        let mut shown = String::with_capacity(url.as_str().len());
        shown.push_str(url.scheme());
        shown.push_str("://");
        shown.push_str(url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            shown.push(':');
            shown.push_str(&port.to_string());
        }
        shown.push_str(url.path());
        Self(shown)
    }

    /// The display form as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Url> for DisplayUrl {
    fn from(url: &Url) -> Self {
        Self::new(url)
    }
}

impl fmt::Display for DisplayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DisplayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for DisplayUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn shown(raw: &str) -> DisplayUrl {
        DisplayUrl::new(&Url::parse(raw).unwrap())
    }

    #[test]
    fn keeps_scheme_host_port_and_path_only() {
        for (raw, want) in [
            ("https://hooks.example/in", "https://hooks.example/in"),
            ("https://hooks.example", "https://hooks.example/"),
            ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/b"),
            ("https://hooks.example:443/x", "https://hooks.example/x"),
            ("https://[::1]:9000/x", "https://[::1]:9000/x"),
            (
                "https://hooks.example/in?token=s3cr3t",
                "https://hooks.example/in",
            ),
            (
                "https://hooks.example/in?a=1#frag",
                "https://hooks.example/in",
            ),
            (
                "https://user:pa55@hooks.example/in",
                "https://hooks.example/in",
            ),
            (
                "https://tok3n@hooks.example:81/",
                "https://hooks.example:81/",
            ),
        ] {
            let url = shown(raw);
            assert_eq!(url.to_string(), want, "{raw}");
            assert_eq!(url.as_str(), want, "{raw}");
            assert_eq!(format!("{url:?}"), format!("{want:?}"), "{raw}");
        }
    }

    #[test]
    fn no_form_prints_the_secret_parts() {
        let url = shown("https://alice:pa55word@h.example/p?token=s3cr3t&x=1#anchor");
        let json = serde_json::to_string(&url).unwrap();
        for text in [
            url.to_string(),
            format!("{url:?}"),
            format!("{url:#?}"),
            json,
        ] {
            for secret in [
                "alice", "pa55word", "s3cr3t", "token", "anchor", "?", "#", "@",
            ] {
                assert!(!text.contains(secret), "{text} shows {secret}");
            }
        }
    }
}
