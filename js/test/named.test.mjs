// Named dense vectors from JS: declared in `namedVectors`, carried as typed arrays or plain
// arrays beside the unnamed vector, searched with `using` (search options and the Query API)
// and checked against a brute force computed here, returned in Qdrant's shape, kept on Node's
// files across restarts, and refused with codes when misused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rng } from "./rng.mjs";

const entry = fileURLToPath(new URL("../../pkg/index.js", import.meta.url));
const { GrapeDB } = await import(entry);


/** `n` points with a 2-d vector and, for two in three, a 5-d "img" vector (Euclid). */
function generated(n, seed) {
  const next = rng(seed);
  return Array.from({ length: n }, (_, id) => {
    const vector = { "": Float32Array.from([1, next() - 0.5]) };
    if (id % 3 !== 0) vector.img = Float32Array.from({ length: 5 }, () => next() * 4 - 2);
    return { id, vector, payload: { odd: id % 2 === 1 } };
  });
}

/** The `limit` points nearest `q` by their "img" vector (Euclid, f32 as stored), by brute force. */
function bruteImg(points, q, limit, keep = () => true) {
  return points
    .filter((p) => p.vector.img && keep(p))
    .map((p) => {
      let d2 = 0;
      p.vector.img.forEach((x, i) => { const d = Math.fround(x - Math.fround(q[i])); d2 = Math.fround(d2 + Math.fround(d * d)); });
      return { id: p.id, score: Math.sqrt(d2) };
    })
    .sort((a, b) => a.score - b.score || a.id - b.id)
    .slice(0, limit);
}

const options = { dimension: 2, storage: "memory", namedVectors: { img: { size: 5, distance: "Euclid" } } };

test("a named vector is searched with `using`, over the points that have one, as a brute force finds them", async () => {
  const db = await GrapeDB.open(options);
  const points = generated(400, 5);
  assert.deepEqual(db.upsert(points), { inserted: 400, updated: 0 });
  const next = rng(17);
  for (let round = 0; round < 30; round++) {
    const q = Array.from({ length: 5 }, () => next() * 4 - 2);
    const odd = round % 2 === 1;
    const filter = odd ? { must: [{ key: "odd", match: { value: true } }] } : undefined;
    const want = bruteImg(points, q, 7, (p) => !odd || p.id % 2 === 1);
    const found = db.search(Float32Array.from(q), { using: "img", limit: 7, exact: true, filter });
    assert.deepEqual(found.map((h) => h.id), want.map((h) => h.id), `round ${round}`);
    found.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) < 1e-4, `round ${round}: ${h.score} vs ${want[i].score}`));
    const queried = db.query({ query: q, using: "img", limit: 7, filter, params: { exact: true } }).points;
    assert.deepEqual(queried.map((h) => h.id), want.map((h) => h.id), `query, round ${round}`);
  }
  // Qdrant's shapes out: vectors by name when the point has a named one, the list alone when not.
  const [withImg, without] = db.get([1, 3]);
  assert.deepEqual(Object.keys(withImg.vector).sort(), ["", "img"]);
  assert.equal(withImg.vector.img.length, 5);
  assert.ok(Array.isArray(without.vector) && without.vector.length === 2);
  const selected = db.query({ query: [0, 0, 0, 0, 0], using: "img", with_vector: ["img"], limit: 1 }).points[0];
  assert.deepEqual(Object.keys(selected.vector), ["img"]);
  assert.equal(db.count({ must: [{ has_vector: "img" }] }), points.filter((p) => p.vector.img).length);
  await db.close();
});

test("named vectors outlive the process on Node's files, and the database keeps their declaration", async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), "grape-node-named-")), "db");
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const onDisk = { ...options, storage: undefined, path: dir };
  const points = generated(60, 9);
  const q = [0.5, -1, 1, 0, 2];
  const want = bruteImg(points, q, 5).map((h) => h.id);
  const ask = (db) => db.search(q, { using: "img", limit: 5 }).map((h) => h.id);
  let db = await GrapeDB.open(onDisk);
  db.upsert(points);
  await db.close();
  db = await GrapeDB.open(onDisk);
  assert.deepEqual(ask(db), want, "replayed from the log");
  await db.checkpoint();
  await db.close();
  db = await GrapeDB.open({ dimension: 2, path: dir });
  assert.deepEqual(ask(db), want, "read from the segment, declared by the database itself");
  await db.close();
  await assert.rejects(
    GrapeDB.open({ ...onDisk, namedVectors: { img: { size: 6, distance: "Euclid" } } }),
    (e) => e.code === "InvalidConfig" && /"img"/.test(e.message),
  );
});

test("misused named vectors are errors with codes, and nothing is written", async () => {
  const db = await GrapeDB.open(options);
  const bad = [
    { id: 1, vector: { "": [1, 0], img: [1, 2] } },
    { id: 1, vector: { "": [1, 0], img: [1, 2, 3, 4, NaN] } },
    { id: 1, vector: { "": [1, 0], audio: [1] } },
    { id: 1, vector: { "": [1, 0], img: "not a vector" } },
  ];
  for (const point of bad) {
    assert.throws(() => db.upsert([point]), (e) => typeof e.code === "string" && e.message.length > 0, JSON.stringify(point));
  }
  assert.equal(db.count(), 0);
  assert.throws(() => db.search([1, 0], { using: "img" }), (e) => e.code === "DimensionMismatch");
  assert.throws(() => db.search([1, 0], { using: "audio" }), (e) => e.code === "InvalidArgument" && /audio/.test(e.message));
  assert.throws(() => db.search([1, 0], { using: 3 }), (e) => e.code === "MalformedRequest");
  await assert.rejects(GrapeDB.open({ ...options, namedVectors: { "": { size: 2, distance: "Dot" } } }), (e) => e.code === "InvalidConfig");
  await assert.rejects(GrapeDB.open({ ...options, namedVectors: { img: { size: 5 } } }), (e) => e.code === "InvalidConfig");
  await db.close();
});

test("a database of named vectors only: points by name without \"\", searches that name one", async () => {
  const db = await GrapeDB.open({ dimension: 0, storage: "memory", namedVectors: { img: { size: 2, distance: "Dot" } } });
  db.upsert([{ id: 1, vector: { img: [1, 0] } }, { id: 2, vector: { img: Float32Array.of(0, 1) } }, { id: 3, vector: {} }]);
  assert.deepEqual(db.search([0, 2], { using: "img" }).map((h) => [h.id, h.score]), [[2, 2], [1, 0]]);
  assert.throws(() => db.search([0, 2]), (e) => e.code === "InvalidArgument" && /using/.test(e.message));
  assert.deepEqual(db.get([2, 3]).map((r) => r.vector), [{ img: [0, 1] }, {}]);
  await db.close();
  await assert.rejects(GrapeDB.open({ dimension: 0, storage: "memory" }), (e) => e.code === "InvalidConfig");
});
