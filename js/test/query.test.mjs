// The Query API from JS (`db.query`), checked against answers computed here by brute force:
// sparse dot products, BM25 text in and out, RRF fusion of two lists, vectors as typed arrays,
// errors with codes, and sparse vectors that outlive the process on Node's files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rng } from "./rng.mjs";

const entry = fileURLToPath(new URL("../../pkg/index.js", import.meta.url));
const { GrapeDB } = await import(entry);


/** `n` points with a dense vector of 4 and a sparse vector of up to 6 of 40 indices, continuous values (no ties). */
function generated(n, seed) {
  const next = rng(seed);
  return Array.from({ length: n }, (_, id) => {
    const indices = [...new Set(Array.from({ length: 1 + Math.floor(next() * 6) }, () => Math.floor(next() * 40)))];
    const values = indices.map(() => 0.05 + next());
    const dense = Float32Array.from({ length: 4 }, () => next() - 0.5);
    return { id, vector: { "": dense, tags: { indices: Uint32Array.from(indices), values: Float32Array.from(values) } }, payload: { odd: id % 2 === 1 } };
  });
}

/** The exact top `limit` by sparse dot product (f32 products, as the database computes), zero scores left out. */
function bruteSparse(points, query, limit, keep = () => true) {
  const q = new Map(query.indices.map((i, k) => [i, query.values[k]]));
  return points
    .filter(keep)
    .map((p) => {
      const v = p.vector.tags;
      let score = 0, shared = false;
      v.indices.forEach((i, k) => {
        if (q.has(i)) { shared = true; score = Math.fround(score + Math.fround(Math.fround(v.values[k]) * Math.fround(q.get(i)))); }
      });
      return { id: p.id, score, shared };
    })
    .filter((h) => h.shared && h.score !== 0)
    .sort((a, b) => b.score - a.score || a.id - b.id)
    .slice(0, limit);
}

test("sparse queries give the exact top k, with filters, typed arrays and Qdrant's JSON", async () => {
  const db = await GrapeDB.open({ dimension: 4, storage: "memory", sparseVectors: { tags: {} } });
  const points = generated(300, 7);
  assert.deepEqual(db.upsert(points), { inserted: 300, updated: 0 });
  const next = rng(99);
  for (let round = 0; round < 40; round++) {
    const indices = [...new Set([0, 1, 2].map(() => Math.floor(next() * 40)))];
    const query = { indices, values: indices.map(() => next() + 0.1) };
    const want = bruteSparse(points, query, 7);
    const typed = { indices: Uint32Array.from(indices), values: Float32Array.from(query.values) };
    const { points: got } = db.query({ query: round % 2 ? query : typed, using: "tags", limit: 7 });
    assert.deepEqual(got.map((h) => h.id), want.map((h) => h.id), `round ${round}`);
    got.forEach((h, k) => assert.ok(Math.abs(h.score - want[k].score) < 1e-5));
    assert.equal(got[0]?.payload, undefined, "payloads only when asked, as in Qdrant");
    const filter = { must: [{ key: "odd", match: { value: true } }] };
    const odd = db.query({ query: { nearest: query }, using: "tags", limit: 5, filter, with_payload: true });
    assert.deepEqual(odd.points.map((h) => h.id), bruteSparse(points, query, 5, (p) => p.id % 2 === 1).map((h) => h.id));
    assert.ok(odd.points.every((h) => h.payload.odd === true));
  }
  const [withVectors] = db.query({ query: [0.1, 0.2, 0.3, 0.4], limit: 1, with_vector: true }).points;
  assert.equal(withVectors.vector[""].length, 4);
  assert.ok(Array.isArray(withVectors.vector.tags.indices));
  await db.close();
});

test("a hybrid query fuses a dense and a sparse list by RRF, as computed here from the two lists", async () => {
  const db = await GrapeDB.open({ dimension: 4, storage: "memory", sparseVectors: { tags: {} }, hnsw: false });
  db.upsert(generated(200, 3));
  const dense = Float32Array.of(0.3, -0.2, 0.1, 0.4);
  const sparse = { indices: [3, 17, 29], values: [0.5, 1, 0.25] };
  const denseList = db.query({ query: dense, limit: 20 }).points;
  const sparseList = db.query({ query: sparse, using: "tags", limit: 20 }).points;
  const fused = new Map();
  for (const list of [denseList, sparseList]) {
    list.forEach((h, rank) => fused.set(h.id, (fused.get(h.id) ?? 0) + 1 / (rank + 2)));
  }
  const want = [...fused].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 10);
  const got = db.query({
    prefetch: [{ query: dense, limit: 20 }, { query: sparse, using: "tags", limit: 20 }],
    query: { fusion: "rrf" },
    limit: 10,
  }).points;
  assert.deepEqual(got.map((h) => h.score.toFixed(6)), want.map(([, s]) => s.toFixed(6)));
  // RRF scores tie (a point 3rd in one list and absent from the other, another the same): the
  // scores above fix the order up to ties, and each group of tied points that the page holds
  // whole must be the same points.
  const all = [...fused.values()];
  const idsScoring = (list, s) => list.filter((h) => h.score.toFixed(6) === s.toFixed(6)).map((h) => h.id).sort();
  let checked = 0;
  for (const s of new Set(want.map(([, s]) => s))) {
    const group = want.filter(([, t]) => t === s).map(([id]) => id).sort();
    if (all.filter((t) => t === s).length !== group.length) continue; // cut by the limit
    assert.deepEqual(idsScoring(got, s), group);
    checked += group.length;
  }
  assert.ok(checked >= 5, `the check compares some ids (${checked})`);
  await db.close();
});

