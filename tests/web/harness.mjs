// The browser tests' harness: starts the real agentd in a scratch dir (its own HOME, state dir,
// socket and a kernel-picked loopback port), writes run logs and conversations in the real
// formats, talks to the daemon over its Unix socket, and drives Debian's Chromium with
// playwright-core.
//
// Environment:
//   AGENTD_BIN, AGENTCTL_BIN  the binaries under test (default: target/debug/ of this checkout)
//   AGENTD_PAGE               serve this index.html instead of the compiled-in page (through
//                             devserver.mjs), to work on the page without rebuilding agentd
//   CHROMIUM                  the browser (default: /usr/bin/chromium, else chromium on PATH)
//   AGENTD_SCREENSHOTS        where screenshots go (default: target/screenshots/)

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startDevServer } from "./devserver.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "../..");
export const WAIT = 10_000;

export const AGENTD_BIN = process.env.AGENTD_BIN || path.join(ROOT, "target/debug/agentd");
export const AGENTCTL_BIN = process.env.AGENTCTL_BIN || path.join(ROOT, "target/debug/agentctl");
export const SHOTS = process.env.AGENTD_SCREENSHOTS || path.join(ROOT, "target/screenshots");

/** Chromium flags for a closed network: no background fetches, no QUIC probes, no sandbox (root). */
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; fails with `what` and the last value. */
export async function until(what, fn, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    }
    await sleep(25);
  }
}

function findChromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const p of ["/usr/bin/chromium", "/usr/bin/chromium-browser"]) if (fs.existsSync(p)) return p;
  try {
    return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"]).toString().trim();
  } catch {
    throw new Error("Chromium not found: install Debian's chromium package, or set CHROMIUM");
  }
}

export function launchBrowser() {
  return chromium.launch({ executablePath: findChromium(), args: CHROMIUM_ARGS });
}

// ---------------------------------------------------------------------------------------------
// Time: fixtures are spread over today (UTC, the daemon's TZ), yesterday and earlier
// ---------------------------------------------------------------------------------------------

