//! Load errors: every one names a file, a key and what is wrong.
//!
//! Messages never contain a secret. Where a value is quoted back to the operator it is one that
//! cannot be a credential (a duration, a subscriber id, an event type); URLs and header values
//! are never echoed, because they may carry a token after `${VAR}` expansion.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one configuration file.
///
/// `Display` prints `<file>: <key>: <message>`, or `<file>: <message>` when the problem concerns
/// the whole file (`key` is empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or, for an unreadable subscribers folder, the folder) the problem is in.
    pub file: PathBuf,
    /// Dotted path of the key, e.g. `retry.initial_interval` or `signing.secret[1]`; empty when
    /// the problem concerns the whole file.
    pub key: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl ConfigError {
    /// A problem with `key` in `file`. Control characters in the key and message (a quoted
    /// TOML key or a value that holds `\n`) are escaped, so an error is always one line and
    /// nothing in a config file can forge further lines in `check` output or the logs.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            key: one_line(key.into()),
            message: one_line(message.into()),
        }
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`, …); unchanged if it has none.
fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found while loading; never empty.
///
/// `Display` prints one error per line, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The individual errors, owned.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a `ConfigErrors` holds at least one error. Present for symmetry with
    /// [`ConfigErrors::len`].
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wraps a list that the caller knows to be non-empty.
    pub(crate) fn from_vec(errors: Vec<ConfigError>) -> Self {
        debug_assert!(!errors.is_empty());
        Self(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Collects the errors of one file while it is validated, so that every problem is reported
/// instead of only the first.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Self {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn file(&self) -> &'a Path {
        self.file
    }

    /// Records a problem with `key`.
    pub(crate) fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(self.file, key.into(), message.into()));
    }

    /// Records something worth telling the operator that does not make the file invalid.
    pub(crate) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings
            .push(ConfigError::new(self.file, key.into(), message.into()));
    }

    /// Takes the warnings recorded so far.
    pub(crate) fn take_warnings(&mut self) -> Vec<ConfigError> {
        std::mem::take(&mut self.warnings)
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub(crate) fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(key, message);
                None
            }
        }
    }

    /// Whether a problem was recorded for exactly `key`.
    pub(crate) fn has_error_at(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_key() {
        let e = ConfigError::new("subs/acme.toml", "retry.multiplier", "must be at least 1.0");
        assert_eq!(
            e.to_string(),
            "subs/acme.toml: retry.multiplier: must be at least 1.0"
        );
        let whole = ConfigError::new("subs/acme.toml", "", "cannot be read");
        assert_eq!(whole.to_string(), "subs/acme.toml: cannot be read");
    }

    #[test]
    fn control_characters_cannot_split_an_error_over_lines() {
        let e = ConfigError::new("a.toml", "x\ny", "unknown scheme \"a\r\nb\u{1b}[2J\"");
        assert_eq!(
            e.to_string(),
            "a.toml: x\\ny: unknown scheme \"a\\r\\nb\\u{1b}[2J\""
        );
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn errors_print_one_per_line() {
        let errors = ConfigErrors::from_vec(vec![
            ConfigError::new("a.toml", "x", "bad"),
            ConfigError::new("b.toml", "y", "worse"),
        ]);
        assert_eq!(errors.to_string(), "a.toml: x: bad\nb.toml: y: worse");
        assert_eq!(errors.len(), 2);
        assert!(!errors.is_empty());
    }
}
