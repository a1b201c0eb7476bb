// GrapeSharedDB in Chromium: three tabs of one origin use one database at once. The first holds
// it and serves the others; a follower writes and another reads; errors keep their code; then
// the leader's tab is closed while a follower is writing, and every write that was answered is
// there, served by the tab that took over; a tab opened after that joins the new leader, and a
// graceful close hands the database on once more. Then a worker leads and a page takes over from
// it when it is terminated. Usage: node tabs.e2e.mjs <base url>; run by
// scripts/test-e2e.
import assert from "node:assert/strict";
import { launch, pageResult, watchErrors } from "./page-result.mjs";

const [base] = process.argv.slice(2);
assert.ok(base, "usage: node tabs.e2e.mjs <base url>");
const browser = await launch();
const errors = [];
try {
  const context = await browser.newContext();
  const openTab = async () => {
    const page = await context.newPage();
    watchErrors(page, errors);
    await page.goto(`${base}/js/test/browser/tabs.html`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 30_000 });
    return page;
  };
  const isLeader = (page) => page.evaluate(() => window.db.isLeader);
  const count = (page) => page.evaluate(() => window.db.count());
  const [a, b, c] = [await openTab(), await openTab(), await openTab()];
  assert.deepEqual([await isLeader(a), await isLeader(b), await isLeader(c)], [true, false, false]);

  await b.evaluate(async () => {
    for (let i = 0; i < 20; i++) await window.db.upsert([{ id: i, vector: [1, i, 0], payload: { by: "b" } }]);
  });
  assert.equal(await count(c), 20, "a write of one follower is seen by another");
  const [best] = await c.evaluate(() => window.db.search([1, 7, 0], { limit: 1 }));
  assert.equal(best.id, 7);
  assert.equal(await c.evaluate(() => window.db.upsert([{ id: 1, vector: [1] }]).catch((e) => e.code)),
    "DimensionMismatch");

  // The leader's tab closes while c writes one point at a time: b, next in the lock's queue,
  // takes over, and c sends it the call that a never answered.
  const writing = c.evaluate(async () => {
    const answered = [];
    for (let i = 100; i < 400; i++) {
      await window.db.upsert([{ id: i, vector: [0, 1, i] }]);
      answered.push(i);
    }
    return answered;
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok((await count(b)) < 320, "the writes were still going when the leader closed");
  await a.close();
  const answered = await writing;
  assert.equal(answered.length, 300);
  assert.equal(await count(c), 320, "every answered write outlived the leader's tab");
  assert.deepEqual([await isLeader(b), await isLeader(c)], [true, false], "b took over");

  const d = await openTab();
  assert.equal(await isLeader(d), false);
  assert.equal(await count(d), 320);
  await b.evaluate(() => window.db.close());
  assert.equal(await d.evaluate(() => window.db.delete([0, 1])), 2, "served by the next leader");
  assert.equal(await count(d), 318);
  assert.deepEqual([await isLeader(c), await isLeader(d)], [true, false], "c took over");
  await context.close();
} finally {
  await browser.close();
}
assert.deepEqual(errors, []);

// A worker leads and a page follows; the worker is terminated and the page takes over the same
// stored database (a page cannot open the OPFS handles a worker can: both must store alike).
const shared = await pageResult(`${base}/js/test/browser/tabs-worker.html`);
assert.deepEqual(shared.result, {
  worker: { isLeader: true, backend: "indexeddb" },
  pageLeads: false,
  served: 20,
  after: 20,
  pageLeadsAfter: true,
  backend: "indexeddb",
});
assert.deepEqual(shared.errors, []);
console.log("shared tabs passed: one leader serves the others, a closed leader's tab or worker loses no answered write");
