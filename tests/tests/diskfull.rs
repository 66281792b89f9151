//! A state dir on a small file system that really fills up (a 16 MiB tmpfs): ingestion pauses
//! with a clear health error, the API keeps serving, nothing is corrupted, and when space
//! returns every run written meanwhile arrives, counted once; a restart opens the database and
//! gives exactly what a fresh ingest of the same run logs gives.
//!
//! Mounting needs root (CI runs as root and sets `AGENTD_REQUIRE_MOUNT=1`); elsewhere the test
//! is skipped with a note.

use agentd_tests::{Daemon, Options, ago, rec};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("AGENTD_REQUIRE_MOUNT").is_none(),
                "mounting a tmpfs is required (AGENTD_REQUIRE_MOUNT is set) but failed"
            );
            eprintln!("cannot mount a tmpfs here (not root?): skipped");
            return None;
        }
        Some(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file, leaving about `leave` bytes.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        let _ = f.flush();
    }
    filler
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the struct; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

fn items(d: &Daemon) -> Vec<Value> {
    let mut v = d.get("/v1/agents?tab=all&limit=1000")["items"]
        .as_array()
        .unwrap()
        .clone();
    v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for i in &mut v {
        i["duration_ms"] = Value::Null;
    }
    v
}

fn run(d: &Daemon, runs: &Path, name: &str, tokens: u64) {
    std::fs::create_dir_all(runs).unwrap();
    let text = [
        rec(
            json!({"type": "start", "ts": ago(9), "title": format!("{name} {}", "t".repeat(2000))}),
        ),
        rec(json!({"type": "usage", "ts": ago(8), "input_tokens": tokens, "cost_usd": 0.01})),
        rec(json!({"type": "end", "ts": ago(7), "status": "success"})),
    ]
    .join("\n");
    std::fs::write(runs.join(format!("{name}.jsonl")), format!("{text}\n")).unwrap();
    let _ = d;
}

#[test]
fn a_state_dir_on_a_full_file_system_pauses_then_resumes_and_loses_nothing() {
    let mut d = Daemon::prepare("diskfull-tmpfs", Options::default());
    let Some(fs) = Tmpfs::mount(&d.state, "16m") else {
        return;
    };
    // The run logs live elsewhere (as a tool's own dir would), the database on the small disk;
    // no free-space floor, so the writes really fail.
    let runs = d.state.parent().unwrap().join("more-runs");
    let cfg = d.state.parent().unwrap().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "min_free_mb = 0\n[sources.runs]\ndirs = [{:?}]\n",
            runs.display().to_string()
        ),
    )
    .unwrap();
    d.opts
        .env
        .push(("AGENTD_CONFIG".into(), cfg.display().to_string()));
    d.spawn();
    for i in 0..20 {
        run(&d, &runs, &format!("before{i:03}"), 100);
    }
    d.wait_for("/v1/health", "20 runs", |h| h["items"] == 20);

    // The disk fills up; runs keep coming.
    let filler = fill(&fs.0, 64 * 1024);
    let mut n = 0;
    let mut error = None;
    while error.is_none() && n < 2000 {
        for _ in 0..50 {
            run(&d, &runs, &format!("during{n:04}"), 10);
            n += 1;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while error.is_none() && std::time::Instant::now() < deadline {
            error = d.get("/v1/health")["store_error"]
                .as_str()
                .map(str::to_owned);
        }
    }
    let error = error.expect("writes on a full file system fail");
    assert!(
        error.contains("is full")
            && error.contains("agentd.redb")
            && error.contains("free some space"),
        "{error}"
    );
    assert!(error.contains("nothing is lost"), "{error}");
    // Still serving: the summary from memory, health with the reason; a list either from what
    // was committed or, while the database is being reopened, a clear 503.
    assert_eq!(d.req("GET", "/v1/summary?tab=all", b"").status, 200);
    assert_eq!(d.req("GET", "/v1/health", b"").status, 200);
    let list = d.req("GET", "/v1/agents?tab=all", b"");
    match list.status {
        200 => {}
        503 => assert_eq!(list.json()["error"]["code"], "unavailable", "{list:?}"),
        other => panic!("{other}: {:?}\n{}", list.json(), d.log_text()),
    }

    // Space returns: everything written meanwhile arrives, once.
    std::fs::remove_file(&filler).unwrap();
    let total = 20 + n;
    d.wait_for(
        "/v1/health",
        "every run after the disk had room again",
        |h| h["items"] == total && h["store_error"].is_null(),
    );
    let tokens: u64 = items(&d)
        .iter()
        .map(|i| i["usage"]["input_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(tokens, 20 * 100 + n as u64 * 10, "no run counted twice");

    // The database opens after a restart, and holds what a fresh ingest gives.
    let after_restart = {
        assert_eq!(d.stop().code(), Some(0));
        d.spawn();
        d.wait_for("/v1/health", "the restart scan", |h| h["items"] == total);
        items(&d)
    };
    assert_eq!(d.stop().code(), Some(0));
    let mut fresh = Daemon::prepare("diskfull-fresh", Options::default());
    fresh
        .opts
        .env
        .push(("AGENTD_CONFIG".into(), cfg.display().to_string()));
    fresh.spawn();
    fresh.wait_for("/v1/health", "a fresh ingest", |h| h["items"] == total);
    assert_eq!(items(&fresh), after_restart);
    drop(fs);
}
