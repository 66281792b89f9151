//! OpenTelemetry export, opt-in: OTLP over HTTP (protobuf) to a collector, with the
//! `opentelemetry` crates. Nothing leaves the machine unless an endpoint is configured (config
//! `[otel] endpoint`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`).
//!
//! - **Logs**: one record per agent state change (a new agent, or a new status), with the item
//!   id, source, harness, status and its detail, project, model, tokens (as the GenAI semantic
//!   conventions name them: `gen_ai.usage.input_tokens` …), cost, credits and duration; its
//!   title only with `otel.include_titles = true`. The change bus feeds a bounded queue that a
//!   thread of its own hands to the SDK's batch processor: ingestion never waits for the
//!   collector, and what does not fit, or fails to export, is counted (`agentd_otel_dropped`).
//! - **Metrics**: the fleet tallies of `/metrics` (agents by status, source and harness;
//!   finishes, tokens, cost, credits, time blocked), read from the database at each export.
//!
//! Resource attributes: `service.name=agentd`, `service.version`, `host.name` (the `host` of
//! `/metrics`). A collector that is down costs failed exports, counted; exports resume when it
//! returns (log exports back off from 1 s to a minute while it fails).

use crate::model::Item;
use crate::store::Store;
use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Agent changes waiting for the exporter thread; beyond this they are dropped and counted.
const QUEUE: usize = 4096;
/// Agents whose last exported status is remembered (to send one record per state change).
const REMEMBERED: usize = 100_000;

/// `[otel]` in config.toml, with the standard environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`).
    pub endpoint: String,
    /// Extra request headers (authentication).
    pub headers: HashMap<String, String>,
    /// Export titles (prompts) too.
    pub include_titles: bool,
    /// How often metrics are pushed.
    pub interval: Duration,
}

/// What the exporter counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct OtelStats {
    /// Log records handed to the collector.
    pub exported: AtomicU64,
    /// Log records dropped: the queue was full, or the collector did not take them.
    pub dropped: AtomicU64,
}

/// The running exporter; dropping it flushes and stops it.
pub struct Otel {
    logs: opentelemetry_sdk::logs::SdkLoggerProvider,
    metrics: opentelemetry_sdk::metrics::SdkMeterProvider,
    pub stats: Arc<OtelStats>,
}

impl Otel {
    /// Flushes what is queued and stops exporting.
    pub fn shutdown(&self) {
        let _ = self.logs.shutdown();
        let _ = self.metrics.shutdown();
    }
}

/// The first wait after a failed export; it doubles with each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The OTLP log exporter, counting what it could and could not deliver, and backing off while
/// the collector is down: after a failure, batches are dropped (counted) without a request until
/// the wait is over, then one is tried again.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    stats: Arc<OtelStats>,
    /// (no request before this, the current wait).
    backoff: std::sync::Mutex<(Option<std::time::Instant>, Duration)>,
}

impl<E: LogExporter> LogExporter for Counting<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        let waiting = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .is_some_and(|until| std::time::Instant::now() < until);
        if waiting {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            return Ok(());
        }
        let result = self.inner.export(batch).await;
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(()) => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
                *backoff = (None, FIRST_BACKOFF);
            }
            Err(e) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                let wait = backoff.1;
                if backoff.0.is_none() {
                    tracing::warn!(
                        "the OpenTelemetry collector did not take {n} record(s) ({e}); retrying in {wait:?}, dropped records are counted"
                    );
                }
                *backoff = (
                    Some(std::time::Instant::now() + wait),
                    (wait * 2).min(MAX_BACKOFF),
                );
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// What the ingest and process metrics are read from.
pub struct Ingest {
    pub sources: Vec<Arc<crate::ingest::SourceStats>>,
    pub errors: Arc<std::sync::RwLock<HashMap<String, crate::store::writer::SourceErrors>>>,
    pub db_path: std::path::PathBuf,
}

