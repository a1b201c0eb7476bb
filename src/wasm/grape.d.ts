/** Where the database keeps its files. `auto`: OPFS in a dedicated worker, else IndexedDB, else memory. */
/** "auto": in a browser OPFS in a dedicated worker, else IndexedDB; in Node "fs" when `path` is given, else "memory". */
export type StorageKind = "auto" | "opfs" | "indexeddb" | "memory" | "fs";

export interface OpenOptions {
  /** Database name (one OPFS directory or IndexedDB database per name). Default "default". */
  name?: string;
  /** The unnamed vector's length; 0 with `namedVectors` for a database of named vectors only (searches then name one with `using`). */
  dimension: number;
  distance?: "Cosine" | "Dot" | "Euclid" | "Manhattan";
  storage?: StorageKind;
  /** Node only: the database's directory (native format, relative to the working directory); storage "fs" defaults it to `name`. */
  path?: string;
  /** "batched" (default: durable within flushIntervalMs), "onFlush" (at `flush()`), "sync" (OPFS and Node's files: every write). */
  durability?: "batched" | "onFlush" | "sync";
  flushIntervalMs?: number;
  /** Open without writing, when another tab or worker holds the database. */
  readOnly?: boolean;
  /** Ask the browser to keep the data under storage pressure (`navigator.storage.persist()`). */
  persist?: boolean;
  /** HNSW parameters, or `false` for exact search only. */
  hnsw?: { m?: number; efConstruction?: number; ef?: number; fullScanThreshold?: number } | false;
  /** "sq8": the graph search walks 8-bit codes of the vectors (a quarter of the memory per step) and scores its best candidates again with the vectors, so scores stay exact. "binary": 1-bit codes (a 32nd), for vectors of 768 dimensions and more. Default "none". Cosine, Dot and Euclid; needs `hnsw`. */
  quantization?: "none" | "sq8" | "binary";
  /** With `quantization`: keep the vectors of the last checkpoint in storage (OPFS, IndexedDB, Node's files) and read a vector only when it is needed (re-scoring, inserts, checkpoints), so that memory holds the codes and the graph but not the vectors. Default false. */
  vectorsOnDisk?: boolean;
  payloadIndexes?: string[];
  /** Sparse vectors by name, beside the dense one (which is named `""` among a point's vectors): `{ text: { bm25: true } }`. */
  sparseVectors?: Record<string, SparseVectorOptions>;
  /** Dense vectors by name beside the unnamed one (Qdrant's named vectors): `{ image: { size: 512, distance: "Dot" } }`. A point may lack any of them; searches name one with `using`. */
  namedVectors?: Record<string, { size: number; distance: "Cosine" | "Dot" | "Euclid" | "Manhattan" }>;
  maxPoints?: number;
  maxMemoryMb?: number;
  enableWarmup?: boolean;
  /**
   * A database exported by `exportBytes()` (or natively by `export_archive`), imported into an
   * empty storage and opened. A stream (a `fetch` Response, a `Blob` or `File`, a
   * `ReadableStream`, any async iterable of bytes such as Node's `fs.createReadStream`) is read
   * piece by piece as it arrives, so an archive larger than memory can be imported into OPFS
   * or Node's files (IndexedDB keeps an open database's files in memory); bytes are
   * copied in a megabyte at a time. Each file takes its name only once the archive's checksum
   * holds: a damaged or interrupted import leaves nothing. Through `GrapeWorkerDB`: bytes, a
   * Blob, a Response or a ReadableStream (moved to the worker).
   */
  import?: Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | Response | AsyncIterable<Uint8Array>;
  /** A log damaged before its end: "strict" (default) refuses to open (`Corrupt`); "salvage" opens with the records before the damage (see `openReport().wal_damaged_at`). */
  logRecovery?: "strict" | "salvage";
}

