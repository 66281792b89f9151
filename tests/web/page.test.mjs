// The management page in a real Chromium, against the real agentd and agentctl: rows against
// the API, filters in the URL, live updates, the inspect panel, Stop, phone size, dark scheme,
// and that nothing is fetched from anywhere but agentd.
//
//   AGENTD_BIN=… AGENTCTL_BIN=… node --test tests/web/
//
// See harness.mjs for the environment it reads.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import * as H from "./harness.mjs";

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let d;          // the daemon
let fx;         // its fixtures
let browser;
let origin;     // where the page is served (the daemon, or the dev server)
let closeOrigin;
let ctx;        // the logged-in desktop context most tests share
let page;
const requests = []; // every URL any context of this file asked for
const pageErrors = []; // uncaught errors in any page

/** A browser context that records its requests; UTC, like the daemon, so "today" agrees. */
async function newContext(opts = {}) {
  const c = await browser.newContext({ viewport: DESKTOP, timezoneId: "UTC", ...opts });
  c.on("request", r => requests.push(r.url()));
  c.on("page", p => p.on("pageerror", e => pageErrors.push(`${p.url()}: ${e.stack || e.message}`)));
  return c;
}

/** Opens a view in the shared page and waits for its rows to be the API's. */
async function show(query) {
  await page.goto(`${origin}/${query ? "?" + query : ""}`);
  await H.rowsMatch(page, d, query.replace(/(^|&)agent=[^&]*/g, ""), query || "/");
}

/** The URL's query as a plain object (lists as they are written). */
function urlParams(p = page) {
  return Object.fromEntries(new URL(p.url()).searchParams);
}

/** Opens a filter menu (a click on an open one would close it). */
async function openMenu(name, p = page) {
  const details = p.locator(`details[data-filter="${name}"]`);
  if (!(await details.evaluate(el => el.open))) await details.locator("> summary").click();
  await details.locator(".menu input").first().waitFor();
}

function row(id, p = page) {
  return p.locator(`#rows > [data-id="${id}"]`);
}

let oz;          // the fake cloud API

before(async () => {
  const cloud = H.cloudFixtures();
  oz = await H.startFakeOz("test-key", cloud);
  d = await H.startDaemon("page", { env: { WARP_API_KEY: "test-key", AGENTD_CLOUD_URL: oz.url } });
  fx = H.writeFixtures(d);
  fx.cloud = cloud;
  await H.waitForFixtures(d, fx);
  ({ origin, close: closeOrigin } = await H.pageOrigin(d));
  browser = await H.launchBrowser();
  ctx = await newContext();
  page = await H.login(ctx, origin, d.token);
  page.setDefaultTimeout(H.WAIT);
});

after(() => H.teardown({ browser, closeOrigin, d, oz }));

test("logging in with ?token= sets the cookie and drops the token from the URL", async () => {
  const c = await newContext();
  const p = await H.login(c, origin, d.token, "tab=all&status=failed");
  await H.until("the token to leave the URL", () => !p.url().includes("token="));
  assert.deepEqual(Object.fromEntries(new URL(p.url()).searchParams), { tab: "all", status: "failed" });
  await H.rowsMatch(p, d, "tab=all&status=failed");
  await c.close();
});

const { today, yesterday, old } = H.days();
const URL_FILTERS = [
  "",
  "tab=all",
  "tab=all&status=failed",
  "tab=all&status=failed,canceled",
  "tab=all&status=failed&status=canceled",
  "status=blocked,working",
  "tab=all&source=slack,linear",
  "tab=all&creator=bob",
  "tab=all&creator=bob,carol",
  "tab=all&harness=codex,gemini",
  "day=today",
  "tab=all&day=yesterday",
  `tab=all&day=${old}`,
  "tab=all&q=login",
  "q=LOGIN",
  "tab=all&status=blocked&source=slack",
  "tab=all&status=success&day=today&harness=claude-code",
];
for (const query of URL_FILTERS) {
  test(`rows match /v1/agents for /?${query}`, async () => {
    await show(query);
  });
}

