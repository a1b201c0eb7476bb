// GrapeWorkerDB in Chromium: worker.html opens a database in a module worker running the
// package's worker.js (OPFS there), uploads with progress, searches, gets an error with its
// code, closes and reopens from storage. Usage: node worker.e2e.mjs <base url>; run by
// scripts/test-e2e, which serves the repository and installs playwright-core in www/e2e.
import { chromium } from "../../../www/e2e/node_modules/playwright-core/index.mjs";
import assert from "node:assert/strict";

const [base] = process.argv.slice(2);
assert.ok(base, "usage: node worker.e2e.mjs <base url>");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console error: ${m.text()}`); });
  await page.goto(`${base}/js/test/browser/worker.html`);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60_000 });
  const out = await page.evaluate(() => window.result);
  assert.deepEqual(out, {
    backend: "opfs",
    uploaded: { inserted: 50, updated: 0 },
    progress: [[20, 50], [40, 50], [50, 50]],
    best: 0,
    count: 10,
    error: [true, "DimensionMismatch"],
    closed: "number",
    afterClose: "Closed",
    reopened: 50,
    state: "Ready",
  });
  assert.deepEqual(errors, []);
  console.log("worker module passed: upload with progress, search, errors with codes, reopen from OPFS");
} finally {
  await browser.close();
}
