// GrapeWorkerDB in Chromium: worker.html opens a database in a module worker running the
// package's worker.js (OPFS there), uploads with progress, searches, gets an error with its
// code, closes and reopens from storage, imports an archive streamed to the worker. Usage: node worker.e2e.mjs <base url>; run by
// scripts/test-e2e, which serves the repository and installs playwright-core in www/e2e.
import assert from "node:assert/strict";
import { pageResult } from "./page-result.mjs";

const [base] = process.argv.slice(2);
assert.ok(base, "usage: node worker.e2e.mjs <base url>");
const { result, errors } = await pageResult(`${base}/js/test/browser/worker.html`);
assert.deepEqual(result, {
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
  imported: [50, 50, "Corrupt", 0],
});
assert.deepEqual(errors, []);
console.log("worker module passed: upload with progress, search, errors with codes, reopen from OPFS, imports streamed in");
