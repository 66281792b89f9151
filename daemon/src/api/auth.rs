//! Access control for the TCP listener (contract section 4, "Access").
//!
//! - `Host` must be `localhost`, `127.0.0.1` or `[::1]` (any port): a DNS-rebinding page gets 403.
//! - A browser `Origin`, when sent, must be the same host and port (same origin); no CORS
//!   headers are sent. Refusals close the connection.
//! - Every route needs `Authorization: Bearer <token>` or the `agentd_token` cookie, which
//!   `GET /?token=<token>` sets for the web page.
//!
//! The Unix socket does not pass through here: its directory (0700) and file (0600) permissions
//! and the peer uid check are its access control.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// What `/` shows a browser that has no token: how to open the page.
const SIGNED_OUT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>agentd</title>\
<meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"font:16px system-ui,sans-serif;\
margin:3rem auto;max-width:34rem;padding:0 1rem\"><h1>agentd</h1><p>This page needs agentd's token. \
Open it with <code>agentctl web</code> (it passes the token once and the browser keeps it in a \
cookie), or add <code>?token=…</code> with the token from agentd's state dir.</p></body></html>";

/// The name of the cookie the web page authenticates with.
pub const COOKIE: &str = "agentd_token";

/// Whether a `Host` (or `Origin` authority) names loopback: exactly a host and an optional
/// port, nothing else (`localhost:80@evil.com` is not `localhost`).
fn is_loopback_host(authority: &str) -> bool {
    let (host, bracketed, rest) = if let Some(inner) = authority.strip_prefix('[') {
        match inner.split_once(']') {
            Some((h, rest)) => (h, true, rest),
            None => return false,
        }
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], false, &authority[i..]),
            None => (authority, false, ""),
        }
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|p| {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65_535)
        });
    port_ok
        && if bracketed {
            host == "::1"
        } else {
            host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
        }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    {
        return Some(t.trim());
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for c in cookies.split(';') {
            if let Some((k, v)) = c.trim().split_once('=')
                && k == COOKIE
            {
                return Some(v);
            }
        }
    }
    None
}

/// A refusal also closes the connection, so that unauthenticated clients do not hold
/// keep-alive connections open.
fn refuse(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The TCP listener's guard. State: the token.
/// The separate metrics listener (config `metrics`): its own token, and no Host check (a
/// scraper on another machine names this one as it likes).
pub async fn metrics_guard(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    match presented_token(req.headers()) {
        Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => refuse(ApiError {
            message: "send `Authorization: Bearer <token>` with the token in the state dir's `metrics-token` file".into(),
            ..ApiError::unauthorized()
        }),
    }
}

pub async fn tcp_guard(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host(host) {
        return refuse(ApiError::forbidden(format!(
            "Host {host:?} is not allowed; use localhost, 127.0.0.1 or [::1]"
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        // Same origin only: a page served by another local program (another port) may not
        // drive this API with the user's cookie.
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        if !authority.eq_ignore_ascii_case(host) {
            return refuse(ApiError::forbidden(format!(
                "Origin {origin:?} is not allowed"
            )));
        }
    }
    let mut set_cookie = false;
    let authorized = match presented_token(headers) {
        Some(t) => same_secret(t.as_bytes(), token.as_bytes()),
        None => false,
    } || {
        // `GET /?token=…` logs the web page in.
        let from_query = (req.uri().path() == "/")
            .then(|| req.uri().query())
            .flatten()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            });
        set_cookie = from_query
            .as_deref()
            .is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes()));
        set_cookie
    };
    if !authorized {
        if req.uri().path() == "/" && req.method() == axum::http::Method::GET {
            // A person at the page without the cookie: say how to get in.
            let mut resp = (
                axum::http::StatusCode::UNAUTHORIZED,
                axum::response::Html(SIGNED_OUT),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        return refuse(ApiError::unauthorized());
    }
    let mut resp = next.run(req).await;
    if set_cookie {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:7431",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:7431",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.com",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "[::2]:1",
            "[::1]x",
            "10.0.0.1:7431",
            // Regression: everything after the first colon used to be ignored.
            "localhost:80@evil.com",
            "localhost:7431/x",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "localhost:80:81",
            "[::1]:7431@evil.com",
            "[localhost]",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; agentd_token=xyz"),
        );
        assert_eq!(presented_token(&h), Some("xyz"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(presented_token(&h), Some("abc"));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
