//! `agentctl top`: the management view in a terminal.
//!
//! One `/v1/events` subscription keeps the list current (no polling): a changed agent is
//! updated in place, a new one that matches the filters is inserted, one that no longer matches
//! leaves. The screen is redrawn only on an event, a key, a resize, or once a second while a
//! working run shows a running duration, so an idle `top` costs next to nothing.
//!
//! Everything that happens reaches the loop as one [`Msg`]: keys and resizes from a terminal
//! reader thread, events from the subscription thread, log text from the inspect pane's
//! follower, and ticks. State changes are methods of [`App`]; drawing is a function of it.
//!
//! Keys: ↑/↓ PgUp/PgDn Home/End move, Enter inspects, Tab switches Personal/All, `/` searches,
//! `s` status, `o` source, `h` harness (menus), `c` creator, `d` day (typed), `x` clears the
//! filters, `r`/`o` in the inspect pane (or `r` on a row) opens (a cloud run's session in the
//! browser; a conversation's resume command in this terminal, leaving top), `k` stops (y/n),
//! `?` help, `q`/Esc/Ctrl-C quit. Icons fall back to ASCII outside UTF-8 locales; `NO_COLOR`
//! turns colours off.

use crate::events::{Event, Subscription};
use crate::{Client, ClientError, display, encode_segment, query};
use agentd_wire::{AgentsPage, Item, Millis, Status, Summary};
use ratatui::Frame;
use ratatui::crossterm::event::{self as term, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Wrap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Rows fetched per page; more are fetched as the selection nears the end.
const PAGE: usize = 200;
/// Lines of a followed log kept (the oldest go first).
const LOG_LINES: usize = 20_000;
/// How often running durations move on screen.
const TICK: Duration = Duration::from_secs(1);

/// What the loop is woken by.
#[derive(Debug)]
enum Msg {
    Key(KeyEvent),
    Resize,
    Sse(Event),
    /// Log text for inspect pane number `.0` (older panes' text is dropped).
    Log(u64, String),
    /// A one-line message (the outcome of a stop, which runs on a thread of its own).
    Note(String),
    /// SIGTERM, SIGHUP or SIGINT: leave, restoring the terminal.
    Signal,
    /// A helper thread failed: leave, restoring the terminal, and say why.
    Crashed(String),
}

/// How `top` ended.
#[derive(Debug)]
pub enum Exit {
    Quit,
    /// Leave and run this resume command in the terminal.
    Resume(String),
}

/// Display choices from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub unicode: bool,
    pub color: bool,
}

impl Look {
    /// UTF-8 icons when the locale is UTF-8 (`LC_ALL`, `LC_CTYPE`, `LANG`, first set wins);
    /// colours unless `NO_COLOR` is set.
    pub fn from_env() -> Look {
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Look {
            unicode: locale.contains("utf-8") || locale.contains("utf8"),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn icon(self, s: Status) -> &'static str {
        if self.unicode {
            return s.icon();
        }
        match s {
            Status::Working => "*",
            Status::Blocked => "!",
            Status::Canceled => "-",
            Status::Failed => "x",
            Status::Success => "+",
        }
    }

    fn style(self, s: Status) -> Style {
        if !self.color {
            return match s {
                Status::Blocked => Style::new().add_modifier(Modifier::BOLD),
                _ => Style::new(),
            };
        }
        match s {
            Status::Working => Style::new().fg(Color::Cyan),
            Status::Blocked => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Status::Canceled => Style::new().fg(Color::DarkGray),
            Status::Failed => Style::new().fg(Color::Red),
            Status::Success => Style::new().fg(Color::Green),
        }
    }
}

/// The list's filters, by the API's parameter names (comma lists where the API takes them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub all: bool,
    pub status: Vec<Status>,
    pub source: Vec<String>,
    pub harness: Vec<String>,
    pub creator: Option<String>,
    pub day: Option<String>,
    pub q: Option<String>,
    /// Epoch-ms bounds of `day` in the local zone, for matching live changes.
    pub day_bounds: Option<(i64, i64)>,
}

impl Filters {
    fn query(&self, cursor: Option<&str>, limit: usize) -> String {
        let join = |v: &[String]| v.join(",");
        query(&[
            ("tab", if self.all { "all" } else { "personal" }.into()),
            (
                "status",
                self.status
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("source", join(&self.source)),
            ("harness", join(&self.harness)),
            ("creator", self.creator.clone().unwrap_or_default()),
            ("day", self.day.clone().unwrap_or_default()),
            ("q", self.q.clone().unwrap_or_default()),
            ("limit", limit.to_string()),
            ("cursor", cursor.unwrap_or_default().to_owned()),
        ])
    }

    /// Whether a changed item belongs in the list (the API's rules, applied to one item).
    pub fn matches(&self, i: &Item) -> bool {
        let in_list = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        (self.all || i.mine)
            && (self.status.is_empty() || self.status.contains(&i.status))
            && in_list(&self.source, Some(i.source.as_str()))
            && in_list(&self.harness, i.harness.as_deref())
            && self.creator.as_deref().is_none_or(|c| {
                i.creator
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(c))
            })
            && self
                .day_bounds
                .is_none_or(|(a, b)| (a..b).contains(&i.created_at.0))
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                [&i.title, &i.project]
                    .iter()
                    .any(|f| f.as_deref().is_some_and(|t| t.to_lowercase().contains(&q)))
            })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.status.is_empty() {
            let s: Vec<&str> = self.status.iter().map(|s| s.as_str()).collect();
            parts.push(format!("status={}", s.join(",")));
        }
        for (name, v) in [("source", &self.source), ("harness", &self.harness)] {
            if !v.is_empty() {
                parts.push(format!("{name}={}", v.join(",")));
            }
        }
        for (name, v) in [
            ("creator", &self.creator),
            ("day", &self.day),
            ("q", &self.q),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}={v:?}"));
            }
        }
        parts.join("  ")
    }

    fn is_empty(&self) -> bool {
        Filters {
            all: self.all,
            ..Filters::default()
        } == *self
    }
}

