//! OpenCode's sessions as it kept them before its SQLite database (releases before 1.2): a tree
//! of JSON files under `<data dir>/storage/`, one file per session, per message and per part:
//!
//! | file | what it holds |
//! |---|---|
//! | `session/<projectID>/<sessionID>.json` | `id`, `title`, `directory`, `parentID` (a sub-agent's session), `time.created` |
//! | `message/<sessionID>/<messageID>.json` | a message: what a `message` row's `data` holds, with `id` and `sessionID` |
//! | `part/<messageID>/<partID>.json` | a part: what a `part` row's `data` holds, with `id`, `messageID`, `sessionID` |
//!
//! A session is read whole when one of its files changes and folded by the same rules as a
//! database's ([`super::opencode::fold_session`]: statuses, tokens, cost, title), a message's
//! time of writing being its file's modification time. OpenCode 1.2 migrates the tree into its
//! database on first start and leaves the files; a session the database also holds is the
//! database's ([`super::databases`] does not read it from here).
//!
//! Watched: `session/` and `message/` (a dir per project, a dir per session); a part alone
//! changing (a tool moving from `pending` to `running`, a streamed text) is seen at the tick
//! for sessions still working, whose fingerprint is checked then. The index of sessions (their
//! files and parents) is the only state kept: a few dozen bytes a session. A restart compares each session's fingerprint (the names, sizes and modification
//! times of its session, message and part files) with the one committed with its item and
//! reads only those that changed.

use super::databases::{SessionTree, TreeRead};
use super::opencode::{MessageRecord, OpenCodeSession, SessionHead, fold_session};
use super::tail::{FNV1A_START, fnv1a_more};
use crate::fsread::{self, Trust};
use crate::prices::Prices;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The largest file read: a part may hold a tool's whole output; anything larger is skipped
/// (and said).
const MAX_FILE: u64 = 64 << 20;
/// How deep sub-agent sessions may nest before a chain of parents is taken for a loop.
const MAX_DEPTH: usize = 64;

/// What the index keeps of a session file.
#[derive(Debug, Clone)]
struct Known {
    file: PathBuf,
    parent: Option<String>,
}

/// A session file's fields agentd reads.
#[derive(Debug, Deserialize)]
struct SessionFile {
    id: Option<String>,
    #[serde(rename = "parentID")]
    parent: Option<String>,
    title: Option<String>,
    directory: Option<String>,
    time: Option<Times>,
}

#[derive(Debug, Default, Deserialize)]
struct Times {
    created: Option<i64>,
}

/// A part file's session, all a change to it needs.
#[derive(Debug, Deserialize)]
struct PartFile {
    #[serde(rename = "sessionID")]
    session: Option<String>,
}

/// One tree: `<data dir>/storage`.
pub struct Storage {
    dir: PathBuf,
    /// Every session file found, by session id.
    sessions: HashMap<String, Known>,
    /// Sub-agent sessions by their parent.
    children: HashMap<String, BTreeSet<String>>,
}

impl Storage {
    fn read_session_file(path: &Path) -> Result<(String, SessionFile), String> {
        let file: SessionFile = Self::read_json(path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let id = file
            .id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| stem.to_owned());
        Ok((id, file))
    }

    /// Adds (or replaces) what the index knows of the session file at `path`; `None` when it
    /// cannot be read (gone, or not a session).
    fn learn(&mut self, path: &Path) -> Option<String> {
        let (id, file) = Self::read_session_file(path).ok()?;
        self.forget(&id);
        if let Some(p) = &file.parent {
            self.children
                .entry(p.clone())
                .or_default()
                .insert(id.clone());
        }
        self.sessions.insert(
            id.clone(),
            Known {
                file: path.to_owned(),
                parent: file.parent,
            },
        );
        Some(id)
    }

