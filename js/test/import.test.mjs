// `GrapeDB.open({ import })` from every kind of source, read piece by piece: bytes, a Blob, a
// ReadableStream, a Response, Node's file stream (an async iterable). A truncated, damaged or
// failing source is refused with its code and leaves nothing: the storage opens empty.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const entry = fileURLToPath(new URL("../../pkg/index.js", import.meta.url));
const { GrapeDB } = await import(entry);

function freshDir(t) {
  const dir = mkdtempSync(join(tmpdir(), "grape-node-import-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const DIM = 8;
const vector = (i) => Array.from({ length: DIM }, (_, d) => Math.sin(i * 7 + d));

/** The archive of a database of `n` points, large enough to span many pieces of a stream. */
async function archiveOf(n) {
  const db = await GrapeDB.open({ dimension: DIM, storage: "memory" });
  db.upsert(Array.from({ length: n }, (_, i) => ({ id: i, vector: vector(i), payload: { i } })));
  await db.checkpoint();
  const bytes = db.exportBytes();
  await db.close();
  return bytes;
}

/** A ReadableStream of `bytes` in pieces of `size`, as a download arrives. */
function streamOf(bytes, size = 1000) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function opensWith(path, source) {
  const db = await GrapeDB.open({ dimension: DIM, path, import: source });
  const found = [db.count(), db.search(vector(1234), { limit: 1 })[0].id];
  await db.close();
  return found;
}

test("an archive is imported from bytes, a Blob, a stream, a Response and a file stream", async (t) => {
  const dir = freshDir(t);
  const archive = await archiveOf(3000);
  assert.ok(archive.length > 100_000, `${archive.length} bytes`);
  const file = join(dir, "db.grape");
  writeFileSync(file, archive);
  const sources = {
    bytes: () => archive,
    arrayBuffer: () => archive.slice().buffer,
    blob: () => new Blob([archive]),
    stream: () => streamOf(archive, 777),
    response: () => new Response(streamOf(archive, 4096)),
    fileStream: () => createReadStream(file, { highWaterMark: 5000 }),
  };
  for (const [kind, source] of Object.entries(sources)) {
    assert.deepEqual(await opensWith(join(dir, kind), source()), [3000, 1234], kind);
  }
});

test("a truncated, damaged or failing import is refused and leaves nothing", async (t) => {
  const dir = freshDir(t);
  const archive = await archiveOf(500);
  const damaged = archive.slice();
  damaged[archive.length >> 1] ^= 1;
  const failing = new ReadableStream({
    start(controller) {
      controller.enqueue(archive.slice(0, 5000));
      controller.error(new Error("the network went away"));
    },
  });
  const refused = [
    ["truncated", streamOf(archive.subarray(0, archive.length - 1)), "Corrupt", /ends early|checksum/],
    ["damaged", new Blob([damaged]), "Corrupt", /checksum mismatch/],
    ["failing", failing, "Io", /the network went away/],
    ["not an archive", new Response("<html>not found</html>"), "Corrupt", /bad magic/],
    ["an HTTP error", new Response("gone", { status: 404 }), "InvalidArgument", /HTTP status 404/],
    ["a piece that is not bytes", streamOf(["text"]), "InvalidArgument", /not bytes/],
    ["not readable", { some: "object" }, "InvalidArgument", /give the archive as/],
  ];
  for (const [kind, source, code, message] of refused) {
    const path = join(dir, kind.replaceAll(" ", "-"));
    await assert.rejects(GrapeDB.open({ dimension: DIM, path, import: source }),
      (e) => e.code === code && message.test(e.message), kind);
    const files = readdirSync(path).filter((f) => f !== "LOCK" && f !== "OWNER");
    assert.deepEqual(files, [], `${kind}: files left`);
    const db = await GrapeDB.open({ dimension: DIM, path });
    assert.equal(db.count(), 0, kind);
    await db.close();
  }
});
