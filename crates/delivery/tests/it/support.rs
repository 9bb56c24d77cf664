//! Real servers on 127.0.0.1 for the tests: a webhook receiver whose answers each test chooses,
//! an OAuth2 token endpoint, and raw-TCP misbehaving servers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use herald_core::{AuthConfig, DeliveryId, Secret, SecurityPolicy, SubscriberConfig, SubscriberId};
use herald_delivery::{AttemptRequest, Endpoint, HttpClient};

/// `allow_http` and `allow_private_networks`: what tests against 127.0.0.1 need.
pub fn open_policy() -> SecurityPolicy {
    SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    }
}

/// A client for tests against 127.0.0.1.
pub fn open_client() -> HttpClient {
    HttpClient::new(open_policy()).expect("client")
}

/// A subscriber with no auth, no signing and a 2 s timeout.
pub fn subscriber(url: Url) -> SubscriberConfig {
    SubscriberConfig {
        timeout: Duration::from_secs(2),
        ..SubscriberConfig::new(SubscriberId::new("test-sub").expect("id"), url)
    }
}

/// An endpoint for `cfg` on the open client.
pub fn endpoint(cfg: &SubscriberConfig) -> Endpoint {
    Endpoint::new(cfg, &open_client()).expect("endpoint")
}

/// Attempt `attempt` of a fresh delivery with `payload`.
pub fn request(attempt: u32, payload: &'static [u8]) -> AttemptRequest {
    AttemptRequest {
        delivery_id: DeliveryId::generate(),
        attempt,
        payload: Bytes::from_static(payload),
        traceparent: None,
    }
}

/// The default payload.
pub const PAYLOAD: &[u8] = br#"{"processId":"8263a268","state":"PROCESS_STATE_FINISHED"}"#;

/// A URL on 127.0.0.1 where nothing listens.
pub async fn closed_port_url() -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    Url::parse(&format!("http://{addr}/closed")).expect("url")
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver.

/// One answer of the receiver.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Recorded {
    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    default: Mutex<Option<Reply>>,
    script: Mutex<VecDeque<Reply>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A webhook receiver on 127.0.0.1: records every request (method, path, headers, body, peer)
/// on arrival and answers with the next scripted [`Reply`], or the default one.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    /// A receiver answering `default` to everything not scripted.
    pub async fn start(default: Reply) -> Self {
        let state = Arc::new(ReceiverState::default());
        *state.default.lock().expect("lock") = Some(default);
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Self { addr, state }
    }

    /// A receiver answering 204 to everything.
    pub async fn ok() -> Self {
        Self::start(Reply::status(204)).await
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).expect("url")
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next requests get these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().expect("lock").extend(replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().expect("lock").len()
    }

    /// The value of header `name` on every request received, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.header(name).to_owned())
            .collect()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().expect("lock").push(Recorded {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        peer,
    });
    let reply = {
        let scripted = state.script.lock().expect("lock").pop_front();
        scripted.unwrap_or_else(|| {
            state
                .default
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or(Reply::status(204))
        })
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);

    let mut response = (
        StatusCode::from_u16(reply.status).expect("status"),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(&value).expect("value"),
        );
    }
    response
}

// ---------------------------------------------------------------------------------------------
// The OAuth2 token endpoint.

pub const CLIENT_ID: &str = "herald-client";
pub const CLIENT_SECRET: &str = "client-s3cret-value";

/// How the token endpoint answers.
#[derive(Debug, Clone, Copy)]
pub enum TokenMode {
    /// `{"access_token": "token-<n>", "expires_in": ...}`.
    Issue { expires_in: Option<u64> },
    /// An error status with a non-JSON body.
    Fail(u16),
}

struct TokenState {
    requests: AtomicUsize,
    issued: AtomicUsize,
    mode: Mutex<TokenMode>,
    delay: Mutex<Duration>,
    scopes: Mutex<Vec<String>>,
    /// Accept the client credentials only as form fields (`client_secret_post`), not Basic.
    credentials_in_body: AtomicBool,
}