// Screenshots first, while the rows are the fixtures alone.
test("at 390 px wide the page fits the screen: no sideways scrolling", async () => {
  const c = await newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const p = await H.login(c, origin, d.token, "tab=all");
  await H.rowsMatch(p, d, "tab=all");
  const widths = () => p.evaluate(() => ({
    page: document.documentElement.scrollWidth, body: document.body.scrollWidth,
    list: document.querySelector("#listwrap").scrollWidth, view: window.innerWidth,
  }));
  let w = await widths();
  assert.ok(w.page <= w.view && w.body <= w.view && w.list <= w.view, JSON.stringify(w));
  await H.screenshot(p, "phone-light");
  await p.emulateMedia({ colorScheme: "dark" });
  await H.screenshot(p, "phone-dark");
  await p.emulateMedia({ colorScheme: "light" });
  // The panel takes the whole screen, and fits too.
  await p.locator('#rows > [data-id="cli:a-migrate"]').tap();
  await p.locator('#panel[data-id="cli:a-migrate"]').waitFor();
  const box = await p.locator("#panel").boundingBox();
  assert.deepEqual([box.x, box.width], [0, PHONE.width]);
  w = await widths();
  assert.ok(w.page <= w.view, JSON.stringify(w));
  await H.until("the log", async () => (await p.locator("#log").innerText()).includes("checking schema"));
  await H.screenshot(p, "phone-panel-light");
  await p.goBack();
  await p.locator("#panel").waitFor({ state: "hidden" });
  // A filter menu opens as a sheet inside the screen.
  await p.locator('[data-filter="status"] > summary').tap();
  const menu = await p.locator('[data-filter="status"] .menu').boundingBox();
  assert.ok(menu.x >= 0 && menu.x + menu.width <= PHONE.width, JSON.stringify(menu));
  await c.close();
});

/** The page's background colour's luminance (0 black … 1 white). */
function luminance(page) {
  return page.evaluate(() => {
    const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  });
}

test("the page follows the dark colour scheme; desktop screenshots", async () => {
  const c = await newContext();
  const p = await H.login(c, origin, d.token, "tab=all");
  await H.rowsMatch(p, d, "tab=all");
  await p.emulateMedia({ colorScheme: "light" });
  const light = await luminance(p);
  await H.screenshot(p, "desktop-light");
  await p.emulateMedia({ colorScheme: "dark" });
  const dark = await luminance(p);
  await H.screenshot(p, "desktop-dark");
  assert.ok(light > 0.85, `light background luminance ${light}`);
  assert.ok(dark < 0.15, `dark background luminance ${dark}`);
  await p.emulateMedia({ colorScheme: "light" });
  await p.locator('#rows > [data-id="cli:a-migrate"]').click();
  await H.until("the log", async () => (await p.locator("#log").innerText()).includes("checking schema"));
  await H.screenshot(p, "desktop-panel-light");
  await p.emulateMedia({ colorScheme: "dark" });
  await H.screenshot(p, "desktop-panel-dark");
  // The README's pictures, refreshed only when asked (a test run must not change the tree).
  if (process.env.AGENTD_UPDATE_DOCS) {
    const docs = path.join(H.ROOT, "docs");
    fs.mkdirSync(docs, { recursive: true });
    fs.copyFileSync(path.join(H.SHOTS, "desktop-light.png"), path.join(docs, "web-desktop.png"));
    fs.copyFileSync(path.join(H.SHOTS, "phone-light.png"), path.join(docs, "web-phone.png"));
  }
  await c.close();
});

test("the filter controls reflect a shared URL", async () => {
  await show("tab=all&status=failed,canceled&source=slack&day=yesterday&q=rank");
  assert.equal(await page.inputValue("#q"), "rank");
  assert.equal(await page.getAttribute('[data-tab="all"]', "aria-selected"), "true");
  await openMenu("status");
  const checked = await page.$$eval('[data-filter="status"] input[name="status"]:checked', els => els.map(e => e.value));
  assert.deepEqual(checked.sort(), ["canceled", "failed"]);
  await openMenu("day");
  assert.equal(await page.isChecked('[data-filter="day"] input[type="radio"][value="yesterday"]'), true);
  await page.keyboard.press("Escape");
});

