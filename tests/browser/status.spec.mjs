// The status page in a real browser: Debian's Chromium, headless, driven by playwright-core.
//
// tests/browser/run.sh starts the legacy upstream and candor (with tests/browser/candor.toml)
// and runs this file with node's test runner, passing:
//   CANDOR_PROXY  candor's proxy address, HOST:PORT
//   CANDOR_ADMIN  candor's admin address, HOST:PORT
//   SCREENSHOT    where to save the screenshot of the page
// The test sends its own traffic, so it knows every count the page must show.

import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const PROXY = required("CANDOR_PROXY");
const ADMIN = required("CANDOR_ADMIN");
const SCREENSHOT = required("SCREENSHOT");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

// Without the background-networking flags Chromium keeps dialling out, and this machine has no
// outside network: see the machine notes ("Known to work").
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

// A path and a request id a hostile client chose: the page must show them as text. (hyper
// refuses a raw `<` in a request target with a 400; quotes and braces get through.)
const HOSTILE_PATH = "/users/\"'onfocus=alert(1)'{x}%3Cb%3E";
// candor keeps a request id of printable ASCII without spaces, so markup can arrive that way.
const HOSTILE_ID = '"><img/src=x/onerror=alert(1)><b>bold</b>';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests/browser/run.sh`);
  return value;
}

/** Sends a request through candor; returns the status. */
async function call(method, target, id) {
  const response = await fetch(`http://${PROXY}${target}`, {
    method,
    headers: { "x-request-id": id },
  });
  await response.arrayBuffer();
  return response.status;
}

/** Sends a request with a raw, unencoded target (fetch would percent-encode `<`). */
function rawCall(target, id) {
  return new Promise((resolve, reject) => {
    const [host, port] = PROXY.split(":");
    const socket = net.connect(Number(port), host);
    let answer = "";
    socket.setEncoding("latin1");
    socket.on("connect", () =>
      socket.write(
        `GET ${target} HTTP/1.1\r\nHost: api.example\r\nx-request-id: ${id}\r\n` +
          "Connection: close\r\n\r\n",
      ),
    );
    socket.on("data", (chunk) => (answer += chunk));
    socket.on("end", () => resolve(Number(answer.split(" ")[1])));
    socket.on("error", reject);
  });
}

/** Launches Chromium with a fresh, empty profile; closes it and removes the profile after `t`. */
async function browser(t, options = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), "candor-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1360, height: 900 },
    ...options,
  });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // Script errors, CSP violations (reported as console errors) and any dialog fail the test.
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
  return { page, problems };
}

/** The text of each cell of each body row of `table`; a cell's first text only (no badges). */
function rows(page, table) {
  return page.$$eval(`#${table} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.cells].map((td) => (td.firstChild?.textContent ?? "").trim())),
  );
}

test("after traffic the page shows every rule and the rewrites with their counts, live", async (t) => {
  for (let i = 0; i < 5; i++) assert.equal(await call("GET", "/users/7", `u-${i}`), 404);
  for (let i = 0; i < 3; i++) assert.equal(await call("GET", "/ok", `ok-${i}`), 200);
  for (let i = 0; i < 2; i++) assert.equal(await call("GET", "/orders/1", `o-${i}`), 200);
  for (let i = 0; i < 2; i++) assert.equal(await call("GET", "/profile", `h-${i}`), 404);
  assert.equal(await rawCall(HOSTILE_PATH, HOSTILE_ID), 404);

  const { page, problems } = await browser(t);
  const response = await page.goto(`http://${ADMIN}/`);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  assert.match(headers["content-security-policy"], /^default-src 'none'; /);
  assert.equal(headers["x-content-type-options"], "nosniff");

  // The first render, once /status.json has been fetched.
  await page.waitForFunction(() => document.querySelector("#live.ok") !== null);
  assert.deepEqual(await rows(page, "rewrites"), [
    ["200", "404", "enforce", "6"],
    ["200", "500", "shadow", "2"],
    ["404", "404", "enforce", "2"],
  ]);
  assert.deepEqual(await rows(page, "rules"), [
    ["user-not-found", "enforce", "6", "0"],
    ["watch-orders", "shadow", "0", "2"],
    ["never-matches", "enforce", "0", "0"],
    ["scrub", "enforce", "0", "0"],
    ["html-errors", "enforce", "2", "0"],
    ["retry-after", "enforce", "0", "0"],
  ]);
  assert.deepEqual(await rows(page, "statuses"), [
    ["200", "5"],
    ["404", "8"],
  ]);
  assert.equal(await page.textContent("#total"), "13");
  assert.equal(await page.textContent("#origin"), "tests/browser/candor.toml");
  // Audit is off in this config: its section says so, with an empty table.
  assert.match(await page.textContent("#audit-summary"), /^off: 0 exchanges observed, 0 skipped/);
  assert.deepEqual(await rows(page, "audit"), [["audit is off ([audit] enabled = false)"]]);
  const headings = await page.$$eval("#recent thead th", (ths) => ths.map((th) => th.textContent));
  assert.deepEqual(headings, [
    "Time (UTC)", "Method", "Path", "From", "To", "Rule", "Mode", "Request id",
  ]);

  // Newest first; the hostile path and id are shown as the text they are, never as markup.
  const recent = await rows(page, "recent");
  assert.equal(recent.length, 10);
  assert.deepEqual(recent[0].slice(1), [
    "GET", HOSTILE_PATH, "200", "404", "user-not-found", "enforce", HOSTILE_ID,
  ]);
  assert.deepEqual(recent[1].slice(1), [
    "GET", "/profile", "404", "404", "html-errors", "enforce", "h-1",
  ]);
  assert.deepEqual(recent.at(-1).slice(1), [
    "GET", "/users/7", "200", "404", "user-not-found", "enforce", "u-0",
  ]);
  assert.equal(await page.locator("img, b").count(), 0);

  // More traffic while the page is open: it catches up within its one-second refresh.
  assert.equal(await call("GET", "/users/7", "live-1"), 404);
  assert.equal(await call("GET", "/users/7", "live-2"), 404);
  await page.waitForFunction(
    () => document.querySelector("#rewrites tbody tr").cells[3].textContent === "8",
    null,
    { timeout: 5000 },
  );
  assert.equal((await rows(page, "recent"))[0].at(-1), "live-2");
  assert.equal(await page.textContent("#total"), "15");

  assert.deepEqual(problems, []);
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`screenshot: ${SCREENSHOT}`);
});

test("without JavaScript the page says where the data is", async (t) => {
  const { page } = await browser(t, { javaScriptEnabled: false });
  await page.goto(`http://${ADMIN}/`);
  const text = await page.textContent("noscript");
  assert.match(text, /JavaScript, which is turned off/);
  assert.equal(await page.getAttribute("noscript a", "href"), "/status.json");
});
