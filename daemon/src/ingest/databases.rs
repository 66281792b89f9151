//! The source of conversation stores kept in SQLite databases (OpenCode's `opencode.db`,
//! Goose's `sessions.db`), where [`super::stores`] follows line files; driven by the same
//! follower engine ([`super::follow`]), watching each database's dir.
//!
//! The agent writes its database all the time (WAL mode); agentd only ever reads it: each
//! database is opened read-only (`SQLITE_OPEN_READ_ONLY`, `query_only`), never `immutable`
//! (the file changes under it) and never inside a long transaction (a reader holding a snapshot
//! would stop the agent's checkpoints). A change to the database or its `-wal` file (notify),
//! or a tick when it cannot be watched, asks the format for the sessions changed since the
//! database's [`Mark`]; each of those is read whole from the database (a session is a few
//! hundred rows, indexed by session) and becomes its item. The mark is committed with the
//! items, so a restart reads only what changed while agentd was down, plus the sessions
//! recently active (time may have moved their status on). Sessions still working or blocked
//! are kept in memory and evaluated again on every tick, like the line-file folds.
//!
//! Reading a whole session again, rather than folding rows as they come, is what keeps counts
//! exact here: rows are updated in place (a message gets its tokens when it completes, a tool
//! part moves from `pending` to `completed`), and the database is the truth at every moment.

use super::SourceStats;
use super::convo::Conversation;
use super::follow::{Step, Stopped};
use super::stores::conversation_item;
use crate::model::Millis;
use crate::prices::Prices;
use crate::sources::SourceKind;
use crate::store::Store;
use crate::store::writer::{IngestBatch, WriterHandle};
use agentd_wire::{Status, StatusSource};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// How often live sessions are evaluated again, and unwatched databases polled.
const TICK: Duration = Duration::from_secs(1);
/// A burst of writes (a streaming answer rewrites its part many times a second) is read once
/// it has paused this long, or at this interval while it goes on.
const SETTLE: Duration = Duration::from_millis(100);
/// Notifications queued; beyond this one poll of every database replaces them.
const EVENT_QUEUE: usize = 1024;
/// How long the agent may hold its write lock before a read gives up (and tries next time).
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);
/// Sessions read per batch sent to the writer.
const BATCH: usize = 256;

/// Where reading a database stands: what the format needs to find what changed since. Its
/// fields mean what the format says (OpenCode: the largest row ids of its tables and the
/// latest session update).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub rowids: Vec<i64>,
    pub updated: i64,
}

/// What a format reads of a session besides what decides its status.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub title: Option<String>,
    pub cwd: Option<String>,
    pub model: Option<String>,
    pub created: Millis,
    /// The latest row written for the session.
    pub active: Millis,
    pub usage: agentd_wire::Usage,
    pub cost: super::convo::CostSum,
}

impl SessionFacts {
    /// How long no row was written for the session, as of `now` (ms).
    pub fn quiet(&self, now: Millis) -> i64 {
        now.0.saturating_sub(self.active.0)
    }

    /// The conversation these facts describe, in `status`.
    pub fn conversation(&self, status: Status, detail: Option<String>) -> Conversation {
        Conversation {
            session_id: None,
            title: self.title.clone(),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: Some(self.created),
            updated_at: Some(self.active.max(self.created)),
            status,
            status_detail: detail,
            usage: self.usage,
            cost_usd: self.cost.usd(),
            credits: None,
            live: None,
        }
    }
}

/// What a format reads of one session: evaluated at a given time like a fold.
pub trait SessionView: Send + 'static {
    /// The conversation as of `now`.
    fn conversation(&self, now: Millis) -> Conversation;
}

/// A conversation store kept in a SQLite database.
pub trait Database: Send + 'static {
    type Session: SessionView;
    const KIND: SourceKind;
    const NAME: &'static str = Self::KIND.name();
    /// The dirs to watch under one configured root (not recursive: the database's own dir).
    fn watch_dirs(root: &Path) -> Vec<PathBuf>;
    /// Whether `path` is one of its databases.
    fn is_database(path: &Path) -> bool;
    /// The ids of the sessions changed since `mark`, and of those updated at or after
    /// `recent` (epoch ms), each as the id of the item it belongs to; and the new mark.
    fn changed(
        conn: &Connection,
        mark: &Mark,
        recent: i64,
    ) -> rusqlite::Result<(BTreeSet<String>, Mark)>;
    /// Reads one session whole; `None` when it is gone (or not one shown as an item).
    fn session(
        conn: &Connection,
        id: &str,
        prices: &Prices,
    ) -> rusqlite::Result<Option<Self::Session>>;
    /// The shell command that resumes the session.
    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String>;
}

/// Opens `path` for reading only, after checking it is the user's own regular file (a FIFO or
/// a device in its place is refused before SQLite touches it).
pub fn open_read_only(path: &Path) -> Result<Connection, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.uid() != crate::fsread::my_uid() {
        return Err(format!(
            "{} belongs to another user; not read",
            path.display()
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "query_only", true))
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok(conn)
}

