// The worker side of `GrapeWorkerDB` (client.js): a dedicated worker that holds databases and
// answers the page's calls, so a page gets OPFS (whose synchronous handles exist only in
// workers) and a thread of its own for the database without writing the worker itself. A
// worker file of one line, `import "grape-vector-db/worker";`, is all an app needs.
// Messages in: {id, op, handle, args}; out: {id, result} | {id, error: {message, code}} |
// {id, progress: [done, total]}.
import { GrapeDB } from "./index.js";

/** The methods a client may call on an open database (nothing else is called by name). */
const METHODS = new Set([
  "upsert", "uploadPoints", "search", "searchBatch", "get", "delete", "deleteByFilter", "scroll",
  "exportPoints", "count", "stats", "openReport", "metrics", "health", "flush", "checkpoint",
  "close", "exportBytes",
]);

const databases = new Map();
let nextHandle = 1;

function closedError() {
  const error = new Error("the database is closed; open it again to use it");
  error.code = "Closed";
  return error;
}

async function answer(id, op, handle, args) {
  if (op === "open") {
    const db = await GrapeDB.open(args[0]);
    databases.set(nextHandle, db);
    return nextHandle++;
  }
  if (op === "destroy") return GrapeDB.destroy(args[0]);
  const db = databases.get(handle);
  if (db === undefined) throw closedError();
  if (op === "state") return db.state;
  if (!METHODS.has(op)) throw Object.assign(new Error(`no method ${op}`), { code: "InvalidArgument" });
  if (op === "uploadPoints") {
    const [points, { reportProgress, ...options } = {}] = args;
    if (reportProgress) {
      options.onProgress = (done, total) => self.postMessage({ id, progress: [done, total] });
    }
    return db.uploadPoints(points, options);
  }
  const result = await db[op](...args);
  if (op === "close") databases.delete(handle);
  return result;
}

self.addEventListener("message", async (event) => {
  const { id, op, handle, args } = event.data ?? {};
  if (typeof id !== "number") return; // not ours
  try {
    const result = await answer(id, op, handle, args ?? []);
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: { message: e?.message ?? String(e), code: e?.code ?? "Error" } });
  }
});