    fn forget(&mut self, id: &str) {
        if let Some(old) = self.sessions.remove(id)
            && let Some(p) = old.parent
            && let Some(c) = self.children.get_mut(&p)
        {
            c.remove(id);
            if c.is_empty() {
                self.children.remove(&p);
            }
        }
    }

    /// Looks for the file of session `id` in every project's dir and learns it.
    fn find(&mut self, id: &str) {
        let name = format!("{id}.json");
        let found = std::fs::read_dir(self.dir.join("session"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&name))
            .find(|p| p.is_file());
        if let Some(path) = found {
            self.learn(&path);
        }
    }

    /// The top session `id` belongs to (itself when it has no parent); `None` when a parent
    /// in its chain is unknown, or the chain loops.
    fn top(&self, id: &str) -> Option<String> {
        let mut at = id;
        for _ in 0..MAX_DEPTH {
            match &self.sessions.get(at)?.parent {
                None => return Some(at.to_owned()),
                Some(p) => at = p,
            }
        }
        None
    }

    /// `id` and every session under it, parents first.
    fn family(&self, id: &str) -> Vec<String> {
        let mut out = vec![id.to_owned()];
        let mut i = 0;
        while i < out.len() && out.len() < 100_000 {
            if let Some(c) = self.children.get(&out[i]) {
                out.extend(
                    c.iter()
                        .filter(|c| !out.contains(c))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
            i += 1;
        }
        out
    }

    /// The JSON files directly in `dir`, sorted by name, with their metadata (a missing dir
    /// has none).
    fn files_in(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
            // Not following links, and relative to the open dir (no walk from the root).
            .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn message_dir(&self, session: &str) -> PathBuf {
        self.dir.join("message").join(session)
    }

    fn part_dir(&self, message: &str) -> PathBuf {
        self.dir.join("part").join(message)
    }

    /// One walk over the files a read of top session `id` depends on.
    fn walk(&self, id: &str) -> Option<Walk> {
        let known = self.sessions.get(id)?;
        let meta = std::fs::symlink_metadata(&known.file).ok()?;
        let mut walk = Walk {
            fingerprint: fingerprint_file(FNV1A_START, &known.file, &meta),
            messages: Vec::new(),
            part_active: None,
        };
        for (n, sid) in self.family(id).into_iter().enumerate() {
            if n > 0
                && let Some(k) = self.sessions.get(&sid)
                && let Ok(m) = std::fs::symlink_metadata(&k.file)
            {
                walk.fingerprint = fingerprint_file(walk.fingerprint, &k.file, &m);
            }
            for (path, m) in Self::files_in(&self.message_dir(&sid)) {
                walk.fingerprint = fingerprint_file(walk.fingerprint, &path, &m);
                // Parts decide the status and the title of the top session only.
                if n == 0 {
                    for (part, pm) in Self::files_in(&self.part_dir(&file_id(&path))) {
                        walk.fingerprint = fingerprint_file(walk.fingerprint, &part, &pm);
                        walk.part_active = walk.part_active.max(Some(mtime_ms(&pm)));
                    }
                }
                walk.messages.push((sid.clone(), path, m));
            }
        }
        Some(walk)
    }

    /// Reads a JSON file of the tree (the user's own regular file, bounded), or says why not.
    fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
        let bytes = fsread::read_bounded(path, Trust::Found, MAX_FILE)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    }

    /// A message's parts, ordered by id (their file names), read whole.
    fn parts(&self, message: &str, problems: &mut Vec<String>) -> Vec<Value> {
        let mut out = Vec::new();
        for (path, _) in Self::files_in(&self.part_dir(message)) {
            match Self::read_json(&path) {
                Ok(v) => out.push(v),
                Err(e) => problems.push(e),
            }
        }
        out
    }

    /// `agentctl logs` of session `id`, from the session file that names it (its item's
    /// origin): its own messages in order, each with its parts.
    pub fn render_log(session_file: &Path, id: &str) -> Result<String, String> {
        let dir = session_file
            .ancestors()
            .nth(3)
            .ok_or_else(|| format!("{} is not in a storage tree", session_file.display()))?;
        let tree = Storage {
            dir: dir.to_owned(),
            sessions: HashMap::new(),
            children: HashMap::new(),
        };
        let mut problems = Vec::new();
        let mut messages = Vec::new();
        for (path, _) in Self::files_in(&tree.message_dir(id)) {
            match Self::read_json(&path) {
                Ok(m) => messages.push((sort_key(&m, &path), m)),
                Err(e) => problems.push(e),
            }
        }
        messages.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        for ((_, mid), m) in &messages {
            for p in tree.parts(mid, &mut problems) {
                super::opencode::render_part(&mut out, m, &p);
            }
        }
        Ok(out)
    }
}

/// What one walk over a session's files found.
struct Walk {
    /// See [`SessionTree::fingerprint`].
    fingerprint: u64,
    /// The message files of the session and of its sub-agents' sessions, with their session.
    messages: Vec<(String, PathBuf, std::fs::Metadata)>,
    /// When the session's own parts were last written.
    part_active: Option<i64>,
}

/// Where a message sorts in its session: by creation time, then id (as the database orders
/// its rows).
fn sort_key(m: &Value, path: &Path) -> (i64, String) {
    let id = m
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| file_id(path));
    let created = m
        .pointer("/time/created")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (created, id)
}

/// The id a file of the tree is named by.
fn file_id(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .to_owned()
}

/// Epoch ms of a file's modification.
fn mtime_ms(m: &std::fs::Metadata) -> i64 {
    m.mtime() * 1000 + m.mtime_nsec() / 1_000_000
}

/// Continues `h` over what a file's fingerprint is made of.
fn fingerprint_file(h: u64, path: &Path, m: &std::fs::Metadata) -> u64 {
    let name = path.file_name().map_or(&[][..], |n| n.as_encoded_bytes());
    let h = fnv1a_more(h, name);
    let h = fnv1a_more(h, &m.len().to_le_bytes());
    let h = fnv1a_more(h, &m.mtime().to_le_bytes());
    fnv1a_more(h, &m.mtime_nsec().to_le_bytes())
}

impl SessionTree for Storage {
    type Session = OpenCodeSession;

