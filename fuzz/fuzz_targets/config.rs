//! Fuzzes the config loader on a subscriber file: whatever the bytes, `load` returns a valid
//! config or a non-empty list of errors, each naming a file; never a panic. A config that loads
//! keeps the rules the daemon relies on (1..=500 in flight, a URL, a non-zero timeout).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Target {
    daemon_file: PathBuf,
    subscriber_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let daemon_file = dir.path().join("herald.toml");
        std::fs::write(
            &daemon_file,
            "subscribers_dir = \"subscribers\"\n[security]\nallow_http = true\nallow_private_networks = true\n",
        )
        .expect("daemon file");
        std::fs::create_dir(dir.path().join("subscribers")).expect("subscribers dir");
        let subscriber_file = dir.path().join("subscribers").join("fuzz.toml");
        Target {
            daemon_file,
            subscriber_file,
            _dir: dir,
        }
    })
}

/// `SET` is set (to a value that is itself valid in most places); every other variable is not.
fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "x".to_owned())
}

fuzz_target!(|data: &[u8]| {
    let t = target();
    std::fs::write(&t.subscriber_file, data).expect("write subscriber file");
    match herald_config::load_with_env(&t.daemon_file, &env) {
        Ok(config) => {
            assert_eq!(config.subscribers.len(), 1, "one file, one subscriber");
            let sub = &config.subscribers[0];
            assert!(
                (1..=500).contains(&sub.max_in_flight),
                "{}",
                sub.max_in_flight
            );
            assert!(!sub.timeout.is_zero());
            assert!(matches!(sub.url.scheme(), "http" | "https"), "{}", sub.url);
        }
        Err(errors) => {
            let text = errors.to_string();
            assert!(!text.trim().is_empty(), "an error list without errors");
            for line in text.lines() {
                assert!(
                    line.contains("fuzz.toml") || line.contains("herald.toml"),
                    "an error that names no file: {line}"
                );
            }
        }
    }
});
