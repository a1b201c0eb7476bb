/** Where the database keeps its files. `auto`: OPFS in a dedicated worker, else IndexedDB, else memory. */
export type StorageKind = "auto" | "opfs" | "indexeddb" | "memory";

export interface OpenOptions {
  /** Database name (one OPFS directory or IndexedDB database per name). Default "default". */
  name?: string;
  dimension: number;
  distance?: "Cosine" | "Dot" | "Euclid" | "Manhattan";
  storage?: StorageKind;
  /** "batched" (default: durable within flushIntervalMs), "onFlush" (at `flush()`), "sync" (OPFS only: every write). */
  durability?: "batched" | "onFlush" | "sync";
  flushIntervalMs?: number;
  /** Open without writing, when another tab or worker holds the database. */
  readOnly?: boolean;
  /** Ask the browser to keep the data under storage pressure (`navigator.storage.persist()`). */
  persist?: boolean;
  /** HNSW parameters, or `false` for exact search only. */
  hnsw?: { m?: number; efConstruction?: number; ef?: number; fullScanThreshold?: number } | false;
  payloadIndexes?: string[];
  maxPoints?: number;
  maxMemoryMb?: number;
  enableWarmup?: boolean;
  /** A database exported by `exportBytes()` (or natively by `export_archive`), opened into an empty storage. */
  import?: Uint8Array;
  /** A log damaged before its end: "strict" (default) refuses to open (`Corrupt`); "salvage" opens with the records before the damage (see `openReport().wal_damaged_at`). */
  logRecovery?: "strict" | "salvage";
}

export interface PointInput {
  id: number | string;
  vector: Float32Array | number[];
  payload?: Record<string, unknown>;
}

export interface SearchOptions {
  /** How many points to return (default 10). */
  limit?: number;
  /** How many of the best to skip first (default 0). */
  offset?: number;
  /** A filter in Qdrant's JSON shape: `{ must: [{ key: "color", match: { value: "red" } }] }`. */
  filter?: Record<string, unknown>;
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
}

export interface ScoredPoint {
  id: number | string;
  score: number;
  payload?: Record<string, unknown>;
  vector?: number[];
}

export interface PointRecord {
  id: number | string;
  payload?: Record<string, unknown>;
  vector?: number[];
}