test("the page's filter controls change the URL and the rows; Back undoes them", async () => {
  await show("");
  // Status: two values.
  await openMenu("status");
  await page.check('[data-filter="status"] input[value="failed"]');
  await H.until("status=failed in the URL", () => urlParams().status === "failed");
  await page.check('[data-filter="status"] input[value="canceled"]');
  await H.until("status=failed,canceled in the URL", () => urlParams().status === "failed,canceled");
  await H.rowsMatch(page, d, "status=failed,canceled");
  // Tab.
  await page.click('[data-tab="all"]');
  await H.until("tab=all in the URL", () => urlParams().tab === "all");
  await H.rowsMatch(page, d, "tab=all&status=failed,canceled");
  // Source and creator.
  await openMenu("source");
  await page.check('[data-filter="source"] input[value="linear"]');
  await H.until("source=linear in the URL", () => urlParams().source === "linear");
  await H.rowsMatch(page, d, "tab=all&status=failed,canceled&source=linear");
  await openMenu("creator");
  await page.check('[data-filter="creator"] input[value="bob"]');
  await H.until("creator=bob in the URL", () => urlParams().creator === "bob");
  await H.rowsMatch(page, d, "tab=all&status=failed,canceled&source=linear&creator=bob");
  // Back, twice: creator, then source, are gone again.
  await page.goBack();
  await H.until("creator to leave the URL", () => !("creator" in urlParams()));
  await H.rowsMatch(page, d, "tab=all&status=failed,canceled&source=linear");
  await page.goBack();
  await H.until("source to leave the URL", () => !("source" in urlParams()));
  await H.rowsMatch(page, d, "tab=all&status=failed,canceled");
  // Clear, then a day and a harness typed in.
  await page.click("#clear");
  await H.until("a URL without filters", () => JSON.stringify(urlParams()) === JSON.stringify({ tab: "all" }));
  await openMenu("day");
  await page.check('[data-filter="day"] input[type="radio"][value="today"]');
  await H.until("day=today in the URL", () => urlParams().day === "today");
  await H.rowsMatch(page, d, "tab=all&day=today");
  await openMenu("day");
  await page.fill('[data-filter="day"] input[type="date"]', yesterday);
  await H.until("the date in the URL", () => urlParams().day === yesterday);
  await H.rowsMatch(page, d, `tab=all&day=${yesterday}`);
  await openMenu("harness");
  await page.fill('[data-filter="harness"] input[data-add]', "codex");
  await page.press('[data-filter="harness"] input[data-add]', "Enter");
  await H.until("harness=codex in the URL", () => urlParams().harness === "codex");
  await H.rowsMatch(page, d, `tab=all&day=${yesterday}&harness=codex`);
  await page.keyboard.press("Escape");
  // Search.
  await page.click("#clear");
  await page.fill("#q", "login");
  await H.until("q=login in the URL", () => urlParams().q === "login");
  await H.rowsMatch(page, d, "tab=all&q=login");
});

test("regression: text typed in a menu's add box survives the menu being rebuilt as it opens", async () => {
  await show("tab=all");
  await openMenu("harness");
  await page.fill('[data-filter="harness"] input[data-add]', "gemini");
  // The menu is rebuilt when its `toggle` event arrives, which may be after typing has begun.
  await page.locator('details[data-filter="harness"]').evaluate(el => el.dispatchEvent(new Event("toggle")));
  assert.equal(await page.inputValue('[data-filter="harness"] input[data-add]'), "gemini");
  await page.press('[data-filter="harness"] input[data-add]', "Enter");
  await H.until("harness=gemini in the URL", () => urlParams().harness === "gemini");
  await H.rowsMatch(page, d, "tab=all&harness=gemini");
  await page.keyboard.press("Escape");
});

