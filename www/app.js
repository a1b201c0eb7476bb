// The demo page: talks to the database in a dedicated worker (OPFS), or runs it on the main
// thread with IndexedDB where a worker cannot use OPFS. See README.md for how to serve it.

const $ = (id) => document.getElementById(id);
const state = { selected: null, openMs: 0, importInfo: null, backend: "" };

/** The database, behind one `call(op, args, onProgress)`, wherever it runs. */
async function connect() {
  if (typeof Worker !== "undefined") {
    try {
      const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
      const pending = new Map();
      let next = 0;
      worker.onmessage = ({ data }) => {
        const entry = pending.get(data.id);
        if (!entry) return;
        if (data.progress) return entry.onProgress?.(data.progress);
        pending.delete(data.id);
        if (data.error) {
          const e = new Error(data.error.message);
          e.code = data.error.code;
          entry.reject(e);
        } else entry.resolve(data.result);
      };
      const call = (op, args, onProgress) => new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject, onProgress });
        worker.postMessage({ id, op, args });
      });
      const opened = await call("open", { storage: "opfs" });
      return { call, opened, where: "a dedicated worker" };
    } catch (e) {
      // No OPFS synchronous handles in this browser's workers: fall back below.
      console.warn("OPFS in a worker is unavailable, using IndexedDB:", e.message);
    }
  }
  const { handle } = await import("./db-service.js");
  const call = (op, args, onProgress) => handle(op, args, onProgress);
  const opened = await call("open", { storage: "indexeddb" });
  return { call, opened, where: "the main thread" };
}

function showError(e) {
  const box = $("error");
  box.hidden = false;
  const hint = e.code === "StorageFull"
    ? " Free some space or allow this site more storage."
    : e.code === "AlreadyOpen" ? " Close the demo in your other tabs and reload." : "";
  box.textContent = `${e.message}${e.code ? ` (${e.code})` : ""}.${hint}`;
}

function fmtMs(ms) {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
}

