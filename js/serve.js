// Serving a database to others: a GrapeDB method called by name, for the two places that hold
// a database for someone else, the worker module (worker.js) and the leading tab (shared.js).

/** The methods a caller may name (nothing else is called by name). */
const METHODS = new Set([
  "upsert", "uploadPoints", "search", "searchBatch", "query", "get", "delete", "deleteByFilter", "scroll",
  "exportPoints", "count", "stats", "openReport", "metrics", "health", "flush", "checkpoint",
  "close", "exportBytes",
]);

/** The error of a call on a database that is closed (or a handle that left). */
export function closedError() {
  return Object.assign(new Error("the database is closed; open it again to use it"), { code: "Closed" });
}

/** An error as it crosses a message channel: its message and `code`. */
export function errorMessage(e) {
  return { message: e?.message ?? String(e), code: e?.code ?? "Error" };
}

/** The `Error` (with its `code`) that `errorMessage` sent. */
export function errorFromMessage({ message, code }) {
  return Object.assign(new Error(message), { code });
}

/**
 * Calls `db[op](...args)`. `uploadPoints` reports progress to `onProgress` when its options ask
 * for it (`reportProgress`: a function cannot cross a channel).
 */
export async function callMethod(db, op, args, onProgress) {
  if (op === "state") return db.state;
  if (!METHODS.has(op)) throw Object.assign(new Error(`no method ${op}`), { code: "InvalidArgument" });
  if (op === "uploadPoints") {
    const [points, { reportProgress, ...options } = {}] = args;
    if (reportProgress && onProgress !== undefined) options.onProgress = onProgress;
    return db.uploadPoints(points, options);
  }
  return db[op](...args);
}
