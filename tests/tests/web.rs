//! The management page in a real browser: runs the Playwright suite in `tests/web/` (Debian's
//! Chromium driven by `playwright-core`, against the real binaries built for this test run).
//!
//! `.ci/run` installs Chromium and the suite's npm package and sets `AGENTD_REQUIRE_BROWSER=1`,
//! so there a missing piece fails; elsewhere the suite is skipped with a note when Node.js,
//! Chromium or `tests/web/node_modules` is absent (`npm ci --prefix tests/web` installs it).

use agentd_tests::bin;
use std::path::Path;
use std::process::Command;

fn missing(what: &str) -> bool {
    assert!(
        std::env::var_os("AGENTD_REQUIRE_BROWSER").is_none(),
        "{what} is required (AGENTD_REQUIRE_BROWSER is set) but missing"
    );
    eprintln!("{what} is missing: the browser tests are skipped");
    true
}

#[test]
fn the_management_page_passes_its_browser_suite() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .any(|p| Path::new(p).exists())
        || std::env::var_os("CHROMIUM").is_some();
    if (!node_ok && missing("Node.js"))
        || (!chromium && missing("Chromium"))
        || (!web.join("node_modules/playwright-core").exists()
            && missing("tests/web/node_modules (npm ci --prefix tests/web)"))
    {
        return;
    }
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .arg(web.join("page.test.mjs"))
        .env("AGENTD_BIN", bin("agentd"))
        .env("AGENTCTL_BIN", bin("agentctl"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# tests") || l.starts_with("# pass") || l.starts_with("# fail"))
        .collect();
    eprintln!("browser suite: {}", summary.join(", "));
    assert!(
        out.status.success(),
        "the browser suite failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A run that executed nothing must not pass.
    assert!(
        summary
            .iter()
            .any(|l| l.starts_with("# pass") && l != &"# pass 0"),
        "{text}"
    );
}
