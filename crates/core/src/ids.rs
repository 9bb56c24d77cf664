//! Identifiers.
//!
//! Event and delivery ids are UUIDv7: time-ordered, so their byte order is creation order (the
//! store uses that for cursors), and unique without coordination. Subscriber ids are short
//! operator-chosen names (`[A-Za-z0-9._-]`, 1–128 bytes) because they appear in URLs, metric
//! labels and storage keys.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An id that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: {reason}")]
pub struct InvalidId {
    kind: &'static str,
    value: String,
    reason: &'static str,
}

macro_rules! uuid_id {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("The id of one ", $kind, " (a UUIDv7).")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            /// The 16 bytes used in storage keys; byte order is creation order.
            pub fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }
            /// Inverse of [`Self::to_bytes`].
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                    reason: "expected a UUID",
                })
            }
        }
    };
}

uuid_id!(EventId, "event");
uuid_id!(DeliveryId, "delivery");

/// The id of a subscriber: `[A-Za-z0-9._-]`, 1–128 bytes. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(Arc<str>);

impl SubscriberId {
    /// The longest id accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates and wraps a subscriber id.
    pub fn new(id: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            kind: "subscriber",
            value: id.chars().take(64).collect(),
            reason,
        };
        if id.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if id.len() > Self::MAX_LEN {
            return Err(invalid("longer than 128 bytes"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "only letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubscriberId({})", self.0)
    }
}

impl FromStr for SubscriberId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for SubscriberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SubscriberId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Lets maps keyed by `SubscriberId` be searched with a `&str` (the derived `Eq`, `Ord` and
/// `Hash` compare the string, so they agree with `str`'s).
impl std::borrow::Borrow<str> for SubscriberId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SubscriberId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_ids_are_validated() {
        assert!(SubscriberId::new("acme-prod_1.eu").is_ok());
        assert!(SubscriberId::new("").is_err());
        assert!(SubscriberId::new("a/b").is_err());
        assert!(SubscriberId::new("a\0b").is_err());
        assert!(SubscriberId::new(&"x".repeat(129)).is_err());
    }

    #[test]
    fn uuid_ids_round_trip_and_sort_by_creation() {
        let a = DeliveryId::generate();
        let b = DeliveryId::generate();
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(a.to_string().parse::<DeliveryId>(), Ok(a));
        assert_eq!(DeliveryId::from_bytes(a.to_bytes()), a);
        assert!("nope".parse::<EventId>().is_err());
    }
}
