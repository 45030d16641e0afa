// Audit over a HAR a real browser wrote: Debian's Chromium, headless, driven by playwright-core,
// records a HAR (`recordHar`) while it sends the audit tests' traffic through candor; then
// `candor audit --har` over that file must find what candor's live observation of the same
// traffic found, kind for kind and count for count.
//
// tests/browser/run.sh starts tests/audit/legacy.py and candor (tests/browser/audit.toml) and
// runs this file with node's test runner, passing:
//   CANDOR_PROXY  candor's proxy address, HOST:PORT
//   CANDOR_ADMIN  candor's admin address, HOST:PORT
//   CANDOR_BIN    the candor binary
//   HAR           where to write the HAR

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const PROXY = required("CANDOR_PROXY");
const ADMIN = required("CANDOR_ADMIN");
const BIN = required("CANDOR_BIN");
const HAR = required("HAR");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const TRAFFIC = JSON.parse(readFileSync(path.join(HERE, "../audit/traffic.json"), "utf8"));

// As in status.spec.mjs: Chromium must not dial out.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests/browser/run.sh`);
  return value;
}

/** (method route kind) → count, for comparing reports. */
function findings(report) {
  const out = {};
  for (const route of report.routes) {
    for (const f of route.findings) out[`${route.method} ${route.route} ${f.kind}`] = f.count;
  }
  return out;
}

test("candor audit --har over Chromium's HAR finds what live observation found", async () => {
  const profile = mkdtempSync(path.join(tmpdir(), "candor-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    recordHar: { path: HAR, content: "embed" },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    // Same origin as the API, so the page's fetches need no CORS.
    await page.goto(`http://${PROXY}/`);
    for (const entry of TRAFFIC.observed) {
      const status = await page.evaluate(async (e) => {
        const init = { method: e.method, headers: { ...(e.headers ?? {}) } };
        if (e.body) {
          init.body = e.body;
          init.headers["content-type"] = "application/json";
        }
        const response = await fetch(e.path, init);
        await response.arrayBuffer();
        return response.status;
      }, entry);
      assert.ok(status >= 200, `${entry.method} ${entry.path}: ${status}`);
    }
  } finally {
    // Closing the context writes the HAR.
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }

  const har = JSON.parse(readFileSync(HAR, "utf8"));
  assert.ok(har.log.entries.length >= TRAFFIC.observed.length, "the HAR holds the traffic");

  const offline = JSON.parse(execFileSync(BIN, ["audit", "--har", HAR, "--json"], { encoding: "utf8" }));
  // candor records an exchange once its body has gone by, off the request path: wait until it
  // has counted every one the HAR holds. (Chromium's own favicon request reaches candor but
  // is not in the HAR, so live may count one more.)
  let live;
  for (let i = 0; i < 200; i++) {
    live = await (await fetch(`http://${ADMIN}/audit.json`)).json();
    if (live.exchanges >= offline.exchanges) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(Object.keys(findings(live)).length >= 14, JSON.stringify(findings(live), null, 1));
  assert.deepEqual(findings(offline), findings(live));
  assert.ok(live.exchanges >= offline.exchanges, `live ${live.exchanges}, HAR ${offline.exchanges}`);
  assert.ok(live.exchanges <= offline.exchanges + 1, `live ${live.exchanges}, HAR ${offline.exchanges}`);
  console.log(`audit: live ${live.exchanges} exchanges, ${Object.keys(findings(live)).length} findings; the same findings from the HAR (${har.log.entries.length} entries, ${offline.exchanges} exchanges, ${har.log.creator.name} ${har.log.creator.version})`);
});
