//! `type = "api_key"`.

use std::fmt;

use http::{HeaderName, HeaderValue};

use herald_core::{BoxFuture, Secret, SubscriberId};

use super::{ready, sensitive, AuthHeader, AuthProvider};
use crate::DeliveryError;

/// A static header. The config layer already split `key` on its first colon (`X-API-Key:abc123`
/// → header `X-API-Key`, value `abc123`; no colon → `Authorization`); the value is sent as is,
/// with no scheme added.
#[derive(Clone)]
pub struct ApiKeyAuth {
    header: AuthHeader,
}

impl ApiKeyAuth {
    /// Validates the header name and value once.
    pub fn new(
        subscriber: &SubscriberId,
        header: &str,
        value: &Secret,
    ) -> Result<Self, DeliveryError> {
        let invalid =
            |part, source: Box<dyn std::error::Error + Send + Sync>| DeliveryError::InvalidHeader {
                subscriber: subscriber.to_string(),
                name: header.to_owned(),
                part,
                source,
            };
        let name =
            HeaderName::from_bytes(header.as_bytes()).map_err(|e| invalid("name", Box::new(e)))?;
        let value =
            HeaderValue::from_str(value.expose()).map_err(|e| invalid("value", Box::new(e)))?;
        Ok(Self {
            header: AuthHeader {
                name,
                value: sensitive(value),
            },
        })
    }
}

impl AuthProvider for ApiKeyAuth {
    fn header(&self) -> BoxFuture<'_, Result<Option<AuthHeader>, DeliveryError>> {
        ready(Some(self.header.clone()))
    }
}

impl fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("header", &self.header.name)
            .field("value", &"**REDACTED**")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_value_as_is_and_sensitive() {
        let sub = SubscriberId::new("acme").expect("id");
        let auth = ApiKeyAuth::new(&sub, "X-API-Key", &Secret::new("abc:123")).expect("valid");
        assert_eq!(auth.header.name, "x-api-key");
        assert_eq!(auth.header.value, "abc:123");
        assert!(auth.header.value.is_sensitive());
        assert!(!format!("{auth:?}").contains("abc"));
    }

    #[test]
    fn invalid_values_are_refused_without_quoting_them() {
        let sub = SubscriberId::new("acme").expect("id");
        let err = ApiKeyAuth::new(&sub, "X-Key", &Secret::new("line\nbreak-secret"))
            .expect_err("newline");
        assert!(!err.to_string().contains("break-secret"), "{err}");
        assert!(ApiKeyAuth::new(&sub, "bad name", &Secret::new("v")).is_err());
    }
}
