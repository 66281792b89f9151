//! The cloud sync loop: incremental, never two at once, polite under faults.
//!
//! Each sync asks for the runs updated since the stored cursor (minus a second of overlap:
//! upserts make it harmless), oldest first, page by page to the end; every page's items commit
//! with the cursor it advanced to, so an interrupted sync resumes where it stopped and nothing
//! stored is ever removed or blanked. A run whose `updated_at` and status are what is stored
//! is not written again, so a poll that finds nothing new is one request and no write.
//!
//! Cadence: every [`CloudConfig::fast`] while a cloud run is working or blocked, else every
//! [`CloudConfig::slow`], and at once on `POST /v1/sync`. Faults: 429 waits for `Retry-After`;
//! 5xx, timeouts, dropped connections and unreadable answers back off exponentially with
//! jitter up to [`MAX_BACKOFF`]; 401/403 stop calling the API with that key (the error shows in
//! `/v1/health`) until the key file holds another one.

use super::client::{CloudClient, FetchError};
use super::run::{RunItem, item_of};
use super::{CloudConfig, KeySource};
use crate::ingest::SourceStats;
use crate::model::{Millis, MineRule};
use crate::store::Store;
use crate::store::writer::{IngestBatch, ItemUpdate, WriteOp, WriterHandle};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// The source's name in `/v1/health`.
pub const SOURCE: &str = crate::sources::SourceKind::Cloud.name();
/// The stored cursor: the newest `updated_at` (epoch ms) committed.
const CURSOR_KEY: &str = "cloud:updated_after";
/// Back-off ceiling for an unavailable API.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often a refused key is looked at again (a key file may have been fixed).
const KEY_RECHECK: Duration = Duration::from_secs(15);
/// A refused key is tried again after this long: a 401 from a proxy or a brief auth outage
/// must not end the sync until a restart.
const REFUSED_KEY_RETRY: Duration = Duration::from_secs(15 * 60);
/// Rendered conversations of finished runs kept in memory.
const CONVERSATION_CACHE: usize = 128;
/// Pages in one sync, at most: a bound against a server whose cursor never ends.
const MAX_PAGES: usize = 10_000;

/// Answers a `POST /v1/sync`: runs written, or why the sync failed.
type SyncReply = oneshot::Sender<Result<u64, String>>;

/// What the API and the rest of the daemon hold of the cloud source.
pub struct CloudHandle {
    requests: mpsc::Sender<SyncReply>,
    stop: Arc<Notify>,
    stopping: Arc<AtomicBool>,
    client: CloudClient,
    key: KeySource,
    /// Finished runs' conversations, rendered (a finished run's conversation no longer changes).
    cache: Mutex<HashMap<String, String>>,
}