/// The local-day bounds of `today`, `yesterday` or `YYYY-MM-DD`.
fn day_bounds(day: &str) -> Option<(i64, i64)> {
    let tz = jiff::tz::TimeZone::system();
    let today = jiff::Timestamp::now().to_zoned_datetime(tz.clone()).date();
    let date = match day {
        "today" => today,
        "yesterday" => today.yesterday().ok()?,
        d => d.parse::<jiff::civil::Date>().ok()?,
    };
    let start = date
        .to_zoned_datetime(tz.clone())
        .ok()?
        .timestamp()
        .as_millisecond();
    let end = date
        .tomorrow()
        .ok()?
        .to_zoned_datetime(tz)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some((start, end))
}

/// A small menu of values to toggle (status, source, harness).
#[derive(Debug)]
struct Menu {
    param: &'static str,
    options: Vec<String>,
    chosen: Vec<bool>,
    cursor: usize,
}

/// A line being typed (search, creator, day).
#[derive(Debug)]
struct Prompt {
    param: &'static str,
    text: String,
}

/// The inspect pane.
#[derive(Debug)]
struct Inspect {
    id: String,
    generation: u64,
    log: Vec<String>,
    /// A partial last line.
    tail: String,
    /// Lines scrolled up from the end (0: following the end).
    back: usize,
    stop: Arc<AtomicBool>,
    /// The follower's connection, closed when the pane closes (a quiet log would otherwise
    /// hold it, and a thread, until its agent wrote again).
    connection: Arc<std::sync::Mutex<Option<std::os::unix::net::UnixStream>>>,
}

/// What has the keyboard.
#[derive(Debug)]
enum Mode {
    List,
    Menu(Menu),
    Prompt(Prompt),
    Confirm(String),
    Help,
}

/// The whole state of `top`.
pub struct App {
    client: Client,
    look: Look,
    filters: Filters,
    items: Vec<Item>,
    cursor: Option<String>,
    selected: usize,
    offset: usize,
    summary: Option<Summary>,
    /// Why agentd is not reachable, while it is not.
    offline: Option<String>,
    /// A one-line message (a stop requested, an error), until the next key.
    message: Option<String>,
    mode: Mode,
    inspect: Option<Inspect>,
    generation: u64,
    tx: Sender<Msg>,
    /// Rows the list had room for at the last draw (for paging).
    list_height: usize,
}

