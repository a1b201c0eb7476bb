// The demo's database side: runs in a dedicated worker (OPFS storage) or, where a worker cannot
// use OPFS, on the main thread (IndexedDB). `handle(op, args, progress)` answers the page's calls.
import { GrapeDB } from "../pkg/index.js";

// The name carries the layout: "wordnet-demo" (before BM25) is replaced, see "open".
const NAME = "wordnet-demo-bm25";
const OLD_NAMES = ["wordnet-demo"];
const DIM = 384;
/**
 * BM25 over the glosses: Qdrant's k and b, and their mean length in words (Qdrant's default,
 * 256, is meant for long documents; a gloss is about 15 words).
 */
export const BM25 = { k: 1.2, b: 0.75, avgLen: 15 };
/** How many candidates each side of a hybrid query passes to the fusion. */
const CANDIDATES = 50;
let db = null;
let passages = null;

async function loadPassages() {
  if (!passages) {
    const response = await fetch(new URL("./data/passages.json", import.meta.url));
    if (!response.ok) throw new Error(`could not load the passages (HTTP ${response.status})`);
    passages = await response.json();
  }
  return passages;
}

/** A passage as a point: its embedding, and its text as the BM25 vector "words". */
function pointOf(id, vector, passage, extra = {}) {
  return {
    id,
    vector: { "": vector, words: { text: passage.text } },
    payload: { text: passage.text, lemma: passage.lemma, pos: passage.pos, ...extra },
  };
}

/** A record's dense vector: its `vector` alone, or `vector[""]` beside the words' vector. */
function denseOf(record) {
  return new Float32Array(Array.isArray(record.vector) ? record.vector : record.vector[""]);
}

function posFilter(pos) {
  return pos ? { must: [{ key: "pos", match: { value: pos } }] } : undefined;
}

export async function handle(op, args = {}, progress = () => {}) {
  switch (op) {
    case "open": {
      const start = performance.now();
      db = await GrapeDB.open({
        name: NAME, dimension: DIM, distance: "Cosine", storage: args.storage,
        payloadIndexes: ["pos"], persist: true, sparseVectors: { words: { bm25: BM25 } },
      });
      // A visitor of the demo before BM25 has its passages under the old name, without the
      // words' vectors: this visit imports them anew, so the old copy only takes space.
      for (const old of OLD_NAMES) await GrapeDB.destroy(old).catch(() => {});
      const openMs = performance.now() - start;
      return { openMs, count: db.count(), stats: db.stats(), report: db.openReport() };
    }
    case "import": {
      const [items, response] = await Promise.all([
        loadPassages(), fetch(new URL("./data/vectors.i8", import.meta.url)),
      ]);
      if (!response.ok) throw new Error(`could not load the vectors (HTTP ${response.status})`);
      const bytes = new Int8Array(await response.arrayBuffer());
      const start = performance.now();
      const batch = 500;
      for (let from = 0; from < items.length; from += batch) {
        const points = [];
        for (let i = from; i < Math.min(from + batch, items.length); i++) {
          const v = new Float32Array(DIM);
          for (let d = 0; d < DIM; d++) v[d] = bytes[i * DIM + d] / 127;
          points.push(pointOf(i, v, items[i]));
        }
        db.upsert(points);
        const done = Math.min(from + batch, items.length);
        progress({ done, total: items.length, rate: done / ((performance.now() - start) / 1000) });
        // Let progress messages and other calls through.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      // A checkpoint: the next visit maps one segment instead of replaying the log.
      await db.checkpoint();
      const seconds = (performance.now() - start) / 1000;
      return { count: db.count(), seconds, rate: items.length / seconds };
    }
    case "findText": {
      // Ranked by BM25 over the passages' words; "hybrid" fuses that list with the nearest
      // passages (by meaning) to the best word match, by reciprocal rank fusion.
      const filter = posFilter(args.pos);
      const limit = args.limit ?? 20;
      const start = performance.now();
      if (!args.words) {
        const page = db.scroll({ limit, filter });
        return { points: page.points, matching: db.count(filter), ms: performance.now() - start };
      }
      const words = { query: { text: args.words }, using: "words" };
      let points = db.query({ ...words, limit, filter, with_payload: true }).points;
      let fusedWith = null;
      if (args.mode === "hybrid" && points.length > 0) {
        const [best] = db.get([points[0].id]);
        fusedWith = best.payload.text;
        points = db.query({
          prefetch: [
            { ...words, limit: CANDIDATES },
            { query: denseOf(best), limit: CANDIDATES },
          ],
          query: { fusion: "rrf" },
          limit,
          filter,
          with_payload: true,
        }).points;
      }
      const ms = performance.now() - start;
      // Every passage sharing a word with the query has a BM25 score.
      const must = [{ key: "text", match: { text_any: args.words } }, ...(filter?.must ?? [])];
      return { points, matching: db.count({ must }), ms, fusedWith };
    }
    case "neighbours": {
      const [record] = db.get([args.id]);
      if (!record) throw new Error(`passage ${args.id} does not exist (deleted?)`);
      const start = performance.now();
      const results = db.search(denseOf(record), { limit: args.limit ?? 10, filter: posFilter(args.pos) });
      return { source: record, results, ms: performance.now() - start };
    }
    case "add": {
      const [near] = db.get([args.nearId]);
      if (!near) throw new Error("select a passage first: the new one is placed at its vector");
      const id = args.id;
      const passage = { text: args.text, lemma: args.text.split(":")[0], pos: near.payload.pos };
      db.upsert([pointOf(id, denseOf(near), passage, { added: true })]);
      // A user's edit: durable before the page says it is done (bulk imports rely on the timer).
      await db.flush();
      return { id, count: db.count() };
    }
    case "delete": {
      const deleted = db.delete([args.id]);
      await db.flush();
      return { deleted, count: db.count() };
    }
    case "status": {
      const [health, estimate] = await Promise.all([
        db.health(),
        navigator.storage?.estimate ? navigator.storage.estimate() : Promise.resolve(null),
      ]);
      return { state: db.state, stats: db.stats(), health, metrics: db.metrics(), estimate };
    }
    case "flush":
      await db?.flush();
      return {};
    case "close":
      if (db && db.state !== "Closed") await db.close();
      return {};
    default:
      throw new Error(`unknown operation ${op}`);
  }
}
