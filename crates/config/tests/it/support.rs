//! A temporary configuration folder and assertions on errors.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use herald_config::{ConfigError, ConfigErrors, HeraldConfig};
use herald_core::SubscriberConfig;
use tempfile::TempDir;

/// A subscriber that loads under the strict default policy.
pub(crate) const MINIMAL: &str =
    "url = \"https://hooks.acme.example/webhook\"\nevents = [\"PROCESS_STATE_FINISHED\"]\n";

/// `<tmp>/herald.toml` plus `<tmp>/subscribers/`.
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
}

impl Fixture {
    pub(crate) fn new(daemon: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("herald.toml"), daemon).unwrap();
        fs::create_dir(dir.path().join("subscribers")).unwrap();
        Self { dir }
    }

    pub(crate) fn daemon(&self) -> PathBuf {
        self.dir.path().join("herald.toml")
    }

    pub(crate) fn sub_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("subscribers").join(name)
    }

    pub(crate) fn sub(&self, name: &str, text: &str) -> &Self {
        fs::write(self.sub_path(name), text).unwrap();
        self
    }

    pub(crate) fn load(&self) -> Result<HeraldConfig, ConfigErrors> {
        herald_config::load_with_env(&self.daemon(), &|_| None)
    }

    pub(crate) fn load_env(&self, vars: &[(&str, &str)]) -> Result<HeraldConfig, ConfigErrors> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        herald_config::load_with_env(&self.daemon(), &|name| vars.get(name).cloned())
    }
}

/// Loads one subscriber file `acme.toml` under `daemon`.
pub(crate) fn load_sub_with(daemon: &str, text: &str) -> Result<SubscriberConfig, ConfigErrors> {
    let fixture = Fixture::new(daemon);
    fixture.sub("acme.toml", text);
    fixture.load().map(|config| {
        assert_eq!(config.subscribers.len(), 1);
        config.subscribers.into_iter().next().unwrap()
    })
}

pub(crate) fn load_sub(text: &str) -> Result<SubscriberConfig, ConfigErrors> {
    load_sub_with("", text)
}

pub(crate) fn sub_ok(text: &str) -> SubscriberConfig {
    match load_sub(text) {
        Ok(sub) => sub,
        Err(errors) => panic!("expected {text:?} to load, got:\n{errors}"),
    }
}

/// Asserts that loading `text` as `acme.toml` fails with an error on `key` whose message
/// contains `fragment`, and that its display names the file and the key.
pub(crate) fn sub_err(text: &str, key: &str, fragment: &str) -> ConfigErrors {
    sub_err_with("", text, key, fragment)
}

pub(crate) fn sub_err_with(daemon: &str, text: &str, key: &str, fragment: &str) -> ConfigErrors {
    let errors = match load_sub_with(daemon, text) {
        Ok(sub) => panic!("expected {text:?} to fail on {key}, loaded {sub:?}"),
        Err(errors) => errors,
    };
    assert_has(&errors, "acme.toml", key, fragment);
    errors
}

/// Asserts that `errors` holds an error in a file ending with `file`, on `key`, whose message
/// contains `fragment`; and that its display line shows file and key.
pub(crate) fn assert_has(
    errors: &ConfigErrors,
    file: &str,
    key: &str,
    fragment: &str,
) -> ConfigError {
    let found = errors
        .errors()
        .iter()
        .find(|e| e.file.ends_with(file) && e.key == key && e.message.contains(fragment));
    let Some(error) = found else {
        panic!("no error on {file} / {key:?} containing {fragment:?}; got:\n{errors}");
    };
    let line = error.to_string();
    assert!(line.contains(file), "{line}");
    if !key.is_empty() {
        assert!(line.contains(&format!(": {key}: ")), "{line}");
    }
    error.clone()
}
