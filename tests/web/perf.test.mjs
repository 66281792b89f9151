// The management page with a large history: 100,000 runs (AGENTD_WEB_PERF_ITEMS to change it),
// 50 of them working. Prints, without asserting them (timings depend on the machine):
//   - when the first rows are painted after a navigation,
//   - how long a filter change takes until its rows are painted,
//   - frames longer than 50 ms while 50 run logs a second are appended to for 5 s,
//   - how long scrolling takes to load 2,000 rows.
// It does assert that the page shows the API's rows and applies the live changes.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import * as H from "./harness.mjs";

const N = Number(process.env.AGENTD_WEB_PERF_ITEMS || 100_000);
const ACTIVE = 50;
const CREATORS = ["alice", "bob", "carol", "dave"];
const SOURCES = ["cli", "slack", "linear", "scheduled", "github_actions", "api"];
const HARNESSES = ["claude-code", "codex", "gemini"];
const ENDS = ["success", "success", "success", "success", "failed", "canceled"];
const WORDS = ["fix", "flaky", "login", "test", "migrate", "billing", "docs", "search", "deploy", "bump", "refactor", "cache"];

let d, browser, origin, closeOrigin, ctx;

/** perf: lines are the figures this test reports. */
function report(line) {
  console.log(`perf: ${line}`);
}

const ms = v => `${Math.round(v)} ms`;
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Writes N finished runs over the last 30 days, and ACTIVE working ones from the last minutes. */
function generate(runs) {
  fs.mkdirSync(runs, { recursive: true });
  const now = Date.now();
  for (let i = 0; i < N; i++) {
    const created = now - 3_600_000 - Math.floor((i / N) * 30 * H.DAY);
    const title = `${WORDS[i % WORDS.length]} ${WORDS[(i * 7) % WORDS.length]} #${i}`;
    const start = { type: "start", ts: H.iso(created), title, harness: HARNESSES[i % 3], source: SOURCES[i % SOURCES.length],
      creator: CREATORS[i % CREATORS.length], cwd: `/src/project-${i % 40}` };
    const end = { type: "end", ts: H.iso(created + 10_000 + (i % 1800) * 1000), status: ENDS[i % ENDS.length] };
    fs.writeFileSync(path.join(runs, `p${i}.jsonl`), `${JSON.stringify(start)}\n${JSON.stringify(end)}\n`);
  }
  for (let i = 0; i < ACTIVE; i++) {
    const start = { type: "start", ts: H.iso(now - 600_000 + i * 1000), title: `active run ${i}`, harness: "claude-code", creator: "alice", cwd: "/src/live" };
    fs.writeFileSync(path.join(runs, `active${i}.jsonl`), `${JSON.stringify(start)}\n`);
  }
}

before(async () => {
  const t0 = Date.now();
  let written = 0;
  d = await H.startDaemon("perf", {
    prepare: ({ runs }) => { generate(runs); written = Date.now(); },
    ready: 120_000,
  });
  const total = N + ACTIVE;
  await H.until(`${total} items ingested`, async () => (await d.get("/v1/health")).items >= total, 900_000);
  report(`${N.toLocaleString("en")} run logs written in ${ms(written - t0)}, ingested by agentd in ${ms(Date.now() - written)}`);
  ({ origin, close: closeOrigin } = await H.pageOrigin(d));
  browser = await H.launchBrowser();
  ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, timezoneId: "UTC" });
  const p = await H.login(ctx, origin, d.token);
  await p.close();
}, { timeout: 1_200_000 });

after(() => H.teardown({ browser, closeOrigin, d }));

/** Waits until the page's rows are the start of what the API lists for the query. */
async function firstPageMatches(page, query) {
  let api = [], shown = [];
  try {
    await H.until(`rows for ${query}`, async () => {
      shown = await H.rowIds(page);
      api = await d.ids(query);
      return shown.length >= Math.min(100, api.length) && JSON.stringify(api.slice(0, shown.length)) === JSON.stringify(shown);
    });
  } catch {
    throw new Error(`rows for ${query} differ\n  api:  ${api.slice(0, 10).join(" ")} …\n  page: ${shown.slice(0, 10).join(" ")} …`);
  }
}