/// A client-credentials token endpoint on 127.0.0.1 (`POST /token`). It checks the Basic client
/// credentials and the grant type (answering `invalid_client` / `unsupported_grant_type` like a
/// real one), counts requests, and issues `token-1`, `token-2`, …
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
}

impl TokenServer {
    pub async fn start(mode: TokenMode) -> Self {
        let state = Arc::new(TokenState {
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            mode: Mutex::new(mode),
            delay: Mutex::new(Duration::ZERO),
            scopes: Mutex::new(Vec::new()),
            credentials_in_body: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/token", axum::routing::post(issue))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/token", self.addr)).expect("url")
    }

    /// Every token request answers after this long.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// From now on accept the client credentials only as `client_id`/`client_secret` form
    /// fields (like servers that support `client_secret_post` only); Basic is refused.
    pub fn take_credentials_only_in_the_body(&self) {
        self.state.credentials_in_body.store(true, Ordering::SeqCst);
    }

    /// The `scope` parameter of every request.
    pub fn scopes(&self) -> Vec<String> {
        self.state.scopes.lock().expect("lock").clone()
    }

    /// `[auth]` for this endpoint with the right credentials.
    pub fn auth(&self) -> AuthConfig {
        self.auth_with_secret(CLIENT_SECRET)
    }

    pub fn auth_with_secret(&self, secret: &str) -> AuthConfig {
        AuthConfig::OAuth2 {
            token_url: self.url(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Secret::new(secret),
            scopes: Vec::new(),
        }
    }
}

async fn issue(State(state): State<Arc<TokenState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().expect("lock");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let json = |status: StatusCode, body: serde_json::Value| {
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    let form = String::from_utf8_lossy(&body).into_owned();
    let params: Vec<(&str, &str)> = form.split('&').filter_map(|p| p.split_once('=')).collect();
    let authenticated = if state.credentials_in_body.load(Ordering::SeqCst) {
        params.contains(&("client_id", CLIENT_ID))
            && params.contains(&("client_secret", CLIENT_SECRET))
    } else {
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
    };
    if !authenticated {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_client"}),
        );
    }
    if !params.contains(&("grant_type", "client_credentials")) {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "unsupported_grant_type"}),
        );
    }
    let scope = params
        .iter()
        .find(|(k, _)| *k == "scope")
        .map(|(_, v)| v.replace('+', " ").replace("%20", " "))
        .unwrap_or_default();
    state.scopes.lock().expect("lock").push(scope);

    let mode = *state.mode.lock().expect("lock");
    match mode {
        TokenMode::Fail(status) => (
            StatusCode::from_u16(status).expect("status"),
            "the identity provider is having a bad day",
        )
            .into_response(),
        TokenMode::Issue { expires_in } => {
            let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let mut token = serde_json::json!({
                "access_token": format!("token-{n}"),
                "token_type": "Bearer",
            });
            if let Some(secs) = expires_in {
                token["expires_in"] = secs.into();
            }
            json(StatusCode::OK, token)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving raw-TCP servers.

/// A server that reads the request head, writes `head` at once, then dribbles one byte of
/// `dribble` every `every`, forever (or until the client goes away). Returns its URL and a
/// counter of accepted connections.
pub async fn dribbling_server(
    head: &'static str,
    dribble: u8,
    every: Duration,
) -> (Url, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(every).await;
                    if socket.write_all(&[dribble]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (
        Url::parse(&format!("http://{addr}/slow")).expect("url"),
        accepted,
    )
}

/// An HTTPS server on 127.0.0.1 (`https://localhost:<port>/`) with a freshly generated
/// self-signed certificate that no trust store knows. Counts HTTP requests that arrive over a
/// completed handshake (and answers them 200).
pub async fn self_signed_tls_server() -> (Url, Arc<AtomicUsize>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                if matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let url = Url::parse(&format!("https://localhost:{port}/hook")).expect("url");
    (url, requests)
}
