// The package's entry point: wasm-bindgen's glue (grape_vector_db.js), whose WebAssembly module
// this loads on first use, so that `GrapeDB.open` needs no `init()` first in a page, a worker or
// Node. The glue alone needs `init()` and fetches a `file:` URL in Node, which fails there.
import initGlue, * as glue from "./grape_vector_db.js";

export * from "./grape_vector_db.js";
export { GrapeWorkerDB } from "./client.js";
export { GrapeSharedDB } from "./shared.js";

let loading = null;
let loaded = false;

function isNode() {
  return typeof process !== "undefined" && process.versions != null && process.versions.node != null;
}

async function load(source) {
  if (source === undefined && isNode()) {
    // getBuiltinModule rather than import("node:fs/promises"), which bundlers building for
    // the browser would try to resolve and warn about.
    const { readFile } = process.getBuiltinModule("node:fs/promises");
    source = await readFile(new URL("./grape_vector_db_bg.wasm", import.meta.url));
  }
  await initGlue(source === undefined ? undefined : { module_or_path: source });
  loaded = true;
}

/**
 * Loads the WebAssembly module once; later calls return the same promise. Optional:
 * `GrapeDB.open` and `GrapeDB.destroy` call it. Pass `source` (a URL, a Response, the bytes or a
 * compiled `WebAssembly.Module`) when the `.wasm` is served from elsewhere than beside this file.
 */
export function init(source) {
  if (loading === null) {
    loading = load(source).catch((e) => {
      loading = null; // a failed load may be retried
      throw e;
    });
  }
  return loading;
}

// The static methods wait for the module; the others exist only on a database they returned.
for (const name of ["open", "destroy"]) {
  const method = glue.GrapeDB[name];
  glue.GrapeDB[name] = async function (...args) {
    await init();
    return method.apply(this, args);
  };
}

/** `idFromString(key)`: the id of a string key (see the `.d.ts`); synchronous, so it needs the module loaded. */
export function idFromString(key) {
  if (!loaded) {
    const error = new Error(
      "idFromString needs the WebAssembly module: call it after `await GrapeDB.open(...)` or `await init()`",
    );
    error.code = "NotInitialized";
    throw error;
  }
  return glue.idFromString(key);
}