test("a summary count links to the list filtered to it", async () => {
  await show("tab=all");
  const link = page.locator("#summary a.stat.blocked");
  assert.equal(await link.getAttribute("href"), "/?tab=all&status=blocked");
  await link.click();
  await H.until("status=blocked in the URL", () => urlParams().status === "blocked");
  const ids = await H.rowsMatch(page, d, "tab=all&status=blocked");
  assert.ok(ids.length >= 2, `blocked rows: ${ids}`);
  const statuses = await page.$$eval("#rows > [data-id]", els => els.map(e => e.dataset.status));
  assert.ok(statuses.every(s => s === "blocked"), statuses.join());
  // Only counts that are not zero are links.
  const stats = await page.$$eval("#summary .stat", els => els.map(e => [e.tagName, e.classList.contains("zero"), e.querySelector("b").textContent]));
  for (const [tag, zero, n] of stats) {
    if (zero) assert.equal([tag, n].join(), "SPAN,0");
    if (tag === "A") assert.notEqual(n, "0");
  }  // Today's counts (by last activity) link to lists that hold exactly that many.
  let checked = 0;
  for (const cls of ["failed", "success"]) {
    await show("tab=all");
    const a = page.locator(`#summary a.stat.${cls}`);
    if (!(await a.count())) continue;
    const n = Number((await a.locator("b").textContent()).replace(/\D/g, ""));
    assert.equal(await a.getAttribute("href"), `/?tab=all&status=${cls}&updated_day=today`);
    await a.click();
    await H.until(`updated_day=today in the URL`, () => urlParams().updated_day === "today" && urlParams().status === cls);
    const ids = await H.rowsMatch(page, d, `tab=all&status=${cls}&updated_day=today`);
    assert.equal(ids.length, n, `${cls}: ${ids}`);
    checked += 1;
  }
  assert.ok(checked > 0, "no today count to follow");
});

test("keys: / focuses the search, 1 and 2 switch tabs, j and k move between rows", async () => {
  await show("");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.keyboard.press("2");
  await H.until("tab=all", () => urlParams().tab === "all");
  await H.rowsMatch(page, d, "tab=all");
  await page.keyboard.press("1");
  await H.until("the Personal tab", () => !("tab" in urlParams()));
  await H.rowsMatch(page, d, "");
  const ids = await H.rowIds(page);
  await page.keyboard.press("j");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[0]);
  await page.keyboard.press("j");
  await page.keyboard.press("ArrowDown");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[2]);
  await page.keyboard.press("k");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), ids[1]);
  // One row is in the Tab order: the one last focused.
  assert.deepEqual(await page.$$eval('#rows > [tabindex="0"]', els => els.map(e => e.dataset.id)), [ids[1]]);
  await page.keyboard.press("/");
  assert.equal(await page.evaluate(() => document.activeElement.id), "q");
  await page.keyboard.type("billing");
  await H.until("q=billing", () => urlParams().q === "billing");
  await page.keyboard.press("Escape");
  assert.notEqual(await page.evaluate(() => document.activeElement.id), "q");
});