impl CloudHandle {
    /// Runs a sync now (or joins the one running) and waits for its outcome.
    pub async fn sync_now(&self) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .await
            .map_err(|_| "the cloud sync has stopped".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err("the cloud sync has stopped".into()),
            Err(_) => Err("the cloud sync did not finish within 120 s".into()),
        }
    }

    /// The conversation of run `run_id`, rendered as text; cached once the run is finished.
    pub async fn conversation(&self, run_id: &str, finished: bool) -> Result<String, String> {
        if let Some(text) = self.lock_cache().get(run_id) {
            return Ok(text.clone());
        }
        let key = self.key.key()?;
        let path = format!("/agent/runs/{}/conversation", encode(run_id));
        let v = self
            .client
            .get_json(&path, &key)
            .await
            .map_err(|e| e.to_string())?;
        let text = super::run::render_conversation(&v);
        if finished {
            let mut cache = self.lock_cache();
            if cache.len() >= CONVERSATION_CACHE {
                cache.clear();
            }
            cache.insert(run_id.to_owned(), text.clone());
        }
        Ok(text)
    }

    /// Cancels run `run_id` (Oz `POST /agent/runs/{id}/cancel`), retrying while Oz answers
    /// 409 (the run is still `PENDING`), all within `budget` (so that the caller's own request
    /// does not time out first). The caller syncs afterwards, so that the row shows the change.
    pub async fn cancel(&self, run_id: &str, budget: Duration) -> Result<(), CancelRefused> {
        let key = self.key.key().map_err(CancelRefused::Upstream)?;
        let path = format!("/agent/runs/{}/cancel", encode(run_id));
        let deadline = tokio::time::Instant::now() + budget;
        let mut wait = Duration::from_millis(250);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let answer = tokio::time::timeout(left, self.client.post_json(&path, &key))
                .await
                .map_err(|_| {
                    CancelRefused::Upstream(format!(
                        "the cloud API did not answer the cancel within {budget:?}"
                    ))
                })?;
            let retry = match answer {
                Ok(_) => return Ok(()),
                Err(FetchError::Refused(400, body)) => {
                    return Err(CancelRefused::Finished(format!(
                        "the cloud run has already finished ({})",
                        oz_message(&body)
                    )));
                }
                Err(FetchError::Refused(422, body)) => {
                    return Err(CancelRefused::NotCancelable(format!(
                        "Oz cannot cancel this run: {}",
                        oz_message(&body)
                    )));
                }
                Err(FetchError::Refused(409, body)) => {
                    format!("still pending ({})", oz_message(&body))
                }
                Err(FetchError::RateLimited(after)) => {
                    wait = after.unwrap_or(wait).max(wait);
                    "rate-limited".to_owned()
                }
                Err(e) => return Err(CancelRefused::Upstream(e.to_string())),
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(CancelRefused::Upstream(format!(
                    "the cloud API did not accept the cancel within {budget:?}: {retry}"
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Stops the loop (at shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_one();
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why Oz would not cancel a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CancelRefused {
    /// 400: the run is in a terminal state.
    #[error("{0}")]
    Finished(String),
    /// 422: self-hosted, local and GitHub Actions runs cannot be cancelled through the API.
    #[error("{0}")]
    NotCancelable(String),
    /// Anything else: a refused key, an unavailable API, a run pending for too long.
    #[error("{0}")]
    Upstream(String),
}

/// The message of an Oz error body (`{"error": "…"}` or `{"message": "…"}`), else the text.
fn oz_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    ["message", "error", "detail"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| body.trim().to_owned())
}

/// Percent-encodes a query value or path segment.
fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Starts the sync loop on its own thread.
pub fn spawn(
    config: CloudConfig,
    store: Store,
    writer: WriterHandle,
    stats: Arc<SourceStats>,
) -> std::io::Result<(Arc<CloudHandle>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(64);
    let client = CloudClient::new(&config.base_url);
    let handle = Arc::new(CloudHandle {
        requests: tx,
        stop: Arc::new(Notify::new()),
        stopping: Arc::new(AtomicBool::new(false)),
        client: client.clone(),
        key: config.key.clone(),
        cache: Mutex::new(HashMap::new()),
    });
    let stop = handle.stop.clone();
    let stopping = handle.stopping.clone();
    let thread = std::thread::Builder::new()
        .name("agentd-cloud".into())
        .spawn(crate::supervised("cloud sync", move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the cloud sync: {e}");
                    return;
                }
            };
            let mut sync = Sync {
                config,
                client,
                store,
                writer,
                stats,
                active: HashSet::new(),
                refused_key: None,
                reported: None,
                backoff: Duration::ZERO,
                stopping: stopping.clone(),
                stop: stop.clone(),
            };
            rt.block_on(sync.run(rx, stop, stopping));
        }))?;
    Ok((handle, thread))
}

struct Sync {
    config: CloudConfig,
    client: CloudClient,
    store: Store,
    writer: WriterHandle,
    stats: Arc<SourceStats>,
    /// Cloud runs stored as working or blocked: while there are any, poll fast.
    active: HashSet<String>,
    /// The key the API refused, and when: not sent again for [`REFUSED_KEY_RETRY`].
    refused_key: Option<(String, Instant)>,
    /// Set at shutdown: a sync stops between pages.
    stopping: Arc<AtomicBool>,
    stop: Arc<Notify>,
    /// The error last reported to health (each distinct error is counted once).
    reported: Option<String>,
    /// The current back-off after faults (zero while the API answers).
    backoff: Duration,
}

impl Sync {
    async fn run(
        &mut self,
        mut requests: mpsc::Receiver<SyncReply>,
        stop: Arc<Notify>,
        stopping: Arc<AtomicBool>,
    ) {
        for status in [agentd_wire::Status::Working, agentd_wire::Status::Blocked] {
            let prefix = format!("{}:", crate::sources::SourceKind::Cloud.id_scheme());
            let partition = crate::store::Partition::Status(status);
            if let Ok(ids) = self.store.partition_ids(&partition, &prefix) {
                self.active.extend(ids);
            }
        }
        tracing::info!("following cloud runs at {}", self.config.base_url);
        let mut next = Instant::now();
        loop {
            let mut waiting: Vec<SyncReply> = Vec::new();
            tokio::select! {
                _ = stop.notified() => return,
                r = requests.recv() => match r {
                    Some(reply) => waiting.push(reply),
                    None => return,
                },
                _ = tokio::time::sleep_until(next) => {}
            }
            // Requests that arrived meanwhile share this sync.
            while let Ok(reply) = requests.try_recv() {
                waiting.push(reply);
            }
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let outcome = self.sync_once().await;
            let now = Instant::now();
            next = match &outcome {
                Ok(_) => {
                    self.backoff = Duration::ZERO;
                    self.clear_error();
                    now + if self.active.is_empty() {
                        self.config.slow
                    } else {
                        self.config.fast
                    }
                }
                Err(e) => {
                    self.report(e);
                    match e {
                        SyncError::Fetch(FetchError::Unauthorized(_)) | SyncError::NoKey(_) => {
                            now + KEY_RECHECK
                        }
                        SyncError::Fetch(FetchError::RateLimited(Some(wait))) => {
                            now + (*wait).min(MAX_BACKOFF)
                        }
                        SyncError::Stopped => return,
                        _ => {
                            self.backoff =
                                (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                            now + jitter(self.backoff)
                        }
                    }
                }
            };
            self.stats.scanned.store(true, Ordering::Relaxed);
            let reply = outcome.map_err(|e| e.to_string());
            for w in waiting {
                let _ = w.send(reply.clone());
            }
        }
    }

    /// One sync to the end of the pages; the number of runs written.
    async fn sync_once(&mut self) -> Result<u64, SyncError> {
        let key = self.config.key.key().map_err(SyncError::NoKey)?;
        if let Some((refused, at)) = &self.refused_key
            && *refused == key
            && at.elapsed() < REFUSED_KEY_RETRY
        {
            return Err(SyncError::Fetch(FetchError::Unauthorized(401)));
        }
        let stored = self
            .store
            .cursor(CURSOR_KEY)
            .ok()
            .flatten()
            .and_then(|b| crate::store::decode::<i64>(&b).ok());
        let horizon = Millis::now().0 - self.config.horizon.as_millis() as i64;
        let since = stored.unwrap_or(horizon);
        let after = agentd_wire::format_rfc3339_ms(since - 1000);
        let mut newest = since;
        let mut committed = stored.unwrap_or(i64::MIN);
        let mut written = 0u64;
        let mut page_cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!(
                "/agent/runs?limit={}&sort_by=updated_at&sort_order=asc&updated_after={}",
                self.config.page_limit,
                encode(&after)
            );
            if let Some(c) = &page_cursor {
                path.push_str("&cursor=");
                path.push_str(&encode(c));
            }
            if self.stopping.load(Ordering::Relaxed) {
                return Err(SyncError::Stopped);
            }
            let fetched = tokio::select! {
                r = self.client.get_json(&path, &key) => r,
                _ = self.stop.notified() => return Err(SyncError::Stopped),
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if fetched.is_err() {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            let page = match fetched {
                Ok(v) => v,
                Err(FetchError::Unauthorized(code)) => {
                    self.refused_key = Some((key, Instant::now()));
                    return Err(SyncError::Fetch(FetchError::Unauthorized(code)));
                }
                Err(e) => return Err(SyncError::Fetch(e)),
            };
            self.refused_key = None;
            let Some(runs) = page.get("runs").and_then(Value::as_array) else {
                return Err(SyncError::Fetch(FetchError::Malformed(
                    "no `runs` list in the answer".into(),
                )));
            };
            let mut batch = IngestBatch {
                source: SOURCE,
                ..Default::default()
            };
            for raw in runs {
                // Even a run that cannot be used moves the cursor past it: it is not fetched
                // (and counted) again on every poll.
                if let Some(t) = raw
                    .get("updated_at")
                    .and_then(Value::as_str)
                    .and_then(agentd_wire::parse_rfc3339_ms)
                {
                    newest = newest.max(t);
                }
                let run: RunItem = match serde_json::from_value(raw.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        batch.errors += 1;
                        batch.last_error = Some(format!("skipped a malformed cloud run: {e}"));
                        continue;
                    }
                };
                let item = match item_of(&run) {
                    Ok(i) => i,
                    Err(e) => {
                        batch.errors += 1;
                        batch.last_error = Some(format!("skipped a cloud run: {e}"));
                        continue;
                    }
                };
                newest = newest.max(item.updated_at.0);
                if item.status.is_active() {
                    self.active.insert(item.id.clone());
                } else {
                    self.active.remove(&item.id);
                }
                let unchanged = self.store.get(&item.id).ok().flatten().is_some_and(|old| {
                    old.updated_at == item.updated_at
                        && old.status == item.status
                        && old.status_detail == item.status_detail
                        && old.credits == item.credits
                });
                if unchanged {
                    continue; // the overlap, or a page read again after an interruption
                }
                let mine = self.config.me.is(run.creator.as_ref());
                batch.updates.push(ItemUpdate {
                    item,
                    mine: MineRule::Fixed(mine),
                    origin: None,
                });
            }
            if newest > committed {
                committed = newest;
                batch
                    .cursors
                    .push((CURSOR_KEY.to_owned(), crate::store::encode(&newest)));
            }
            written += batch.updates.len() as u64;
            // A page that came through shows the API is up: a later fault starts its back-off
            // afresh.
            self.backoff = Duration::ZERO;
            if !batch.updates.is_empty() || !batch.cursors.is_empty() || batch.errors > 0 {
                self.writer
                    .send(WriteOp::Ingest(batch))
                    .map_err(|_| SyncError::Stopped)?;
            }
            let info = page.get("page_info");
            let more = info
                .and_then(|i| i.get("has_next_page"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let next = info
                .and_then(|i| i.get("next_cursor"))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            match (more, next) {
                (true, Some(c)) if Some(&c) != page_cursor.as_ref() => page_cursor = Some(c),
                _ => break,
            }
        }
        self.stats
            .files
            .store(self.active.len() as u64, Ordering::Relaxed);
        if written > 0 {
            tracing::info!("cloud sync: {written} run(s) updated");
        }
        Ok(written)
    }

    /// Counts a new error in `/v1/health` (once per distinct message) and logs it.
    fn report(&mut self, e: &SyncError) {
        let msg = e.to_string();
        if self.reported.as_deref() == Some(msg.as_str()) {
            return;
        }
        tracing::warn!("{msg}");
        self.reported = Some(msg.clone());
        let _ = self.writer.send(WriteOp::Ingest(IngestBatch {
            source: SOURCE,
            errors: 1,
            last_error: Some(msg),
            ..Default::default()
        }));
    }

    fn clear_error(&mut self) {
        if self.reported.take().is_some() {
            tracing::info!("the cloud API answers again");
        }
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("cloud sync: {0}")]
    Fetch(FetchError),
    #[error("cloud sync: {0}")]
    NoKey(String),
    #[error("cloud sync: the daemon is stopping")]
    Stopped,
}

/// `d` plus up to a quarter more, so that many clients do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
