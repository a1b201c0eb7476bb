// The worker side of `GrapeWorkerDB` (client.js): a dedicated worker that holds databases and
// answers the page's calls, so a page gets OPFS (whose synchronous handles exist only in
// workers) and a thread of its own for the database without writing the worker itself. A
// worker file of one line, `import "grape-vector-db/worker";`, is all an app needs.
// Messages in: {id, op, handle, args}; out: {id, result} | {id, error: {message, code}} |
// {id, progress: [done, total]}.
import { GrapeDB } from "./index.js";
import { callMethod, closedError, errorMessage } from "./serve.js";

const databases = new Map();
let nextHandle = 1;

async function answer(id, op, handle, args) {
  if (op === "open") {
    const db = await GrapeDB.open(args[0]);
    databases.set(nextHandle, db);
    return nextHandle++;
  }
  if (op === "destroy") return GrapeDB.destroy(args[0]);
  const db = databases.get(handle);
  if (db === undefined) throw closedError();
  const result = await callMethod(db, op, args, (done, total) => self.postMessage({ id, progress: [done, total] }));
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
    self.postMessage({ id, error: errorMessage(e) });
  }
});