test("first rows are painted soon after navigation", async () => {
  for (const query of ["", "tab=all"]) {
    const rows = [], paints = [];
    for (let i = 0; i < 5; i++) {
      const page = await ctx.newPage();
      await page.goto(`${origin}/${query ? "?" + query : ""}`);
      await page.waitForFunction(() => window.__agentd.firstPaintAt != null);
      const probe = await page.evaluate(() => window.__agentd);
      rows.push(probe.firstRowsAt);
      paints.push(probe.firstPaintAt);
      if (i === 0) await firstPageMatches(page, query);
      await page.close();
    }
    report(`first rows painted after navigation (${query || "tab=personal"}): median ${ms(median(paints))}, first ${ms(paints[0])}, all ${paints.map(Math.round).join("/")} ms (rows in the DOM at ${ms(median(rows))})`);
  }
});

/** Changes a filter through its control and returns the ms until the new rows are painted. */
function timeChange(page, change) {
  return page.evaluate(async ({ kind, name, value }) => {
    const probe = window.__agentd;
    let control;
    if (kind === "tab") {
      control = document.querySelector(`[data-tab="${value}"]`);
    } else {
      const details = document.querySelector(`details[data-filter="${name}"]`);
      if (!details.open) {
        details.open = true;
        // The menu is built when it opens (a toggle event, a task later).
        while (!details.querySelector(`input[value="${value}"]`)) await new Promise(r => setTimeout(r, 10));
      }
      control = details.querySelector(`input[value="${value}"]`);
    }
    const seq = probe.listSeq;
    const t0 = performance.now();
    control.click();
    await new Promise(resolve => {
      const done = () => probe.listSeq > seq && probe.lastPaintAt > probe.lastListAt;
      const check = () => (done() ? resolve() : requestAnimationFrame(check));
      check();
    });
    // How much of it was the API answering (the list request this change made).
    const req = performance.getEntriesByType("resource").filter(e => e.name.includes("/v1/agents?") && e.startTime >= t0).pop();
    return { total: probe.lastPaintAt - t0, api: req ? req.responseEnd - req.startTime : NaN };
  }, change);
}

test("a filter change paints its rows quickly", async () => {
  const page = await ctx.newPage();
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.__agentd.firstPaintAt != null);
  const steps = [
    [{ kind: "filter", name: "status", value: "failed" }, "status=failed"],
    [{ kind: "filter", name: "status", value: "canceled" }, "status=failed,canceled"],
    [{ kind: "tab", value: "all" }, "tab=all&status=failed,canceled"],
    [{ kind: "filter", name: "source", value: "slack" }, "tab=all&status=failed,canceled&source=slack"],
    [{ kind: "filter", name: "status", value: "failed" }, "tab=all&status=canceled&source=slack"],
    [{ kind: "filter", name: "creator", value: "bob" }, "tab=all&status=canceled&source=slack&creator=bob"],
    [{ kind: "filter", name: "day", value: "today" }, "tab=all&status=canceled&source=slack&creator=bob&day=today"],
    [{ kind: "filter", name: "day", value: "" }, "tab=all&status=canceled&source=slack&creator=bob"],
    [{ kind: "tab", value: "personal" }, "status=canceled&source=slack&creator=bob"],
  ];
  const times = [], apis = [];
  for (const [change, query] of steps) {
    const t = await timeChange(page, change);
    times.push(t.total);
    apis.push(t.api);
    await firstPageMatches(page, query);
    report(`filter change to ${query}: ${ms(t.total)} (the API's answer took ${ms(t.api)} of it)`);
  }
  report(`filter change: median ${ms(median(times))}, max ${ms(Math.max(...times))}; the API's part: median ${ms(median(apis))}, max ${ms(Math.max(...apis))}`);
  await page.close();
});