export interface PointInput {
  id: number | string;
  /** The dense vector, or vectors by name: `{ "": dense, image: dense }` (a named dense vector), `{ "": dense, text: { indices, values } }` (sparse) or `{ text: { text: "..." } }` (BM25). */
  vector: Float32Array | number[] | Record<string, Float32Array | number[] | SparseVector | Document>;
  payload?: Record<string, unknown>;
}

/** How a sparse vector is declared and searched (Qdrant's `SparseVectorParams`, plus BM25 built in). */
export interface SparseVectorOptions {
  /** "idf": each query value is weighted by its index's inverse document frequency among the stored points, kept current. Default "idf" with `bm25`, else "none". */
  modifier?: "none" | "idf";
  /** Text may stand for this vector (`{ text: "..." }` in points and queries): the database turns it into a BM25 vector (Qdrant's `qdrant/bm25`: k 1.2, b 0.75, avgLen 256 words unless given). */
  bm25?: boolean | { k?: number; b?: number; avgLen?: number };
}

/** Qdrant's sparse vector: unique indices (unsigned 32-bit) and their values, in any order. */
export interface SparseVector {
  indices: number[] | Uint32Array;
  values: number[] | Float32Array;
}

/** Text standing for a vector declared with `bm25`, in Qdrant's shape. */
export interface Document {
  text: string;
  /** Only "qdrant/bm25" (the default). */
  model?: "qdrant/bm25";
}

/** A query's vector: dense, sparse, or a text for a vector declared with `bm25`. */
export type QueryVector = Float32Array | number[] | SparseVector | Document;

/** What a Query API request or prefetch asks: the nearest points to a vector, or its prefetches' results fused. */
export type Query =
  | QueryVector
  | { nearest: QueryVector }
  | { fusion: "rrf" | "dbsf" }
  /** Reciprocal rank fusion with its rank constant `k` (at least 1, default 2) and one weight per prefetch (default 1 each). */
  | { rrf: { k?: number; weights?: number[] } };

/** A sub-query whose best `limit` points are the candidates of the query above it (Qdrant's `prefetch`). */
export interface Prefetch {
  prefetch?: Prefetch | Prefetch[];
  query?: Query;
  /** The vector searched: a named dense or sparse vector's name, or "" (the default) for the unnamed one. */
  using?: string;
  /** Merged with the filters above it as Qdrant merges them: each clause's conditions joined (two `should` lists become one). */
  filter?: Filter;
  /** How many candidates it passes up (default 10). */
  limit?: number;
  score_threshold?: number;
  params?: QueryParams;
}

/** Search tuning of a dense query, in Qdrant's names. */
export interface QueryParams {
  hnsw_ef?: number;
  exact?: boolean;
  quantization?: { ignore?: boolean; rescore?: boolean; oversampling?: number };
}

/** Qdrant's Query API request, in Qdrant's JSON: `{ prefetch: [...], query: { fusion: "rrf" }, limit: 10 }`. */
export interface QueryRequest {
  prefetch?: Prefetch | Prefetch[];
  query?: Query;
  /** The vector searched: a named dense or sparse vector's name, or "" (the default) for the unnamed one. */
  using?: string;
  /** Default 10. */
  limit?: number;
  offset?: number;
  /** Applies here and in every prefetch. */
  filter?: Filter;
  score_threshold?: number;
  /** Default false, as in Qdrant. A list of fields (`["title", "meta.tags"]`), `{ include: [...] }` or `{ exclude: [...] }` returns only some of the payload, as Qdrant selects it. */
  with_payload?: boolean | string[] | { include: string[] } | { exclude: string[] };
  /** Default false. A list of names (`[""]` the unnamed vector, `["image", "text"]` named or sparse ones) returns only those, as Qdrant does. */
  with_vector?: boolean | string[];
  params?: QueryParams;
}

export interface QueryResponse {
  points: ScoredPoint[];
}

/** A point's vectors as returned: the unnamed one alone, or by name when the point has named or sparse vectors. */
export type VectorsOut = number[] | Record<string, number[] | { indices: number[]; values: number[] }>;

