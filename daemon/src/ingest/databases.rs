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
//!
//! A format may also keep sessions as a tree of JSON files ([`SessionTree`]: OpenCode before
//! its database, whose tree stays on disk after the migration). The same follower watches the
//! dirs of the tree where sessions and messages are written and reads a session whole when one
//! of its files changes; a session still working is also looked at every tick (its parts, in
//! a dir per message, are not watched: one watch per message would exhaust the user's
//! watches), and read again when its files' fingerprint moved. A restart reads again only the
//! sessions whose files' names, sizes or modification times changed (their fingerprint is
//! committed with their item). A session that a database of the same root also holds is the
//! database's: the tree's copy of it is not read.

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

/// What is committed of a session read from a tree, with its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct TreeMark {
    /// [`SessionTree::fingerprint`] when it was read.
    fingerprint: u64,
    /// Its last activity (epoch ms): a recent one is read again on start.
    active: i64,
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
    /// Where the format keeps sessions as files instead ([`NoTree`] when it does not).
    type Tree: SessionTree<Session = Self::Session>;
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
    /// Whether the database holds session `id` (a tree's copy of it is then not read).
    fn has_session(_conn: &Connection, _id: &str) -> rusqlite::Result<bool> {
        Ok(false)
    }
}

/// Sessions kept as a tree of files rather than in a database: each session read whole from
/// its files, found again from the paths that changed.
pub trait SessionTree: Send + 'static {
    type Session: SessionView;
    /// The tree kept under a configured root, if the format has one.
    fn under(root: &Path) -> Option<PathBuf>;
    /// The dirs of a tree to watch, each with everything under it: those where a change to a
    /// session shows (a live session's other files are looked at every tick).
    fn watch_dirs(tree: &Path) -> Vec<PathBuf>;
    /// Follows the tree at `dir`.
    fn open(dir: PathBuf) -> Self;
    /// Reads the index of its sessions again (a scan): the ids of its top sessions, the ones
    /// shown as items (a sub-agent's session counts in its parent).
    fn index(&mut self) -> Vec<String>;
    /// The top sessions that paths changed or removed under the tree belong to.
    fn touched(&mut self, paths: &BTreeSet<PathBuf>) -> BTreeSet<String>;
    /// A fingerprint of every file a read of top session `id` depends on (names, sizes,
    /// modification times; no content): while it is unchanged, a read gives the same item.
    /// `None` when the session is gone.
    fn fingerprint(&self, id: &str) -> Option<u64>;
    /// Reads top session `id` whole; `None` when it is gone.
    fn session(&self, id: &str, prices: &Prices)
    -> Result<Option<TreeRead<Self::Session>>, String>;
    /// The file an item of session `id` names as its origin (its log is rendered from it).
    fn origin(&self, id: &str) -> PathBuf;
    /// How many sessions it knows.
    fn sessions(&self) -> usize;
}

/// One read of a session of a tree.
pub struct TreeRead<S> {
    /// `None` when it has nothing to show yet (no message), or is a sub-agent's.
    pub session: Option<S>,
    /// The fingerprint of the files it was read from (taken as they were read).
    pub fingerprint: u64,
    /// What could not be read of it (files skipped), each said in a sentence.
    pub problems: Vec<String>,
}

/// The tree of a format that keeps none.
pub struct NoTree<S>(std::marker::PhantomData<fn() -> S>);