fn sources() -> Vec<String> {
    [
        "interactive",
        "cli",
        "api",
        "slack",
        "linear",
        "scheduled",
        "github_actions",
        "web",
        "other",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl App {
    fn new(client: Client, look: Look, all: bool, tx: Sender<Msg>) -> App {
        App {
            client,
            look,
            filters: Filters {
                all,
                ..Filters::default()
            },
            items: Vec::new(),
            cursor: None,
            selected: 0,
            offset: 0,
            summary: None,
            offline: None,
            message: None,
            mode: Mode::List,
            inspect: None,
            generation: 0,
            tx,
            list_height: 20,
        }
    }

    /// Reads the first page and the summary again (after a filter change or a reconnect).
    fn reload(&mut self) -> Result<(), ClientError> {
        let page: AgentsPage = self.client.agents(&self.filters.query(None, PAGE))?;
        let keep = self.items.get(self.selected).map(|i| i.id.clone());
        self.items = page.items;
        self.cursor = page.next_cursor;
        self.selected = keep
            .and_then(|id| self.items.iter().position(|i| i.id == id))
            .unwrap_or(0);
        self.refresh_summary()?;
        self.offline = None;
        Ok(())
    }

    fn refresh_summary(&mut self) -> Result<(), ClientError> {
        self.summary = Some(self.client.summary(self.filters.all)?);
        Ok(())
    }

    /// Fetches the next page when the selection is near the end of what is loaded.
    fn load_more_if_near_end(&mut self) {
        if self.selected + self.list_height < self.items.len() {
            return;
        }
        let Some(cursor) = self.cursor.clone() else {
            return;
        };
        match self.client.agents(&self.filters.query(Some(&cursor), PAGE)) {
            Ok(page) => {
                for item in page.items {
                    if !self.items.iter().any(|i| i.id == item.id) {
                        self.items.push(item);
                    }
                }
                self.cursor = page.next_cursor;
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }

    /// An agent changed: update it in place, insert it, or take it out of the list.
    fn apply(&mut self, item: Item) {
        let at = self.items.iter().position(|i| i.id == item.id);
        let keep = self.items.get(self.selected).map(|i| i.id.clone());
        match (at, self.filters.matches(&item)) {
            (Some(n), true) => self.items[n] = item,
            (Some(n), false) => {
                self.items.remove(n);
            }
            (None, true) => self.items.push(item),
            (None, false) => return,
        }
        // Newest activity first, as the API sorts.
        self.items
            .sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        if let Some(id) = keep
            && let Some(n) = self.items.iter().position(|i| i.id == id)
        {
            self.selected = n;
        }
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Agent(item) => self.apply(*item),
            Event::Summary(s) => {
                if self.filters.all {
                    self.summary = Some(s);
                } else if let Err(e) = self.refresh_summary() {
                    self.message = Some(e.to_string());
                }
            }
            Event::Connected | Event::Resync => {
                if let Err(e) = self.reload() {
                    self.offline = Some(e.to_string());
                }
            }
            Event::Disconnected(why) => self.offline = Some(why),
            Event::Refused(why) => {
                self.offline = Some(format!("agentd refused live updates: {why}"));
            }
        }
    }

    fn selected_item(&self) -> Option<&Item> {
        self.items.get(self.selected)
    }

    fn set_filters(&mut self, f: Filters) {
        self.filters = f;
        self.selected = 0;
        self.offset = 0;
        if let Err(e) = self.reload() {
            self.message = Some(e.to_string());
        }
    }

    fn open_inspect(&mut self) {
        let Some(item) = self.selected_item().cloned() else {
            return;
        };
        self.close_inspect();
        self.generation += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let follow = item.status.is_active();
        let path = format!(
            "/v1/agents/{}/log{}",
            encode_segment(&item.id),
            if follow { "?follow=true" } else { "" }
        );
        let connection = Arc::new(std::sync::Mutex::new(None));
        let (client, tx, generation, flag, conn) = (
            self.client.clone(),
            self.tx.clone(),
            self.generation,
            stop.clone(),
            connection.clone(),
        );
        spawn_guarded(self.tx.clone(), move || {
            let r = client.stream_ended_by(&path, &conn, &mut |bytes| {
                let text = String::from_utf8_lossy(bytes).into_owned();
                tx.send(Msg::Log(generation, text)).is_ok() && !flag.load(Ordering::Relaxed)
            });
            if let Err(e) = r {
                let _ = tx.send(Msg::Log(generation, format!("[{e}]\n")));
            }
        });
        self.inspect = Some(Inspect {
            id: item.id.clone(),
            generation: self.generation,
            log: Vec::new(),
            tail: String::new(),
            back: 0,
            stop,
            connection,
        });
    }

    fn close_inspect(&mut self) {
        if let Some(i) = self.inspect.take() {
            i.stop.store(true, Ordering::Relaxed);
            crate::end_stream(&i.connection);
        }
    }

    fn on_log(&mut self, generation: u64, text: String) {
        let Some(pane) = self.inspect.as_mut().filter(|p| p.generation == generation) else {
            return;
        };
        pane.tail.push_str(&text);
        while let Some(nl) = pane.tail.find('\n') {
            let line: String = pane.tail.drain(..=nl).collect();
            pane.log
                .push(display::printable(line.trim_end_matches(['\n', '\r'])));
        }
        if pane.log.len() > LOG_LINES {
            pane.log.drain(..pane.log.len() - LOG_LINES);
        }
    }

    /// Stops `id` (after the y/n), on a thread: a cloud cancel may take seconds, and the screen
    /// must not freeze meanwhile.
    fn stop(&mut self, id: &str) {
        // The confirmation is the confirmation a conversation's interrupt asks for.
        let force = !id.starts_with("cli:") && !id.starts_with("cloud:");
        let path = format!(
            "/v1/agents/{}/cancel{}",
            encode_segment(id),
            if force { "?force=true" } else { "" }
        );
        self.message = Some(format!("stopping {}…", display::short_id(id)));
        let (client, tx, short) = (self.client.clone(), self.tx.clone(), display::short_id(id));
        spawn_guarded(self.tx.clone(), move || {
            let note = match client.request("POST", &path, None) {
                Ok(r) if r.status < 300 => format!("stop requested for {short}"),
                Ok(r) => match client.json::<serde_json::Value>(r) {
                    Err(e) => format!("not stopped: {e}"),
                    Ok(_) => "not stopped".into(),
                },
                Err(e) => format!("not stopped: {e}"),
            };
            let _ = tx.send(Msg::Note(note));
        });
    }

    /// Opens the item: a URL in the browser (top stays), a resume command in this terminal
    /// (top ends).
    fn open(&mut self, item: &Item) -> Option<Exit> {
        if let Some(url) = &item.open.url {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            let spawned = std::process::Command::new(opener)
                .arg(url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            self.message = Some(match spawned {
                Ok(_) => format!("opened {url}"),
                Err(e) => format!("cannot run {opener} for {url}: {e}"),
            });
            return None;
        }
        if let Some(cmd) = &item.open.command {
            return Some(Exit::Resume(cmd.clone()));
        }
        self.message = Some(format!("{} has nothing to open", item.id));
        None
    }

    /// Handles a key; `Some` ends `top`.
    fn on_key(&mut self, key: KeyEvent) -> Option<Exit> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Some(Exit::Quit);
        }
        self.message = None;
        match std::mem::replace(&mut self.mode, Mode::List) {
            Mode::Help => None, // any key closes it
            Mode::Confirm(id) => {
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    self.stop(&id);
                } else {
                    self.message = Some("not stopped".into());
                }
                None
            }
            Mode::Prompt(p) => self.prompt_key(p, key),
            Mode::Menu(m) => self.menu_key(m, key),
            Mode::List if self.inspect.is_some() => self.inspect_key(key),
            Mode::List => self.list_key(key),
        }
    }

    fn prompt_key(&mut self, mut p: Prompt, key: KeyEvent) -> Option<Exit> {
        match key.code {
            KeyCode::Esc => {}
            KeyCode::Enter => {
                let text = p.text.trim().to_owned();
                let value = (!text.is_empty()).then_some(text);
                let mut f = self.filters.clone();
                match p.param {
                    "q" => f.q = value,
                    "creator" => f.creator = value,
                    _ => {
                        f.day_bounds = match value.as_deref() {
                            None => None,
                            Some(d) => match day_bounds(d) {
                                Some(b) => Some(b),
                                None => {
                                    self.message = Some(format!(
                                        "{d:?} is not today, yesterday or a date such as 2026-11-28"
                                    ));
                                    return None;
                                }
                            },
                        };
                        f.day = value;
                    }
                }
                self.set_filters(f);
            }
            KeyCode::Backspace => {
                p.text.pop();
                self.mode = Mode::Prompt(p);
            }
            KeyCode::Char(c) => {
                p.text.push(c);
                self.mode = Mode::Prompt(p);
            }
            _ => self.mode = Mode::Prompt(p),
        }
        None
    }

    fn menu_key(&mut self, mut m: Menu, key: KeyEvent) -> Option<Exit> {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => {}
            KeyCode::Up => {
                m.cursor = m.cursor.saturating_sub(1);
                self.mode = Mode::Menu(m);
            }
            KeyCode::Down => {
                m.cursor = (m.cursor + 1).min(m.options.len().saturating_sub(1));
                self.mode = Mode::Menu(m);
            }
            KeyCode::Char(' ') => {
                if let Some(c) = m.chosen.get_mut(m.cursor) {
                    *c = !*c;
                }
                self.mode = Mode::Menu(m);
            }
            KeyCode::Enter => {
                // Enter with nothing ticked takes the value under the cursor.
                if !m.chosen.contains(&true)
                    && let Some(c) = m.chosen.get_mut(m.cursor)
                {
                    *c = true;
                }
                let picked: Vec<String> = m
                    .options
                    .iter()
                    .zip(&m.chosen)
                    .filter(|(_, c)| **c)
                    .map(|(o, _)| o.clone())
                    .collect();
                let mut f = self.filters.clone();
                match m.param {
                    "status" => {
                        f.status = picked.iter().filter_map(|s| s.parse().ok()).collect();
                    }
                    "source" => f.source = picked,
                    _ => f.harness = picked,
                }
                self.set_filters(f);
            }
            _ => self.mode = Mode::Menu(m),
        }
        None
    }

    fn menu(&self, param: &'static str) -> Menu {
        let (options, current): (Vec<String>, Vec<String>) = match param {
            "status" => (
                ["working", "blocked", "failed", "canceled", "success"]
                    .map(str::to_owned)
                    .to_vec(),
                self.filters
                    .status
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            ),
            "source" => (sources(), self.filters.source.clone()),
            _ => {
                let mut known: Vec<String> = ["claude-code", "codex", "gemini"]
                    .map(str::to_owned)
                    .to_vec();
                for h in self.items.iter().filter_map(|i| i.harness.clone()) {
                    if !known.contains(&h) {
                        known.push(h);
                    }
                }
                (known, self.filters.harness.clone())
            }
        };
        let chosen = options.iter().map(|o| current.contains(o)).collect();
        Menu {
            param,
            options,
            chosen,
            cursor: 0,
        }
    }

    fn move_to(&mut self, n: usize) {
        self.selected = n.min(self.items.len().saturating_sub(1));
        self.load_more_if_near_end();
    }

    fn list_key(&mut self, key: KeyEvent) -> Option<Exit> {
        let page = self.list_height.max(1);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Exit::Quit),
            KeyCode::Down | KeyCode::Char('j') => self.move_to(self.selected + 1),
            KeyCode::Up => self.move_to(self.selected.saturating_sub(1)),
            KeyCode::PageDown => self.move_to(self.selected + page),
            KeyCode::PageUp => self.move_to(self.selected.saturating_sub(page)),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(0),
            KeyCode::End | KeyCode::Char('G') => self.move_to(usize::MAX),
            KeyCode::Enter => self.open_inspect(),
            KeyCode::Tab | KeyCode::BackTab => {
                let mut f = self.filters.clone();
                f.all = !f.all;
                self.set_filters(f);
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Prompt(Prompt {
                    param: "q",
                    text: self.filters.q.clone().unwrap_or_default(),
                })
            }
            KeyCode::Char('c') => {
                self.mode = Mode::Prompt(Prompt {
                    param: "creator",
                    text: self.filters.creator.clone().unwrap_or_default(),
                })
            }
            KeyCode::Char('d') => {
                self.mode = Mode::Prompt(Prompt {
                    param: "day",
                    text: self.filters.day.clone().unwrap_or_default(),
                })
            }
            KeyCode::Char('s') => self.mode = Mode::Menu(self.menu("status")),
            KeyCode::Char('o') => self.mode = Mode::Menu(self.menu("source")),
            KeyCode::Char('h') => self.mode = Mode::Menu(self.menu("harness")),
            KeyCode::Char('x') => {
                let all = self.filters.all;
                self.set_filters(Filters {
                    all,
                    ..Filters::default()
                });
            }
            KeyCode::Char('r') => {
                if let Some(item) = self.selected_item().cloned() {
                    return self.open(&item);
                }
            }
            KeyCode::Char('k') => self.ask_stop(),
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
        None
    }

    fn ask_stop(&mut self) {
        match self.selected_item() {
            Some(i) if i.status.is_active() => self.mode = Mode::Confirm(i.id.clone()),
            Some(i) => self.message = Some(format!("{} has already finished", i.id)),
            None => {}
        }
    }

    fn inspect_key(&mut self, key: KeyEvent) -> Option<Exit> {
        let pane = self.inspect.as_mut()?;
        let page = self.list_height.max(1);
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') | KeyCode::Backspace => self.close_inspect(),
            KeyCode::Up => pane.back = (pane.back + 1).min(pane.log.len()),
            KeyCode::Down => pane.back = pane.back.saturating_sub(1),
            KeyCode::PageUp => pane.back = (pane.back + page).min(pane.log.len()),
            KeyCode::PageDown => pane.back = pane.back.saturating_sub(page),
            KeyCode::Home | KeyCode::Char('g') => pane.back = pane.log.len(),
            KeyCode::End | KeyCode::Char('G') => pane.back = 0,
            KeyCode::Char('r') | KeyCode::Char('o') => {
                let id = pane.id.clone();
                if let Some(item) = self.items.iter().find(|i| i.id == id).cloned() {
                    return self.open(&item);
                }
            }
            KeyCode::Char('k') => self.ask_stop(),
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
        None
    }

    /// Whether a running duration (a working or blocked run's time so far) is on screen (the clock must move it).
    fn needs_tick(&self) -> bool {
        self.items
            .iter()
            .skip(self.offset)
            .take(self.list_height.max(1))
            .any(|i| i.status.is_active() && i.kind == agentd_wire::Kind::Run)
    }
}

