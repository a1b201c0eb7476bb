// `GrapeSharedDB`: one database used by every tab (and worker) of an origin at once.
//
// Storage has one writer: the tabs elect it with a Web Lock (`grape-vector-db:leader:<name>`),
// which the browser hands to the next tab in its queue when the leader's tab closes, however it
// closes. The leader opens the database (its storage lock included) and answers the others'
// calls over a BroadcastChannel; a write is answered once flushed, so an answered write outlives
// the leader. A tab keeps its unanswered calls and sends them again to each new leader, so a call
// in flight when the leader's tab closed is answered by the next (writes are idempotent: an
// upsert or delete done twice leaves what once does).
//
// Messages on `grape-vector-db:<name>`: {kind: "hello", from} asks who leads; {kind: "leader",
// from, dimension} announces a leader; {kind: "gone", from} says it stepped down; {kind: "call",
// from, to, id, op, args}; {kind: "answer", to, id, result | error | progress}.
import { GrapeDB } from "./index.js";
import { RemoteDB } from "./client.js";
import { callMethod, closedError, errorFromMessage, errorMessage } from "./serve.js";

/** Calls answered only once flushed (see above). */
const WRITES = new Set(["upsert", "uploadPoints", "delete", "deleteByFilter"]);

/** How long a new leader keeps retrying an open refused because the old leader's storage lock is
 *  still being let go (the browser releases a closed tab's locks one by one). */
const OPEN_RETRY_MS = 100;
const OPEN_ATTEMPTS = 50;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The options every leader opens the database with. With `storage: "auto"` (the default) each
 * context would pick its own (OPFS in a worker, IndexedDB in a page), and a page taking over from
 * a worker would open another, empty database: the shared one is in IndexedDB, which pages and
 * workers alike can open. A `storage` named explicitly is kept (OPFS then works in workers only).
 */
function leaderOptions(options) {
  const auto = (options.storage ?? "auto") === "auto";
  return auto && typeof indexedDB !== "undefined" ? { ...options, storage: "indexeddb" } : options;
}

function sharedError(message, code) {
  return Object.assign(new Error(message), { code });
}

/** One tab's part: a follower that forwards calls, or the leader that holds the database. */
class Tab {
  #options;
  #channel;
  #pending = new Map();
  #nextId = 1;
  #leader;
  #abdicate;
  #abort = new AbortController();
  #ready;
  #settle;
  #left = false;
  /** The database, while this tab leads. */
  db;

  constructor(options) {
    this.#options = options;
    const name = options.name ?? "default";
    this.id = crypto.randomUUID();
    this.#ready = new Promise((resolve, reject) => { this.#settle = { resolve, reject }; });
    this.#channel = new BroadcastChannel(`grape-vector-db:${name}`);
    this.#channel.onmessage = (event) => this.#receive(event.data ?? {});
    this.#queue();
    this.#channel.postMessage({ kind: "hello", from: this.id });
  }

