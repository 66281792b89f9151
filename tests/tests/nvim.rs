//! The Neovim plugin (`integrations/nvim`), run headless against a real agentd.

use agentd_tests::{Daemon, ago, rec};
use serde_json::json;
use std::process::Command;

#[test]
fn the_neovim_plugin_lists_agents_and_shows_the_active_count() {
    if Command::new("nvim").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("AGENTD_REQUIRE_NVIM").is_none(),
            "nvim is required here"
        );
        eprintln!("nvim is not installed here; the plugin test is skipped");
        return;
    }
    let d = Daemon::start("nvim");
    d.write_run(
        "n1",
        &[rec(
            json!({"type": "start", "ts": ago(5), "title": "from neovim"}),
        )],
    );
    d.write_run(
        "n2",
        &[
            rec(json!({"type": "start", "ts": ago(9), "title": "waiting one"})),
            rec(json!({"type": "status", "ts": ago(8), "status": "blocked", "detail": "approve?"})),
        ],
    );
    d.wait_for("/v1/summary?tab=all", "two active runs", |v| {
        v["active"] == 2
    });
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/../integrations/nvim");
    let out = d.home.join("nvim-out.txt");
    let script = d.home.join("check.lua");
    std::fs::write(
        &script,
        format!(
            r#"
local a = require('agentd')
a.setup({{ socket = '{sock}', tab = 'all' }})
local items, err = a.list()
local seen = vim.wait(5000, function() return a.statusline() ~= '' end, 20)
local f = io.open('{out}', 'w')
if not items then
  f:write('error: ' .. tostring(err))
else
  local titles = {{}}
  for _, it in ipairs(items) do table.insert(titles, it.title .. '=' .. it.status) end
  table.sort(titles)
  f:write(#items .. '|' .. table.concat(titles, ',') .. '|' .. a.statusline() .. '|' .. tostring(seen))
end
f:close()
"#,
            sock = d.socket.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let run = Command::new("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "--cmd"])
        .arg(format!("set rtp+={plugin}"))
        .arg("-c")
        .arg(format!("luafile {}", script.display()))
        .args(["-c", "qa!"])
        .env("HOME", &d.home)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_else(|_| {
        panic!(
            "the plugin wrote nothing; nvim said:\n{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert_eq!(
        text,
        "2|from neovim=working,waiting one=blocked|⚙1 🟨1|true"
    );
}