/// Columns of the list, in the order shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Status,
    Source,
    Title,
    Creator,
    Created,
    Duration,
    Cost,
    Id,
}

/// The columns that fit `width` (the title keeps at least 16 columns; the least telling go
/// first, as in `agentctl ls`), with their widths.
fn columns(width: u16, cells: &[[String; 8]]) -> Vec<(Col, u16)> {
    use Col::*;
    let all = [Status, Source, Title, Creator, Created, Duration, Cost, Id];
    let heads = [
        "STATUS", "SOURCE", "TITLE", "CREATOR", "CREATED", "DURATION", "COST", "ID",
    ];
    let mut widths: Vec<u16> = heads.iter().map(|h| h.len() as u16).collect();
    for r in cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(unicode_width::UnicodeWidthStr::width(c.as_str()) as u16);
        }
    }
    let mut shown: Vec<usize> = (0..all.len()).collect();
    let others = |shown: &[usize]| -> u16 {
        shown
            .iter()
            .filter(|&&c| c != 2)
            .map(|&c| widths[c] + 1)
            .sum()
    };
    for drop in [5, 3, 4, 1, 6, 7] {
        if width.saturating_sub(others(&shown)) >= 16 {
            break;
        }
        shown.retain(|&c| c != drop);
    }
    widths[2] = width.saturating_sub(others(&shown)).max(8);
    shown.into_iter().map(|c| (all[c], widths[c])).collect()
}

