// The built package (pkg/, from ./scripts/build-pkg) as a Node user gets it: loading without
// `init()`, a database round trip, idFromString, and what `npm pack` would publish.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const pkg = fileURLToPath(new URL("../../pkg/", import.meta.url));

test("idFromString before the module is loaded is an error with a code", async () => {
  // First in this file: no test before it has loaded the module.
  const { idFromString } = await import("../../pkg/index.js");
  assert.throws(() => idFromString("note-1"), { code: "NotInitialized" });
});

test("GrapeDB.open loads the module itself in Node", async () => {
  const { GrapeDB, idFromString } = await import("../../pkg/index.js");
  const db = await GrapeDB.open({ dimension: 3 });
  db.upsert([
    { id: 1, vector: [1, 0, 0], payload: { tag: "a" } },
    { id: idFromString("note-1"), vector: [0, 1, 0], payload: { key: "note-1" } },
  ]);
  assert.equal(db.count(), 2);
  const [best] = db.search([0, 0.9, 0.1], { limit: 1 });
  assert.equal(best.id, "4ab00615-3876-5be4-9fff-3f43b7be16f5");
  assert.equal(best.payload.key, "note-1");
  assert.throws(() => db.upsert([{ id: "note-2", vector: [1, 1, 1] }]), (e) => {
    assert.equal(e.code, "InvalidPointId");
    assert.match(e.message, /idFromString/);
    return true;
  });
  await db.close();
});

test("the tarball holds the package's files and every path package.json names, within its size ceiling", () => {
  const manifest = JSON.parse(readFileSync(`${pkg}package.json`, "utf8"));
  const cargo = readFileSync(fileURLToPath(new URL("../../Cargo.toml", import.meta.url)), "utf8");
  assert.equal(manifest.version, cargo.match(/^version = "(.*)"$/m)[1]);
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--dry-run", "--json", pkg], { encoding: "utf8" }),
  );
  // Issue 18's budget is 250 KiB gzipped for the whole package; it is not met yet, so this
  // ceiling keeps the package from growing meanwhile: lower it with every diet; a feature may
  // raise it only by its own measured cost, written down in PERFORMANCE.md (SQ8 quantization:
  // 366.8 -> 371.7 KiB; its codes stored in segments: 375.3; vectors kept on disk: 387.6 -> 390.0;
  // the id map and payload cells: -2.4; vectors on disk where files cannot be mapped: 397.8;
  // the streaming import: 403.3; vectors on disk kept there under writes: 405.2; sparse
  // vectors and BM25: 427.1; the Query API in JS, which links the query engine: 458.2; the
  // manifest's sparse declarations: 461.3; has_vector of a sparse vector: 463.4; RRF's k and
  // weights: 465.7; with_payload's field selection: 467.7; with_vector's names: 469.7).
  const ceilingKiB = 492;
  const packedKiB = packed.size / 1024;
  console.log(`npm tarball: ${packedKiB.toFixed(1)} KiB gzipped (ceiling ${ceilingKiB}, budget 250)`);
  assert.ok(packedKiB <= ceilingKiB, `the tarball grew to ${packedKiB.toFixed(1)} KiB, past its ceiling of ${ceilingKiB}`);
  const files = packed.files.map((f) => f.path).sort();
  for (const needed of ["README.md", "LICENSE-MIT", "LICENSE-APACHE", "package.json", "index.js",
    "index.d.ts", "grape_vector_db.js", "grape_vector_db_bg.wasm"]) {
    assert.ok(files.includes(needed), `${needed} missing from ${files}`);
  }
  const named = [manifest.main, manifest.types, ...manifest.sideEffects,
    ...Object.values(manifest.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e)))];
  for (const path of named) {
    assert.ok(existsSync(new URL(path, `file://${pkg}`)), `package.json names ${path}, which is missing`);
    assert.ok(files.includes(path.replace(/^\.\//, "")), `${path} is not in the tarball`);
  }
});
