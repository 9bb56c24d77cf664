//! [`ApiError`]: every failure the API answers, as `{"error": code, "message": sentence}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{DeliveryStatus, StoreError};
use herald_dispatcher::DispatchError;
use serde::Serialize;

/// An API failure with its status, a stable code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable sentence.
    pub message: String,
}

/// Every error answer: a stable code and a sentence.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Stable machine-readable code, e.g. `not_found`, `bad_request`, `unauthorized`.
    pub(crate) error: &'a str,
    /// Human-readable sentence.
    pub(crate) message: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }
    pub(crate) fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "Herald is shutting down and accepts no new events; retry against another instance or after restart",
        )
    }
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (send Authorization: Bearer <api_token>)",
        )
    }
    pub(crate) fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        // The cause is logged in full; the client gets a stable sentence.
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the Herald logs"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => {
                Self::not_found("not_found", format!("no delivery with id {id}"))
            }
            StoreError::InvalidState {
                id,
                expected,
                actual,
            } => {
                // Each operation needs its own state; say which one this was.
                let rule = match expected {
                    DeliveryStatus::Dead => "only dead deliveries can be retried",
                    DeliveryStatus::InFlight => {
                        "only a delivery in flight can have an attempt recorded or be released"
                    }
                    DeliveryStatus::Pending => "only a pending delivery can be claimed",
                    DeliveryStatus::Delivered => "only a delivered delivery qualifies",
                };
                Self::new(
                    StatusCode::CONFLICT,
                    "invalid_state",
                    format!("delivery {id} is {}, {rule}", actual.as_str()),
                )
            }
            StoreError::Full(cause) => {
                tracing::error!(error = %cause, "storage is full; refusing to acknowledge");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the event store is out of disk space; nothing was accepted",
                )
            }
            StoreError::Closed => Self::shutting_down(),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "storage unavailable; answering 503");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the event store cannot be reached right now; nothing was changed, retry later",
                )
            }
            other => Self::internal("storage failed", &other),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::UnknownSubscriber(id) => Self::not_found(
                "unknown_subscriber",
                format!("no subscriber with id {id:?} is configured"),
            ),
            DispatchError::Store(s) => s.into(),
            other => Self::internal("dispatcher failed", &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // An oversize body is refused without reading it, so the connection cannot carry
            // another request: say so, or a keep-alive client would reuse a closing socket.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use herald_core::DeliveryId;

    use super::*;

    #[test]
    fn an_unreachable_store_is_503_storage_unavailable_without_the_cause() {
        let e = ApiError::from(StoreError::Unavailable(
            "connection to db.internal:5432 refused".into(),
        ));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "storage_unavailable");
        assert!(!e.message.contains("db.internal"), "{}", e.message);
        let through_dispatcher =
            ApiError::from(DispatchError::Store(StoreError::Unavailable("gone".into())));
        assert_eq!(through_dispatcher.code, "storage_unavailable");
    }

    /// Each operation's refusal says what that operation needs; only a retry talks of retrying.
    #[test]
    fn invalid_state_messages_name_the_operation() {
        let id = DeliveryId::generate();
        let message = |expected, actual| {
            let e = ApiError::from(StoreError::InvalidState {
                id,
                expected,
                actual,
            });
            assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "invalid_state"));
            e.message
        };
        assert_eq!(
            message(DeliveryStatus::Dead, DeliveryStatus::Pending),
            format!("delivery {id} is pending, only dead deliveries can be retried")
        );
        let release = message(DeliveryStatus::InFlight, DeliveryStatus::Delivered);
        assert_eq!(
            release,
            format!(
                "delivery {id} is delivered, only a delivery in flight can have an attempt \
                 recorded or be released"
            )
        );
        let claim = message(DeliveryStatus::Pending, DeliveryStatus::Dead);
        assert!(claim.contains("only a pending delivery"), "{claim}");
        let not_found = ApiError::from(StoreError::NotFound(id));
        assert_eq!(not_found.message, format!("no delivery with id {id}"));
    }
}