test("an appended run log changes its row in place, without reloading", async () => {
  await show("tab=all");
  const now = Date.now();
  d.writeRun("live-1", [{ type: "start", ts: H.iso(now - 2000), title: "live run one", harness: "codex", creator: "alice", cwd: "/src/live" }]);
  // A new run appears at the top, as working.
  await H.until("the new row", async () => (await H.rowIds(page))[0] === "cli:live-1");
  assert.equal(await row("cli:live-1").getAttribute("data-status"), "working");
  const loads = await page.evaluate(() => window.__agentd.listLoads);
  await page.evaluate(() => {
    window.__stillHere = true;
    document.querySelector('#rows > [data-id="cli:live-1"]').__tag = "same element";
  });
  d.appendRun("live-1", { type: "status", ts: H.iso(Date.now()), status: "blocked", detail: "waiting for approval: Edit" });
  await H.until("the row to turn blocked", async () => (await row("cli:live-1").getAttribute("data-status")) === "blocked");
  assert.match(await row("cli:live-1").innerText(), /waiting for approval: Edit/);
  d.appendRun("live-1", { type: "end", ts: H.iso(Date.now()), status: "failed", exit_code: 2, error: "compile error" });
  await H.until("the row to turn failed", async () => (await row("cli:live-1").getAttribute("data-status")) === "failed");
  assert.match(await row("cli:live-1").innerText(), /compile error/);
  const kept = await page.evaluate(() => ({
    stillHere: window.__stillHere === true,
    same: document.querySelector('#rows > [data-id="cli:live-1"]').__tag === "same element",
    loads: window.__agentd.listLoads,
  }));
  assert.deepEqual(kept, { stillHere: true, same: true, loads }, "updated in place, no page or list reload");
  await H.rowsMatch(page, d, "tab=all");
});

test("live rows follow the filters: matching runs come in, others stay out or leave", async () => {
  await show("status=working,blocked");
  const loads = await page.evaluate(() => window.__agentd.listLoads);
  const t = Date.now() - 1000;
  d.writeRun("live-mine", [{ type: "start", ts: H.iso(t), title: "live mine", creator: "alice" }]);
  d.writeRun("live-bob", [{ type: "start", ts: H.iso(t), title: "live bob", creator: "bob" }]);
  d.writeRun("live-done", [
    { type: "start", ts: H.iso(t), title: "live done", creator: "alice" },
    { type: "end", ts: H.iso(t + 10), status: "success" },
  ]);
  await d.waitItem("cli:live-bob");
  await d.waitItem("cli:live-done", it => it.status === "success");
  await H.until("live mine to come in", async () => (await row("cli:live-mine").count()) === 1);
  await H.rowsMatch(page, d, "status=working,blocked");
  assert.equal(await row("cli:live-bob").count(), 0, "bob's run is not on the Personal tab");
  assert.equal(await row("cli:live-done").count(), 0, "a finished run does not match working,blocked");
  d.appendRun("live-mine", { type: "end", ts: H.iso(Date.now()), status: "success" });
  await H.until("live mine to leave", async () => (await row("cli:live-mine").count()) === 0);
  await H.rowsMatch(page, d, "status=working,blocked");
  assert.equal(await page.evaluate(() => window.__agentd.listLoads), loads, "no list reload");
});

test("a click or Enter opens the panel with the item and its log; Esc and Back close it", async () => {
  await show("");
  await row("cli:a-fix-login").click();
  const panel = page.locator('#panel[data-id="cli:a-fix-login"]');
  await panel.waitFor();
  await H.until("agent= in the URL", () => urlParams().agent === "cli:a-fix-login");
  await H.until("the log line", async () => (await panel.locator("#log").innerText()).includes("hello from the log"));
  const text = await panel.innerText();
  for (const want of ["fix the flaky login test", "/home/alice/src/app", "claude-sonnet-4-5", "$0.42", "agentctl logs cli:a-fix-login"]) {
    assert.ok(text.includes(want), `panel shows ${want}:\n${text}`);
  }
  // Every field of the item is there (folded under "All fields").
  await panel.locator("#p-all > summary").click();
  const item = await d.item("cli:a-fix-login");
  const fields = await panel.locator("#p-all dt").allInnerTexts();
  for (const k of Object.keys(item)) {
    if (k === "usage" || k === "open") continue;
    assert.ok(fields.includes(k), `field ${k} in ${fields}`);
  }
  await page.keyboard.press("Escape");
  await page.locator("#panel").waitFor({ state: "hidden" });
  assert.ok(!("agent" in urlParams()));

  // Enter on a focused row; Back closes.
  await row("cli:a-migrate").focus();
  await page.keyboard.press("Enter");
  await page.locator('#panel[data-id="cli:a-migrate"]').waitFor();
  await H.until("the blocked run's log", async () => (await page.locator("#log").innerText()).includes("checking schema"));
  assert.match(await page.locator("#panel").innerText(), /waiting for approval: Bash/);
  assert.equal(await page.locator('#panel [data-action="stop"]').count(), 1, "an active item can be stopped");
  await page.goBack();
  await page.locator("#panel").waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.dataset.id), "cli:a-migrate", "focus returns to the row");

  // A shared URL with agent= opens it directly.
  await page.goto(`${origin}/?tab=all&agent=cli%3Ab-deploy`);
  await page.locator('#panel[data-id="cli:b-deploy"]').waitFor();
});

