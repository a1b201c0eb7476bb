// A web developer's first page with the package, built by Vite from the npm tarball: a
// database in the page (IndexedDB) and one in a worker (OPFS). vite.e2e.mjs reads window.result.
import { GrapeDB, GrapeWorkerDB, idFromString } from "grape-vector-db";

async function run() {
  const out = {};
  const db = await GrapeDB.open({ name: "vite-page", dimension: 3 });
  out.pageBackend = db.stats().backend;
  db.upsert([{ id: idFromString("first-note"), vector: [1, 0, 0], payload: { key: "first-note" } }]);
  out.pageHit = db.search([1, 0.1, 0], { limit: 1 })[0].payload.key;
  await db.close();

  const worker = new Worker(new URL("./db-worker.js", import.meta.url), { type: "module" });
  const remote = await GrapeWorkerDB.open(worker, { name: "vite-worker", dimension: 3 });
  out.workerBackend = (await remote.stats()).backend;
  await remote.uploadPoints([{ id: 1, vector: [0, 1, 0] }, { id: 2, vector: [0, 0, 1] }]);
  out.workerBest = (await remote.search([0, 1, 0.1], { limit: 1 }))[0].id;
  await remote.close();
  return out;
}

run().then((out) => { window.result = out; }, (e) => { window.result = { failed: `${e.code}: ${e.message}` }; });