impl<S: SessionView> SessionTree for NoTree<S> {
    type Session = S;
    fn under(_root: &Path) -> Option<PathBuf> {
        None
    }
    fn watch_dirs(_tree: &Path) -> Vec<PathBuf> {
        Vec::new()
    }
    fn open(_dir: PathBuf) -> Self {
        NoTree(std::marker::PhantomData)
    }
    fn index(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn touched(&mut self, _paths: &BTreeSet<PathBuf>) -> BTreeSet<String> {
        BTreeSet::new()
    }
    fn fingerprint(&self, _id: &str) -> Option<u64> {
        None
    }
    fn session(&self, _id: &str, _prices: &Prices) -> Result<Option<TreeRead<S>>, String> {
        Ok(None)
    }
    fn origin(&self, _id: &str) -> PathBuf {
        PathBuf::new()
    }
    fn sessions(&self) -> usize {
        0
    }
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
    let mut trees = BTreeMap::new();
    let mut tree_of = HashMap::new();
    for root in &roots {
        if root.extension().is_some_and(|e| e == "db") {
            named.insert(root.clone());
            dirs.extend(root.parent().map(Path::to_owned));
        } else {
            dirs.extend(D::watch_dirs(root));
            if let Some(tree) = D::Tree::under(root) {
                for dir in D::Tree::watch_dirs(&tree) {
                    tree_of.insert(dir.clone(), tree.clone());
                    dirs.push(dir);
                }
                trees.insert(
                    tree.clone(),
                    FollowedTree {
                        tree: D::Tree::open(tree),
                        root: root.clone(),
                        read_once: false,
                        scanned: false,
                        reported: HashSet::new(),
                    },
                );
            }
        }
    }
    // A root's databases are read before its tree (sorted, the root comes first): a session
    // both hold is then known to be the database's.
    dirs.sort();
    dirs.dedup();
    let follower = DbFollower::<D> {
        named,
        trees,
        tree_of,
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

/// One tree of session files being followed.
struct FollowedTree<T> {
    tree: T,
    /// The configured root it is under: the databases in it win over it.
    root: PathBuf,
    /// It was read once since start (the first read also looks at recently active sessions).
    read_once: bool,
    /// It was scanned in the current round of scans (it has several watched dirs).
    scanned: bool,
    /// What could not be read of it, each counted once (a live session is read again and
    /// again).
    reported: HashSet<String>,
}

/// A session still working or blocked: kept to be evaluated again as time passes.
struct Live<S> {
    /// Its database (read again with it), or its file in a tree: the item's origin.
    db: PathBuf,
    /// For a session of a tree: the tree's dir and the fingerprint of what was read.
    tree: Option<(PathBuf, u64)>,
    session: S,
    emitted: (Status, Option<String>),
}

struct DbFollower<D: Database> {
    /// Databases named by a root directly (any file name).
    named: HashSet<PathBuf>,
    /// Trees of session files, by their dir.
    trees: BTreeMap<PathBuf, FollowedTree<D::Tree>>,
    /// The tree each of the trees' watched dirs belongs to.
    tree_of: HashMap<PathBuf, PathBuf>,
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
    const EVENT_QUEUE: usize = EVENT_QUEUE;
    const SETTLE: Duration = SETTLE;

    /// A database's dir alone; a tree with everything under it.
    fn recursive(&self, dir: &Path) -> bool {
        self.tree_of.contains_key(dir)
    }

    /// Reads the databases in `dir` (and those named in it by a root), or a tree.
    fn scan(&mut self, dir: &Path) -> Step {
        if let Some(tree) = self.tree_of.get(dir).cloned() {
            let t = self.trees.get_mut(&tree).expect("a tree");
            if std::mem::replace(&mut t.scanned, true) {
                return Ok(()); // scanned already from another of its dirs
            }
            return self.scan_tree(&tree);
        }
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
        for t in self.trees.values_mut() {
            t.scanned = false;
        }
    }

    fn changed(&mut self, changed: BTreeSet<PathBuf>, removed: BTreeSet<PathBuf>) -> Step {
        let tree_dirs: Vec<PathBuf> = self.trees.keys().cloned().collect();
        for dir in tree_dirs {
            let under: BTreeSet<PathBuf> = changed
                .iter()
                .chain(&removed)
                .filter(|p| p.starts_with(&dir))
                .cloned()
                .collect();
            if under.is_empty() {
                continue;
            }
            let tree = self.trees.get_mut(&dir).expect("listed above");
            let ids = tree.tree.touched(&under);
            self.read_tree(&dir, ids, false)?;
        }
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
        self.send(batch)?;
        // A live session of a tree whose files moved (a part written: parts are not watched)
        // is read again.
        let mut moved: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
        for (id, live) in &self.live {
            if let Some((tree, fingerprint)) = &live.tree
                && self.trees[tree].tree.fingerprint(id) != Some(*fingerprint)
            {
                moved.entry(tree.clone()).or_default().insert(id.clone());
            }
        }
        for (tree, ids) in moved {
            self.read_tree(&tree, ids, false)?;
        }
        Ok(())
    }

    fn forget(&mut self) {
        self.databases.clear();
        self.live.clear();
        for t in self.trees.values_mut() {
            t.read_once = false;
        }
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
            self.emit(&mut batch, id, db.to_owned(), None, session, now)?;
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
        self.count_files();
        self.send(batch)
    }

    /// What the source counts as its files: its databases and the sessions of its trees.
    fn count_files(&self) {
        let sessions: usize = self.trees.values().map(|t| t.tree.sessions()).sum();
        self.stats
            .files
            .store((self.databases.len() + sessions) as u64, Ordering::Relaxed);
    }

    /// Reads a tree's index again and the sessions that changed since their committed
    /// fingerprints (or that were recently active: time may have moved their status on).
    fn scan_tree(&mut self, dir: &Path) -> Step {
        let t = self.trees.get_mut(dir).expect("a tree");
        let ids = t.tree.index();
        self.stats
            .scan_total
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.read_tree(dir, ids.into_iter().collect(), true)
    }

    /// Whether a database under `root` holds session `id`.
    fn in_a_database(&self, root: &Path, id: &str) -> bool {
        self.databases.iter().any(|(path, f)| {
            path.parent() == Some(root)
                && f.conn
                    .as_ref()
                    .is_some_and(|c| D::has_session(c, id).unwrap_or(false))
        })
    }

    /// Reads sessions `ids` of the tree at `dir` and sends their items, each with its
    /// fingerprint. A scan skips those whose committed fingerprint is unchanged.
    fn read_tree(&mut self, dir: &Path, ids: BTreeSet<String>, scan: bool) -> Step {
        let t = &self.trees[dir];
        let recent = if t.read_once {
            i64::MAX
        } else {
            Millis::now().0 - super::convo::ABANDONED_AFTER_MS - 60_000
        };
        let now = Millis::now();
        let mut batch = self.batch();
        let mut read = 0u64;
        for id in ids {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            let t = &self.trees[dir];
            if self.in_a_database(&t.root, &id) {
                continue;
            }
            let key = format!("{}:{}#{id}", D::NAME, dir.display());
            if scan
                && let Ok(Some(bytes)) = self.store.cursor(&key)
                && let Ok(mark) = crate::store::decode::<TreeMark>(&bytes)
                && mark.active < recent
                && t.tree.fingerprint(&id) == Some(mark.fingerprint)
            {
                continue; // read before, and nothing it depends on changed
            }
            read += 1;
            let TreeRead {
                session,
                fingerprint,
                problems,
            } = match t.tree.session(&id, &self.prices) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.live.remove(&id);
                    continue;
                }
                Err(e) => {
                    batch.errors += 1;
                    batch.last_error = Some(e);
                    continue;
                }
            };
            let t = self.trees.get_mut(dir).expect("a tree");
            for problem in problems {
                if t.reported.insert(problem.clone()) {
                    tracing::warn!("{problem}");
                    batch.errors += 1;
                    batch.last_error = Some(problem);
                }
            }
            let Some(session) = session else {
                self.live.remove(&id);
                continue;
            };
            let origin = t.tree.origin(&id);
            let active = session.conversation(now).updated_at.unwrap_or(now).0;
            batch.cursors.push((
                key,
                crate::store::encode(&TreeMark {
                    fingerprint,
                    active,
                }),
            ));
            let tree = Some((dir.to_owned(), fingerprint));
            self.emit(&mut batch, id, origin, tree, session, now)?;
        }
        self.stats.read(read, 0);
        self.trees.get_mut(dir).expect("a tree").read_once = true;
        self.count_files();
        self.send(batch)
    }

    /// Adds session `id`'s item to `batch` (sent when full) and keeps the session while it is
    /// working or blocked.
    fn emit(
        &mut self,
        batch: &mut IngestBatch,
        id: String,
        origin: PathBuf,
        tree: Option<(PathBuf, u64)>,
        session: D::Session,
        now: Millis,
    ) -> Step {
        let c = session.conversation(now);
        let emitted = (c.status, c.status_detail.clone());
        batch
            .updates
            .push(Self::item(&id, &origin, &session, c, now));
        if emitted.0.is_active() {
            let live = Live {
                db: origin,
                tree,
                session,
                emitted,
            };
            self.live.insert(id, live);
        } else {
            self.live.remove(&id);
        }
        if batch.updates.len() >= BATCH {
            self.send(std::mem::replace(batch, self.batch()))?;
        }
        Ok(())
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