/// Whether `table` has `column` (stores of older versions lack newer columns).
pub fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    for n in names {
        if n? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Starts the source thread of database format `D` over `roots` (a root names a dir, or a
/// database file itself).
pub fn spawn<D: Database>(
    roots: Vec<PathBuf>,
    prices: Arc<Prices>,
    wiring: &super::follow::Wiring,
) -> std::io::Result<(SyncSender<super::IngestEvent>, std::thread::JoinHandle<()>)> {
    let mut dirs = Vec::new();
    let mut named = HashSet::new();
    for root in &roots {
        if root.extension().is_some_and(|e| e == "db") {
            named.insert(root.clone());
            dirs.extend(root.parent().map(Path::to_owned));
        } else {
            dirs.extend(D::watch_dirs(root));
        }
    }
    dirs.sort();
    dirs.dedup();
    let follower = DbFollower::<D> {
        named,
        databases: BTreeMap::new(),
        live: HashMap::new(),
        failing: HashMap::new(),
        stop: wiring.stop.clone(),
        prices,
        store: wiring.store.clone(),
        writer: wiring.writer.clone(),
        stats: wiring.stats.clone(),
    };
    super::follow::spawn(follower, dirs, wiring)
}

/// One database being followed.
struct Followed {
    conn: Option<Connection>,
    mark: Mark,
    /// Its mark was loaded from the store (or it was read once in this run).
    loaded: bool,
    /// It was read once since start (the first read also looks at recently active sessions).
    read_once: bool,
}

/// A session still working or blocked: kept to be evaluated again as time passes.
struct Live<S> {
    db: PathBuf,
    session: S,
    emitted: (Status, Option<String>),
}

struct DbFollower<D: Database> {
    /// Databases named by a root directly (any file name).
    named: HashSet<PathBuf>,
    databases: BTreeMap<PathBuf, Followed>,
    live: HashMap<String, Live<D::Session>>,
    /// Databases that could not be read, with the error: counted once.
    failing: HashMap<PathBuf, String>,
    /// Set at shutdown: a long read stops between sessions.
    stop: Arc<AtomicBool>,
    prices: Arc<Prices>,
    store: Store,
    writer: WriterHandle,
    stats: Arc<SourceStats>,
}

impl<D: Database> super::follow::Followed for DbFollower<D> {
    const NAME: &'static str = D::NAME;
    const TICK: Duration = TICK;
    const RECURSIVE: bool = false;
    const EVENT_QUEUE: usize = EVENT_QUEUE;
    const SETTLE: Duration = SETTLE;

    /// Reads the databases in `dir` (and those named in it by a root).
    fn scan(&mut self, dir: &Path) -> Step {
        let mut found: Vec<PathBuf> = self
            .named
            .iter()
            .filter(|p| p.parent() == Some(dir) && p.exists())
            .cloned()
            .collect();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if self.database_of(&p).as_ref() == Some(&p) && !found.contains(&p) {
                found.push(p);
            }
        }
        found.sort();
        self.stats
            .scan_total
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        found.iter().try_for_each(|db| self.poll(db))
    }

    fn rescan_begins(&mut self) {
        self.stats.scan_total.store(0, Ordering::Relaxed);
    }

    fn changed(&mut self, changed: BTreeSet<PathBuf>, removed: BTreeSet<PathBuf>) -> Step {
        let dbs: BTreeSet<PathBuf> = changed
            .iter()
            .chain(&removed)
            .filter_map(|p| self.database_of(p))
            .collect();
        dbs.iter().try_for_each(|db| self.poll(db))
    }

    /// Time moves statuses on: a quiet pending tool becomes blocked, an abandoned turn fails.
    fn tick(&mut self) -> Step {
        let now = Millis::now();
        let mut batch = self.batch();
        let mut finished = Vec::new();
        for (id, live) in &mut self.live {
            let c = live.session.conversation(now);
            if (c.status, c.status_detail.clone()) != live.emitted {
                live.emitted = (c.status, c.status_detail.clone());
                batch
                    .updates
                    .push(Self::item(id, &live.db, &live.session, c, now));
            }
            if !live.emitted.0.is_active() {
                finished.push(id.clone());
            }
        }
        for id in finished {
            self.live.remove(&id);
        }
        self.send(batch)
    }

    fn forget(&mut self) {
        self.databases.clear();
        self.live.clear();
    }
}

impl<D: Database> DbFollower<D> {
    /// The database a changed path belongs to (the database itself, or its `-wal`/`-shm`).
    fn database_of(&self, path: &Path) -> Option<PathBuf> {
        let name = path.file_name()?.to_str()?;
        let base = name
            .strip_suffix("-wal")
            .or_else(|| name.strip_suffix("-shm"))
            .or_else(|| name.strip_suffix("-journal"))
            .unwrap_or(name);
        let db = path.with_file_name(base);
        (self.named.contains(&db) || D::is_database(&db)).then_some(db)
    }

    /// Reads what changed in `db` and sends the items.
    fn poll(&mut self, db: &Path) -> Step {
        let key = format!("{}:{}", D::NAME, db.display());
        let followed = self.databases.entry(db.to_owned()).or_insert(Followed {
            conn: None,
            mark: Mark::default(),
            loaded: false,
            read_once: false,
        });
        if !followed.loaded {
            match self.store.cursor(&key) {
                Ok(Some(bytes)) => followed.mark = crate::store::decode(&bytes).unwrap_or_default(),
                Ok(None) => {}
                Err(e) => tracing::error!("reading the mark of {}: {e}", db.display()),
            }
            followed.loaded = true;
        }
        if followed.conn.is_none() {
            match open_read_only(db) {
                Ok(c) => followed.conn = Some(c),
                Err(msg) => return self.failed(db, msg),
            }
        }
        // The first read in this run also takes the sessions recently active: time may have
        // moved their status on while agentd was down.
        let recent = if followed.read_once {
            i64::MAX
        } else {
            Millis::now().0 - super::convo::ABANDONED_AFTER_MS - 60_000
        };
        let conn = followed.conn.as_ref().expect("opened above");
        let (ids, mark) = match D::changed(conn, &followed.mark, recent) {
            Ok(r) => r,
            Err(e) => {
                // A store of another shape, or caught mid-migration: try again next time.
                followed.conn = None;
                return self.failed(db, format!("cannot read {}: {e}", db.display()));
            }
        };
        followed.read_once = true;
        self.failing.remove(db);
        let mut ids: BTreeSet<String> = ids;
        // Live sessions of this database are read again too: their rows change in place.
        ids.extend(
            self.live
                .iter()
                .filter(|(_, l)| l.db == db)
                .map(|(id, _)| id.clone()),
        );
        let now = Millis::now();
        let mut batch = self.batch();
        let mut errors = 0u64;
        let sessions = ids.len() as u64;
        for id in ids {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            let conn = self.databases[db].conn.as_ref().expect("opened above");
            let session = match D::session(conn, &id, &self.prices) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    self.live.remove(&id);
                    continue;
                }
                Err(e) => {
                    errors += 1;
                    batch.last_error = Some(format!("{}: session {id}: {e}", db.display()));
                    continue;
                }
            };
            let c = session.conversation(now);
            let emitted = (c.status, c.status_detail.clone());
            batch.updates.push(Self::item(&id, db, &session, c, now));
            if emitted.0.is_active() {
                self.live.insert(
                    id,
                    Live {
                        db: db.to_owned(),
                        session,
                        emitted,
                    },
                );
            } else {
                self.live.remove(&id);
            }
            if batch.updates.len() >= BATCH {
                self.send(std::mem::replace(&mut batch, self.batch()))?;
            }
        }
        batch.errors += errors;
        // A database's "lines" are the sessions read from it.
        self.stats.read(sessions, 0);
        let followed = self.databases.get_mut(db).expect("inserted above");
        if followed.mark != mark {
            followed.mark = mark.clone();
        }
        // The mark goes with the last batch: committed with the items it accounts for.
        batch.cursors.push((key, crate::store::encode(&mark)));
        self.stats
            .files
            .store(self.databases.len() as u64, Ordering::Relaxed);
        self.send(batch)
    }

    fn failed(&mut self, db: &Path, msg: String) -> Step {
        if self.failing.get(db) == Some(&msg) {
            return Ok(());
        }
        tracing::warn!("{msg}");
        self.failing.insert(db.to_owned(), msg.clone());
        let mut batch = self.batch();
        batch.errors = 1;
        batch.last_error = Some(msg);
        self.send(batch)
    }

    fn item(
        id: &str,
        db: &Path,
        session: &D::Session,
        c: Conversation,
        now: Millis,
    ) -> crate::store::writer::ItemUpdate {
        // A quiet-time rule moved the status on since the last row: a guess.
        let at_last_row = c
            .updated_at
            .map_or(c.status, |u| session.conversation(u).status);
        let source = if at_last_row == c.status {
            StatusSource::Transcript
        } else {
            StatusSource::Inferred
        };
        let created = c.created_at.unwrap_or(now);
        let updated = c.updated_at.unwrap_or(created).max(created);
        let command = D::resume_command(id, c.cwd.as_deref());
        let detail = c.status_detail.clone();
        conversation_item(
            D::KIND,
            id,
            &c,
            (created, updated),
            detail,
            source,
            command,
            db,
        )
    }

    fn batch(&self) -> IngestBatch {
        IngestBatch {
            source: D::NAME,
            ..Default::default()
        }
    }

    fn send(&self, batch: IngestBatch) -> Step {
        super::stores::send_batch(&self.writer, batch)
    }
}
