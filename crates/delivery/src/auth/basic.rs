//! `type = "basic"`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderValue;

use herald_core::{BoxFuture, Secret};

use super::{ready, sensitive, AuthHeader, AuthProvider};
use crate::DeliveryError;

/// `Authorization: Basic base64(user:pass)`, built once.
#[derive(Clone)]
pub struct BasicAuth {
    header: AuthHeader,
}

impl BasicAuth {
    /// `credentials` is `user:pass` (the password may itself contain colons).
    pub fn new(credentials: &Secret) -> Self {
        let encoded = STANDARD.encode(credentials.expose().as_bytes());
        // "Basic " + base64 is visible ASCII, always a valid header value.
        let value = HeaderValue::try_from(format!("Basic {encoded}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        Self {
            header: AuthHeader {
                name: AUTHORIZATION,
                value: sensitive(value),
            },
        }
    }
}

impl AuthProvider for BasicAuth {
    fn header(&self) -> BoxFuture<'_, Result<Option<AuthHeader>, DeliveryError>> {
        ready(Some(self.header.clone()))
    }
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicAuth { credentials: **REDACTED** }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_user_and_password_and_marks_it_sensitive() {
        let auth = BasicAuth::new(&Secret::new("user:pa:ss"));
        assert_eq!(auth.header.name, AUTHORIZATION);
        assert_eq!(auth.header.value, "Basic dXNlcjpwYTpzcw==");
        assert!(auth.header.value.is_sensitive());
        let printed = format!("{auth:?} {:?}", auth.header);
        assert!(!printed.contains("dXNlcjpwYTpzcw") && !printed.contains("pa:ss"));
    }
}
