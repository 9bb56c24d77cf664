//! `type = "none"`.

use herald_core::BoxFuture;

use super::{ready, AuthHeader, AuthProvider};
use crate::DeliveryError;

/// No authentication header.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

impl AuthProvider for NoAuth {
    fn header(&self) -> BoxFuture<'_, Result<Option<AuthHeader>, DeliveryError>> {
        ready(None)
    }
}
