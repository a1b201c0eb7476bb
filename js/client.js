// `GrapeWorkerDB`: a database that lives in a dedicated worker running worker.js, with the
// methods of `GrapeDB`, each returning a promise (`RemoteDB`, which GrapeSharedDB in shared.js
// shares). Errors arrive as `Error`s with their `code`.
import { errorFromMessage } from "./serve.js";

const calls = new WeakMap();

/** The call channel of `worker`: one listener, answers matched to calls by id. */
function channel(worker) {
  let rpc = calls.get(worker);
  if (rpc !== undefined) return rpc;
  const pending = new Map();
  let nextId = 1;
  worker.addEventListener("message", (event) => {
    const { id, result, error, progress } = event.data ?? {};
    const call = pending.get(id);
    if (call === undefined) return;
    if (progress !== undefined) {
      call.onProgress?.(...progress);
    } else if (error !== undefined) {
      pending.delete(id);
      call.reject(errorFromMessage(error));
    } else {
      pending.delete(id);
      call.resolve(result);
    }
  });
  worker.addEventListener("error", (event) => {
    const error = Object.assign(new Error(`the database worker failed: ${event.message ?? "unknown error"}`),
      { code: "Io" });
    for (const call of pending.values()) call.reject(error);
    pending.clear();
  });
  rpc = (op, handle, args, onProgress, transfer = []) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, onProgress });
    try {
      worker.postMessage({ id, op, handle, args }, transfer);
    } catch (e) {
      pending.delete(id);
      reject(Object.assign(new Error(`${op}: ${e?.message ?? e} (it cannot be sent to the worker)`),
        { code: "InvalidArgument" }));
    }
  });
  calls.set(worker, rpc);
  return rpc;
}

/**
 * The methods of `GrapeDB`, each returning a promise, over a `call(op, args, onProgress)` that
 * reaches the database: a worker's (GrapeWorkerDB) or the leading tab's (GrapeSharedDB).
 */
export class RemoteDB {
  #call;

  constructor(call) {
    this.#call = call;
  }

  upsert(points) { return this.#call("upsert", [points]); }
  uploadPoints(points, options = {}) {
    const { onProgress, ...rest } = options;
    return this.#call("uploadPoints", [points, { ...rest, reportProgress: onProgress !== undefined }], onProgress);
  }
  search(query, options) { return this.#call("search", [query, options]); }
  searchBatch(queries, options) { return this.#call("searchBatch", [queries, options]); }
  query(request) { return this.#call("query", [request]); }
  get(ids) { return this.#call("get", [ids]); }
  delete(ids) { return this.#call("delete", [ids]); }
  deleteByFilter(filter) { return this.#call("deleteByFilter", [filter]); }
  scroll(options) { return this.#call("scroll", [options]); }
  exportPoints(options) { return this.#call("exportPoints", [options]); }
  count(filter) { return this.#call("count", [filter]); }
  stats() { return this.#call("stats", []); }
  openReport() { return this.#call("openReport", []); }
  metrics(prometheus) { return this.#call("metrics", [prometheus]); }
  health() { return this.#call("health", []); }
  flush() { return this.#call("flush", []); }
  checkpoint() { return this.#call("checkpoint", []); }
  close() { return this.#call("close", []); }
  exportBytes() { return this.#call("exportBytes", []); }
  /** `"Ready"`, `"Busy"`, `"Shutting"` or `"Closed"`. */
  state() { return this.#call("state", []); }
}

export class GrapeWorkerDB extends RemoteDB {
  /** Opens (or creates) a database in `worker` (a module worker that imports "grape-vector-db/worker"). */
  static async open(worker, options) {
    const rpc = channel(worker);
    // An archive to import crosses as a stream, moved rather than copied, so that the page
    // never holds it whole: a Response gives its body (a stream cannot be cloned, only moved).
    let transfer = [];
    let source = options?.import;
    if (typeof Response !== "undefined" && source instanceof Response) {
      if (!source.ok) {
        throw Object.assign(new Error(`open: import is a response of HTTP status ${source.status}`),
          { code: "InvalidArgument" });
      }
      source = source.body;
      options = { ...options, import: source };
    }
    if (typeof ReadableStream !== "undefined" && source instanceof ReadableStream) transfer = [source];
    const handle = await rpc("open", undefined, [options], undefined, transfer);
    return new GrapeWorkerDB((op, args, onProgress) => rpc(op, handle, args, onProgress));
  }

  /** Deletes a closed database's storage, in `worker`. */
  static destroy(worker, name) {
    return channel(worker)("destroy", undefined, [name]);
  }
}
