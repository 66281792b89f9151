//! Desktop notifications (off by default): when an agent turns `blocked` or `failed`, say so
//! with `notify-send` (Linux) or `osascript` (macOS), or a command of the user's choosing.
//!
//! Only fresh changes count (an item updated within the last minute), so a backfill or a
//! restart notifies nothing. At most one notification per interval: changes in between are
//! counted and mentioned in the next one ("and 3 more"), never queued up. With
//! `remind_after_secs`, an agent still blocked that long is mentioned again ("still waiting"),
//! and again after each further interval, until it moves on.

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
    /// Remind while an agent stays blocked this long (`None`: never).
    pub remind_after: Option<Duration>,
}

/// Why the notification fired.
fn headline(item: &Item) -> String {
    let what = match item.status {
        Status::Blocked => "is waiting for you",
        _ => "failed",
    };
    format!("{} {what}", item.harness.as_deref().unwrap_or("an agent"))
}

/// A reminder's title.
fn reminder(item: &Item) -> String {
    format!(
        "{} is still waiting for you",
        item.harness.as_deref().unwrap_or("an agent")
    )
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
    // Agents blocked now, with when they were last mentioned (for reminders).
    let mut waiting: HashMap<String, (Arc<Item>, Instant)> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let item = tokio::select! {
            r = changes.recv() => match r {
                Ok(item) => item,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick(), if config.remind_after.is_some() && !waiting.is_empty() => {
                let every = config.remind_after.unwrap_or(Duration::MAX);
                let due: Vec<String> = waiting
                    .iter()
                    .filter(|(_, (_, at))| at.elapsed() >= every)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in due {
                    if let Some((item, at)) = waiting.get_mut(&id) {
                        send(&config, &reminder(item), &body(item));
                        *at = Instant::now();
                    }
                }
                continue;
            }
        };
        let fresh = agentd_wire::Millis::now().0 - item.updated_at.0 < FRESH_MS;
        if item.status != Status::Blocked {
            waiting.remove(&item.id);
        } else if let Some((known, _)) = waiting.get_mut(&item.id) {
            *known = item.clone();
        } else if fresh {
            // History (a backfill, an old wait) is not news: only new waits are reminded of.
            waiting.insert(item.id.clone(), (item.clone(), Instant::now()));
        }
        let before = last_status.insert(item.id.clone(), item.status);
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