    fn under(root: &Path) -> Option<PathBuf> {
        Some(root.join("storage"))
    }

    /// A dir per project and one per session; not the dir per message of the parts.
    fn watch_dirs(tree: &Path) -> Vec<PathBuf> {
        vec![tree.join("message"), tree.join("session")]
    }

    fn open(dir: PathBuf) -> Self {
        Storage {
            dir,
            sessions: HashMap::new(),
            children: HashMap::new(),
        }
    }

    fn index(&mut self) -> Vec<String> {
        self.sessions.clear();
        self.children.clear();
        let projects = self.dir.join("session");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&projects)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            for (path, meta) in Self::files_in(&dir) {
                if meta.is_file() {
                    self.learn(&path);
                }
            }
        }
        let mut tops: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, k)| k.parent.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        tops.sort();
        tops
    }

    fn touched(&mut self, paths: &BTreeSet<PathBuf>) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        for path in paths {
            let Ok(rel) = path.strip_prefix(&self.dir) else {
                continue;
            };
            let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
            let session = match parts.as_slice() {
                ["session", _project, file] if file.ends_with(".json") => {
                    let id = file.trim_end_matches(".json").to_owned();
                    // Its parent before the change hears of it too (a session moved away).
                    if let Some(top) = self.top(&id) {
                        touched.insert(top);
                    }
                    match self.learn(path) {
                        Some(id) => Some(id),
                        None => {
                            self.forget(&id);
                            None
                        }
                    }
                }
                ["message", session, ..] => {
                    if !self.sessions.contains_key(*session) {
                        // Its session file was written before its dir was watched.
                        self.find(session);
                    }
                    Some((*session).to_owned())
                }
                ["part", _message, file] if file.ends_with(".json") => {
                    Self::read_json::<PartFile>(path)
                        .ok()
                        .and_then(|p| p.session)
                }
                _ => None,
            };
            if let Some(top) = session.and_then(|s| self.top(&s)) {
                touched.insert(top);
            }
        }
        touched
    }

    fn fingerprint(&self, id: &str) -> Option<u64> {
        self.walk(id).map(|w| w.fingerprint)
    }

    fn session(
        &self,
        id: &str,
        prices: &Prices,
    ) -> Result<Option<TreeRead<OpenCodeSession>>, String> {
        let Some(known) = self.sessions.get(id) else {
            return Ok(None);
        };
        if known.parent.is_some() {
            return Ok(None); // a sub-agent: counted in its parent
        }
        let (_, file) = Self::read_session_file(&known.file)?;
        let Some(walk) = self.walk(id) else {
            return Ok(None);
        };
        let head = SessionHead {
            title: file.title,
            cwd: file.directory,
            created: file.time.unwrap_or_default().created.unwrap_or(0),
        };
        let mut problems = Vec::new();
        let mut messages = Vec::new();
        for (sid, path, meta) in walk.messages {
            if !meta.is_file() {
                problems.push(format!("{} is not a regular file", path.display()));
                continue;
            }
            match Self::read_json(&path) {
                Ok(m) => messages.push((
                    sort_key(&m, &path),
                    MessageRecord {
                        id: file_id(&path),
                        session: sid,
                        updated: mtime_ms(&meta),
                        data: m,
                    },
                )),
                Err(e) => problems.push(e),
            }
        }
        messages.sort_by(|a, b| a.0.cmp(&b.0));
        let mut part_problems = Vec::new();
        let session = fold_session(
            head,
            id,
            messages.into_iter().map(|(_, m)| Ok(m)),
            || Ok::<_, String>(walk.part_active),
            |mid| Ok(self.parts(mid, &mut part_problems)),
            prices,
        )?;
        problems.extend(part_problems);
        Ok(Some(TreeRead {
            session,
            fingerprint: walk.fingerprint,
            problems,
        }))
    }

    fn origin(&self, id: &str) -> PathBuf {
        self.sessions
            .get(id)
            .map_or_else(|| self.dir.join("session"), |k| k.file.clone())
    }

    fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::convo::ABANDONED_AFTER_MS;
    use super::super::databases::{Database, SessionView};
    use super::super::opencode::OpenCode;
    use super::*;
    use crate::model::Millis;
    use rusqlite::{Connection, params};
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    /// The same session written both ways: rows of OpenCode's database, and files of its
    /// tree, each message and part file modified when its row was updated.
    struct Both {
        conn: Connection,
        dir: PathBuf,
    }

    impl Both {
        fn new(name: &str) -> Both {
            let dir = std::env::temp_dir()
                .join(format!("agentd-ocstorage-{}-{name}", std::process::id()))
                .join("storage");
            let _ = std::fs::remove_dir_all(&dir);
            let conn = Connection::open_in_memory().unwrap();
            super::super::opencode::tests::schema(&conn);
            Both { conn, dir }
        }

        fn write(&self, path: PathBuf, data: &Value, t: i64) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, data.to_string()).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(UNIX_EPOCH + Duration::from_millis(t as u64))
                .unwrap();
        }

        fn session(&self, id: &str, parent: Option<&str>, title: &str, t: i64) {
            self.conn
                .execute(
                    "INSERT INTO session VALUES (?1, 'p', ?2, 's', '/src/app', ?3, '0.15.0', ?4, ?4, NULL)",
                    params![id, parent, title, t],
                )
                .unwrap();
            let mut file = json!({"id": id, "projectID": "global", "directory": "/src/app",
                "title": title, "version": "0.15.0", "time": {"created": t, "updated": t}});
            if let Some(p) = parent {
                file["parentID"] = json!(p);
            }
            self.write(self.dir.join(format!("session/global/{id}.json")), &file, t);
        }

        fn message(&self, id: &str, sid: &str, t: i64, data: Value) {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO message VALUES (?1, ?2, ?3, ?3, ?4)",
                    params![id, sid, t, data.to_string()],
                )
                .unwrap();
            let mut file = data;
            file["id"] = json!(id);
            file["sessionID"] = json!(sid);
            self.write(self.dir.join(format!("message/{sid}/{id}.json")), &file, t);
        }

        fn part(&self, id: &str, mid: &str, sid: &str, t: i64, data: Value) {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO part VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    params![id, mid, sid, t, data.to_string()],
                )
                .unwrap();
            let mut file = data;
            file["id"] = json!(id);
            file["messageID"] = json!(mid);
            file["sessionID"] = json!(sid);
            self.write(self.dir.join(format!("part/{mid}/{id}.json")), &file, t);
        }

        /// Reads `id` both ways and checks they agree now and as time passes.
        fn check(&self, id: &str) -> Option<OpenCodeSession> {
            let prices = Prices::builtin();
            let from_db = OpenCode::session(&self.conn, id, &prices).unwrap();
            let mut tree = Storage::open(self.dir.clone());
            tree.index();
            let read = tree.session(id, &prices).unwrap();
            let from_tree = read.and_then(|r| {
                assert!(r.problems.is_empty(), "{:?}", r.problems);
                assert_eq!(Some(r.fingerprint), tree.fingerprint(id));
                r.session
            });
            match (&from_db, from_tree) {
                (None, None) => {}
                (Some(db), Some(t)) => {
                    let active = db.conversation(Millis(0)).updated_at.unwrap().0;
                    for after in [0, 1000, 5000, ABANDONED_AFTER_MS] {
                        let at = Millis(active + after);
                        assert_eq!(t.conversation(at), db.conversation(at), "{after} ms after");
                    }
                }
                (db, tree) => panic!("the database says {db:?}, the tree {tree:?}"),
            }
            from_db
        }
    }

    impl Drop for Both {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.dir.parent().unwrap());
        }
    }

    fn answer(t: i64, completed: bool, finish: &str, input: u64, cost: f64) -> Value {
        let time = if completed {
            json!({"created": t, "completed": t + 500})
        } else {
            json!({"created": t})
        };
        json!({"role": "assistant", "parentID": "msg_u1", "modelID": "claude-sonnet-4-5",
            "providerID": "anthropic", "mode": "build", "cost": cost, "time": time,
            "tokens": {"input": input, "output": 20, "reasoning": 5, "cache": {"read": 100, "write": 10}},
            "finish": finish})
    }

    #[test]
    fn a_session_of_the_tree_folds_as_the_same_session_in_the_database() {
        let b = Both::new("fold");
        let t = 1_784_000_000_000;
        b.session("ses_1", None, "New session - 2026-07-14T03:33:20.000Z", t);
        assert!(b.check("ses_1").is_none(), "no message yet");
        b.message(
            "msg_u1",
            "ses_1",
            t + 1,
            json!({"role": "user", "time": {"created": t + 1},
                "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}}),
        );
        b.part(
            "prt_u1",
            "msg_u1",
            "ses_1",
            t + 1,
            json!({"type": "text", "text": "Fix the login test"}),
        );
        let s = b.check("ses_1").unwrap();
        assert_eq!(
            s.conversation(Millis(t)).title.as_deref(),
            Some("Fix the login test")
        );
        b.message(
            "msg_a1",
            "ses_1",
            t + 2,
            answer(t + 2, false, "", 1000, 0.0),
        );
        b.part(
            "prt_a1",
            "msg_a1",
            "ses_1",
            t + 3,
            json!({"type": "tool", "tool": "bash", "callID": "c1",
                "state": {"status": "pending", "input": {}}}),
        );
        b.check("ses_1");
        b.message(
            "msg_a1",
            "ses_1",
            t + 4,
            answer(t + 2, true, "tool-calls", 1000, 0.0),
        );
        b.check("ses_1");
        b.message(
            "msg_a2",
            "ses_1",
            t + 5,
            answer(t + 5, true, "stop", 2000, 0.25),
        );
        b.session("ses_child", Some("ses_1"), "Explore", t + 6);
        b.message(
            "msg_c1",
            "ses_child",
            t + 7,
            answer(t + 7, true, "stop", 500, 0.0),
        );
        let s = b.check("ses_1").unwrap();
        assert_eq!(s.conversation(Millis(t)).usage.input_tokens, 3500);
        assert!(
            b.check("ses_child").is_none(),
            "a sub-agent is counted in its parent"
        );
        let mut failed = answer(t + 9, false, "", 0, 0.0);
        failed["error"] = json!({"name": "APIError", "data": {"message": "Overloaded"}});
        b.message("msg_a4", "ses_1", t + 9, failed);
        b.check("ses_1");
    }

    #[test]
    fn changed_files_name_their_top_session_and_change_its_fingerprint() {
        let b = Both::new("touched");
        let t = 1_784_000_000_000;
        b.session("ses_1", None, "Build", t);
        b.session("ses_2", Some("ses_1"), "Sub", t);
        b.message("msg_1", "ses_2", t, answer(t, true, "stop", 10, 0.0));
        b.message("msg_2", "ses_1", t, answer(t, true, "stop", 10, 0.0));
        let mut tree = Storage::open(b.dir.clone());
        assert_eq!(tree.index(), vec!["ses_1".to_owned()]);
        let before = tree.fingerprint("ses_1").unwrap();
        assert_eq!(tree.fingerprint("ses_1"), Some(before), "stable");
        b.part(
            "prt_1",
            "msg_2",
            "ses_1",
            t + 1,
            json!({"type": "text", "text": "x"}),
        );
        let paths = |p: &[&str]| p.iter().map(|p| b.dir.join(p)).collect::<BTreeSet<_>>();
        assert_eq!(
            tree.touched(&paths(&["part/msg_2/prt_1.json"])),
            BTreeSet::from(["ses_1".to_owned()])
        );
        let after_part = tree.fingerprint("ses_1").unwrap();
        assert_ne!(after_part, before, "a part of the top session");
        b.message("msg_1", "ses_2", t + 2, answer(t, true, "stop", 20, 0.0));
        assert_eq!(
            tree.touched(&paths(&["message/ses_2/msg_1.json", "todo/ses_2.json"])),
            BTreeSet::from(["ses_1".to_owned()]),
            "a sub-agent's message is its parent's"
        );
        assert_ne!(tree.fingerprint("ses_1").unwrap(), after_part);
        // A session file written before its dir was watched is found from its messages.
        b.session("ses_3", None, "Later", t + 3);
        b.message("msg_3", "ses_3", t + 3, answer(t, true, "stop", 1, 0.0));
        assert_eq!(
            tree.touched(&paths(&["message/ses_3/msg_3.json"])),
            BTreeSet::from(["ses_3".to_owned()])
        );
        std::fs::remove_file(b.dir.join("session/global/ses_3.json")).unwrap();
        tree.touched(&paths(&["session/global/ses_3.json"]));
        assert_eq!(tree.fingerprint("ses_3"), None, "gone");
    }

    /// One write OpenCode makes to a session.
    #[derive(Debug, Clone)]
    enum Write {
        Prompt(String),
        Answer {
            completed: bool,
            tool_calls: bool,
            input: u64,
            cost: f64,
            error: Option<&'static str>,
        },
        /// The latest answer's tool, in a state.
        Tool(&'static str),
        /// The latest answer's text.
        Text(String),
        /// A sub-agent's session answers once.
        SubAgent(u64),
        /// The latest message written again as it was (a rewrite in place).
        Rewrite,
    }

    fn write() -> impl proptest::strategy::Strategy<Value = Write> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z ]{0,20}".prop_map(Write::Prompt),
            (
                any::<bool>(),
                any::<bool>(),
                0u64..5000,
                prop_oneof![Just(0.0), Just(0.02)],
                prop_oneof![
                    3 => Just(None),
                    1 => Just(Some("MessageAbortedError")),
                    1 => Just(Some("APIError")),
                ],
            )
                .prop_map(|(completed, tool_calls, input, cost, error)| {
                    Write::Answer {
                        completed,
                        tool_calls,
                        input,
                        cost,
                        error,
                    }
                }),
            prop_oneof![Just("pending"), Just("running"), Just("completed")].prop_map(Write::Tool),
            "[a-z ]{0,20}".prop_map(Write::Text),
            (1u64..900).prop_map(Write::SubAgent),
            Just(Write::Rewrite),
        ]
    }

    /// Whatever OpenCode writes, in whatever order, the tree and the database read the same.
    #[test]
    fn any_writes_read_the_same_from_the_tree_and_the_database() {
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 48,
            ..Config::default()
        });
        let case = std::sync::atomic::AtomicUsize::new(0);
        runner
            .run(&proptest::collection::vec(write(), 1..14), |writes| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let b = Both::new(&format!("prop-{n}"));
                let t0 = 1_784_000_000_000;
                b.session("ses_p", None, "New session - 2026-07-14T03:33:20.000Z", t0);
                let mut last: Option<(String, Value)> = None;
                let mut subs = 0;
                for (k, w) in writes.iter().enumerate() {
                    let t = t0 + 10 * (k as i64 + 1);
                    match w {
                        Write::Prompt(text) => {
                            let id = format!("msg_{k:02}u");
                            let m = json!({"role": "user", "time": {"created": t}});
                            b.message(&id, "ses_p", t, m.clone());
                            b.part(&format!("prt_{k:02}"), &id, "ses_p", t, json!({"type": "text", "text": text}));
                            last = Some((id, m));
                        }
                        Write::Answer { completed, tool_calls, input, cost, error } => {
                            let id = format!("msg_{k:02}a");
                            let finish = if *tool_calls { "tool-calls" } else { "stop" };
                            let mut m = answer(t, *completed, finish, *input, *cost);
                            if let Some(name) = error {
                                m["error"] = json!({"name": name, "data": {"message": "it broke"}});
                            }
                            b.message(&id, "ses_p", t, m.clone());
                            last = Some((id, m));
                        }
                        Write::Tool(_) | Write::Text(_) if last.is_none() => {}
                        Write::Tool(state) => {
                            let (id, _) = last.as_ref().unwrap();
                            b.part(&format!("prt_{id}_tool"), id, "ses_p", t, json!({"type": "tool",
                                "tool": "bash", "callID": "c", "state": {"status": state, "input": {}}}));
                        }
                        Write::Text(text) => {
                            let (id, _) = last.as_ref().unwrap();
                            b.part(&format!("prt_{id}_text"), id, "ses_p", t, json!({"type": "text", "text": text}));
                        }
                        Write::SubAgent(input) => {
                            subs += 1;
                            let sid = format!("ses_sub{subs}");
                            b.session(&sid, Some("ses_p"), "Explore", t);
                            b.message(&format!("msg_{k:02}s"), &sid, t, answer(t, true, "stop", *input, 0.0));
                        }
                        Write::Rewrite => {
                            if let Some((id, m)) = &last {
                                b.message(id, "ses_p", t, m.clone());
                            }
                        }
                    }
                    b.check("ses_p");
                }
                Ok(())
            })
            .unwrap();
    }
}