test("a conversation's panel shows its transcript and a resume command with a copy button", async () => {
  const id = `claude-code:${H.SESSION}`;
  await show("");
  await row(id).click();
  const panel = page.locator(`#panel[data-id="${id}"]`);
  await panel.waitFor();
  await H.until("the transcript", async () => (await panel.locator("#log").innerText()).includes("explain the login flow"));
  assert.match(await panel.locator("#log").innerText(), /The login flow starts in auth\.rs\./);
  const cmd = await panel.locator(".cmd code").innerText();
  assert.equal(cmd, `cd /home/alice/src/app && claude --resume ${H.SESSION}`);
  await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  await panel.locator('[data-action="copy"]').click();
  await H.until("Copied", async () => (await panel.locator('[data-action="copy"]').innerText()) === "Copied");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), cmd);
  await page.keyboard.press("Escape");
});

test("a cloud run's panel links its shared session, shows its credits and its conversation", async () => {
  await show("tab=all&source=slack");
  const r = row("cloud:r-review");
  assert.equal(await r.getAttribute("data-status"), "blocked");
  assert.match(await r.innerText(), /needs approval to push/);
  assert.match(await r.locator(".c-co").innerText(), /^1\.75 cr$/);
  await r.click();
  const panel = page.locator('#panel[data-id="cloud:r-review"]');
  await panel.waitFor();
  const link = panel.locator('a[href="https://app.warp.dev/session/r-review"]');
  assert.equal(await link.count(), 1);
  assert.equal(await link.getAttribute("target"), "_blank");
  assert.match(await link.getAttribute("rel"), /noopener/);
  assert.match(await panel.innerText(), /1\.75 credits/);
  await H.until("the conversation", async () => (await panel.locator("#log").innerText()).includes("please review the release notes"));
  await page.keyboard.press("Escape");
  // A link that is not http(s) never becomes one.
  await show("tab=all&source=linear");
  await row("cloud:r-triage").click();
  await page.locator('#panel[data-id="cloud:r-triage"]').waitFor();
  assert.equal(await page.locator('#panel a[href^="javascript:"]').count(), 0);
  await page.keyboard.press("Escape");
  // The summary counts today's credits.
  assert.match(await page.locator("#summary").innerText(), /2\.15\s*credits today/);
});

test("a working run's log follows new output while the panel is open", async () => {
  await show("");
  await row("cli:a-refactor").click();
  await page.locator('#panel[data-id="cli:a-refactor"] .following').waitFor();
  await H.until("the first output", async () => (await page.locator("#log").innerText()).includes("reading src/billing/invoice.rs"));
  d.appendRun("a-refactor", { type: "output", ts: H.iso(Date.now()), stream: "stdout", data: "\u001b[32mwriting\u001b[0m the new invoice totals\n" });
  await H.until("the new output", async () => (await page.locator("#log").innerText()).includes("writing the new invoice totals"));
  await page.keyboard.press("Escape");
});