fn cells(item: &Item, look: Look, now: Millis) -> [String; 8] {
    let mut title = display::printable(item.title.as_deref().unwrap_or("-"));
    if let (Status::Blocked | Status::Failed, Some(d)) = (item.status, &item.status_detail) {
        title = format!("{title} ({})", display::printable(d));
    }
    let duration = match (item.duration_ms, item.kind, item.status.is_active()) {
        // Time so far moves with the clock, not with the item.
        (_, agentd_wire::Kind::Run, true) => {
            display::duration(now.0.saturating_sub(item.created_at.0).max(0) as u64)
        }
        (Some(ms), _, _) => display::duration(ms),
        _ => "-".into(),
    };
    let guess = if item.status_source == Some(agentd_wire::StatusSource::Inferred) {
        "?"
    } else {
        ""
    };
    [
        format!("{}{guess} {}", look.icon(item.status), item.status),
        item.source.to_string(),
        title,
        display::printable(item.creator.as_deref().unwrap_or("-")),
        display::relative(item.created_at, now),
        duration,
        display::money(item),
        display::short_id(&item.id),
    ]
}

fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    let [top, filter_line, body, status_line] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_summary(f, app, top);
    let filters = if app.filters.is_empty() {
        "no filters   / search  s status  o source  h harness  c creator  d day  ? help".to_owned()
    } else {
        format!("{}   (x clears)", app.filters.describe())
    };
    f.render_widget(
        Paragraph::new(display::fit(&filters, area.width as usize))
            .style(Style::new().add_modifier(Modifier::DIM)),
        filter_line,
    );
    if app.inspect.is_some() {
        draw_inspect(f, app, body);
    } else {
        draw_list(f, app, body);
    }
    let status = match (&app.offline, &app.message, &app.mode) {
        (_, _, Mode::Prompt(p)) => format!("{}: {}▏", p.param, p.text),
        (_, _, Mode::Confirm(id)) => format!(
            "stop {}{}? y/n",
            display::short_id(id),
            if id.starts_with("cli:") || id.starts_with("cloud:") {
                ""
            } else {
                " (interrupts its interactive session)"
            }
        ),
        (Some(why), _, _) => format!("agentd is not reachable ({why}); reconnecting…"),
        (None, Some(m), _) => m.clone(),
        (None, None, _) => format!(
            "{} agents{}  ·  Enter inspect  k stop  r open  Tab tab  q quit",
            app.items.len(),
            if app.cursor.is_some() { "+" } else { "" }
        ),
    };
    let style = if app.offline.is_some() && app.look.color {
        Style::new().fg(Color::Red)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    };
    f.render_widget(
        Paragraph::new(display::fit(&status, area.width as usize)).style(style),
        status_line,
    );
    match &app.mode {
        Mode::Menu(m) => draw_menu(f, m, area, app.look),
        Mode::Help => draw_help(f, area),
        _ => {}
    }
}