function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function item(point, { score, onClick, onDelete } = {}) {
  const li = document.createElement("li");
  li.dataset.id = point.id;
  if (score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = score.toFixed(4);
    li.append(s);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = point.payload?.text ?? `#${point.id}`;
  li.append(text);
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = point.payload?.added ? "added" : point.payload?.pos ?? "";
  li.append(tag);
  if (onDelete) {
    const del = document.createElement("button");
    del.className = "link";
    del.type = "button";
    del.title = "delete this passage";
    del.textContent = "✕";
    del.dataset.action = "delete";
    del.addEventListener("click", (e) => { e.stopPropagation(); onDelete(point); });
    li.append(del);
  }
  if (onClick) li.addEventListener("click", () => onClick(point));
  return li;
}

async function main() {
  if (typeof WebAssembly === "undefined") {
    throw Object.assign(new Error("this browser has no WebAssembly"), { code: "Unsupported" });
  }
  if (!navigator.storage && typeof indexedDB === "undefined") {
    throw Object.assign(new Error("this browser offers no storage to web pages (private mode?)"),
      { code: "Unsupported" });
  }
  const { call, opened, where } = await connect();
  state.openMs = opened.openMs;
  state.backend = `${opened.stats.backend} in ${where}`;
  document.body.dataset.backend = opened.stats.backend;

  if (opened.count === 0) {
    $("loading-title").textContent = "First visit: importing 10,000 passages…";
    const info = await call("import", {}, ({ done, total, rate }) => {
      $("progress").value = done / total;
      $("loading-detail").textContent = `${done.toLocaleString()} of ${total.toLocaleString()} passages, ${Math.round(rate).toLocaleString()} points/s`;
    });
    state.importInfo = `${info.count.toLocaleString()} passages in ${info.seconds.toFixed(1)} s (${Math.round(info.rate).toLocaleString()} points/s)`;
    document.body.dataset.imported = "true";
  } else {
    state.importInfo = "no: opened from browser storage";
    document.body.dataset.imported = "false";
  }
  $("loading").hidden = true;
  $("app").hidden = false;

  const refresh = async () => {
    const s = await call("status");
    const search = s.metrics.operations.search.latency;
    $("s-state").textContent = s.state;
    $("s-backend").textContent = state.backend;
    $("s-count").textContent = s.stats.total_vectors.toLocaleString();
    $("s-open").textContent = `${fmtMs(state.openMs)} (${opened.report.segment_points.toLocaleString()} from the checkpoint, ${opened.report.wal_records_replayed} log records replayed)`;
    $("s-import").textContent = state.importInfo;
    const mem = s.stats.memory;
    $("s-memory").textContent = fmtBytes(mem.vectors + mem.mapped + mem.payloads + mem.ids + mem.index);
    $("s-storage").textContent = s.estimate
      ? `${fmtBytes(s.estimate.usage)} used of ${fmtBytes(s.estimate.quota)}${s.stats.persisted ? ", persistent" : ""}`
      : "–";
    $("s-latency").textContent = search.count
      ? `p50 ${fmtMs(search.p50_us / 1000)}, p99 ${fmtMs(search.p99_us / 1000)} over ${search.count} searches`
      : "no search yet";
    const health = $("health");
    health.replaceChildren(...s.health.checks.map((c) => {
      const li = document.createElement("li");
      li.className = c.status;
      li.textContent = `${c.name}: ${c.message}`;
      return li;
    }));
    document.body.dataset.count = s.stats.total_vectors;
    document.body.dataset.state = "ready";
  };

  const showNeighbours = async (point) => {
    state.selected = point;
    const { source, results, ms } = await call("neighbours", { id: point.id, pos: $("pos").value, limit: 10 });
    $("neighbours-card").hidden = false;
    $("source").textContent = source.payload.text;
    $("neighbours-summary").textContent = `searched in ${fmtMs(ms)}`;
    $("neighbours").replaceChildren(...results.map((p) =>
      item(p, { score: p.score, onClick: showNeighbours, onDelete: remove })));
    for (const li of $("found").children) li.classList.toggle("selected", li.dataset.id == point.id);
    await refresh();
  };

  const find = async () => {
    const words = $("words").value.trim();
    const mode = $("mode").value;
    const { points, matching, ms, fusedWith } = await call("findText", { words, mode, pos: $("pos").value });
    const plural = (n, one, many) => `${n.toLocaleString()} ${n === 1 ? one : many}`;
    const ranked = !words ? "" : mode === "hybrid"
      ? `; the best ${points.length} by words and meaning (BM25 and the vectors, fused by RRF)`
      : `; the best ${points.length} ranked by BM25`;
    $("find-summary").textContent = words
      ? `${plural(matching, "passage shares", "passages share")} a word with the query${ranked} (${fmtMs(ms)}); click one for its nearest neighbours`
      : `${plural(matching, "passage", "passages")}, the first ${points.length} shown (${fmtMs(ms)}); click one for its nearest neighbours`;
    $("fused-with").hidden = !fusedWith;
    $("fused-with").textContent = fusedWith ? `Meaning: the nearest passages to the best word match, “${fusedWith}”.` : "";
    $("found").replaceChildren(...points.map((p) => item(p, { score: p.score, onClick: showNeighbours })));
    // What the list shows now (the end-to-end test waits for it).
    document.body.dataset.found = words ? `${mode}:${words}` : "all";
  };

  const remove = async (point) => {
    await call("delete", { id: point.id });
    if (state.selected && state.selected.id !== point.id) await showNeighbours(state.selected);
    else {
      $("neighbours-card").hidden = true;
      state.selected = null;
      await refresh();
    }
    await find();
  };

  $("find-form").addEventListener("submit", (e) => { e.preventDefault(); find().catch(showError); });
  $("mode").addEventListener("change", () => find().catch(showError));
  $("pos").addEventListener("change", () => {
    find().catch(showError);
    if (state.selected) showNeighbours(state.selected).catch(showError);
  });
  $("add-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("new-text").value.trim();
    if (!text || !state.selected) return;
    // Ids of added passages: milliseconds since 1970, far above the 10,000 imported ones.
    call("add", { id: Date.now(), text, nearId: state.selected.id })
      .then(() => { $("new-text").value = ""; return showNeighbours(state.selected); })
      .catch(showError);
  });
  // The database flushes on a timer; also flush when the page is hidden or left.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") call("flush").catch(() => {});
  });
  addEventListener("pagehide", () => { call("flush").catch(() => {}); });

  await refresh();
  await find();
}

main().catch((e) => {
  $("loading").hidden = true;
  document.body.dataset.state = "error";
  showError(e);
});
