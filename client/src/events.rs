//! `/v1/events` for clients: a decoder for the server-sent events stream, and a subscription
//! on its own thread that reconnects by itself (with a pause that grows to 2 s) and says so, so
//! that `agentctl wait` and `agentctl top` survive a daemon restart.

use crate::{Client, ClientError};
use agentd_wire::{Item, Summary};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// One decoded event.
#[derive(Debug, Clone)]
pub enum Event {
    /// The counts (first on every connection, then when they move).
    Summary(Summary),
    /// An item changed (the whole item).
    Agent(Box<Item>),
    /// The client fell behind: reload the list.
    Resync,
    /// A (re)connection succeeded: what was missed while away must be reloaded.
    Connected,
    /// The connection is lost; it is being retried.
    Disconnected(String),
    /// agentd refused the subscription (a 4xx: an older agentd, say): it is not retried.
    Refused(String),
}

/// Splits a server-sent events byte stream into `(event, data)` pairs.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    event: String,
    data: String,
}

impl SseDecoder {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let name = std::mem::take(&mut self.event);
                    let name = if name.is_empty() {
                        "message".into()
                    } else {
                        name
                    };
                    out.push((name, std::mem::take(&mut self.data)));
                }
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
            // Comments (`: heartbeat`) and other fields are ignored.
        }
        out
    }
}

/// Decodes one `(event, data)` pair.
pub fn decode(name: &str, data: &str) -> Option<Event> {
    match name {
        "summary" => serde_json::from_str(data).ok().map(Event::Summary),
        "agent" => serde_json::from_str(data)
            .ok()
            .map(|i| Event::Agent(Box::new(i))),
        "resync" => Some(Event::Resync),
        _ => None,
    }
}

/// A running subscription; dropping it (or [`Subscription::stop`]) ends it at the next event
/// or reconnect.
pub struct Subscription {
    stop: Arc<AtomicBool>,
}

impl Subscription {
    /// Starts following `/v1/events?tab=TAB` (`personal` or `all`), sending events to `tx`
    /// until stopped or `tx` is dropped. Reconnects after any failure.
    pub fn start(client: Client, tab: &str, tx: Sender<Event>) -> Subscription {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let tab = tab.to_owned();
        std::thread::spawn(move || follow(client, s, tab, tx));
        Subscription { stop }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop();
    }
}

fn follow(client: Client, stop: Arc<AtomicBool>, tab: String, tx: Sender<Event>) {
    let mut pause = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let mut decoder = SseDecoder::default();
        let mut connected = false;
        let result = client.stream(&format!("/v1/events?tab={tab}"), &mut |bytes| {
            if !connected {
                connected = true;
                if tx.send(Event::Connected).is_err() {
                    return false;
                }
            }
            for (name, data) in decoder.feed(bytes) {
                if let Some(ev) = decode(&name, &data)
                    && tx.send(ev).is_err()
                {
                    return false;
                }
            }
            !stop.load(Ordering::Relaxed)
        });
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if connected {
            pause = Duration::from_millis(100);
        }
        let why = match result {
            Err(ClientError::Api {
                status: 400..=499,
                message,
                ..
            }) => {
                let _ = tx.send(Event::Refused(message));
                return;
            }
            Err(ClientError::Unreachable { .. }) => "agentd is not running".to_owned(),
            Err(e) => e.to_string(),
            Ok(()) => "agentd closed the connection".to_owned(),
        };
        if tx.send(Event::Disconnected(why)).is_err() {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_and_comments_are_skipped() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"event: summ").is_empty());
        assert!(d.feed(b"ary\ndata: {\"a\"").is_empty());
        let got = d.feed(b":1}\n\n: heartbeat\n\nevent: resync\ndata: {}\r\n\r\n");
        assert_eq!(
            got,
            vec![
                ("summary".to_owned(), "{\"a\":1}".to_owned()),
                ("resync".to_owned(), "{}".to_owned())
            ]
        );
    }
}
