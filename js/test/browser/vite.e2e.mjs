// The packed package in a fresh Vite app (js/test/vite-app, built by scripts/test-e2e from the
// npm tarball), served as built and run in Chromium: a database in the page on IndexedDB and one
// in a worker on OPFS. Usage: node vite.e2e.mjs <base url of the built app>.
import assert from "node:assert/strict";
import { pageResult } from "./page-result.mjs";

const [base] = process.argv.slice(2);
assert.ok(base, "usage: node vite.e2e.mjs <base url>");
const { result, errors } = await pageResult(`${base}/`);
assert.deepEqual(result, {
  pageBackend: "indexeddb",
  pageHit: "first-note",
  workerBackend: "opfs",
  workerBest: 1,
});
assert.deepEqual(errors, []);
console.log("the packed package works in a Vite app: page on IndexedDB, worker on OPFS");