fn draw_summary(f: &mut Frame, app: &App, area: Rect) {
    let look = app.look;
    let tab = |name: &str, on: bool| {
        if on {
            Span::styled(
                format!("[{name}]"),
                Style::new().add_modifier(Modifier::BOLD),
            )
        } else {
            Span::raw(format!(" {name} "))
        }
    };
    let mut spans = vec![
        tab("Personal", !app.filters.all),
        tab("All", app.filters.all),
        Span::raw("  "),
    ];
    if let Some(s) = &app.summary {
        spans.push(Span::styled(
            format!("{} {} working", look.icon(Status::Working), s.working),
            look.style(Status::Working),
        ));
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!("{} {} blocked", look.icon(Status::Blocked), s.blocked),
            if s.blocked > 0 {
                look.style(Status::Blocked)
            } else {
                Style::new()
            },
        ));
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!(
                "{} {} failed today",
                look.icon(Status::Failed),
                s.today.failed
            ),
            if s.today.failed > 0 {
                look.style(Status::Failed)
            } else {
                Style::new()
            },
        ));
        spans.push(Span::raw(format!(
            "  ${:.2} · {} cr today",
            s.today.cost_usd,
            (s.today.credits * 100.0).round() / 100.0
        )));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_list(f: &mut Frame, app: &mut App, area: Rect) {
    let height = area.height.saturating_sub(1) as usize;
    app.list_height = height;
    if app.selected < app.offset {
        app.offset = app.selected;
    } else if height > 0 && app.selected >= app.offset + height {
        app.offset = app.selected + 1 - height;
    }
    let now = Millis::now();
    let visible: Vec<&Item> = app.items.iter().skip(app.offset).take(height).collect();
    let cell_rows: Vec<[String; 8]> = visible.iter().map(|i| cells(i, app.look, now)).collect();
    let cols = columns(area.width, &cell_rows);
    let heads = [
        "STATUS", "SOURCE", "TITLE", "CREATOR", "CREATED", "DURATION", "COST", "ID",
    ];
    let index = |c: Col| c as usize;
    let header = Row::new(cols.iter().map(|(c, _)| heads[index(*c)]))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::DIM));
    let rows = visible
        .iter()
        .zip(&cell_rows)
        .enumerate()
        .map(|(n, (item, cells))| {
            let mut style = if item.status == Status::Blocked {
                app.look.style(Status::Blocked)
            } else {
                Style::new()
            };
            if app.offset + n == app.selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Row::new(cols.iter().map(|(c, w)| {
                let text = &cells[index(*c)];
                let text = if *c == Col::Title {
                    display::fit(text, *w as usize)
                } else {
                    text.clone()
                };
                if *c == Col::Status {
                    ratatui::text::Text::styled(text, app.look.style(item.status))
                } else {
                    ratatui::text::Text::raw(text)
                }
            }))
            .style(style)
        });
    let widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    if app.items.is_empty() {
        let text = if app.filters.is_empty() && !app.filters.all {
            "No agents of yours. Tab shows everyone's."
        } else {
            "No agents match."
        };
        f.render_widget(Paragraph::new(text), area);
        return;
    }
    f.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}

