// The packed package in a fresh Vite app (js/test/vite-app, built by scripts/test-e2e from the
// npm tarball), served as built and run in Chromium: a database in the page on IndexedDB and one
// in a worker on OPFS. Usage: node vite.e2e.mjs <base url of the built app>.
import { chromium } from "../../../www/e2e/node_modules/playwright-core/index.mjs";
import assert from "node:assert/strict";

const [base] = process.argv.slice(2);
assert.ok(base, "usage: node vite.e2e.mjs <base url>");
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
  await page.goto(`${base}/`);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 60_000 });
  assert.deepEqual(await page.evaluate(() => window.result), {
    pageBackend: "indexeddb",
    pageHit: "first-note",
    workerBackend: "opfs",
    workerBest: 1,
  });
  assert.deepEqual(errors, []);
  console.log("the packed package works in a Vite app: page on IndexedDB, worker on OPFS");
} finally {
  await browser.close();
}
