//! The contract's default paths (CONTRACT.md section 2), resolved the same way by the daemon and
//! every client so that both sides find the same socket without configuration.
//!
//! Each function takes the environment as a lookup closure rather than reading the process
//! environment itself, so that callers can test resolution without mutating global state.

use std::path::PathBuf;

/// Reads one environment variable; empty values count as unset, as the XDG spec says.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home(env: Env<'_>) -> PathBuf {
    env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `AGENTD_STATE_DIR`, else `$XDG_STATE_HOME/agentd`, else the platform default.
pub fn state_dir(env: Env<'_>) -> PathBuf {
    if let Some(dir) = env("AGENTD_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = env("XDG_STATE_HOME") {
        return PathBuf::from(xdg).join("agentd");
    }
    if cfg!(target_os = "macos") {
        home(env).join("Library/Application Support/agentd")
    } else {
        home(env).join(".local/state/agentd")
    }
}

/// `AGENTD_SOCKET`, else `$XDG_RUNTIME_DIR/agentd/agentd.sock`, else `<state dir>/agentd.sock`.
pub fn socket_path(env: Env<'_>, state_dir: &std::path::Path) -> PathBuf {
    if let Some(sock) = env("AGENTD_SOCKET") {
        return PathBuf::from(sock);
    }
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        return PathBuf::from(run).join("agentd").join("agentd.sock");
    }
    state_dir.join("agentd.sock")
}

/// `AGENTD_CONFIG`, else `$XDG_CONFIG_HOME/agentd/config.toml`, else `~/.config/agentd/config.toml`.
/// The boolean says whether the path was named explicitly (then it must exist).
pub fn config_path(env: Env<'_>) -> (PathBuf, bool) {
    if let Some(p) = env("AGENTD_CONFIG") {
        return (PathBuf::from(p), true);
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".config"));
    (base.join("agentd").join("config.toml"), false)
}

/// The file holding the TCP bearer token.
pub fn token_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned().filter(|v| !v.is_empty())
    }

    #[test]
    fn state_dir_precedence() {
        let e = env_of(&[
            ("HOME", "/h"),
            ("XDG_STATE_HOME", "/x"),
            ("AGENTD_STATE_DIR", "/a"),
        ]);
        assert_eq!(state_dir(&e), PathBuf::from("/a"));
        let e = env_of(&[("HOME", "/h"), ("XDG_STATE_HOME", "/x")]);
        assert_eq!(state_dir(&e), PathBuf::from("/x/agentd"));
        let e = env_of(&[("HOME", "/h"), ("XDG_STATE_HOME", "")]);
        if !cfg!(target_os = "macos") {
            assert_eq!(state_dir(&e), PathBuf::from("/h/.local/state/agentd"));
        }
    }

    #[test]
    fn socket_precedence() {
        let st = PathBuf::from("/s");
        let e = env_of(&[("XDG_RUNTIME_DIR", "/run/user/7")]);
        assert_eq!(
            socket_path(&e, &st),
            PathBuf::from("/run/user/7/agentd/agentd.sock")
        );
        let e = env_of(&[]);
        assert_eq!(socket_path(&e, &st), PathBuf::from("/s/agentd.sock"));
        let e = env_of(&[("AGENTD_SOCKET", "/t/x.sock"), ("XDG_RUNTIME_DIR", "/r")]);
        assert_eq!(socket_path(&e, &st), PathBuf::from("/t/x.sock"));
    }

    #[test]
    fn config_precedence() {
        let e = env_of(&[("HOME", "/h")]);
        assert_eq!(
            config_path(&e),
            (PathBuf::from("/h/.config/agentd/config.toml"), false)
        );
        let e = env_of(&[("HOME", "/h"), ("AGENTD_CONFIG", "/c.toml")]);
        assert_eq!(config_path(&e), (PathBuf::from("/c.toml"), true));
    }
}
