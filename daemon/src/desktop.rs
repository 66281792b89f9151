//! Desktop notifications (off by default): when an agent turns `blocked` or `failed`, say so
//! with `notify-send` (Linux) or `osascript` (macOS), or a command of the user's choosing.
//!
//! Only fresh changes count (an item updated within the last minute), so a backfill or a
//! restart notifies nothing. At most one notification per interval: changes in between are
//! counted and mentioned in the next one ("and 3 more"), never queued up.

use agentd_wire::{Item, Status};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Changes older than this when they reach us are history, not news.
const FRESH_MS: i64 = 60_000;

/// Config `[notify]`.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The program to run with the title and body as its two last arguments; `None`: the
    /// platform's own (`notify-send`, `osascript`).
    pub command: Option<Vec<String>>,
    /// At most one notification per this long.
    pub min_interval: Duration,
}

/// Why the notification fired.
fn headline(item: &Item) -> String {
    let what = match item.status {
        Status::Blocked => "is waiting for you",
        _ => "failed",
    };
    format!("{} {what}", item.harness.as_deref().unwrap_or("an agent"))
}

fn body(item: &Item) -> String {
    let title = item.title.as_deref().unwrap_or(&item.id);
    match &item.status_detail {
        Some(d) => format!("{title}: {d}"),
        None => title.to_owned(),
    }
}

fn send(config: &NotifyConfig, title: &str, body: &str) {
    let mut cmd = match &config.command {
        Some(words) if !words.is_empty() => {
            let mut c = std::process::Command::new(&words[0]);
            c.args(&words[1..]).arg(title).arg(body);
            c
        }
        _ if cfg!(target_os = "macos") => {
            let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let mut c = std::process::Command::new("osascript");
            c.arg("-e").arg(format!(
                "display notification \"{}\" with title \"{}\"",
                quote(body),
                quote(title)
            ));
            c
        }
        _ => {
            let mut c = std::process::Command::new("notify-send");
            c.args(["--app-name=agentd", title, body]);
            c
        }
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.spawn() {
        // Reaped on a blocking thread so that no zombie is left behind.
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::warn!("cannot show a desktop notification: {e}"),
    }
}

/// Runs until the change bus closes.
pub async fn run(config: NotifyConfig, mut changes: broadcast::Receiver<Arc<Item>>) {
    let mut last_status: HashMap<String, Status> = HashMap::new();
    let mut last_sent: Option<Instant> = None;
    let mut held_back = 0u32;
    loop {
        let item = match changes.recv().await {
            Ok(item) => item,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let before = last_status.insert(item.id.clone(), item.status);
        let fresh = agentd_wire::Millis::now().0 - item.updated_at.0 < FRESH_MS;
        if !fresh
            || !matches!(item.status, Status::Blocked | Status::Failed)
            || before == Some(item.status)
        {
            continue;
        }
        if last_sent.is_some_and(|t| t.elapsed() < config.min_interval) {
            held_back += 1;
            continue;
        }
        let mut text = body(&item);
        if held_back > 0 {
            text.push_str(&format!(" (and {held_back} more)"));
            held_back = 0;
        }
        send(&config, &headline(&item), &text);
        last_sent = Some(Instant::now());
    }
}