export interface SearchOptions {
  /** How many points to return (default 10). */
  limit?: number;
  /** How many of the best to skip first (default 0). */
  offset?: number;
  /** A filter in Qdrant's JSON shape: `{ must: [{ key: "color", match: { value: "red" } }] }`. */
  filter?: Filter;
  /** The named dense vector to search (declared in `namedVectors`); default the unnamed one. */
  using?: string;
  /** The HNSW beam width for this search (default: the database's `ef`, 64). */
  ef?: number;
  /** Scan every point instead of the graph (default false). */
  exact?: boolean;
  /** Return each point's payload (default true). */
  withPayload?: boolean;
  /** Return each point's vector (default false). */
  withVector?: boolean;
  /** Keep only points strictly better than this (as Qdrant: a score equal to it is left out). */
  scoreThreshold?: number;
  /** With `quantization`: walk the vectors instead of the codes (`ignore`), return the codes' estimated scores (`rescore: false`), or re-score `oversampling` times `limit + offset` candidates (at least 1; default: the whole beam, `ef`). */
  quantization?: { ignore?: boolean; rescore?: boolean; oversampling?: number };
}

export interface ScoredPoint {
  id: number | string;
  score: number;
  payload?: Record<string, unknown>;
  vector?: VectorsOut;
}

export interface PointRecord {
  id: number | string;
  payload?: Record<string, unknown>;
  vector?: VectorsOut;
}

/** A filter in Qdrant's JSON shape; conditions combine with `must` (all), `should` (at least one), `must_not` (none) and `min_should`. */
export interface Filter {
  must?: Condition | Condition[];
  should?: Condition | Condition[];
  must_not?: Condition | Condition[];
  min_should?: { conditions: Condition[]; min_count: number };
}

/** One condition: on a payload field, on the id, on emptiness, a nested filter over an array of objects, or a filter. */
export type Condition =
  | FieldCondition
  | { is_empty: { key: string } }
  | { is_null: { key: string } }
  | { has_id: (number | string)[] }
  | { has_vector: string }
  | { nested: { key: string; filter: Filter } }
  | Filter;

/** A condition on the payload field at `key` (`a.b` reaches into objects, `a[].b` into arrays). */
export interface FieldCondition {
  key: string;
  match?:
    | { value: string | number | boolean }
    | { any: (string | number | boolean)[] }
    | { except: (string | number | boolean)[] }
    | { text: string }
    | { text_any: string }
    | { phrase: string };
  /** Numbers, or RFC 3339 date-times as strings. */
  range?: { gt?: number | string; gte?: number | string; lt?: number | string; lte?: number | string };
  values_count?: { gt?: number; gte?: number; lt?: number; lte?: number };
  geo_bounding_box?: { top_left: GeoPoint; bottom_right: GeoPoint };
  /** `radius` in meters. */
  geo_radius?: { center: GeoPoint; radius: number };
  /** Strictly inside `exterior` and outside every ring of `interiors`; rings are closed (first point = last). */
  geo_polygon?: { exterior: { points: GeoPoint[] }; interiors?: { points: GeoPoint[] }[] };
}

export interface GeoPoint {
  lat: number;
  lon: number;
}

export interface ScrollOptions {
  /** The id to start from (a page's `next_page_offset`). */
  offset?: number | string;
  /** How many points per page (default 10). */
  limit?: number;
  filter?: Filter;
  /** Return each point's payload (default true). */
  with_payload?: boolean;
  /** Return each point's vector (default false). */
  with_vector?: boolean;
}

export interface ScrollPage {
  points: PointRecord[];
  /** Pass as `offset` for the next page; null after the last. */
  next_page_offset: number | string | null;
}

/** A duration as the Rust API reports it. */
export interface Duration {
  secs: number;
  nanos: number;
}