/// Starts exporting to `cfg.endpoint`: log records for the changes on `changes`, metrics from
/// `store`'s tallies and from `ingest`.
pub fn start(
    cfg: OtelConfig,
    host: &str,
    store: Store,
    changes: tokio::sync::broadcast::Receiver<Arc<Item>>,
    ingest: Ingest,
) -> Result<Otel, String> {
    let base = cfg.endpoint.trim_end_matches('/').to_owned();
    let resource = Resource::builder()
        .with_service_name("agentd")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", host.to_owned()),
        ])
        .build();
    let stats = Arc::new(OtelStats::default());
    let log_exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/logs"))
        .with_headers(cfg.headers.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot set up the OTLP log exporter: {e}"))?;
    let processor = BatchLogProcessor::builder(Counting {
        inner: log_exporter,
        stats: stats.clone(),
        backoff: std::sync::Mutex::new((None, FIRST_BACKOFF)),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(Duration::from_millis(500))
            .build(),
    )
    .build();
    let logs = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(resource.clone())
        .with_log_processor(processor)
        .build();

    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_headers(cfg.headers.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot set up the OTLP metric exporter: {e}"))?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter)
        .with_interval(cfg.interval)
        .build();
    let metrics = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build();
    register_instruments(&metrics, store, stats.clone());
    register_ingest(&metrics, ingest);

    // The change bus → a bounded queue → the exporter thread.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Item>>(QUEUE);
    let logger = logs.logger("agentd");
    let include_titles = cfg.include_titles;
    std::thread::Builder::new()
        .name("agentd-otel".into())
        .spawn(move || {
            for item in rx {
                logger.emit(record(&logger, &item, include_titles));
            }
        })
        .map_err(|e| format!("cannot start the OTLP exporter thread: {e}"))?;
    let dropped = stats.clone();
    tokio::spawn(forward(changes, tx, dropped));
    tracing::info!("exporting agents to the OpenTelemetry collector at {base}");
    Ok(Otel {
        logs,
        metrics,
        stats,
    })
}

/// Hands each agent state change to the exporter thread, never waiting: a full queue (or a bus
/// that ran ahead of us) drops records, counted.
async fn forward(
    mut changes: tokio::sync::broadcast::Receiver<Arc<Item>>,
    tx: std::sync::mpsc::SyncSender<Arc<Item>>,
    stats: Arc<OtelStats>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut last: HashMap<String, agentd_wire::Status> = HashMap::new();
    loop {
        let item = match changes.recv().await {
            Ok(item) => item,
            Err(RecvError::Lagged(n)) => {
                stats.dropped.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if last.get(&item.id) == Some(&item.status) {
            continue; // the same state, new tokens or a new title: not a state change
        }
        if last.len() >= REMEMBERED {
            last.clear();
        }
        last.insert(item.id.clone(), item.status);
        if tx.try_send(item).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One agent state change as an OTel log record.
fn record<L: Logger>(logger: &L, item: &Item, include_titles: bool) -> L::LogRecord {
    let mut r = logger.create_log_record();
    r.set_event_name("agentd.agent.state");
    r.set_timestamp(std::time::UNIX_EPOCH + Duration::from_millis(item.updated_at.0.max(0) as u64));
    r.set_severity_number(match item.status {
        agentd_wire::Status::Failed => Severity::Error,
        agentd_wire::Status::Blocked => Severity::Warn,
        _ => Severity::Info,
    });
    r.set_body(AnyValue::from(format!(
        "{} {}",
        item.id,
        item.status.as_str()
    )));
    let s = |v: &str| AnyValue::from(v.to_owned());
    let n = |v: u64| AnyValue::Int(v as i64);
    r.add_attribute("agentd.item.id", s(&item.id));
    r.add_attribute("agentd.source", s(item.source.as_str()));
    r.add_attribute(
        "agentd.harness",
        s(crate::sources::harness_label(item.harness.as_deref())),
    );
    r.add_attribute("agentd.status", s(item.status.as_str()));
    if let Some(d) = &item.status_detail {
        r.add_attribute("agentd.status_detail", s(d));
    }
    if let Some(p) = &item.project {
        r.add_attribute("agentd.project", s(p));
    }
    if let Some(m) = &item.model {
        r.add_attribute("gen_ai.request.model", s(m));
    }
    r.add_attribute("gen_ai.usage.input_tokens", n(item.usage.input_tokens));
    r.add_attribute("gen_ai.usage.output_tokens", n(item.usage.output_tokens));
    r.add_attribute(
        "gen_ai.usage.cache_read.input_tokens",
        n(item.usage.cache_read_tokens),
    );
    r.add_attribute(
        "gen_ai.usage.cache_creation.input_tokens",
        n(item.usage.cache_write_tokens),
    );
    if let Some(c) = item.cost_usd {
        r.add_attribute("agentd.cost_usd", AnyValue::Double(c));
    }
    if let Some(c) = item.credits {
        r.add_attribute("agentd.credits", AnyValue::Double(c));
    }
    if let Some(d) = item.duration_ms {
        r.add_attribute("agentd.duration_ms", n(d));
    }
    if include_titles && let Some(t) = &item.title {
        r.add_attribute("agentd.title", s(t));
    }
    r
}

/// The metric instruments: each reads the database's tallies when the reader collects.
fn register_instruments(
    provider: &opentelemetry_sdk::metrics::SdkMeterProvider,
    store: Store,
    stats: Arc<OtelStats>,
) {
    let meter = provider.meter("agentd");
    let tallies = move |prefix: &'static str| {
        let store = store.clone();
        move || -> Vec<(Vec<String>, u64)> {
            store
                .tallies()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(prefix)
                        .map(|rest| (rest.split('|').map(str::to_owned).collect(), v))
                })
                .collect()
        }
    };
    let attrs = |names: &[&'static str], values: &[String]| -> Vec<KeyValue> {
        names
            .iter()
            .zip(values)
            .map(|(n, v)| KeyValue::new(*n, v.clone()))
            .collect()
    };
    let agents = tallies("x:");
    meter
        .u64_observable_gauge("agentd.agents")
        .with_description("Agents agentd knows of now, by status, source and harness")
        .with_callback(move |o| {
            for (v, n) in agents() {
                o.observe(n, &attrs(&["status", "source", "harness"], &v));
            }
        })
        .build();
    let finished = tallies("f:");
    meter
        .u64_observable_counter("agentd.agents.finished")
        .with_description("Times an agent reached a final status")
        .with_callback(move |o| {
            for (v, n) in finished() {
                o.observe(n, &attrs(&["status", "harness"], &v));
            }
        })
        .build();
    let tokens = tallies("t:");
    meter
        .u64_observable_counter("agentd.tokens")
        .with_description("Tokens of the agents agentd knows of, by kind")
        .with_unit("{token}")
        .with_callback(move |o| {
            for (v, n) in tokens() {
                o.observe(n, &attrs(&["harness", "kind"], &v));
            }
        })
        .build();
    for (name, prefix, scale, unit, description) in [
        (
            "agentd.cost",
            "u:",
            1e6,
            "USD",
            "Estimated cost of the agents agentd knows of",
        ),
        (
            "agentd.credits",
            "k:",
            1e6,
            "{credit}",
            "Credits reported for the agents",
        ),
        (
            "agentd.blocked",
            "w:",
            1e3,
            "s",
            "Time agents spent waiting on a person",
        ),
    ] {
        let read = tallies(prefix);
        meter
            .f64_observable_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(move |o| {
                for (v, n) in read() {
                    o.observe(n as f64 / scale, &attrs(&["harness"], &v));
                }
            })
            .build();
    }
    meter
        .u64_observable_counter("agentd.otel.dropped")
        .with_description("Log records the exporter dropped (queue full or collector down)")
        .with_callback(move |o| o.observe(stats.dropped.load(Ordering::Relaxed), &[]))
        .build();
}

/// Per-source ingest counters, the database's size and the process's CPU and memory, as in
/// `/metrics`.
fn register_ingest(provider: &opentelemetry_sdk::metrics::SdkMeterProvider, ingest: Ingest) {
    let meter = provider.meter("agentd");
    let sources = Arc::new(ingest.sources);
    for (name, unit, description, read) in [
        (
            "agentd.ingest.lines",
            "{line}",
            "Lines read, per source",
            (|s: &crate::ingest::SourceStats| s.lines.load(Ordering::Relaxed))
                as fn(&crate::ingest::SourceStats) -> u64,
        ),
        ("agentd.ingest.bytes", "By", "Data read, per source", |s| {
            s.bytes.load(Ordering::Relaxed)
        }),
    ] {
        let sources = sources.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(move |o| {
                for s in sources.iter() {
                    o.observe(read(s), &[KeyValue::new("source", s.name)]);
                }
            })
            .build();
    }
    let errors = ingest.errors;
    let names: Vec<&'static str> = sources.iter().map(|s| s.name).collect();
    meter
        .u64_observable_counter("agentd.ingest.errors")
        .with_description("Lines, files or requests that could not be read, per source")
        .with_callback(move |o| {
            let errors = errors.read().unwrap_or_else(|p| p.into_inner());
            for name in &names {
                let n = errors.get(*name).map_or(0, |e| e.errors);
                o.observe(n, &[KeyValue::new("source", *name)]);
            }
        })
        .build();
    let db = ingest.db_path;
    meter
        .u64_observable_gauge("agentd.database.size")
        .with_description("Size of agentd.redb")
        .with_unit("By")
        .with_callback(move |o| {
            o.observe(std::fs::metadata(&db).map_or(0, |m| m.len()), &[]);
        })
        .build();
    meter
        .f64_observable_gauge("process.memory.usage")
        .with_description("Resident memory of agentd")
        .with_unit("By")
        .with_callback(|o| {
            if let Some(p) = crate::metrics::ProcessStats::read() {
                o.observe(p.resident_bytes, &[]);
            }
        })
        .build();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_description("CPU time of agentd")
        .with_unit("s")
        .with_callback(|o| {
            if let Some(p) = crate::metrics::ProcessStats::read() {
                o.observe(p.cpu_seconds, &[]);
            }
        })
        .build();
}