fn draw_inspect(f: &mut Frame, app: &App, area: Rect) {
    let Some(pane) = &app.inspect else {
        return;
    };
    let item = app.items.iter().find(|i| i.id == pane.id);
    let mut fields: Vec<Line> = Vec::new();
    if let Some(i) = item {
        let now = Millis::now();
        let mut field = |k: &str, v: String| {
            fields.push(Line::from(vec![
                Span::styled(format!("{k:>9} "), Style::new().add_modifier(Modifier::DIM)),
                Span::raw(display::printable(&v)),
            ]));
        };
        field("id", i.id.clone());
        field(
            "status",
            format!(
                "{} {}{}",
                app.look.icon(i.status),
                i.status,
                i.status_detail
                    .as_deref()
                    .map(|d| format!(" · {d}"))
                    .unwrap_or_default()
            ),
        );
        if let Some(s) = i.status_source {
            let waited = if i.blocked_ms > 0 {
                format!(" · waited on you {}", display::duration(i.blocked_ms))
            } else {
                String::new()
            };
            field("from", format!("{}{waited}", display::status_source(s)));
        }
        field("title", i.title.clone().unwrap_or_else(|| "-".into()));
        field(
            "source",
            format!(
                "{} · {}",
                i.source,
                i.harness.clone().unwrap_or_else(|| "-".into())
            ),
        );
        field("project", i.project.clone().unwrap_or_else(|| "-".into()));
        field(
            "creator",
            format!(
                "{}{}",
                i.creator.clone().unwrap_or_else(|| "-".into()),
                i.model
                    .as_deref()
                    .map(|m| format!(" · {m}"))
                    .unwrap_or_default()
            ),
        );
        field(
            "created",
            format!(
                "{} ({}) · updated {}",
                agentd_wire::format_rfc3339_ms(i.created_at.0),
                display::relative(i.created_at, now),
                display::relative(i.updated_at, now)
            ),
        );
        field(
            "usage",
            format!(
                "{} in · {} out · {} cache read · {} · {}",
                i.usage.input_tokens,
                i.usage.output_tokens,
                i.usage.cache_read_tokens,
                display::money(i),
                i.duration_ms
                    .map(display::duration)
                    .unwrap_or_else(|| "-".into())
            ),
        );
        if let Some(url) = &i.open.url {
            field("open", format!("{url}   (r opens)"));
        } else if let Some(cmd) = &i.open.command {
            field("command", format!("{cmd}   (r runs it here)"));
        }
    }
    let [head, log_area] =
        Layout::vertical([Constraint::Length(fields.len() as u16), Constraint::Min(1)]).areas(area);
    f.render_widget(Paragraph::new(fields), head);
    let block = Block::new().borders(Borders::TOP).title(if pane.back == 0 {
        " log (following; ↑/PgUp scroll, Esc back) "
    } else {
        " log (↑/↓ scroll, End follows, Esc back) "
    });
    let inner = block.inner(log_area);
    let rows = inner.height as usize;
    let end = pane.log.len().saturating_sub(pane.back);
    let start = end.saturating_sub(rows);
    let mut lines: Vec<Line> = pane.log[start..end]
        .iter()
        .map(|l| Line::raw(l.as_str()))
        .collect();
    if pane.back == 0 && !pane.tail.is_empty() && lines.len() < rows {
        lines.push(Line::raw(display::printable(&pane.tail)));
    }
    f.render_widget(block, log_area);
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_menu(f: &mut Frame, m: &Menu, area: Rect, look: Look) {
    let h = (m.options.len() as u16 + 2).min(area.height);
    let w = 30.min(area.width);
    let rect = Rect::new(area.x + area.width.saturating_sub(w) / 2, area.y + 1, w, h);
    let lines: Vec<Line> = m
        .options
        .iter()
        .zip(&m.chosen)
        .enumerate()
        .map(|(n, (o, c))| {
            let mark = match (c, look.unicode) {
                (true, true) => "☑",
                (false, true) => "☐",
                (true, false) => "[x]",
                (false, false) => "[ ]",
            };
            let style = if n == m.cursor {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Line::styled(format!("{mark} {o}"), style)
        })
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(format!(" {} · space ticks · Enter ", m.param))),
        rect,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let text = "\
↑/↓ PgUp/PgDn Home/End  move
Enter                   inspect (fields and live log)
Tab                     Personal / All
/                       search title and project
s  o  h                 status, source, harness menus
c  d                    creator, day (today, yesterday, YYYY-MM-DD)
x                       clear filters
r                       open: a cloud run's session in the
                        browser; a conversation here (leaves top)
k                       stop (asks y/n)
q  Esc  Ctrl-C          quit (Esc leaves the inspect pane)

any key closes this";
    let w = 68.min(area.width);
    let h = 15.min(area.height);
    let rect = Rect::new(area.x + area.width.saturating_sub(w) / 2, area.y + 1, w, h);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" keys ")),
        rect,
    );
}

/// Runs `body` on a thread; a panic there ends `top` cleanly (through [`Msg::Crashed`]) rather
/// than leaving it drawing over a restored terminal.
fn spawn_guarded(tx: Sender<Msg>, body: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let _ = tx.send(Msg::Crashed(why));
        }
    });
}

/// Blocks SIGTERM, SIGHUP and SIGINT in every thread started after it (so that they are not
/// fatal with the terminal in raw mode) and turns each into [`Msg::Signal`] on a thread that
/// waits for them.
fn route_signals(tx: Sender<Msg>) {
    let set = leave_signals();
    // SAFETY: pthread_sigmask/sigwait on our own threads with a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                let _ = tx.send(Msg::Signal);
            }
        });
    }
}