test("item text is shown as text: markup in titles, details and paths never runs", async () => {
  await show("tab=all");
  const r = row("cli:a-xss");
  assert.equal(await r.locator(".ti").innerText(), H.XSS_TITLE);
  assert.equal(await r.locator("img, b, script").count(), 0);
  await r.click();
  await page.locator('#panel[data-id="cli:a-xss"]').waitFor();
  assert.equal(await page.locator("#panel img, #panel b, #panel script").count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  // No element anywhere carries an inline event handler.
  const handlers = await page.evaluate(() => [...document.querySelectorAll("*")]
    .flatMap(e => [...e.attributes].filter(a => a.name.startsWith("on")).map(a => `${e.tagName} ${a.name}`)));
  assert.deepEqual(handlers, []);
  await page.keyboard.press("Escape");
});

/** A child process of `pid` (from /proc), or null. */
function childOf(pid) {
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) return Number(name);
    } catch { /* gone meanwhile */ }
  }
  return null;
}

test("Stop cancels a real `agentctl run -- sleep 60` after a confirmation", async () => {
  assert.ok(fs.existsSync(H.AGENTCTL_BIN), `${H.AGENTCTL_BIN} does not exist: build it, or set AGENTCTL_BIN`);
  await show("");
  const child = spawn(H.AGENTCTL_BIN, ["run", "--title", "sleeper", "--", "sleep", "60"], {
    env: { HOME: d.home, PATH: process.env.PATH, AGENTD_STATE_DIR: d.state, AGENTD_SOCKET: d.socket, TZ: "UTC" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let exited = false;
  child.on("exit", () => { exited = true; });
  let sleepPid = null;
  try {
    const sleeper = page.locator("#rows > .row", { hasText: "sleeper" });
    await sleeper.waitFor();
    const id = await sleeper.getAttribute("data-id");
    assert.equal(await sleeper.getAttribute("data-status"), "working");
    sleepPid = await H.until("the sleep process", () => childOf(child.pid));
    await sleeper.locator('[data-action="stop"]').click();
    const dialog = page.locator("dialog#confirm");
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /sleeper/);
    await dialog.locator('[data-action="confirm-stop"]').click();
    try {
      await H.until("the row to turn canceled", async () => (await row(id).getAttribute("data-status")) === "canceled", 15_000);
    } catch (e) {
      const refused = await page.locator("#confirm-error").innerText().catch(() => "");
      throw new Error(`${e.message}\nthe page said: ${refused || "(nothing)"}`);
    }
    await H.until("agentctl to exit", () => exited);
    await H.until("the sleep process to be gone", () => !fs.existsSync(`/proc/${sleepPid}`) || fs.readFileSync(`/proc/${sleepPid}/stat`, "utf8").split(") ")[1].startsWith("Z"));
    assert.equal((await d.item(id)).status, "canceled");
  } finally {
    if (!exited) child.kill("SIGKILL");
    if (sleepPid) try { process.kill(sleepPid, "SIGKILL"); } catch { /* gone */ }
    if (await page.locator("dialog#confirm[open]").count()) await page.keyboard.press("Escape");
  }
});

test("without the cookie, the page and the API answer 401", async () => {
  const c = await browser.newContext({ viewport: DESKTOP });
  c.on("request", r => requests.push(r.url()));
  const p = await c.newPage();
  const res = await p.goto(`${origin}/?tab=all`);
  assert.equal(res.status(), 401);
  // A person, not a script: the answer says how to get in.
  assert.match(await p.locator("body").innerText(), /agentctl web/);
  const statuses = await p.evaluate(async () => Promise.all(
    ["/v1/agents", "/v1/summary", "/v1/agents/cli:a-fix-login/log"].map(u => fetch(u).then(r => r.status))));
  assert.deepEqual(statuses, [401, 401, 401]);
  const wrong = await p.goto(`${origin}/?token=not-the-token`);
  assert.equal(wrong.status(), 401);
  await c.close();
});

test("no page threw an uncaught error", () => {
  assert.deepEqual(pageErrors, []);
});

test("no request leaves agentd's origin", async () => {
  // Everything above has run: loads, filters, events, panels, logs, Stop, phone and dark.
  assert.ok(requests.length > 20, `requests seen: ${requests.length}`);
  const foreign = requests.filter(u => !u.startsWith(origin + "/") && !u.startsWith("data:") && u !== "about:blank");
  assert.deepEqual(foreign, []);
});
