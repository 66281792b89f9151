//! A small HTTPS client for the Oz Agent API: a GET or POST with a bearer key, a deadline, a size
//! cap, and errors sorted by what the caller should do about them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// Every request must answer within this (a stuck server must not stall the sync forever).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger answers are refused: a page of 100 runs is far below this.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// What went wrong with a request, by what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// 401/403: the key is wrong or revoked. Stop until it changes.
    #[error(
        "the cloud API refused the key (HTTP {0}); set a valid WARP_API_KEY or cloud.api_key_file"
    )]
    Unauthorized(u16),
    /// 429: wait as long as the server says.
    #[error("the cloud API is rate-limiting (HTTP 429)")]
    RateLimited(Option<Duration>),
    /// 5xx, a dropped connection, a timeout: retry with backoff.
    #[error("the cloud API is unavailable: {0}")]
    Unavailable(String),
    /// Another 4xx: our request is wrong; retrying as is will not help, but later might.
    #[error("the cloud API answered HTTP {0}: {1}")]
    Refused(u16, String),
    /// The answer is not the JSON expected (a truncated body, say): retry with backoff.
    #[error("the cloud API answered something unreadable: {0}")]
    Malformed(String),
}

/// The client: connections are pooled and reused between polls.
#[derive(Clone)]
pub struct CloudClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
}

impl CloudClient {
    /// A client for `base` (`https://app.warp.dev/api/v1`; `http://` is allowed for tests and
    /// local proxies).
    pub fn new(base: &str) -> CloudClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        CloudClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(https),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// `GET {base}{path}` with the key; the JSON answer.
    pub async fn get_json(&self, path: &str, key: &str) -> Result<Value, FetchError> {
        self.send(hyper::Method::GET, path, key).await
    }

    /// `POST {base}{path}` with the key and no body; the JSON answer (`null` for an empty one).
    pub async fn post_json(&self, path: &str, key: &str) -> Result<Value, FetchError> {
        self.send(hyper::Method::POST, path, key).await
    }

    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        key: &str,
    ) -> Result<Value, FetchError> {
        let uri = format!("{}{path}", self.base);
        let req = hyper::Request::builder()
            .method(method)
            .uri(&uri)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {key}"))
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("agentd/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError::Refused(0, format!("bad request URL {uri}: {e}")))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| FetchError::Unavailable(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| FetchError::Unavailable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, FetchError>((status, retry_after, body))
        };
        let (status, retry_after, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
            FetchError::Unavailable(format!("no answer within {REQUEST_TIMEOUT:?}"))
        })??;
        match status {
            200..=299 if body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
            200..=299 => {
                serde_json::from_slice(&body).map_err(|e| FetchError::Malformed(e.to_string()))
            }
            401 | 403 => Err(FetchError::Unauthorized(status)),
            429 => Err(FetchError::RateLimited(retry_after)),
            500..=599 => Err(FetchError::Unavailable(format!("HTTP {status}"))),
            _ => Err(FetchError::Refused(
                status,
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            )),
        }
    }
}

/// An error with its causes (hyper's own message alone says little: "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
