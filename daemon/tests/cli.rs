//! `agentd`'s command line, run as a real process: usage errors exit 2, bad configuration
//! exits 1 with a message naming the value. (Also makes `cargo test` build the binary that the
//! black-box suite in `tests/` drives.)

use std::process::Command;

fn agentd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    // Every case here fails before agentd creates anything, so nothing needs to exist.
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentd"));
    c.args(args)
        .env_clear()
        .env("HOME", "/nonexistent/home")
        .env("AGENTD_STATE_DIR", "/nonexistent/state");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = agentd(&["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}

#[test]
fn version_prints() {
    let out = agentd(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("agentd "));
}

#[test]
fn bad_http_address_is_named() {
    let out = agentd(&["--http", "localhost"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"localhost\"") && err.contains("off"),
        "{err}"
    );
}

#[test]
fn missing_explicit_config_is_named() {
    let out = agentd(&[], &[("AGENTD_CONFIG", "/nonexistent/agentd/config.toml")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agentd/config.toml"));
}
