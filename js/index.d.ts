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