/// Undoes [`route_signals`]'s blocking on this thread.
fn unblock_signals() {
    let set = leave_signals();
    // SAFETY: pthread_sigmask with a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// SIGTERM, SIGHUP and SIGINT: the signals that make `top` leave.
fn leave_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset initialised by sigemptyset, then filled; no other state.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Reads terminal events on a thread of its own (crossterm's `read` blocks).
fn read_terminal(tx: Sender<Msg>) {
    loop {
        let msg = match term::read() {
            Ok(term::Event::Key(k)) => Msg::Key(k),
            Ok(term::Event::Resize(..)) => Msg::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Runs `top` until the user leaves. Fails (before touching the terminal) when agentd is not
/// reachable at the start.
pub fn run(client: &Client, all: bool, look: Look) -> Result<Exit, ClientError> {
    let (tx, rx) = std::sync::mpsc::channel();
    // Before any other thread starts, so that all of them inherit the blocked signals.
    route_signals(tx.clone());
    let mut app = App::new(client.clone(), look, all, tx.clone());
    if let Err(e) = app.reload() {
        unblock_signals();
        return Err(e);
    }
    let mut terminal = ratatui::try_init().map_err(ClientError::Io)?;
    let result = event_loop(&mut terminal, &mut app, tx, rx);
    app.close_inspect();
    ratatui::restore();
    // A resume command exec'd next must get Ctrl-C and the other signals again.
    unblock_signals();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
) -> Result<Exit, ClientError> {
    let (sse_tx, sse_rx) = std::sync::mpsc::channel::<Event>();
    let _sub = Subscription::start(app.client.clone(), "all", sse_tx);
    {
        let tx2 = tx.clone();
        spawn_guarded(tx.clone(), move || {
            for ev in sse_rx {
                if tx2.send(Msg::Sse(ev)).is_err() {
                    return;
                }
            }
        });
    }
    let tx2 = tx.clone();
    spawn_guarded(tx, move || read_terminal(tx2));
    let mut next_tick = Instant::now() + TICK;
    loop {
        terminal.draw(|f| draw(f, app)).map_err(ClientError::Io)?;
        let wait = if app.needs_tick() {
            next_tick.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(3600)
        };
        let msg = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                next_tick = Instant::now() + TICK;
                continue; // redraw: running durations moved
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(Exit::Quit),
        };
        let mut pending = Some(msg);
        // Take everything already queued before drawing again (a burst of events is one draw).
        while let Some(m) = pending.take() {
            match m {
                Msg::Key(k) => {
                    if let Some(exit) = app.on_key(k) {
                        return Ok(exit);
                    }
                }
                Msg::Resize => {}
                Msg::Sse(ev) => app.on_event(ev),
                Msg::Log(g, text) => app.on_log(g, text),
                Msg::Note(text) => app.message = Some(text),
                Msg::Signal => return Ok(Exit::Quit),
                Msg::Crashed(why) => {
                    return Err(ClientError::Protocol(format!("top failed: {why}")));
                }
            }
            pending = rx.try_recv().ok();
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: serde_json::Value) -> Item {
        let mut base = serde_json::json!({
            "id": "cli:a", "kind": "run", "source": "cli", "status": "working", "mine": true,
            "title": "fix the login test", "project": "/src/app", "creator": "alice",
            "harness": "claude-code",
            "created_at": "2026-11-28T09:00:00.000Z", "updated_at": "2026-11-28T09:00:00.000Z",
            "usage": {}, "open": {}
        });
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn filters_match_like_the_api() {
        let i = item(serde_json::json!({}));
        let f = |g: &dyn Fn(&mut Filters)| {
            let mut f = Filters::default();
            g(&mut f);
            f.matches(&i)
        };
        assert!(f(&|_| {}));
        assert!(f(&|f| f.status = vec![Status::Failed, Status::Working]));
        assert!(!f(&|f| f.status = vec![Status::Failed]));
        assert!(f(&|f| f.source = vec!["CLI".into()]));
        assert!(!f(&|f| f.source = vec!["slack".into()]));
        assert!(f(&|f| f.harness = vec!["claude-code".into()]));
        assert!(f(&|f| f.q = Some("LOGIN".into())));
        assert!(f(&|f| f.q = Some("src/app".into())));
        assert!(!f(&|f| f.q = Some("deploy".into())));
        assert!(!f(&|f| f.creator = Some("bob".into())));
        let at = agentd_wire::parse_rfc3339_ms("2026-11-28T09:00:00Z").unwrap();
        assert!(f(&|f| f.day_bounds = Some((at, at + 1))));
        assert!(!f(&|f| f.day_bounds = Some((at + 1, at + 2))));
        // Not mine: only in the All tab.
        let theirs = item(serde_json::json!({"mine": false}));
        assert!(!Filters::default().matches(&theirs));
        assert!(
            Filters {
                all: true,
                ..Filters::default()
            }
            .matches(&theirs)
        );
    }

    #[test]
    fn columns_fit_80_and_40_wide_screens() {
        let look = Look {
            unicode: true,
            color: false,
        };
        let now = Millis(agentd_wire::parse_rfc3339_ms("2026-11-28T10:00:00Z").unwrap());
        let rows = vec![cells(
            &item(serde_json::json!({"status": "blocked", "status_detail": "approve Bash"})),
            look,
            now,
        )];
        for width in [40u16, 80, 200] {
            let cols = columns(width, &rows);
            let used: u16 = cols.iter().map(|(_, w)| w + 1).sum::<u16>() - 1;
            assert!(used <= width, "{width}: {cols:?}");
            assert!(
                cols.iter().any(|(c, w)| *c == Col::Title && *w >= 16),
                "{cols:?}"
            );
            assert_eq!(cols[0].0, Col::Status);
        }
        assert_eq!(columns(200, &rows).len(), 8);
        let ascii = Look {
            unicode: false,
            color: false,
        };
        assert_eq!(ascii.icon(Status::Blocked), "!");
    }
}