  /** Lines up for the leader lock. */
  #queue() {
    const name = this.#options.name ?? "default";
    navigator.locks
      .request(`grape-vector-db:leader:${name}`, { signal: this.#abort.signal }, () => this.#lead())
      .catch((e) => { if (e?.name !== "AbortError") this.#settle.reject(e); });
  }

  /**
   * Stops leading because the database closed under this tab (GrapeDB closes itself when its
   * page is hidden for good): lets the next tab take over, and lines up again.
   */
  #stepDown() {
    if (this.db === undefined) return;
    this.db = undefined;
    this.#leader = undefined;
    this.#channel.postMessage({ kind: "gone", from: this.id });
    this.#abdicate?.();
    if (!this.#left) this.#queue();
  }

  /** Settles once a leader is known (this tab, its database open, or another that answered). */
  get ready() {
    return this.#ready;
  }

  /** Holds the leader lock: opens the database and serves until this tab leaves. */
  async #lead() {
    if (this.#left) return;
    let db;
    for (let attempt = 1; ; attempt++) {
      try {
        db = await GrapeDB.open(leaderOptions(this.#options));
        break;
      } catch (e) {
        if (e?.code !== "AlreadyOpen" || attempt === OPEN_ATTEMPTS) {
          this.#settle.reject(e);
          this.#left = true;
          this.#channel.close();
          return;
        }
        await sleep(OPEN_RETRY_MS);
      }
    }
    this.db = db;
    this.#leader = this.id;
    this.#announce();
    this.#settle.resolve();
    // This tab's own calls that were waiting for (or sent to) another leader: served here now.
    for (const [id, call] of this.#pending) {
      this.#pending.delete(id);
      this.#serve(call.op, call.args, call.onProgress).then(call.resolve, call.reject);
    }
    await new Promise((resolve) => { this.#abdicate = resolve; });
  }

  #announce() {
    this.#channel.postMessage({ kind: "leader", from: this.id, dimension: this.#options.dimension });
  }

  async #serve(op, args, onProgress) {
    const db = this.db;
    const result = await callMethod(db, op, args, onProgress);
    if (WRITES.has(op)) await db.flush();
    return result;
  }

  /** Calls `op` on the database, wherever it is held. */
  call(op, args, onProgress) {
    if (this.#left) return Promise.reject(closedError());
    if (op === "close") return this.leave();
    if (this.db !== undefined) {
      return this.#serve(op, args, onProgress).catch((e) => {
        if (e?.code !== "Closed" || this.#left) throw e;
        this.#stepDown();
        return this.call(op, args, onProgress);
      });
    }
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#pending.set(id, { op, args, onProgress, resolve, reject });
      if (this.#leader !== undefined) this.#send(id);
    });
  }

  #send(id) {
    const { op, args, onProgress } = this.#pending.get(id);
    this.#channel.postMessage({ kind: "call", from: this.id, to: this.#leader, id, op, args, progress: onProgress !== undefined });
  }

  #receive(message) {
    switch (message.kind) {
      case "hello":
        if (this.db !== undefined) this.#announce();
        break;
      case "leader":
        this.#follow(message);
        break;
      case "gone":
        if (message.from === this.#leader) this.#leader = undefined;
        break;
      case "call":
        if (this.db !== undefined && message.to === this.id) this.#answer(message);
        break;
      case "answer":
        if (message.to === this.id) this.#settleCall(message);
        break;
    }
  }

  #follow({ from, dimension }) {
    if (from === this.#leader || this.db !== undefined) return;
    if (dimension !== this.#options.dimension) {
      this.#settle.reject(sharedError(
        `the database is open in another tab with dimension ${dimension}, not ${this.#options.dimension}`,
        "DimensionMismatch",
      ));
      return;
    }
    this.#leader = from;
    this.#settle.resolve();
    for (const id of this.#pending.keys()) this.#send(id);
  }

  async #answer({ from, id, op, args, progress }) {
    const reply = (fields) => this.#channel.postMessage({ kind: "answer", to: from, id, ...fields });
    const onProgress = progress ? (done, total) => reply({ progress: [done, total] }) : undefined;
    try {
      if (op === "close") throw sharedError("a tab closes its own handle only", "InvalidArgument");
      reply({ result: await this.#serve(op, args ?? [], onProgress) });
    } catch (e) {
      // Stepped down, or the database closed under this tab (its page hidden for good): no
      // answer, and the caller sends the call again to the next leader.
      if (e?.code === "Closed") this.#stepDown();
      if (this.db === undefined) return;
      reply({ error: errorMessage(e) });
    }
  }

  #settleCall({ id, result, error, progress }) {
    const call = this.#pending.get(id);
    if (call === undefined) return;
    if (progress !== undefined) {
      call.onProgress?.(...progress);
      return;
    }
    this.#pending.delete(id);
    if (error !== undefined) call.reject(errorFromMessage(error));
    else call.resolve(result);
  }

  /** Leaves: the leader closes the database (the next tab in the queue takes over). */
  async leave() {
    if (this.#left) return undefined;
    this.#left = true;
    for (const call of this.#pending.values()) call.reject(closedError());
    this.#pending.clear();
    let report;
    if (this.db !== undefined) {
      const db = this.db;
      this.db = undefined;
      try {
        report = await db.close();
      } finally {
        this.#channel.postMessage({ kind: "gone", from: this.id });
        this.#abdicate?.();
      }
    } else {
      this.#abort.abort();
    }
    this.#channel.close();
    return report;
  }
}

export class GrapeSharedDB extends RemoteDB {
  #tab;

  constructor(tab) {
    super((op, args, onProgress) => tab.call(op, args, onProgress));
    this.#tab = tab;
  }

  /**
   * Opens database `options.name` for this tab, shared with the origin's other tabs: the first
   * tab holds it and serves the others; when it closes, the next takes over.
   */
  static async open(options) {
    if (globalThis.navigator?.locks === undefined || typeof BroadcastChannel === "undefined") {
      throw sharedError("GrapeSharedDB needs Web Locks and BroadcastChannel (a browser); use GrapeDB.open", "InvalidConfig");
    }
    const tab = new Tab(options);
    await tab.ready;
    return new GrapeSharedDB(tab);
  }

  /** Whether this tab holds the database now (the others reach it through this one). */
  get isLeader() {
    return this.#tab.db !== undefined;
  }
}
