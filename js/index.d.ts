export * from "./grape_vector_db.js";

/**
 * Loads the WebAssembly module once; later calls return the same promise. Optional:
 * `GrapeDB.open` and `GrapeDB.destroy` call it. Pass `source` when the `.wasm` is served from
 * elsewhere than beside the package's JavaScript.
 */
export function init(
  source?: string | URL | Request | Response | BufferSource | WebAssembly.Module,
): Promise<void>;

/**
 * The id of a string key (a slug, a nanoid, a path): its name-based UUID (version 5) in Grape's
 * namespace, the same as `PointId::from_name` in Rust. Ids are Qdrant's (integers or UUIDs);
 * keep the key in the payload to read it back. Throws (`code` "NotInitialized") before the
 * module is loaded by `GrapeDB.open` or `init()`.
 */
export function idFromString(key: string): string;

import type {
  Filter, HealthStatus, Metrics, OpenOptions, OpenReport, PointInput, PointRecord, QueryRequest,
  QueryResponse, ScoredPoint, ScrollOptions, ScrollPage, SearchOptions, ShutdownReport, Stats,
  DatabaseState,
} from "./grape_vector_db.js";

/** The methods of `GrapeDB`, each returning a promise: a database held elsewhere. */
export interface RemoteDB {
  upsert(points: PointInput[]): Promise<{ inserted: number; updated: number }>;
  uploadPoints(
    points: PointInput[],
    options?: { batchSize?: number; onProgress?: (done: number, total: number) => void },
  ): Promise<{ inserted: number; updated: number }>;
  search(query: Float32Array | number[], options?: SearchOptions): Promise<ScoredPoint[]>;
  searchBatch(queries: Float32Array[], options?: SearchOptions): Promise<ScoredPoint[][]>;
  query(request: QueryRequest): Promise<QueryResponse>;
  get(ids: (number | string)[]): Promise<PointRecord[]>;
  delete(ids: (number | string)[]): Promise<number>;
  deleteByFilter(filter: Filter): Promise<number>;
  scroll(options?: ScrollOptions): Promise<ScrollPage>;
  exportPoints(options?: { offset?: number | string; limit?: number }): Promise<{ points: PointInput[]; next_page_offset: number | string | null }>;
  count(filter?: Filter): Promise<number>;
  stats(): Promise<Stats>;
  openReport(): Promise<OpenReport>;
  metrics(prometheus?: boolean): Promise<Metrics | string>;
  health(): Promise<HealthStatus>;
  flush(): Promise<void>;
  checkpoint(): Promise<void>;
  close(): Promise<ShutdownReport>;
  exportBytes(): Promise<Uint8Array>;
  state(): Promise<DatabaseState>;
}

/**
 * A database in a dedicated worker that runs the package's worker module (a module worker file
 * of one line: `import "grape-vector-db/worker";`): the methods of `GrapeDB`, each returning a
 * promise, with OPFS storage and the database's work off the page's thread.
 */
export declare class GrapeWorkerDB {
  private constructor();
  static open(worker: Worker, options: OpenOptions): Promise<GrapeWorkerDB>;
  static destroy(worker: Worker, name: string): Promise<void>;
}
export interface GrapeWorkerDB extends RemoteDB {}

/**
 * One database used by every tab of an origin at once: the first tab holds it (Web Lock) and
 * serves the others over a BroadcastChannel; when that tab closes, the next takes over and
 * receives the calls still unanswered. Writes resolve once flushed, so an answered write
 * outlives the tab that held the database. `close()` leaves (the holder closes the database).
 * Workers may share it too: with `storage: "auto"` it is stored in IndexedDB, which pages and
 * workers alike can open.
 */
export declare class GrapeSharedDB {
  private constructor();
  static open(options: OpenOptions): Promise<GrapeSharedDB>;
  /** Whether this tab holds the database now. */
  readonly isLeader: boolean;
}
export interface GrapeSharedDB extends Omit<RemoteDB, "close"> {
  /** Leaves; the tab that holds the database closes it (its report), another gets `undefined`. */
  close(): Promise<ShutdownReport | undefined>;
}
