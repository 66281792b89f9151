//! Cloud runs from Warp's Oz Agent API (CONTRACT.md section 7): an incremental sync loop on its
//! own thread, and on-demand conversations for `/v1/agents/cloud:<id>/log`.
//!
//! - [`run`]: the pure part (a `RunItem` → an item; a conversation → text).
//! - [`client`]: one GET with the key, a deadline and errors sorted by what to do.
//! - [`sync`]: the loop: cadence, incremental cursor, back-off, and `POST /v1/sync`.

pub mod client;
pub mod run;
pub mod sync;

use std::path::PathBuf;
use std::time::Duration;

/// Where the API key comes from. The key itself is never logged or stored.
#[derive(Clone)]
pub enum KeySource {
    /// `WARP_API_KEY`, read once at start.
    Env(String),
    /// `cloud.api_key_file`, read before every sync: a new key takes effect without a restart.
    File(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env(_) => f.write_str("WARP_API_KEY"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl KeySource {
    /// The current key, or why there is none.
    pub fn key(&self) -> Result<String, String> {
        match self {
            KeySource::Env(k) => Ok(k.clone()),
            KeySource::File(p) => {
                crate::fsread::read_text(p, crate::fsread::Trust::Named, 64 * 1024)
                    .map(|k| k.trim().to_owned())
                    .map_err(|e| format!("cannot read the API key file {}: {e}", p.display()))
                    .and_then(|k| {
                        if k.is_empty() {
                            Err(format!("the API key file {} is empty", p.display()))
                        } else {
                            Ok(k)
                        }
                    })
            }
        }
    }
}

/// The cloud source's settings (config `[cloud]`, `WARP_API_KEY`, `AGENTD_CLOUD_URL`).
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub base_url: String,
    pub key: KeySource,
    /// Personal tab: runs created by this uid (config `cloud.me`) or this e-mail.
    pub me: run::Me,
    /// How far back the first sync goes (config `cloud.horizon_days`).
    pub horizon: Duration,
    /// Poll interval while a cloud run is working or blocked.
    pub fast: Duration,
    /// Poll interval when all are done.
    pub slow: Duration,
    /// Runs per page.
    pub page_limit: u32,
}

/// The default API (contract section 2).
pub const DEFAULT_BASE_URL: &str = "https://app.warp.dev/api/v1";
