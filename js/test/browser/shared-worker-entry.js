// A module worker that leads a GrapeSharedDB for tabs-worker.html: it opens the database first,
// writes ten points and tells the page what it holds.
import { GrapeSharedDB } from "../../../pkg/index.js";

const db = await GrapeSharedDB.open({ name: "tabs-worker-e2e", dimension: 3 });
for (let i = 0; i < 10; i++) await db.upsert([{ id: i, vector: [1, i, 0] }]);
postMessage({ isLeader: db.isLeader, backend: (await db.stats()).backend });
