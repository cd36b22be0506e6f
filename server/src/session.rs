//! Sessions: what makes several tabs one person.
//!
//! A browser gets a random [`SessionToken`] in an `HttpOnly` cookie on its first page load, and sends it back with
//! every request, the Socket.IO handshake included. Rooms never see the token: they see the [`MemberId`] derived
//! from it by a one-way hash, so knowing someone's member id (which every room shows) does not let anybody act as
//! them.

use axum::Form;
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, StatusCode};
use protocol::{MemberId, SessionToken};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The cookie that carries the session token.
pub const COOKIE_NAME: &str = "causerie_session";

/// How long a browser keeps its session: 400 days, the longest browsers allow.
const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 60 * 60;

/// A new, unguessable session token: 244 random bits.
pub fn new_token() -> SessionToken {
    let text = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    // Two simple uuids are 64 lowercase hex digits: always a valid token.
    SessionToken::parse(&text).unwrap_or_else(|_| unreachable!("64 hex digits are a valid session token"))
}

/// The public identity of the holder of `token`.
pub fn member_id(token: &SessionToken) -> MemberId {
    let digest = Sha256::new().chain_update(b"causerie member id\0").chain_update(token.as_str()).finalize();
    // 80 bits: collisions are out of reach for any realistic number of people, and the id stays short.
    MemberId(digest.iter().take(10).map(|byte| format!("{byte:02x}")).collect())
}

/// The session token in a request's cookies, if there is a well-formed one.
pub fn from_headers(headers: &http::HeaderMap) -> Option<SessionToken> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .and_then(|(_, value)| SessionToken::parse(value).ok())
}

/// Middleware for the pages: makes sure every request has a session, issuing one (and its cookie) when there is
/// none, and puts the token in the request's extensions for the page to read.
pub async fn ensure(secure: bool, mut request: Request, next: Next) -> Response {
    let (token, issued) = match from_headers(request.headers()) {
        Some(token) => (token, false),
        None => (new_token(), true),
    };
    request.extensions_mut().insert(token.clone());
    if issued {
        request.extensions_mut().insert(app::directory::NewSession);
    }
    let mut response = next.run(request).await;
    // A response that sets the session itself (a device link) has the last word.
    let sets_session = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|value| value.to_str().is_ok_and(|cookie| cookie.starts_with(&format!("{COOKIE_NAME}="))));
    // Nor does a response any cache may keep for everyone (an image): it must never carry someone's session.
    let public = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|cache| cache.split(',').any(|directive| directive.trim() == "public"));
    if issued && !sets_session && !public {
        set_cookie(&mut response, &token, secure);
    }
    // Pages are per visitor (the room page carries the device link): no shared cache may keep them.
    let is_html = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("text/html"));
    if is_html && !response.headers().contains_key(http::header::CACHE_CONTROL) {
        response.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    response
}

fn set_cookie(response: &mut Response, token: &SessionToken, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}{secure}",
        token.as_str()
    );
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(e) => tracing::error!(error = %e, "a session cookie is not a valid header"),
    }
}

/// A hand-off of a session to another device: `/session/claim?token=…&next=/r/…`.
#[derive(Debug, Deserialize)]
pub struct Claim {
    token: String,
    #[serde(default)]
    next: String,
}

impl Claim {
    /// Where to go afterwards: a path on this site only, never another site.
    fn next(&self) -> &str {
        // Browsers drop tabs and newlines from URLs, so "/\t/evil.example" would become "//evil.example": only
        // plain, visible ASCII is let through.
        let plain = self.next.chars().all(|c| c.is_ascii_graphic());
        let local = self.next.starts_with('/') && !self.next.starts_with("//") && !self.next.contains('\\');
        if plain && local { &self.next } else { "/" }
    }
}

/// `GET /session/claim`: asks before switching. A link alone must not change who a browser is (someone could
/// send one to make you post as them), so the switch itself is a POST from this page.
pub async fn claim_page(Query(claim): Query<Claim>) -> Response {
    if SessionToken::parse(&claim.token).is_err() {
        return bad_link();
    }
    let page = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Causerie</title><link rel="stylesheet" href="/pkg/causerie.css"></head>
<body><main class="page narrow"><h1>Continue on this device?</h1>
<p>This link makes this browser the same person as the one that shared it: same name, same private messages. Only continue if you shared it yourself.</p>
<form method="post" action="/session/claim"><input type="hidden" name="token" value="{token}"><input type="hidden" name="next" value="{next}"><button type="submit">Continue</button></form>
<p><a href="/">No, take me to the start page</a></p></main></body></html>"#,
        token = escape(&claim.token),
        next = escape(claim.next()),
    );
    // The token, beside a `next` that anyone can write into the link.
    let cache = HeaderValue::from_static(app::directory::SECRET_PAGE_CACHE_CONTROL);
    ([(http::header::CACHE_CONTROL, cache)], Html(page)).into_response()
}

/// `POST /session/claim`: this browser takes the session, and goes on to `next`. Only from this site's own page:
/// another site must not be able to switch a visitor's identity behind their back.
pub async fn claim(secure: bool, headers: http::HeaderMap, Form(claim): Form<Claim>) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "Device links can only be confirmed from Causerie's own page.").into_response();
    }
    let Ok(token) = SessionToken::parse(&claim.token) else { return bad_link() };
    let mut response = Redirect::to(claim.next()).into_response();
    set_cookie(&mut response, &token, secure);
    response
}

/// Whether a form POST comes from a page of this site: by `Sec-Fetch-Site` when the browser sends it, else by
/// `Origin` against `Host`. A request with neither (not from a browser) cannot be forged by another site.
fn same_origin(headers: &http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn bad_link() -> Response {
    (StatusCode::BAD_REQUEST, "This device link is incomplete or damaged: copy the whole link and try again.")
        .into_response()
}

/// HTML-escapes text for an attribute value.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_are_valid_and_different() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn a_member_id_is_stable_short_and_does_not_contain_the_token() {
        let token = SessionToken::parse("0123456789abcdef0123").unwrap();
        let id = member_id(&token);
        assert_eq!(id, member_id(&token));
        assert_eq!(id.0.len(), 20);
        assert!(!token.as_str().contains(&id.0) && !id.0.contains(token.as_str()));
        assert_ne!(id, member_id(&SessionToken::parse("0123456789abcdef0124").unwrap()));
    }

    #[test]
    fn the_session_is_found_among_other_cookies_and_a_malformed_one_is_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("theme=dark; causerie_session=abcdefghijklmnop1234; x=y"));
        assert_eq!(from_headers(&headers).unwrap().as_str(), "abcdefghijklmnop1234");

        let mut headers = http::HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("causerie_session=short"));
        assert_eq!(from_headers(&headers), None);
    }

    #[test]
    fn a_claim_only_ever_leads_to_a_page_of_this_site() {
        let claim = |next: &str| Claim { token: String::new(), next: next.to_owned() };
        assert_eq!(claim("/r/general?name=Ada").next(), "/r/general?name=Ada");
        for elsewhere in ["https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "", "r/x"]
        {
            assert_eq!(claim(elsewhere).next(), "/", "{elsewhere}");
        }
    }

    #[test]
    fn only_same_origin_posts_may_switch_the_session() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[("origin", "http://chat.example"), ("host", "chat.example")])));
        assert!(!same_origin(&headers(&[("origin", "http://evil.example"), ("host", "chat.example")])));
        assert!(same_origin(&headers(&[])), "not a browser: nothing to forge");
    }
}