export const DAY = 86_400_000;
export const iso = t => new Date(t).toISOString();
/** Today's date, yesterday's, and the start of today, in UTC. */
export function days(now = Date.now()) {
  const start = Math.floor(now / DAY) * DAY;
  return { start, today: iso(start).slice(0, 10), yesterday: iso(start - DAY).slice(0, 10), old: iso(start - 3 * DAY).slice(0, 10) };
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

let scratchN = 0;

/** A request over the Unix socket; resolves to { status, headers, body }. */
export function sockRequest(socketPath, method, p, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: p, headers: { host: "localhost" } }, res => {
      const chunks = [];
      res.on("data", c => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.setTimeout(WAIT, () => req.destroy(new Error(`${method} ${p}: no answer`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Starts agentd in a scratch dir and waits until it answers. The environment is cleared down to
 * what the daemon needs, as the Rust black-box tests do.
 */
export async function startDaemon(name, { env = {}, prepare = null, ready = WAIT } = {}) {
  if (!fs.existsSync(AGENTD_BIN)) throw new Error(`${AGENTD_BIN} does not exist: build it, or set AGENTD_BIN`);
  const dir = path.join(os.tmpdir(), `agentd-w${process.pid}-${scratchN++}-${name}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const home = path.join(dir, "home");
  const state = path.join(dir, "state");
  const socket = path.join(dir, "run", "agentd", "agentd.sock");
  fs.mkdirSync(home, { recursive: true });
  const config = path.join(home, "no-config.toml");
  fs.writeFileSync(config, "");
  // Files written before the start are read by the start-up scan.
  if (prepare) await prepare({ home, state, runs: path.join(state, "runs") });
  const logFile = path.join(dir, "agentd.log");
  const log = fs.openSync(logFile, "a");
  const proc = spawn(AGENTD_BIN, ["--state-dir", state, "--socket", socket, "--http", "127.0.0.1:0"], {
    env: { HOME: home, PATH: process.env.PATH, AGENTD_USER: "alice", AGENTD_CONFIG: config, TZ: "UTC", AGENTD_LOG: "info", ...env },
    stdio: ["ignore", "ignore", log],
  });
  fs.closeSync(log);
  let exited = null;
  proc.on("exit", code => { exited = code; });
  // A test process that dies leaves no daemon behind.
  process.on("exit", () => { if (exited === null) proc.kill("SIGKILL"); });
  const d = {
    proc, dir, home, state, socket, runs: path.join(state, "runs"), logFile,
    log: () => { try { return fs.readFileSync(logFile, "utf8"); } catch { return ""; } },
    req: (method, p, body) => sockRequest(socket, method, p, body),
    /** GET over the socket, as JSON. */
    async get(p) {
      const r = await d.req("GET", p);
      if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.body}`);
      return JSON.parse(r.body);
    },
    /** Every id the API lists for a query (one page of up to 1000). */
    async ids(query) {
      const page = await d.get(`/v1/agents?${query ? query + "&" : ""}limit=1000`);
      return page.items.map(i => i.id);
    },
    writeRun(runName, records) {
      fs.mkdirSync(d.runs, { recursive: true });
      const file = path.join(d.runs, `${runName}.jsonl`);
      // Written aside and renamed, so the daemon never reads half a fixture.
      fs.writeFileSync(file + ".tmp", records.map(r => JSON.stringify(r) + "\n").join(""));
      fs.renameSync(file + ".tmp", file);
    },
    appendRun(runName, ...records) {
      fs.appendFileSync(path.join(d.runs, `${runName}.jsonl`), records.map(r => JSON.stringify(r) + "\n").join(""));
    },
    async item(id) {
      const r = await d.req("GET", `/v1/agents/${encodeURIComponent(id)}`);
      return r.status === 200 ? JSON.parse(r.body) : null;
    },
    async waitItem(id, ok = () => true, timeout = WAIT) {
      return until(`item ${id}`, async () => { const it = await d.item(id); return it && ok(it) ? it : null; }, timeout);
    },
    async stop() {
      if (exited !== null) return;
      const gone = new Promise(r => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([gone, sleep(WAIT)]);
      if (exited === null) proc.kill("SIGKILL");
    },
    cleanup() { fs.rmSync(dir, { recursive: true, force: true }); },
  };
  await until("agentd to answer on its socket", async () => {
    if (exited !== null) throw new Error(`agentd exited with ${exited}:\n${d.log()}`);
    try {
      const r = await d.req("GET", "/v1/health");
      if (r.status !== 200) return null;
      const h = JSON.parse(r.body);
      d.addr = h.http && h.http.addr;
      return !!d.addr;
    } catch {
      return null;
    }
  }, ready);
  d.token = fs.readFileSync(path.join(state, "token"), "utf8").trim();
  d.daemonOrigin = `http://${d.addr}`;
  return d;
}

/**
 * Where the browser goes: the daemon itself, or (AGENTD_PAGE set) a dev server that serves that
 * page and passes the rest to the daemon.
 */
export async function pageOrigin(d) {
  if (!process.env.AGENTD_PAGE) return { origin: d.daemonOrigin, close: async () => {} };
  const dev = await startDevServer({ target: d.addr, page: path.resolve(process.env.AGENTD_PAGE) });
  return { origin: dev.url, close: dev.close };
}

// ---------------------------------------------------------------------------------------------
// A fake of Warp's Oz Agent API (contract section 7), for cloud runs
// ---------------------------------------------------------------------------------------------

/**
 * Serves `runs` (RunItems) at `GET …/agent/runs` (one page, whatever the query) and each run's
 * conversation at `GET …/agent/runs/{id}/conversation`. Resolves to { url, close }.
 */
export function startFakeOz(key, runs) {
  const server = http.createServer((req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${key}`) return send(401, { error: "bad key" });
    const p = new URL(req.url, "http://x").pathname;
    if (p.endsWith("/agent/runs")) return send(200, { runs, page_info: { has_next_page: false, next_cursor: null } });
    const conv = p.match(/\/agent\/runs\/([^/]+)\/conversation$/);
    const run = conv && runs.find(r => r.run_id === decodeURIComponent(conv[1]));
    if (run) {
      return send(200, {
        conversation_id: `c-${run.run_id}`,
        steps: [{ id: "s1", description: run.title, messages: [
          { role: "user", timestamp: run.created_at, content: [{ type: "text", text: run.prompt }] },
          { role: "assistant", timestamp: run.updated_at, content: [{ type: "text", text: `Working on: ${run.title}` }] },
        ] }],
      });
    }
    send(404, { error: "not found" });
  });
  return new Promise(resolve => server.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise(done => { server.closeAllConnections(); server.close(() => done()); }),
  })));
}

/** A RunItem as the Oz API describes one. */
export function cloudRun(id, { title, state, source, creator, created, updated, link, message, usage }) {
  return {
    run_id: id, task_id: id, title, prompt: `please ${title}`, state, source,
    created_at: iso(created), updated_at: iso(updated), started_at: iso(created + 1000),
    creator: { type: "user", uid: `u-${creator}`, display_name: creator, email: `${creator}@example.com` },
    scope: { type: "Team", uid: "team-1" },
    session_link: link, ...(message ? { status_message: { message } } : {}),
    request_usage: usage,
  };
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/** A run log's records: start, output, status, usage and end, in the README's format. */
export function runRecords({ title, creator, source, harness, cwd, created, updated, status, detail, output, cost, model, pid }) {
  const recs = [{ type: "start", ts: iso(created), title, harness, source, creator, cwd, ...(pid ? { pid } : {}), command: [harness || "agent", "-p", title] }];
  const mid = created + Math.max(1, Math.floor((updated - created) / 2));
  for (const line of output || []) recs.push({ type: "output", ts: iso(mid), stream: "stdout", data: line });
  if (cost != null) {
    recs.push({ type: "usage", ts: iso(mid), model: model || "claude-sonnet-4-5", input_tokens: 1200, output_tokens: 300, cost_usd: cost });
  }
  if (status === "working" || status === "blocked") {
    recs.push({ type: "status", ts: iso(updated), status, ...(detail ? { detail } : {}) });
  } else {
    recs.push({ type: "end", ts: iso(updated), status, exit_code: status === "success" ? 0 : 1, ...(detail ? { error: detail } : {}) });
  }
  return recs;
}

/** A Claude Code conversation: a prompt and a finished answer, in Claude Code's own format. */
export function claudeConversation(session, { cwd, prompt, answer, at }) {
  const base = { sessionId: session, cwd, isSidechain: false };
  return [
    { ...base, type: "user", timestamp: iso(at), permissionMode: "default", uuid: "u1", message: { role: "user", content: prompt } },
    {
      ...base, type: "assistant", timestamp: iso(at + 4000), requestId: "req_1",
      message: {
        id: "msg_1", type: "message", role: "assistant", model: "claude-sonnet-4-5-20250929",
        content: [{ type: "text", text: answer }], stop_reason: "end_turn",
        usage: { input_tokens: 100, output_tokens: 40, cache_read_input_tokens: 10000, cache_creation_input_tokens: 2000 },
      },
    },
  ];
}

export const SESSION = "5f2e0c1a-7b7e-4c1e-9d2a-0c9f1e2d3b4a";
export const XSS_TITLE = `<img src=x onerror="window.__xss=1"> <b>bold</b> & "quotes"`;

/**
 * The mixed fixture set: alice ("me"), bob and carol; every status, several sources, harnesses
 * and days. Times are unique, so the list order is fixed.
 */
export function writeFixtures(d, now = Date.now()) {
  const { start } = days(now);
  // Spread today's items over the part of today that has passed (works just after midnight too).
  const today = f => Math.floor(start + (now - start) * f);
  const yest = f => start - DAY + Math.floor(DAY * f);
  const old = f => start - 3 * DAY + Math.floor(DAY * f);
  const runs = {
    "a-fix-login": { title: "fix the flaky login test", creator: "alice", source: "cli", harness: "claude-code", cwd: "/home/alice/src/app",
      created: today(0.50), updated: today(0.52), status: "success", output: ["hello from the log\n", "all 42 tests passed\n"], cost: 0.42 },
    "a-migrate": { title: "migrate the database to postgres 16", creator: "alice", source: "cli", harness: "codex", cwd: "/home/alice/src/db",
      created: today(0.80), updated: today(0.90), status: "blocked", detail: "waiting for approval: Bash", output: ["checking schema…\n"], cost: 0.07, model: "gpt-5-codex" },
    "a-refactor": { title: "refactor the billing module", creator: "alice", source: "slack", harness: "claude-code", cwd: "/home/alice/src/billing",
      created: today(0.70), updated: today(0.88), status: "working", output: ["reading src/billing/invoice.rs\n"], cost: 1.25 },
    "a-nightly": { title: "nightly dependency bump", creator: "alice", source: "scheduled", harness: "codex", cwd: "/home/alice/src/app",
      created: yest(0.10), updated: yest(0.12), status: "failed", detail: "tests failed: 3", cost: 1.5, model: "gpt-5-codex" },
    "a-docs": { title: "update the API docs for v2", creator: "alice", source: "linear", harness: "gemini", cwd: "/home/alice/src/docs",
      created: today(0.30), updated: today(0.35), status: "canceled", cost: 0.05, model: "gemini-2.5-pro" },
    "a-lint": { title: "lint and format the repository", creator: "alice", source: "github_actions", harness: "claude-code", cwd: "/home/alice/src/app",
      created: old(0.40), updated: old(0.41), status: "success", cost: 0.11 },
    "a-xss": { title: XSS_TITLE, creator: "alice", source: "api", harness: "claude-code", cwd: "/home/alice/<script>alert(1)</script>",
      created: old(0.20), updated: old(0.21), status: "failed", detail: "<script>window.__xss=2</script>" },
    "a-long": { title: "investigate why the end-to-end checkout flow times out on the staging cluster under load, then write up the findings with graphs and a proposed fix for the connection pool sizing",
      creator: "alice", source: "cli", harness: "codex", cwd: "/home/alice/src/shop", created: today(0.10), updated: today(0.15), status: "success", cost: 2.5, model: "gpt-5-codex" },
    "b-deploy": { title: "deploy the staging cluster", creator: "bob", source: "slack", harness: "claude-code", cwd: "/home/bob/infra",
      created: today(0.60), updated: today(0.85), status: "blocked", detail: "waiting for approval: kubectl apply" },
    "b-search": { title: "improve search ranking", creator: "bob", source: "linear", harness: "codex", cwd: "/home/bob/search",
      created: yest(0.50), updated: yest(0.55), status: "failed", detail: "rate limited", cost: 0.3, model: "gpt-5-codex" },
    "b-login": { title: "login page redesign", creator: "bob", source: "cli", harness: "gemini", cwd: "/home/bob/web",
      created: today(0.40), updated: today(0.45), status: "success", cost: 0.2, model: "gemini-2.5-pro" },
    "c-report": { title: "weekly metrics report", creator: "carol", source: "scheduled", harness: "claude-code", cwd: "/home/carol/reports",
      created: today(0.55), updated: today(0.58), status: "failed", detail: "out of memory" },
    "c-triage": { title: "triage new issues", creator: "carol", source: "web", harness: "opencode", cwd: "/home/carol/tracker",
      created: old(0.60), updated: old(0.62), status: "success", cost: 0.02 },
  };
  for (const [name, r] of Object.entries(runs)) d.writeRun(name, runRecords(r));
  // A conversation in Claude Code's store: the Personal tab's interactive item.
  const conv = path.join(d.home, ".claude/projects/-home-alice-src-app", `${SESSION}.jsonl`);
  fs.mkdirSync(path.dirname(conv), { recursive: true });
  const lines = claudeConversation(SESSION, { cwd: "/home/alice/src/app", prompt: "explain the login flow", answer: "The login flow starts in auth.rs.", at: today(0.60) });
  fs.writeFileSync(conv, lines.map(l => JSON.stringify(l) + "\n").join(""));
  return { runs, count: Object.keys(runs).length + 1 };
}

/** Cloud runs for the fake Oz API: a team run waiting on a person, and one that succeeded. */
export function cloudFixtures(now = Date.now()) {
  const { start } = days(now);
  const today = f => Math.floor(start + (now - start) * f);
  return [
    cloudRun("r-review", { title: "review the release notes", state: "BLOCKED", source: "SLACK", creator: "dana",
      created: today(0.65), updated: today(0.87), link: "https://app.warp.dev/session/r-review",
      message: "needs approval to push", usage: { inference_cost: 1.25, compute_cost: 0.5 } }),
    cloudRun("r-triage", { title: "triage the nightly crash reports", state: "SUCCEEDED", source: "LINEAR", creator: "erin",
      created: today(0.25), updated: today(0.32), link: "javascript:alert(1)", usage: { inference_cost: 0.4 } }),
  ];
}

/** Waits until the daemon lists every fixture with its final status. */
export async function waitForFixtures(d, fx) {
  await until("every fixture to be listed", async () => {
    const page = await d.get("/v1/agents?tab=all&limit=1000");
    const byId = new Map(page.items.map(i => [i.id, i]));
    for (const [name, r] of Object.entries(fx.runs)) {
      const it = byId.get(`cli:${name}`);
      if (!it || it.status !== r.status) return null;
    }
    for (const run of fx.cloud || []) if (!byId.has(`cloud:${run.run_id}`)) return null;
    const conv = byId.get(`claude-code:${SESSION}`);
    return conv && conv.status === "success";
  });
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

/** The ids of the rows on screen, in order. */
export function rowIds(page) {
  return page.$$eval("#rows > [data-id]", els => els.map(e => e.dataset.id));
}

/** Waits until the page's rows are exactly what the API lists for `query`. */
export async function rowsMatch(page, d, query, what = query) {
  let api = [], shown = [];
  try {
    await until(`rows for ${what}`, async () => {
      api = await d.ids(query);
      shown = await rowIds(page);
      return JSON.stringify(api) === JSON.stringify(shown);
    }, 5000);
  } catch {
    throw new Error(`rows for ${what} differ from the API\n  api:  ${api.join(" ")}\n  page: ${shown.join(" ")}`);
  }
  return shown;
}

/** Logs a browser context in (`/?token=…` sets the cookie) and returns the page. */
export async function login(context, origin, token, query = "") {
  const page = await context.newPage();
  await page.goto(`${origin}/?${query ? query + "&" : ""}token=${token}`);
  return page;
}

/** Saves a screenshot under SHOTS and returns its path. */
export async function screenshot(page, name) {
  // Not mid-load: no progress bar, no row still fading in.
  await page.waitForFunction(() => !window.__agentd || !window.__agentd.loading);
  await sleep(1300);
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Closes what a test file opened (any of them may be missing if `before` failed early). */
export async function teardown({ browser, closeOrigin, d, oz }) {
  if (browser) await browser.close();
  if (closeOrigin) await closeOrigin();
  if (d) {
    await d.stop();
    d.cleanup();
  }
  if (oz) await oz.close();
}