test("BM25 built in: text in, ranked by words, and malformed queries are errors with codes", async () => {
  const db = await GrapeDB.open({ dimension: 2, storage: "memory", sparseVectors: { words: { bm25: true } } });
  const texts = ["a red apple", "a green pear", "red wine and red grapes", "the grapes of wrath, a long novel"];
  db.upsert(texts.map((text, id) => ({ id, vector: { "": [1, id], words: { text } }, payload: { text } })));
  const found = db.query({ query: { text: "red grapes" }, using: "words", limit: 3, with_payload: true }).points;
  assert.deepEqual(found.map((h) => h.id), [2, 0, 3]);
  assert.equal(found[0].payload.text, texts[2]);
  // Payload fields selected as Qdrant selects them.
  const only = db.query({ query: { text: "red" }, using: "words", limit: 1, with_payload: ["missing"] }).points;
  assert.deepEqual(only[0].payload, {});
  const kept = db.query({ query: { text: "red" }, using: "words", limit: 1, with_payload: { exclude: ["missing"] } }).points;
  assert.equal(kept[0].payload.text, texts[2]);
  const refused = (request, code, says) => assert.throws(() => db.query(request), (e) => {
    assert.equal(e.code, code);
    assert.match(e.message, says);
    return true;
  });
  refused({ query: { nearst: [1, 0] } }, "MalformedRequest", /unknown field `nearst`/);
  refused({ query: { fusion: "max" }, prefetch: { query: [1, 0] } }, "MalformedRequest", /unknown fusion/);
  refused({ query: { text: "red" }, using: "body" }, "InvalidArgument", /body/);
  refused({ query: { text: "red" }, using: "words", limt: 3 }, "MalformedRequest", /limt/);
  refused({ query: [1, 2, 3] }, "DimensionMismatch", /dimension/);
  // Nested past any sensible depth, or in a cycle: an error, not a stack overflow.
  let deep = { key: "text", match: { value: "x" } };
  for (let i = 0; i < 5000; i++) deep = { must: [deep] };
  refused({ query: { text: "red" }, using: "words", filter: deep }, "MalformedRequest", /nested more than/);
  const cycle = { must: [] };
  cycle.must.push(cycle);
  refused({ query: { text: "red" }, using: "words", filter: cycle }, "MalformedRequest", /nested more than/);
  assert.equal(db.query({ query: { text: "red" }, using: "words" }).points.length, 2, "still answering");
  await db.close();
});

test("sparse vectors and their BM25 index outlive the process on Node's files", async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), "grape-node-query-")), "db");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const options = { dimension: 2, path: dir, sparseVectors: { words: { bm25: true } } };
  const ask = (db) => db.query({ query: { text: "grapes" }, using: "words", limit: 5 }).points.map((h) => h.id);
  let db = await GrapeDB.open(options);
  db.upsert([
    { id: 1, vector: { "": [1, 0], words: { text: "grapes and wine" } } },
    { id: 2, vector: { "": [0, 1], words: { text: "grapes" } } },
  ]);
  await db.close();
  db = await GrapeDB.open(options);
  assert.deepEqual(ask(db), [2, 1], "replayed from the log");
  db.upsert([{ id: 3, vector: { "": [1, 1], words: { text: "no match here" } } }]);
  await db.checkpoint();
  await db.close();
  db = await GrapeDB.open(options);
  assert.deepEqual(ask(db), [2, 1], "read from the segment");
  await db.close();
  // The database keeps the declaration: opened without it, it searches as declared; declared
  // otherwise, it refuses to open.
  db = await GrapeDB.open({ dimension: 2, path: dir });
  assert.deepEqual(ask(db), [2, 1], "declared by the database itself");
  await db.close();
  await assert.rejects(GrapeDB.open({ ...options, sparseVectors: { words: {} } }), (e) => e.code === "InvalidConfig");
});
