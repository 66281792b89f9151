//! The daemon's resolved configuration: flags over environment over the config file over the
//! contract's defaults (CONTRACT.md section 2). Resolution happens once, at start-up; nothing
//! else in the daemon reads the environment or the config file.

use agentd_wire::paths;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default loopback listener (contract section 2).
pub const DEFAULT_HTTP: &str = "127.0.0.1:7431";

/// Everything `run` needs to know, fully resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the database, the token, the pid lock and the default runs dir.
    pub state_dir: PathBuf,
    /// The Unix socket the API is served on.
    pub socket: PathBuf,
    /// The loopback TCP listener; `None` when disabled with `off`.
    pub http: Option<SocketAddr>,
    /// Who "me" is: items created by this user are in the Personal tab.
    pub user: String,
    /// This machine's name in a fleet's metrics (`AGENTD_HOST`, config `host`, else the
    /// hostname): the `host` label of `agentd_build_info`.
    pub host: String,
    /// Directories of CLI run logs (contract section 6): `<state dir>/runs` first, then config.
    pub runs_dirs: Vec<PathBuf>,
    /// Free space the database's disk must keep; below it ingestion pauses (config `min_free_mb`).
    pub min_free_bytes: u64,
    /// Claude Code config dirs (contract section 2): transcripts are under `projects/`.
    pub claude_roots: Vec<PathBuf>,
    /// Codex homes: `sessions/` and `archived_sessions/`.
    pub codex_roots: Vec<PathBuf>,
    /// Gemini CLI dirs (`~/.gemini`): chats under `tmp/*/chats/`.
    pub gemini_roots: Vec<PathBuf>,
    /// Qwen Code dirs (`~/.qwen`): chats under `projects/*/chats/`.
    pub qwen_roots: Vec<PathBuf>,
    /// Factory Droid session dirs (`~/.factory/sessions`).
    pub droid_roots: Vec<PathBuf>,
    /// GitHub Copilot CLI homes (`~/.copilot`): sessions under `session-state/`.
    pub copilot_roots: Vec<PathBuf>,
    /// Kimi dirs: kimi-cli's share dir (`~/.kimi`) and Kimi Code's home (`~/.kimi-code`),
    /// sessions under `sessions/` in both.
    pub kimi_roots: Vec<PathBuf>,
    /// OpenCode data dirs (`~/.local/share/opencode`), or database files: `opencode.db` and
    /// `opencode-<channel>.db`.
    pub opencode_roots: Vec<PathBuf>,
    /// Goose data dirs (`~/.local/share/goose`): `sessions/sessions.db`.
    pub goose_roots: Vec<PathBuf>,
    /// A JSON price file whose entries add to or replace the built-in table (config `prices`).
    pub prices_file: Option<PathBuf>,
    /// The cloud source; `None` when no API key is configured.
    pub cloud: Option<crate::cloud::CloudConfig>,
    /// Socket activation (systemd): the listening Unix socket was passed as fd 3
    /// (`LISTEN_FDS` ≥ 1 and `LISTEN_PID` is this process).
    pub activated_socket: bool,
    /// Where to say `READY=1` once serving (`NOTIFY_SOCKET`, systemd `Type=notify`).
    pub notify_socket: Option<String>,
    /// Desktop notifications (config `[notify] enabled = true`); off by default.
    pub desktop_notify: Option<crate::desktop::NotifyConfig>,
    /// Compressed copies of transcripts (config `[history]`); on by default.
    pub history: crate::history::HistoryConfig,
    /// A listener of its own for `/metrics` with its own token (config `metrics`, e.g.
    /// `0.0.0.0:9464`), for a scraper on another machine; off by default.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// OpenTelemetry export (config `[otel]`, or `OTEL_EXPORTER_OTLP_ENDPOINT`); off by default.
    pub otel: Option<crate::otel::OtelConfig>,
}

/// Default of `min_free_mb`: room for the largest transaction, with a margin for other programs.
pub const DEFAULT_MIN_FREE_MB: u64 = 64;

/// Command-line values that override the environment and the file; `None` means not given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub http: Option<String>,
}

