// A development server for the management page: serves a working copy of index.html at `/` and
// passes every other request through to a running agentd, so the page can be changed and
// reloaded without rebuilding the daemon.
//
//   node tests/web/devserver.mjs --target 127.0.0.1:7431 [--page daemon/src/api/index.html] [--port 7432]
//
// Then open http://127.0.0.1:7432/?token=$(cat <state dir>/token). `/` still goes to agentd first,
// so the token check and the login cookie are agentd's own; only the page's body is replaced.
// The browser tests use it when AGENTD_PAGE names a page file.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_PAGE = path.resolve(here, "../../daemon/src/api/index.html");

/**
 * Starts the server. `target` is agentd's TCP address (host:port); `page` the HTML file served at
 * `/` (read on every request). Resolves to { url, close }.
 */
export function startDevServer({ target, page = DEFAULT_PAGE, port = 0, host = "127.0.0.1" }) {
  const [targetHost, targetPort] = splitAddr(target);
  const server = http.createServer((req, res) => forward(req, res, { target, targetHost, targetPort, page }));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        url: `http://${host}:${addr.port}`,
        close: () => new Promise(done => { server.closeAllConnections?.(); server.close(() => done()); }),
      });
    });
  });
}

function splitAddr(addr) {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), Number(addr.slice(i + 1))];
}

/** Passes one request to agentd, as if the browser had sent it there (its Host and Origin). */
function forward(req, res, { target, targetHost, targetPort, page }) {
  const headers = { ...req.headers, host: target };
  if (headers.origin) headers.origin = `http://${target}`;
  const isPage = req.method === "GET" && new URL(req.url, "http://x").pathname === "/";
  const up = http.request({ host: targetHost, port: targetPort, method: req.method, path: req.url, headers }, upRes => {
    const type = String(upRes.headers["content-type"] || "");
    if (isPage && upRes.statusCode === 200 && type.startsWith("text/html")) {
      upRes.resume();
      let body;
      try {
        body = fs.readFileSync(page);
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`cannot read ${page}: ${e.message}\n`);
        return;
      }
      const out = { ...upRes.headers, "content-length": String(body.length), "cache-control": "no-store" };
      delete out["transfer-encoding"];
      res.writeHead(200, out);
      res.end(body);
      return;
    }
    res.writeHead(upRes.statusCode, upRes.headers);
    // Streams (events, followed logs) pass through as they come.
    res.flushHeaders();
    upRes.pipe(res);
  });
  up.on("error", e => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "upstream", message: `agentd at ${target}: ${e.message}` } }));
  });
  res.on("close", () => up.destroy());
  req.pipe(up);
}

// Command line use.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = name => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const target = arg("target") || process.env.AGENTD_HTTP || "127.0.0.1:7431";
  const page = path.resolve(arg("page") || DEFAULT_PAGE);
  const { url } = await startDevServer({ target, page, port: Number(arg("port") || 7432) });
  console.log(`serving ${page} at ${url}/ (everything else from agentd at ${target})`);
}
