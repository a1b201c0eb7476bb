// Every documented call of the package, type-checked by `tsc --strict` (types.test.mjs) with a
// `lib` that predates `Symbol.dispose`; `@ts-expect-error` lines must stay errors.
import { GrapeDB, GrapeSharedDB, GrapeWorkerDB, idFromString, init } from "../../pkg/index.js";
import type { ErrorCode, Filter, GrapeError, Metrics, QueryResponse, ScoredPoint } from "../../pkg/index.js";

export async function everyCall(): Promise<void> {
  await init();
  const db: GrapeDB = await GrapeDB.open({ name: "notes", dimension: 3, storage: "auto", payloadIndexes: ["tag"] });
  const inNode: GrapeDB = await GrapeDB.open({ dimension: 3, path: "./data/notes", durability: "sync", quantization: "sq8", vectorsOnDisk: true });
  const onDisk: "fs" | "opfs" | "indexeddb" | "memory" = inNode.stats().backend;
  await inNode.close();
  const summary: { inserted: number; updated: number } = db.upsert([
    { id: 1, vector: [1, 0, 0], payload: { tag: "a" } },
    { id: idFromString("note-1"), vector: new Float32Array([0, 1, 0]) },
  ]);
  const uploaded: { inserted: number; updated: number } = await db.uploadPoints(
    [{ id: 3, vector: [0, 0, 1] }],
    { batchSize: 500, onProgress: (done: number, total: number) => console.log(`${done} of ${total}`) },
  );
  await db.uploadPoints([]);
  const ring = [{ lat: 0, lon: 0 }, { lat: 0, lon: 1 }, { lat: 1, lon: 1 }, { lat: 0, lon: 0 }];
  const places = db.count({ must: [{ key: "at", geo_polygon: { exterior: { points: ring }, interiors: [] } }] });
  const filter: Filter = { must: [{ key: "tag", match: { value: "a" } }, { key: "n", range: { gte: 1, lt: "2026-01-01T00:00:00Z" } }] };
  const hits = db.search([1, 0, 0]);
  const filtered = db.search(new Float32Array(3), { limit: 5, filter, withPayload: true, scoreThreshold: 0.1 });
  const batches = db.searchBatch([new Float32Array(3)], { quantization: { ignore: false, rescore: true, oversampling: 2 } });
  const n: number = db.count() + db.count(filter) + db.delete([1, "936da01f-9abd-4d9d-80c7-02af85c822a8"]) + db.deleteByFilter({ must_not: [{ has_id: [2] }] });
  const page = db.scroll();
  const next = db.scroll({ limit: 10, offset: page.next_page_offset ?? undefined, filter: { should: [{ is_empty: { key: "tag" } }] } });
  const exported = db.exportPoints();
  const points = db.get([1, idFromString("note-1")]);
  const stats = db.stats();
  const backend: "opfs" | "indexeddb" | "memory" | "fs" = stats.backend;
  const report = db.openReport();
  const metrics = db.metrics();
  const text = db.metrics(true);
  const health = await db.health();
  await db.flush();
  await db.checkpoint();
  const bytes: Uint8Array = db.exportBytes();
  const blob: Blob = await (await fetch("/notes.grape")).blob();
  for (const source of [bytes, blob, blob.stream(), await fetch("/notes.grape")]) {
    await (await GrapeDB.open({ name: "copy", dimension: 3, import: source })).close();
  }
  const state: "Ready" | "Busy" | "Shutting" | "Closed" = db.state;
  const shutdown = await db.close();
  await GrapeDB.destroy("notes");
  try {
    db.search([1, 0, 0]);
  } catch (e) {
    const code: ErrorCode = (e as GrapeError).code;
    console.log(code);
  }
  console.log(onDisk, summary, uploaded, places, hits[0]?.score, filtered, batches.length, n, next.points.length, exported.points, points[0]?.payload,
    backend, report.wal_records_replayed, (metrics as Metrics).queries, typeof text, health.status, bytes, state,
    shutdown.checkpoint?.secs);
  // @ts-expect-error: a misspelt condition is a type error, not a filter that matches nothing
  db.count({ must: [{ key: "tag", mach: { value: "a" } }] });
  const words: GrapeDB = await GrapeDB.open({ dimension: 3, sparseVectors: { text: { bm25: true }, tags: { modifier: "idf" }, tuned: { bm25: { k: 1.5, avgLen: 20 } } } });
  words.upsert([{ id: 1, vector: { "": new Float32Array(3), text: { text: "red grapes" }, tags: { indices: Uint32Array.of(4), values: [1] } } }]);
  const bm25: QueryResponse = words.query({ query: { text: "grapes" }, using: "text", limit: 5, with_payload: ["title", "meta.tags"] });
  words.query({ query: { text: "grapes" }, using: "text", with_payload: { exclude: ["body"] }, with_vector: ["", "tags"] });
  const hybrid = words.query({
    prefetch: [{ query: [1, 0, 0], limit: 20, params: { hnsw_ef: 64 } }, { query: { text: "grapes", model: "qdrant/bm25" }, using: "text", limit: 20 }],
    query: { fusion: "rrf" },
    filter,
    score_threshold: 0,
  });
  const weighted = words.query({ prefetch: [{ query: [1, 0, 0] }, { query: { text: "red" }, using: "text" }], query: { rrf: { k: 60, weights: [2, 1] } } });
  const vectors = hybrid.points[0]?.vector;
  const sparseBack = vectors !== undefined && !Array.isArray(vectors) ? vectors.tags : undefined;
  // @ts-expect-error: Qdrant's fusions are "rrf" and "dbsf"
  words.query({ query: { fusion: "max" } });
  // @ts-expect-error: the Query API takes Qdrant's snake_case names
  words.query({ query: [1, 0, 0], withPayload: true });
  const named: GrapeDB = await GrapeDB.open({ dimension: 2, namedVectors: { image: { size: 3, distance: "Dot" } } });
  named.upsert([{ id: 1, vector: { "": [1, 0], image: Float32Array.of(1, 2, 3) } }]);
  const byImage: ScoredPoint[] = named.search([1, 2, 3], { using: "image", limit: 3 });
  named.query({ query: [1, 2, 3], using: "image", with_vector: ["image"] });
  // @ts-expect-error: a named vector's distance is one of Qdrant's four
  await GrapeDB.open({ dimension: 2, namedVectors: { image: { size: 3, distance: "Hamming" } } });
  console.log(bm25.points.length, sparseBack, weighted.points.length, byImage.length);
  // @ts-expect-error: states are a closed set
  const wrong: typeof db.state = "Open";
  console.log(wrong);
}

