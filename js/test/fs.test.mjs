// Node's file storage (`path`, storage "fs"): a database outlives its process, one process at a
// time holds a directory (Node and native alike: the `grape` CLI is the native side), a process
// killed mid-write keeps every write it acknowledged, and the files are the native format.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const entry = fileURLToPath(new URL("../../pkg/index.js", import.meta.url));
const grapeCli = fileURLToPath(new URL("../../target/debug/grape", import.meta.url));
const { GrapeDB } = await import(entry);

function freshDir(t) {
  const dir = mkdtempSync(join(tmpdir(), "grape-node-fs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "db");
}

const point = (i) => ({ id: i, vector: [1, i, i % 7], payload: { n: i } });

/// Runs `body` (an async function's text, given `GrapeDB` and `dir`) in a new Node process.
function inChild(dir, body, options = {}) {
  const script = `const { GrapeDB } = await import(${JSON.stringify(entry)});
    const dir = ${JSON.stringify(dir)};
    ${body}`;
  return spawn(process.execPath, ["--input-type=module", "-e", script], options);
}

function runChild(dir, body) {
  const out = spawnSync(process.execPath, ["--input-type=module", "-e",
    `const { GrapeDB } = await import(${JSON.stringify(entry)});
     const dir = ${JSON.stringify(dir)};
     ${body}`], { encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
  return out.stdout.trim();
}

test("a database on Node's files is there for the next process", async (t) => {
  const dir = freshDir(t);
  const db = await GrapeDB.open({ dimension: 3, path: dir, payloadIndexes: ["n"] });
  assert.equal(db.stats().backend, "fs");
  db.upsert(Array.from({ length: 50 }, (_, i) => point(i)));
  db.delete([7]);
  await db.close();
  const seen = runChild(dir, `
    const db = await GrapeDB.open({ dimension: 3, path: dir, payloadIndexes: ["n"] });
    const [best] = db.search([1, 20, 6], { limit: 1, filter: { must: [{ key: "n", range: { gte: 10 } }] } });
    console.log(JSON.stringify([db.count(), best.id, db.get([7]).length]));
    await db.close();`);
  assert.deepEqual(JSON.parse(seen), [49, 20, 0]);
});

test("vectors kept on Node's files are read when needed, with the answers of vectors held", async (t) => {
  const dir = freshDir(t);
  const options = { dimension: 16, path: dir, quantization: "sq8", vectorsOnDisk: true,
    hnsw: { fullScanThreshold: 100 } };
  const vector = (i) => Array.from({ length: 16 }, (_, d) => ((i * 31 + d * 17) % 97) / 97 - 0.5);
  const db = await GrapeDB.open(options);
  db.upsert(Array.from({ length: 3000 }, (_, i) => ({ id: i, vector: vector(i) })));
  const search = (db) => JSON.stringify(db.search(vector(5000), { limit: 5 }));
  const before = search(db);
  const held = db.stats().memory.vectors;
  await db.checkpoint();
  const after = db.stats().memory;
  assert.ok(after.vectors < held / 4, `${after.vectors} bytes of vectors held, ${held} before`);
  assert.equal(after.mapped, 0);
  assert.equal(search(db), before);
  await db.close();
  const seen = runChild(dir, `
    const db = await GrapeDB.open(${JSON.stringify(options)});
    console.log(JSON.stringify([db.count(), JSON.stringify(db.search(${JSON.stringify(vector(5000))}, { limit: 5 })),
      db.get([42])[0].vector.length]));
    await db.close();`);
  assert.deepEqual(JSON.parse(seen), [3000, before, 16]);
});

test("storage \"auto\" in Node uses files when a path is given, memory without", async (t) => {
  const dir = freshDir(t);
  const onDisk = await GrapeDB.open({ dimension: 3, storage: "auto", path: dir });
  assert.equal(onDisk.stats().backend, "fs");
  await onDisk.close();
  const inMemory = await GrapeDB.open({ dimension: 3 });
  assert.equal(inMemory.stats().backend, "memory");
  await inMemory.close();
  await assert.rejects(GrapeDB.open({ dimension: 3, storage: "memory", path: dir }), {
    code: "InvalidConfig",
    message: /path names a directory of Node's file system/,
  });
});

test("one process at a time holds a directory", async (t) => {
  const dir = freshDir(t);
  const db = await GrapeDB.open({ dimension: 3, path: dir });
  await assert.rejects(GrapeDB.open({ dimension: 3, path: dir }), { code: "AlreadyOpen" });
  const other = runChild(dir, `
    try { await GrapeDB.open({ dimension: 3, path: dir }); console.log("opened"); }
    catch (e) { console.log(e.code + " " + e.message); }`);
  assert.match(other, new RegExp(`^AlreadyOpen .*process ${process.pid}`));
  await db.close();
  assert.equal(runChild(dir, `
    const db = await GrapeDB.open({ dimension: 3, path: dir });
    console.log("opened"); await db.close();`), "opened");
});

test("destroy deletes a closed database and only the database", async (t) => {
  const dir = freshDir(t);
  const db = await GrapeDB.open({ dimension: 3, path: dir });
  db.upsert([point(1), point(2)]);
  await assert.rejects(GrapeDB.destroy(dir), { code: "AlreadyOpen" });
  // Another process is refused as well, and the open database lost nothing.
  const other = runChild(dir, `
    try { await GrapeDB.destroy(dir); console.log("destroyed"); }
    catch (e) { console.log(e.code); }`);
  assert.equal(other, "AlreadyOpen");
  assert.equal(db.count(), 2);
  await db.close();
  await GrapeDB.destroy(dir);
  assert.equal(existsSync(dir), false);
  // Nothing there: nothing to do.
  await GrapeDB.destroy(dir);
  // Files that are not the database's stay, and so does their directory.
  const again = await GrapeDB.open({ dimension: 3, path: dir });
  again.upsert([point(3)]);
  await again.close();
  writeFileSync(join(dir, "notes.txt"), "mine");
  await GrapeDB.destroy(dir);
  assert.deepEqual(readdirSync(dir), ["notes.txt"]);
  const fresh = await GrapeDB.open({ dimension: 3, path: dir });
  assert.equal(fresh.count(), 0);
  await fresh.close();
});

test("a record of this pid from an earlier process (a restarted container) is taken over", async (t) => {
  const dir = freshDir(t);
  await (await GrapeDB.open({ dimension: 3, path: dir })).close();
  writeFileSync(join(dir, "LOCK.owner"), `${process.pid} ${hostname()} 5000\n`);
  const db = await GrapeDB.open({ dimension: 3, path: dir });
  await db.close();
  // Another host's record is never judged from here.
  writeFileSync(join(dir, "LOCK.owner"), `${process.pid} elsewhere.example\n`);
  await assert.rejects(GrapeDB.open({ dimension: 3, path: dir }), {
    code: "AlreadyOpen",
    message: /held by process \d+ on elsewhere.example/,
  });
});

test("a process killed mid-write keeps every write it acknowledged", async (t) => {
  const dir = freshDir(t);
  const child = inChild(dir, `
    const db = await GrapeDB.open({ dimension: 3, path: dir, durability: "sync" });
    for (let i = 0; ; i++) {
      db.upsert([{ id: i, vector: [1, i, i % 7], payload: { n: i } }]);
      console.log(i);
    }`, { stdio: ["ignore", "pipe", "inherit"] });
  let acknowledged = -1;
  await new Promise((resolve) => {
    child.stdout.on("data", (chunk) => {
      const lines = chunk.toString().trim().split("\n");
      acknowledged = Number(lines[lines.length - 1]);
      if (acknowledged >= 200 && !child.killed) {
        child.kill("SIGKILL");
      }
    });
    child.on("exit", resolve);
  });
  assert.ok(acknowledged >= 200, `only ${acknowledged} writes before the child exited`);
  // The dead child's owner record is taken over.
  const db = await GrapeDB.open({ dimension: 3, path: dir });
  const ids = Array.from({ length: acknowledged + 1 }, (_, i) => i);
  assert.equal(db.get(ids).length, acknowledged + 1);
  await db.close();
});

test("Node's directory is a native database, and native opens respect Node's hold", async (t) => {
  if (!existsSync(grapeCli)) {
    t.skip(`no ${grapeCli}: run cargo test (or cargo build) first for the native side`);
    return;
  }
  const dir = freshDir(t);
  const db = await GrapeDB.open({ dimension: 3, distance: "Euclid", path: dir });
  db.upsert(Array.from({ length: 30 }, (_, i) => point(i)));
  await db.flush();
  const refused = spawnSync(grapeCli, ["count", dir], { encoding: "utf8" });
  assert.notEqual(refused.status, 0, "the CLI opened a directory Node holds");
  assert.match(refused.stderr, new RegExp(`held by process ${process.pid} .*already open`));
  await db.close();

  assert.equal(JSON.parse(execFileSync(grapeCli, ["count", dir], { encoding: "utf8" })).result.count, 30);
  assert.equal(spawnSync(grapeCli, ["verify", dir]).status, 0, "grape verify found damage");
  const more = join(dir, "..", "more.jsonl");
  const lines = [30, 31].map((i) => JSON.stringify(point(i))).join("\n");
  writeFileSync(more, `${lines}\n`);
  execFileSync(grapeCli, ["import", dir, more]);

  const again = await GrapeDB.open({ dimension: 3, distance: "Euclid", path: dir });
  assert.equal(again.count(), 32);
  const [best] = again.search([1, 31, 3], { limit: 1 });
  assert.equal(best.id, 31);
  await again.close();
});
