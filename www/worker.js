// A dedicated worker running the database with OPFS storage (synchronous file handles exist
// only in workers). Messages: {id, op, args} in; {id, result} | {id, error} | {id, progress} out.
import { handle } from "./db-service.js";

self.onmessage = async (event) => {
  const { id, op, args } = event.data;
  try {
    const result = await handle(op, args, (progress) => self.postMessage({ id, progress }));
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: { message: e?.message ?? String(e), code: e?.code ?? "Error" } });
  }
};
