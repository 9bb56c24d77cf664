//! `herald check`: a summary and exit 0 on a good config, the file and key of every error and a
//! non-zero exit on a bad one.

use std::path::Path;
use std::process::Output;

use crate::harness::{run_herald, Config, Sub, PANIC_TEXT};

async fn check(path: &Path, env: Vec<(String, String)>) -> (Output, String) {
    let out = run_herald(
        vec!["check".into(), "-c".into(), path.display().to_string()],
        env,
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(PANIC_TEXT), "check panicked:\n{text}");
    (out, text)
}

fn good() -> Config {
    Config::default()
        .sub(Sub::new("alpha", "http://127.0.0.1:9/a"))
        .sub(Sub::new("beta", "http://127.0.0.1:9/b").events(&["E1", "E2"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_config_passes_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = good().write(dir.path());
    let (out, text) = check(&path, vec![]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
    assert!(text.contains("alpha") && text.contains("beta"), "{text}");
    assert!(text.contains("2 subscriber"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_passes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/herald.toml");
    let (out, text) = check(&path, vec![]).await;
    assert!(out.status.success(), "{text}");
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/herald.toml");
    let (out, text) = check(&local, vec![]).await;
    assert!(out.status.success(), "{text}");
}

/// `herald check | head -1` must not panic when the reader has gone: the pipe's read end is
/// closed before the child starts, so its first write meets EPIPE every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = good().write(dir.path());
    let out = tokio::task::spawn_blocking(move || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        std::process::Command::new(crate::harness::HERALD)
            .args(["check", "-c"])
            .arg(&path)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run herald")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(PANIC_TEXT), "check panicked:\n{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// Each case: (file to corrupt: None = herald.toml, else the subscriber name), the text to
/// append or replace, and what the error must mention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_fail_naming_file_and_key() {
    struct Case {
        name: &'static str,
        file: Option<&'static str>,
        edit: fn(String) -> String,
        mentions: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "unknown key in a subscriber",
            file: Some("beta"),
            edit: |t| format!("colour = \"red\"\n{t}"),
            mentions: &["beta.toml", "colour"],
        },
        Case {
            name: "unknown key in [server]",
            file: None,
            edit: |t| t.replace("[server]\n", "[server]\nlisten_backlog = 5\n"),
            mentions: &["herald.toml", "listen_backlog"],
        },
        Case {
            name: "bad duration",
            file: Some("alpha"),
            edit: |t| t.replace("timeout = \"2s\"", "timeout = \"ten seconds\""),
            mentions: &["alpha.toml", "timeout"],
        },
        Case {
            name: "bad duration in the daemon file",
            file: None,
            edit: |t| t.replace("grace = \"5s\"", "grace = \"5 parsecs\""),
            mentions: &["herald.toml", "grace"],
        },
        Case {
            name: "max_in_flight over 500",
            file: Some("alpha"),
            edit: |t| t.replace("max_in_flight = 10", "max_in_flight = 501"),
            mentions: &["alpha.toml", "max_in_flight", "500"],
        },
        Case {
            name: "missing ${VAR}",
            file: Some("beta"),
            edit: |t| {
                t.replace(
                    "url = \"http://127.0.0.1:9/b\"",
                    "url = \"http://127.0.0.1:9/${HERALD_E2E_SURELY_UNSET}\"",
                )
            },
            mentions: &["beta.toml", "url", "HERALD_E2E_SURELY_UNSET"],
        },
        Case {
            name: "header injection in an api_key",
            file: Some("alpha"),
            edit: |t| {
                format!("{t}\n[auth]\ntype = \"api_key\"\nkey = \"X-API-Key:abc\\r\\nX-Evil: 1\"\n")
            },
            mentions: &["alpha.toml", "auth.key", "control character"],
        },
        Case {
            name: "header injection in a static header",
            file: Some("beta"),
            edit: |t| format!("headers = {{ \"X-Tenant\" = \"acme\\nX-Evil: 1\" }}\n{t}"),
            mentions: &["beta.toml", "X-Tenant", "control character"],
        },
        Case {
            name: "https only without allow_http",
            file: None,
            edit: |t| t.replace("allow_http = true", "allow_http = false"),
            mentions: &["alpha.toml", "url"],
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = good().write(dir.path());
        let target = match case.file {
            None => path.clone(),
            Some(sub) => dir.path().join("subscribers").join(format!("{sub}.toml")),
        };
        let text = std::fs::read_to_string(&target).unwrap();
        let edited = (case.edit)(text.clone());
        assert_ne!(edited, text, "{}: the edit changed nothing", case.name);
        std::fs::write(&target, edited).unwrap();
        let (out, text) = check(&path, vec![]).await;
        assert!(
            !out.status.success(),
            "{}: check passed:\n{text}",
            case.name
        );
        for m in case.mentions {
            assert!(
                text.contains(m),
                "{}: error does not mention {m:?}:\n{text}",
                case.name
            );
        }
        // `run` refuses the same config: nothing starts on a bad config.
        let out = run_herald(
            vec!["run".into(), "-c".into(), path.display().to_string()],
            vec![],
        )
        .await;
        assert!(!out.status.success(), "{}: run started", case.name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains(PANIC_TEXT), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_vars_are_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().sub(Sub::new("alpha", "http://127.0.0.1:9/${HERALD_E2E_PATH}"));
    let path = config.write(dir.path());
    let (out, text) = check(&path, vec![("HERALD_E2E_PATH".into(), "from-env".into())]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("from-env"), "{text}");
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("nowhere/herald.toml");
    let (out, text) = check(&missing, vec![]).await;
    assert!(!out.status.success());
    assert!(text.contains("nowhere"), "{text}");
}
