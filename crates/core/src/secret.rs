//! [`Secret`]: credentials that must never be printed.

use std::fmt;

/// A credential (password, API key, client secret, signing secret, token).
///
/// `Debug` and `Display` print `**REDACTED**`; it implements no `Serialize`, so it cannot end up
/// in an API answer by accident. Use [`Secret::expose`] at the one place the value is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(value.into())
    }

    /// The raw value. Call only where it is put on the wire or into a MAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

const REDACTED: &str = "**REDACTED**";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(
            format!("{:?}", Some(vec![s.clone()])),
            "Some([**REDACTED**])"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