export async function inAWorker(worker: Worker): Promise<number> {
  const db = await GrapeWorkerDB.open(worker, { name: "notes", dimension: 3 });
  await db.uploadPoints([{ id: 1, vector: [1, 0, 0] }], { onProgress: (done, total) => console.log(done / total) });
  const hits: { id: number | string; score: number }[] = await db.search([1, 0, 0], { limit: 1 });
  const found: QueryResponse = await db.query({ query: [1, 0, 0], limit: 1 });
  const state: "Ready" | "Busy" | "Shutting" | "Closed" = await db.state();
  await db.close();
  await GrapeWorkerDB.destroy(worker, "notes");
  return hits.length + found.points.length + (state === "Ready" ? 1 : 0) + (await db.count().catch(() => 0));
}

export async function inEveryTab(): Promise<number> {
  const db: GrapeSharedDB = await GrapeSharedDB.open({ name: "notes", dimension: 3 });
  const leads: boolean = db.isLeader;
  await db.upsert([{ id: 1, vector: [1, 0, 0] }]);
  const hits: { id: number | string; score: number }[] = await db.search([1, 0, 0], { limit: 1 });
  const report = await db.close();
  // @ts-expect-error: only the tab that held the database gets a report
  const drained: number = report.operations_drained;
  return hits.length + (leads ? 1 : 0) + (report?.operations_drained ?? 0) + drained;
}
