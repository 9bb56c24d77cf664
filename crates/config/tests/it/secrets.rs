//! Credentials never appear in errors or in `Debug` output.

use crate::support::Fixture;

const MARK: &str = "S3CR3T";

#[test]
fn a_loaded_configuration_prints_no_secret() {
    let fixture = Fixture::new(&format!("[server]\napi_token = \"tok-{MARK}\"\n"));
    fixture
        .sub(
            "basic.toml",
            &format!("url = \"https://a.example/\"\nevents = [\"*\"]\n[auth]\ntype = \"basic\"\ncredentials = \"user:{MARK}\"\n"),
        )
        .sub(
            "apikey.toml",
            &format!("url = \"https://a.example/\"\nevents = [\"*\"]\n[auth]\ntype = \"api_key\"\nkey = \"X-API-Key:{MARK}\"\n"),
        )
        .sub(
            "oauth.toml",
            &format!(
                "url = \"https://a.example/\"\nevents = [\"*\"]\n[auth]\ntype = \"oauth2\"\ntoken_url = \"https://idp.example/t\"\n\
                 client_id = \"c\"\nclient_secret = \"{MARK}\"\n[signing]\nscheme = \"sha256-v1\"\nsecret = [\"{MARK}-1\", \"{MARK}-2\"]\n"
            ),
        )
        .sub(
            "std.toml",
            "url = \"https://a.example/\"\nevents = [\"*\"]\n[signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_UzNDUjNUUzNDUjNU\"\n",
        );
    let config = fixture.load().unwrap();
    assert_eq!(config.subscribers.len(), 4);
    let printed = format!("{config:?} {config:#?}");
    assert!(!printed.contains(MARK), "{printed}");
    assert!(!printed.contains("UzNDUjNUUzNDUjNU"), "{printed}");
    assert!(printed.contains("**REDACTED**"));
}

#[test]
fn errors_print_no_secret() {
    let fixture = Fixture::new(&format!("[server]\napi_token = \"tok {MARK}\"\n"));
    let cases = [
        format!("[auth]\ntype = \"basic\"\ncredentials = \"{MARK}\"\n"),
        format!("[auth]\ntype = \"none\"\ncredentials = \"u:{MARK}\"\n"),
        format!("[auth]\ntype = \"api_key\"\nkey = \"Bad Name:{MARK}\"\n"),
        format!("[auth]\ntype = \"api_key\"\nkey = \"X-Key:{MARK}\\r\\n\"\n"),
        format!("[auth]\ntype = \"api_key\"\nkey = \"{MARK}\\u0000\"\n"),
        "[auth]\ntype = \"api_key\"\nkey = \"${K}\"\n".to_owned(),
        "max_in_flight = \"${K}\"\n".to_owned(),
        format!("[throttle]\nerror_rate = \"{MARK}\"\n"),
        format!("[auth]\ntype = \"oauth2\"\ntoken_url = \"https://u:{MARK}@idp.example/\"\nclient_id = \"c\"\nclient_secret = \"{MARK}\"\n"),
        format!("[auth]\ntype = \"oauth2\"\ntoken_url = \"https://idp.example:{MARK}/\"\nclient_id = \"c\"\nclient_secret = \"{MARK}\"\n"),
        format!("[signing]\nscheme = \"standard-webhooks\"\nsecret = \"{MARK}\"\n"),
        format!("[signing]\nscheme = \"standard-webhooks\"\nsecret = [\"whsec_{MARK}!\", 3]\n"),
        format!("[signing]\nscheme = \"standard-webhooks\"\nsecret = [\"whsec_{MARK}!\", \"whsec_{MARK}\"]\n"),
        format!("[signing]\nscheme = \"sha256-v1\"\nsecret = \"{MARK}\"\nheader_prefix = \"\"\n"),
        format!("headers = {{ \"X-Token\" = \"{MARK}\\n\" }}\n"),
        format!("headers = {{ \"Content-Type\" = \"{MARK}\" }}\n"),
        format!("[auth]\ntype = \"basic\"\ncredentials = \"u:{MARK}\n"),
        format!("[auth]\ntype = \"basic\"\ncredentials = \"u:{MARK}\"\ncredentials = \"u:{MARK}\"\n"),
        format!("[auth]\ntype = \"basic\"\ncredentials = \"u:{MARK}\" garbage\n"),
        format!("[auth]\ntype = 'basic'\ncredentials = \"\"\"u:{MARK}\n"),
    ];
    for case in &cases {
        fixture.sub(
            "acme.toml",
            &format!("url = \"https://x.example/\"\nevents = [\"E\"]\n{case}"),
        );
        let errors = herald_config::load_with_env(&fixture.daemon(), &|name| {
            (name == "K").then(|| format!("Bad Name:{MARK}"))
        })
        .unwrap_err();
        assert!(errors.len() >= 2, "{case}: {errors}");
        let printed = format!("{errors}\n{errors:?}");
        assert!(!printed.contains(MARK), "{case}\n{printed}");
    }
    // A URL is never echoed either (it may carry a token in its query).
    fixture.sub(
        "acme.toml",
        &format!("url = \"http://x.example/?token={MARK}\"\nevents = [\"E\"]\n"),
    );
    let errors = fixture.load().unwrap_err();
    assert!(!errors.to_string().contains(MARK), "{errors}");
}