export type DatabaseState = "Ready" | "Busy" | "Shutting" | "Closed";

export interface Stats {
  total_vectors: number;
  /** Deleted points whose slots compaction has not reclaimed yet. */
  tombstones: number;
  /** Points not in the graph yet (searched exactly meanwhile). */
  unindexed: number;
  dimension: number;
  distance: "Cosine" | "Dot" | "Euclid" | "Manhattan";
  /** Bytes held, by kind. */
  memory: { vectors: number; mapped: number; payloads: number; ids: number; index: number };
  disk_bytes: number;
  state: DatabaseState;
  uptime: Duration;
  storage: string;
  /** The distance kernel: "simd128" or "scalar" in WebAssembly. */
  kernel: string;
  /** Whether the browser granted persistent storage (`persist: true`). */
  persisted: boolean;
  readOnly: boolean;
  backend: "opfs" | "indexeddb" | "memory" | "fs";
}

export interface OpenReport {
  created: boolean;
  segment_points: number;
  wal_records_replayed: number;
  wal_bytes_truncated: number;
  /** Where a damaged log was cut (`logRecovery: "salvage"`), else null. */
  wal_damaged_at: number | null;
  startup: {
    lock: Duration;
    manifest: Duration;
    segments: Duration;
    wal_replay: Duration;
    warmup: Duration;
    total: Duration;
  };
}

export interface OperationMetrics {
  calls: number;
  errors: number;
  latency: { count: number; mean_us: number; p50_us: number; p95_us: number; p99_us: number; max_us: number };
}

export interface Metrics {
  state: DatabaseState;
  uptime: Duration;
  total_vectors: number;
  memory_bytes: number;
  disk_bytes: number;
  points_upserted: number;
  points_deleted: number;
  queries: number;
  /** By operation: "upsert", "search", "delete", ... */
  operations: Record<string, OperationMetrics>;
  /** By error code. */
  errors_by_kind: Partial<Record<ErrorCode, number>>;
  wal_bytes_written: number;
  wal_bytes_synced: number;
  wal_size: number;
  segment_bytes_written: number;
  checkpoints: number;
  checkpoints_failed: number;
}

export type CheckStatus = "Healthy" | "Warning" | "Critical";

export interface HealthStatus {
  /** The worst of the checks. */
  status: CheckStatus;
  checks: { name: string; status: CheckStatus; message: string; duration: Duration }[];
  at_uptime: Duration;
}

export interface ShutdownReport {
  total: Duration;
  drain: Duration;
  operations_drained: number;
  flush: Duration;
  bytes_flushed: number;
  /** Set when closing wrote a checkpoint. */
  checkpoint: Duration | null;
  hooks: Duration;
  hook_errors: string[];
}

/** The `code` of every error the package throws. */
export type ErrorCode =
  | "AlreadyOpen"
  | "Closed"
  | "Corrupt"
  | "DimensionMismatch"
  | "InvalidArgument"
  | "InvalidConfig"
  | "InvalidPointId"
  | "Io"
  | "LimitExceeded"
  | "MalformedFilter"
  | "MalformedRequest"
  | "MemoryBudgetExceeded"
  | "NonFiniteComponent"
  | "NotInitialized"
  | "PayloadNotObject"
  | "ReadOnly"
  | "ShutdownTimeout"
  | "ShuttingDown"
  | "StartupTimeout"
  | "StorageFull"
  | "UnknownId"
  | "UnsupportedFormat"
  | "WriterPoisoned"
  | "ZeroVector";

/** What the package throws: an `Error` whose `code` says why: `catch (e) { if ((e as GrapeError).code === "AlreadyOpen") ... }` */
export interface GrapeError extends Error {
  code: ErrorCode;
}

// `GrapeDB` has a `[Symbol.dispose]` method (for `using`); this declares the symbol for projects
// whose `lib` predates it (before esnext / TypeScript's `esnext.disposable`), as @types/node does.
declare global {
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}