/// Why the configuration could not be resolved. Each message names the file or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "invalid HTTP listener {value:?}: expected ADDRESS:PORT such as 127.0.0.1:7431, or `off`"
    )]
    Http { value: String },
    #[error(
        "invalid metrics listener {value:?}: expected ADDRESS:PORT such as 0.0.0.0:9464, or `off`"
    )]
    Metrics { value: String },
}

/// The optional TOML file. Unknown keys are ignored so that a newer config keeps working with an
/// older daemon; sections used by later sources are parsed where those sources live.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    user: Option<String>,
    host: Option<String>,
    metrics: Option<String>,
    http: Option<String>,
    min_free_mb: Option<u64>,
    prices: Option<PathBuf>,
    sources: FileSources,
    cloud: FileCloud,
    notify: FileNotify,
    history: FileHistory,
    otel: FileOtel,
}

/// `[otel]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileOtel {
    /// The collector's OTLP/HTTP base URL.
    endpoint: Option<String>,
    /// Request headers (authentication).
    headers: std::collections::HashMap<String, String>,
    include_titles: bool,
    /// Seconds between metric exports (15).
    interval_secs: Option<u64>,
}

/// `[history]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileHistory {
    keep: Option<bool>,
    max_mb: Option<u64>,
}

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileNotify {
    enabled: bool,
    /// A program (and arguments) to run instead of notify-send/osascript; it gets the title
    /// and the body as its last two arguments.
    command: Option<Vec<String>>,
    min_interval_secs: Option<u64>,
    /// Remind every this long while an agent is still blocked (off when absent or 0).
    remind_after_secs: Option<u64>,
}

/// `[cloud]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileCloud {
    api_key_file: Option<PathBuf>,
    base_url: Option<String>,
    /// The user's uid on the cloud platform (Personal tab).
    me: Option<String>,
    /// The user's e-mail there (Personal tab, when the uid is not known).
    email: Option<String>,
    horizon_days: Option<u64>,
    poll_active_secs: Option<u64>,
    poll_idle_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileSources {
    runs: FileRuns,
    claude_code: FileRoots,
    codex: FileRoots,
    gemini: FileRoots,
    qwen: FileRoots,
    droid: FileRoots,
    copilot: FileRoots,
    kimi: FileRoots,
    opencode: FileRoots,
    goose: FileRoots,
}

/// `[sources.<store>] roots = [...]`: replaces the store's default locations.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileRoots {
    roots: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileRuns {
    dirs: Vec<PathBuf>,
}

