//! Console sessions and cross-site protection.
//!
//! - With `api_token` set, `POST /console/signin` checks the token (constant time) and opens a
//!   session: a random 256-bit id, kept in memory with its expiry and its own random CSRF token,
//!   sent as `herald_console=<id>; Path=/console; HttpOnly; SameSite=Strict`. `Secure` is not
//!   set: Herald serves plain HTTP, and browsers drop `Secure` cookies set over it. Sessions end
//!   after [`SESSION_TTL`], at sign-out, or when the daemon restarts.
//! - Without `api_token` the console is open, like the API; forms still carry a CSRF token (one
//!   per process).
//! - Every request other than GET/HEAD must come from the console's own origin: its `Origin`
//!   must name the host the request was sent to; a request without `Origin` must say
//!   `Sec-Fetch-Site: same-origin`. A request with neither is refused. Every action's form is
//!   read through [`CheckedForm`], which refuses it unless it carries the visitor's CSRF token,
//!   so no handler can forget the check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use herald_core::Secret;
use parking_lot::Mutex;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{pages, Console};
use crate::token_matches;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "herald_console";
/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

struct Session {
    csrf: String,
    expires: Instant,
}

/// Open sessions (only used with an API token).
pub(crate) struct Sessions {
    token: Option<Secret>,
    open_csrf: String,
    map: Mutex<HashMap<String, Session>>,
}

/// Who is asking: put into the request by [`require_session`].
#[derive(Clone, Debug)]
pub(crate) struct Visitor {
    /// The CSRF token every form of this visitor carries.
    pub(crate) csrf: String,
    /// Whether sign-in is required (a sign-out button is shown).
    pub(crate) signed_in: bool,
}

impl Visitor {
    /// Whether a form's CSRF token is this visitor's.
    pub(crate) fn check(&self, given: &str) -> bool {
        token_matches(given.as_bytes(), self.csrf.as_bytes())
    }
}

/// A console form: where its CSRF token is.
pub(crate) trait CsrfForm {
    /// The token the form carried.
    fn csrf(&self) -> &str;
}

/// A form posted by this visitor: read, and refused (403) unless its CSRF token is the
/// visitor's, before the handler runs.
pub(crate) struct CheckedForm<T>(pub(crate) T);

impl<S, T> FromRequest<S> for CheckedForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned + CsrfForm,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        // Set by `require_session` on every console route; missing means not signed in.
        let visitor = request
            .extensions()
            .get::<Visitor>()
            .cloned()
            .ok_or_else(csrf_refused)?;
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if visitor.check(form.csrf()) {
            Ok(Self(form))
        } else {
            Err(csrf_refused())
        }
    }
}

/// The answer to a form without this visitor's CSRF token.
pub(crate) fn csrf_refused() -> Response {
    forbidden(
        "This form has expired or did not come from this console. Reload the page and try again.",
    )
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub(crate) fn new(token: Option<Secret>) -> Self {
        Self {
            token,
            open_csrf: random_hex(),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    fn lookup(&self, headers: &HeaderMap) -> Option<Visitor> {
        let id = session_cookie(headers)?;
        let map = self.map.lock();
        let session = map.get(id).filter(|s| s.expires > Instant::now())?;
        Some(Visitor {
            csrf: session.csrf.clone(),
            signed_in: true,
        })
    }

    fn close(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.map.lock().remove(id);
        }
    }
}

/// The value of our cookie in the request's `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn forbidden(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::message("Refused", "Refused", message, None),
    )
        .into_response()
}

/// Middleware: no data and no action without a session when a token is configured.
pub(crate) async fn require_session(
    State(console): State<Console>,
    mut request: Request,
    next: Next,
) -> Response {
    let sessions = &console.sessions;
    let visitor = if sessions.token.is_none() {
        Visitor {
            csrf: sessions.open_csrf.clone(),
            signed_in: false,
        }
    } else if let Some(v) = sessions.lookup(request.headers()) {
        v
    } else if request.method() == Method::GET && !request.uri().path().ends_with("/live") {
        return Redirect::to("/console/signin").into_response();
    } else {
        return (
            StatusCode::UNAUTHORIZED,
            pages::message(
                "Sign in required",
                "Sign in required",
                "Your session has ended. Sign in again.",
                Some(("/console/signin", "Sign in")),
            ),
        )
            .into_response();
    };
    request.extensions_mut().insert(visitor);
    next.run(request).await
}

/// Whether a state-changing request comes from the page's own origin.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let authority = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .map(|(_, rest)| rest);
            matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
        }
        None => headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"),
    }
}

/// Middleware: every request other than GET and HEAD must be same-origin.
pub(crate) async fn same_origin_writes(request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !same_origin(request.headers()) {
        return forbidden("Cross-site requests are refused: use the console's own pages.");
    }
    next.run(request).await
}

/// `GET /console/signin`.
pub(crate) async fn sign_in_form(State(console): State<Console>) -> Response {
    if console.sessions.token.is_none() {
        return Redirect::to("/console").into_response();
    }
    pages::sign_in(None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

/// `POST /console/signin`: the token for a session cookie.
pub(crate) async fn sign_in(State(console): State<Console>, Form(form): Form<SignIn>) -> Response {
    let Some(token) = &console.sessions.token else {
        return Redirect::to("/console").into_response();
    };
    if !token_matches(form.token.as_bytes(), token.expose().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            pages::sign_in(Some("That token is not valid.")),
        )
            .into_response();
    }
    let (id, _csrf) = console.sessions.open();
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

/// `POST /console/signout`.
pub(crate) async fn sign_out(
    State(console): State<Console>,
    Extension(visitor): Extension<Visitor>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if !visitor.check(&form.csrf) {
        return csrf_refused();
    }
    console.sessions.close(&headers);
    let mut response = Redirect::to("/console/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "herald_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "h"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "h"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[("host", "h")])));
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; herald_console=abc; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        assert_eq!(session_cookie(&headers(&[("cookie", "x=y")])), None);
    }

    #[test]
    fn sessions_open_and_close() {
        let s = Sessions::new(Some(Secret::new("t".to_owned())));
        let (id, csrf) = s.open();
        let cookie: &'static str = Box::leak(format!("{COOKIE}={id}").into_boxed_str());
        let h = headers(&[("cookie", cookie)]);
        let v = s.lookup(&h).expect("session found");
        assert_eq!(v.csrf, csrf);
        assert!(v.check(&csrf));
        assert!(!v.check("nope"));
        s.close(&h);
        assert!(s.lookup(&h).is_none());
    }
}