test("50 changed runs a second are applied without long frames", async () => {
  const page = await ctx.newPage();
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.__agentd.firstPaintAt != null);
  // Records every frame's length until told to stop.
  const startFrames = () => page.evaluate(() => {
    window.__frames = [];
    window.__rec = true;
    let last = performance.now();
    const loop = t => {
      window.__frames.push(t - last);
      last = t;
      if (window.__rec) requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  });
  const stopFrames = () => page.evaluate(() => {
    window.__rec = false;
    const f = window.__frames.slice(1);
    const sorted = [...f].sort((a, b) => a - b);
    return { frames: f.length, long: f.filter(x => x > 50).length, max: sorted[sorted.length - 1] || 0, p95: sorted[Math.floor(sorted.length * 0.95)] || 0 };
  });

  await startFrames();
  await H.sleep(2000);
  const idle = await stopFrames();
  report(`idle frames over 2 s: ${idle.frames}, longer than 50 ms: ${idle.long}, longest ${ms(idle.max)}`);

  const applied0 = await page.evaluate(() => window.__agentd.eventsApplied);
  await startFrames();
  const t0 = Date.now();
  let k = 0;
  // 50 appends a second for 5 s, one run after another, paced on the clock.
  while (Date.now() - t0 < 5000) {
    const due = Math.floor((Date.now() - t0) / 20);
    for (; k <= due && k < 250; k++) {
      d.appendRun(`active${k % ACTIVE}`, { type: "status", ts: H.iso(Date.now()), status: k % 2 ? "working" : "blocked", detail: `step ${k}` });
    }
    await H.sleep(5);
  }
  // The last changes: every active run ends blocked with a known detail.
  for (let i = 0; i < ACTIVE; i++) {
    d.appendRun(`active${i}`, { type: "status", ts: H.iso(Date.now()), status: "blocked", detail: `final ${i}` });
  }
  await H.until("the last changes on screen", () => page.evaluate(n => {
    const rows = [...document.querySelectorAll("#rows > .row")].slice(0, n);
    const off = rows.filter(r => !(r.dataset.status === "blocked" && /final \d+/.test(r.textContent)));
    return off.length === 0 || off.slice(0, 3).map(r => `${r.dataset.id} ${r.dataset.status} ${r.textContent}`).join(" | ") + ` (${off.length} not yet)`;
  }, ACTIVE).then(v => v === true || Promise.reject(new Error(v))), 20_000);
  const busy = await stopFrames();
  const applied = (await page.evaluate(() => window.__agentd.eventsApplied)) - applied0;
  report(`${k + ACTIVE} appends over ${ms(Date.now() - t0)} (${Math.round(k / 5)}/s): ${applied} events applied; frames ${busy.frames}, longer than 50 ms: ${busy.long}, p95 ${ms(busy.p95)}, longest ${ms(busy.max)}`);
  await firstPageMatches(page, "");
  await page.close();
});

test("scrolling loads more rows page by page", async () => {
  const page = await ctx.newPage();
  await page.goto(`${origin}/?tab=all`);
  await page.waitForFunction(() => window.__agentd.firstPaintAt != null);
  const t = await page.evaluate(async target => {
    const wrap = document.querySelector("#listwrap");
    const rows = document.querySelector("#rows");
    const t0 = performance.now();
    while (rows.childElementCount < target) {
      wrap.scrollTop = wrap.scrollHeight;
      await new Promise(r => setTimeout(r, 16));
      if (performance.now() - t0 > 30000) break;
    }
    const text = sel => document.querySelector(sel).textContent;
    return { ms: performance.now() - t0, rows: rows.childElementCount, foot: text("#foot"), banner: text("#banner") };
  }, 2000);
  report(`scrolled to ${t.rows} rows in ${ms(t.ms)}`);
  assert.ok(t.rows >= 2000, `rows after scrolling: ${JSON.stringify(t)}`);
  const ids = await H.rowIds(page);
  assert.equal(new Set(ids).size, ids.length, "no row twice");
  const api = await d.ids("tab=all");
  assert.deepEqual(ids.slice(0, 1000), api, "the first 1000 rows are the API's");
  await page.close();
});
