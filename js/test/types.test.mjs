// The package's TypeScript (pkg/*.d.ts) under `tsc --strict`: every documented call compiles
// (usage.ts), and the declared result types are exactly what the methods return: the objects a
// real database returns here are written out as literals of those types, so a missing, extra or
// mistyped field fails to compile. Installs TypeScript in target/ts-tools when missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, copyFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const tools = `${root}target/ts-tools`;
const check = `${root}target/ts-check`;
const TYPESCRIPT = "5.9.3";

function tsc(files) {
  if (!existsSync(`${tools}/node_modules/typescript/package.json`)) {
    mkdirSync(tools, { recursive: true });
    execFileSync("npm", ["install", "--prefix", tools, "--no-save", "--no-audit", "--no-fund", `typescript@${TYPESCRIPT}`]);
  }
  const args = ["--strict", "--noEmit", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler",
    "--lib", "es2022,dom", ...files];
  try {
    execFileSync(process.execPath, [`${tools}/node_modules/typescript/bin/tsc`, ...args], { encoding: "utf8" });
  } catch (e) {
    assert.fail(`tsc --strict failed:\n${e.stdout}${e.stderr}`);
  }
}

test("the declared types are what a database returns, and every documented call compiles", async () => {
  const { GrapeDB } = await import("../../pkg/index.js");
  const db = await GrapeDB.open({ dimension: 2, payloadIndexes: ["t"] });
  db.upsert([{ id: 1, vector: [1, 0], payload: { t: 1 } }, { id: 2, vector: [0, 1] }]);
  db.search([1, 0]);
  assert.throws(() => db.search([1]), { code: "DimensionMismatch" });
  const shapes = {
    Stats: db.stats(),
    OpenReport: db.openReport(),
    Metrics: db.metrics(),
    ScrollPage: db.scroll({ limit: 1, with_vector: true }),
    HealthStatus: await db.health(),
    ShutdownReport: await db.close(),
  };
  mkdirSync(check, { recursive: true });
  const lines = [`import type { ${Object.keys(shapes).join(", ")} } from "../../pkg/index.js";`];
  for (const [type, value] of Object.entries(shapes)) {
    lines.push(`export const ${type.toLowerCase()}: ${type} = ${JSON.stringify(value, null, 1)};`);
  }
  writeFileSync(`${check}/shapes.ts`, lines.join("\n") + "\n");
  copyFileSync(fileURLToPath(new URL("usage.ts", import.meta.url)), `${check}/usage.ts`);
  tsc([`${check}/shapes.ts`, `${check}/usage.ts`]);
});
