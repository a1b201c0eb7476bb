// The demo's database side: runs in a dedicated worker (OPFS storage) or, where a worker cannot
// use OPFS, on the main thread (IndexedDB). `handle(op, args, progress)` answers the page's calls.
import { GrapeDB } from "../pkg/index.js";

const NAME = "wordnet-demo";
const DIM = 384;
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

function pointOf(id, vector, passage) {
  return { id, vector, payload: { text: passage.text, lemma: passage.lemma, pos: passage.pos } };
}

export async function handle(op, args = {}, progress = () => {}) {
  switch (op) {
    case "open": {
      const start = performance.now();
      db = await GrapeDB.open({
        name: NAME, dimension: DIM, distance: "Cosine", storage: args.storage,
        payloadIndexes: ["pos"], persist: true,
      });
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
      const must = [];
      if (args.words) must.push({ key: "text", match: { text: args.words } });
      if (args.pos) must.push({ key: "pos", match: { value: args.pos } });
      const start = performance.now();
      const page = db.scroll({ limit: args.limit ?? 20, filter: { must } });
      const matching = db.count({ must });
      return { points: page.points, matching, ms: performance.now() - start };
    }
    case "neighbours": {
      const [record] = db.get([args.id]);
      if (!record) throw new Error(`passage ${args.id} does not exist (deleted?)`);
      const filter = args.pos ? { must: [{ key: "pos", match: { value: args.pos } }] } : undefined;
      const start = performance.now();
      const results = db.search(new Float32Array(record.vector), { limit: args.limit ?? 10, filter });
      return { source: record, results, ms: performance.now() - start };
    }
    case "add": {
      const [near] = db.get([args.nearId]);
      if (!near) throw new Error("select a passage first: the new one is placed at its vector");
      const id = args.id;
      db.upsert([{ id, vector: new Float32Array(near.vector),
        payload: { text: args.text, lemma: args.text.split(":")[0], pos: near.payload.pos, added: true } }]);
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