impl Config {
    /// Resolves the configuration from flags, the given environment and the config file.
    pub fn resolve(flags: &Overrides, env: paths::Env<'_>) -> Result<Config, ConfigError> {
        let state_dir = flags
            .state_dir
            .clone()
            .unwrap_or_else(|| paths::state_dir(env));
        let socket = flags
            .socket
            .clone()
            .unwrap_or_else(|| paths::socket_path(env, &state_dir));
        // Relative paths (`--socket agentd.sock`) are taken from the current directory, once:
        // the daemon's messages, health answer and cleanup then all name the same file.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let (state_dir, socket) = (absolute(state_dir), absolute(socket));
        let history_dir = state_dir.join("history");
        let (config_path, explicit) = match &flags.config {
            Some(p) => (p.clone(), true),
            None => paths::config_path(env),
        };
        let file = load_file(&config_path, explicit)?;

        let http_text = flags
            .http
            .clone()
            .or_else(|| env("AGENTD_HTTP"))
            .or(file.http)
            .unwrap_or_else(|| DEFAULT_HTTP.to_owned());
        let http = parse_http(&http_text)?;

        let user = env("AGENTD_USER")
            .or(file.user)
            .unwrap_or_else(os_user_name);
        let host = env("AGENTD_HOST")
            .or(file.host)
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(crate::metrics::hostname);

        let mut runs_dirs = vec![state_dir.join("runs")];
        for d in file.sources.runs.dirs {
            let d = expand_home(&d, env);
            if !runs_dirs.contains(&d) {
                runs_dirs.push(d);
            }
        }
        let home = env("HOME").map(PathBuf::from);
        let in_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        let configured = |roots: Option<Vec<PathBuf>>| -> Option<Vec<PathBuf>> {
            roots.map(|r| r.iter().map(|d| expand_home(d, env)).collect())
        };
        // An environment variable holding a comma-separated list of dirs, if set.
        let dir_list = |name: &str| -> Option<Vec<PathBuf>> {
            env(name).filter(|v| !v.trim().is_empty()).map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| expand_home(Path::new(d), env))
                    .collect()
            })
        };
        let claude_roots = configured(file.sources.claude_code.roots).unwrap_or_else(|| {
            match dir_list("CLAUDE_CONFIG_DIR") {
                Some(dirs) => dirs,
                None => {
                    let xdg = env("XDG_CONFIG_HOME")
                        .filter(|v| !v.is_empty())
                        .map(|x| PathBuf::from(x).join("claude"))
                        .or_else(|| in_home(".config/claude"));
                    in_home(".claude").into_iter().chain(xdg).collect()
                }
            }
        });
        let codex_roots = configured(file.sources.codex.roots).unwrap_or_else(|| {
            env("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| in_home(".codex"))
                .into_iter()
                .collect()
        });
        let gemini_roots = configured(file.sources.gemini.roots).unwrap_or_else(|| {
            env("GEMINI_CLI_HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".gemini"))
                .or_else(|| in_home(".gemini"))
                .into_iter()
                .collect()
        });
        // Qwen Code: `QWEN_DATA_DIR` (a comma list, as ccusage reads it), else its runtime dir
        // (`QWEN_RUNTIME_DIR`), else `~/.qwen`.
        let qwen_roots = configured(file.sources.qwen.roots).unwrap_or_else(|| {
            match dir_list("QWEN_DATA_DIR") {
                Some(dirs) => dirs,
                None => env("QWEN_RUNTIME_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| in_home(".qwen"))
                    .into_iter()
                    .collect(),
            }
        });
        // Factory Droid: `DROID_SESSIONS_DIR` (a comma list, as ccusage reads it), else
        // `$FACTORY_DIR/sessions`, else `~/.factory/sessions`.
        let droid_roots = configured(file.sources.droid.roots).unwrap_or_else(|| {
            dir_list("DROID_SESSIONS_DIR").unwrap_or_else(|| {
                env("FACTORY_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| in_home(".factory"))
                    .map(|d| d.join("sessions"))
                    .into_iter()
                    .collect()
            })
        });
        // GitHub Copilot CLI: `COPILOT_HOME` (the CLI's own), else `~/.copilot`.
        let copilot_roots = configured(file.sources.copilot.roots).unwrap_or_else(|| {
            env("COPILOT_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| in_home(".copilot"))
                .into_iter()
                .collect()
        });
        // Kimi: `KIMI_DATA_DIR` (a comma list, as ccusage reads it), else kimi-cli's
        // `KIMI_SHARE_DIR` or `~/.kimi`, and Kimi Code's `KIMI_CODE_HOME` or `~/.kimi-code`.
        let kimi_roots = configured(file.sources.kimi.roots).unwrap_or_else(|| {
            dir_list("KIMI_DATA_DIR").unwrap_or_else(|| {
                let share = env("KIMI_SHARE_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| in_home(".kimi"));
                let code = env("KIMI_CODE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| in_home(".kimi-code"));
                share.into_iter().chain(code).collect()
            })
        });
        let data_home = || {
            env("XDG_DATA_HOME")
                .filter(|v| v.starts_with('/'))
                .map(PathBuf::from)
                .or_else(|| in_home(".local/share"))
        };
        // OpenCode: `OPENCODE_DATA_DIR` (a comma list, as ccusage reads it), else its data dir,
        // `$XDG_DATA_HOME/opencode` (macOS too); `OPENCODE_DB` names another database (absolute,
        // or relative to the data dir).
        let opencode_roots = configured(file.sources.opencode.roots).unwrap_or_else(|| {
            let dirs = dir_list("OPENCODE_DATA_DIR").unwrap_or_else(|| {
                data_home()
                    .map(|d| d.join("opencode"))
                    .into_iter()
                    .collect()
            });
            let db = env("OPENCODE_DB")
                .filter(|v| !v.is_empty() && v != ":memory:")
                .and_then(|v| {
                    let p = PathBuf::from(&v);
                    if p.is_absolute() {
                        Some(p)
                    } else {
                        dirs.first().map(|d| d.join(p))
                    }
                });
            dirs.into_iter().chain(db).collect()
        });
        // Goose: `$GOOSE_PATH_ROOT/data` (the CLI's own), else `$XDG_DATA_HOME/goose`, and on
        // macOS `~/Library/Application Support/goose` too.
        let goose_roots = configured(file.sources.goose.roots).unwrap_or_else(|| {
            match env("GOOSE_PATH_ROOT").filter(|v| !v.is_empty()) {
                Some(root) => vec![PathBuf::from(root).join("data")],
                None => data_home()
                    .map(|d| d.join("goose"))
                    .into_iter()
                    .chain(if cfg!(target_os = "macos") {
                        in_home("Library/Application Support/goose")
                    } else {
                        None
                    })
                    .collect(),
            }
        });
        let prices_file = file.prices.map(|p| expand_home(&p, env));
        let key = env("WARP_API_KEY")
            .filter(|k| !k.trim().is_empty())
            .map(|k| crate::cloud::KeySource::Env(k.trim().to_owned()))
            .or_else(|| {
                file.cloud
                    .api_key_file
                    .as_ref()
                    .map(|f| crate::cloud::KeySource::File(expand_home(f, env)))
            });
        let cloud = key.map(|key| crate::cloud::CloudConfig {
            base_url: env("AGENTD_CLOUD_URL")
                .or(file.cloud.base_url.clone())
                .unwrap_or_else(|| crate::cloud::DEFAULT_BASE_URL.to_owned()),
            key,
            me: crate::cloud::run::Me {
                uid: file.cloud.me.clone(),
                email: file.cloud.email.clone(),
            },
            horizon: std::time::Duration::from_secs(
                file.cloud.horizon_days.unwrap_or(30).saturating_mul(86_400),
            ),
            fast: std::time::Duration::from_secs(file.cloud.poll_active_secs.unwrap_or(5).max(1)),
            slow: std::time::Duration::from_secs(file.cloud.poll_idle_secs.unwrap_or(60).max(1)),
            page_limit: 100,
        });
        let min_free_bytes = file
            .min_free_mb
            .unwrap_or(DEFAULT_MIN_FREE_MB)
            .saturating_mul(1 << 20);
        Ok(Config {
            state_dir,
            socket,
            http,
            user,
            host,
            runs_dirs,
            min_free_bytes,
            claude_roots,
            codex_roots,
            gemini_roots,
            qwen_roots,
            droid_roots,
            copilot_roots,
            kimi_roots,
            opencode_roots,
            goose_roots,
            prices_file,
            cloud,
            activated_socket: env("LISTEN_PID")
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(|p| p == std::process::id())
                && env("LISTEN_FDS")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .is_some_and(|n| n >= 1),
            notify_socket: env("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
            metrics_addr: match file.metrics.as_deref().map(str::trim) {
                None | Some("") | Some("off") => None,
                Some(a) => Some(a.parse().map_err(|_| ConfigError::Metrics {
                    value: a.to_owned(),
                })?),
            },
            otel: {
                // The config's endpoint, else the standard variable; headers from both.
                let endpoint = file
                    .otel
                    .endpoint
                    .clone()
                    .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty());
                endpoint.map(|endpoint| {
                    let mut headers: std::collections::HashMap<String, String> =
                        env("OTEL_EXPORTER_OTLP_HEADERS")
                            .unwrap_or_default()
                            .split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                            .filter(|(k, _)| !k.is_empty())
                            .collect();
                    headers.extend(file.otel.headers.clone());
                    crate::otel::OtelConfig {
                        endpoint,
                        headers,
                        include_titles: file.otel.include_titles,
                        interval: std::time::Duration::from_secs(
                            file.otel.interval_secs.unwrap_or(15).max(1),
                        ),
                    }
                })
            },
            desktop_notify: file.notify.enabled.then(|| crate::desktop::NotifyConfig {
                command: file.notify.command.clone(),
                min_interval: std::time::Duration::from_secs(
                    file.notify.min_interval_secs.unwrap_or(10),
                ),
                remind_after: file
                    .notify
                    .remind_after_secs
                    .filter(|s| *s > 0)
                    .map(std::time::Duration::from_secs),
            }),
            history: crate::history::HistoryConfig {
                dir: history_dir,
                keep: file.history.keep.unwrap_or(true),
                max_bytes: file
                    .history
                    .max_mb
                    .unwrap_or(2048)
                    .saturating_mul(1024 * 1024),
            },
        })
    }

    /// The redb database file.
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("agentd.redb")
    }
}

fn load_file(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
    let text = match crate::fsread::read_text(path, crate::fsread::Trust::Named, 1 << 20) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(FileConfig::default());
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn parse_http(text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let text = text.trim();
    // `localhost:7431` is what people type; resolve it to loopback without a DNS lookup.
    let normalized = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_owned(),
    };
    normalized
        .parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| ConfigError::Http {
            value: text.to_owned(),
        })
}

fn expand_home(p: &Path, env: paths::Env<'_>) -> PathBuf {
    match (p.strip_prefix("~"), env("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_owned(),
    }
}

/// The OS user name of this process (from the password database), else `$USER`.
pub fn os_user_name() -> String {
    // SAFETY: getpwuid_r writes into the buffers we pass and returns a pointer into them.
    unsafe {
        let uid = libc::getuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) == 0
            && !result.is_null()
            && !pwd.pw_name.is_null()
            && let Ok(name) = std::ffi::CStr::from_ptr(pwd.pw_name).to_str()
        {
            return name.to_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(flags: &Overrides, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(flags, &move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn flags_beat_env_and_defaults_apply() {
        let dir = std::env::temp_dir().join(format!("agentd-cfg-{}", std::process::id()));
        let flags = Overrides {
            state_dir: Some(dir.clone()),
            http: Some("off".into()),
            ..Default::default()
        };
        let c = resolve(
            &flags,
            &[("HOME", "/nonexistent"), ("AGENTD_HTTP", "127.0.0.1:1")],
        )
        .unwrap();
        assert_eq!(c.state_dir, dir);
        assert_eq!(c.http, None);
        assert_eq!(c.socket, dir.join("agentd.sock"));
        assert_eq!(c.runs_dirs, vec![dir.join("runs")]);

        let c = resolve(
            &Overrides::default(),
            &[("HOME", "/nonexistent"), ("AGENTD_USER", "bob")],
        )
        .unwrap();
        assert_eq!(c.http, Some(DEFAULT_HTTP.parse().unwrap()));
        assert_eq!(c.user, "bob");
    }

    #[test]
    fn bad_values_are_named() {
        let flags = Overrides {
            http: Some("nope".into()),
            ..Default::default()
        };
        let err = resolve(&flags, &[("HOME", "/nonexistent")]).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");

        let flags = Overrides {
            config: Some("/nonexistent/agentd.toml".into()),
            ..Default::default()
        };
        let err = resolve(&flags, &[("HOME", "/nonexistent")]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/agentd.toml"),
            "{err}"
        );
    }

    #[test]
    fn file_values_apply() {
        let dir = std::env::temp_dir().join(format!("agentd-cfgfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "user = \"carol\"\nhttp = \"localhost:9\"\n[sources.runs]\ndirs = [\"~/more-runs\"]\n[cloud]\nme = \"x\"\n").unwrap();
        let flags = Overrides {
            config: Some(file.clone()),
            state_dir: Some(dir.clone()),
            ..Default::default()
        };
        let c = resolve(&flags, &[("HOME", "/home/carol")]).unwrap();
        assert_eq!(c.user, "carol");
        assert_eq!(c.http, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(c.runs_dirs[1], PathBuf::from("/home/carol/more-runs"));

        std::fs::write(&file, "user = [").unwrap();
        let err = resolve(&flags, &[]).unwrap_err();
        assert!(err.to_string().contains("config.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
