// End-to-end test of the web demo, as a user's browser runs it: Debian's Chromium driven by
// playwright-core, the page served on 127.0.0.1. First visit (import), a search with a known top
// result, a BM25 and a hybrid search, adding a passage (found by its words at once) and deleting
// it, then the browser closed and relaunched on the same profile: the database must open from
// storage with the same count and results.
// Usage: node e2e.mjs <base url> <screenshot dir>. Fails on any page or console error.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { BM25 } from "../db-service.js";

const [base, shots] = process.argv.slice(2);
assert.ok(base && shots, "usage: node e2e.mjs <base url> <screenshot dir>");
mkdirSync(shots, { recursive: true });
const expected = JSON.parse(readFileSync(new URL("../data/expected.json", import.meta.url), "utf8"));
const passages = JSON.parse(readFileSync(new URL("../data/passages.json", import.meta.url), "utf8"));
const profile = mkdtempSync(join(tmpdir(), "grape-e2e-"));
const errors = [];

async function launch() {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console error: ${m.text()}`); });
  context.on("weberror", (e) => errors.push(`web error: ${e.error().message}`));
  return { context, page };
}

function checkErrors(when) {
  assert.deepEqual(errors, [], `errors ${when}`);
}

async function ready(page) {
  await page.goto(`${base}/www/`);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null,
    { timeout: 180_000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state === "error") {
    throw new Error(`the page failed: ${await page.textContent("#error")}`);
  }
}

/** Searches `words` ranked by `mode` ("words" or "hybrid"); the list's ids, texts and scores. */
async function find(page, words, mode = "words") {
  await page.fill("#words", words);
  await page.selectOption("#mode", mode);
  await page.click("#find-form button");
  await page.waitForFunction((want) => document.body.dataset.found === want, `${mode}:${words}`);
  return page.$$eval("#found li", (lis) => lis.map((li) => ({
    id: Number(li.dataset.id),
    text: li.querySelector(".text").textContent,
    score: Number(li.querySelector(".score")?.textContent),
  })));
}

/** A text's words as BM25 takes them: split at anything not a letter or digit, lower-cased. */
const wordsOf = (text) => text.toLowerCase().split(/[^\p{Alphabetic}\p{N}]+/u).filter((w) => w !== "");
const hasWord = (text, word) => wordsOf(text).includes(word);

/**
 * The BM25 ranking of `query` over `texts`, computed here from the formula (the oracle of the
 * page's ranking): for each query word w, idf(w) = ln(1 + (N - n + 0.5) / (n + 0.5)) times
 * tf (k + 1) / (tf + k (1 - b + b len / avgLen)).
 */
function bm25Ranking(texts, query, { k, b, avgLen }) {
  const docs = texts.map(wordsOf);
  const asked = [...new Set(wordsOf(query))];
  const idf = new Map(asked.map((w) => {
    const n = docs.filter((d) => d.includes(w)).length;
    return [w, Math.log(1 + (docs.length - n + 0.5) / (n + 0.5))];
  }));
  return docs.map((d, id) => {
    let score = 0;
    for (const w of asked) {
      const tf = d.filter((x) => x === w).length;
      if (tf > 0) score += idf.get(w) * tf * (k + 1) / (tf + k * (1 - b + b * d.length / avgLen));
    }
    return { id, score };
  }).filter((h) => h.score > 0).sort((x, y) => y.score - x.score || x.id - y.id);
}

/** Finds the known query passage by text, opens its neighbours, returns the first two ids. */
async function knownQuery(page) {
  await find(page, "liquid necessary");
  const known = `#found li[data-id="${expected.query_id}"]`;
  await page.waitForSelector(known, { timeout: 10_000 });
  await page.click(`${known} .text`);
  await page.waitForSelector("#neighbours li");
  const ids = await page.$$eval("#neighbours li", (lis) => lis.map((li) => Number(li.dataset.id)));
  const scores = await page.$$eval("#neighbours .score", (s) => s.map((x) => Number(x.textContent)));
  return { ids, scores };
}

const count = (page) => page.evaluate(() => Number(document.body.dataset.count));

let { context, page } = await launch();
let first;
try {
  const started = Date.now();
  await ready(page);
  assert.equal(await page.evaluate(() => document.body.dataset.imported), "true", "first visit imports");
  assert.equal(await count(page), 10_000);
  const backend = await page.evaluate(() => document.body.dataset.backend);
  console.log(`first visit: ready in ${Date.now() - started} ms on ${backend}; ${await page.textContent("#s-import")}`);
  await page.screenshot({ path: join(shots, "1-first-visit.png"), fullPage: true });

  first = await knownQuery(page);
  assert.equal(first.ids[0], expected.query_id, "a passage is its own nearest neighbour");
  assert.equal(first.ids[1], expected.top_other_id, `top result for "${expected.query_text}"`);
  assert.ok(Math.abs(first.scores[1] - expected.top_other_score) < 2e-3, `score ${first.scores[1]}`);
  console.log(`search: ${await page.textContent("#neighbours-summary")}; top other: ${expected.top_other_text}`);

  // Ranked by words: the page's BM25 ranking is the formula's, computed here over the passages
  // (ties aside: a score shared with another passage may list either).
  const byWords = await find(page, "desert water");
  const want = bm25Ranking(passages.map((p) => p.text), "desert water", BM25);
  assert.equal(byWords.length, 20);
  byWords.forEach((h, i) => {
    assert.ok(Math.abs(h.score - want[i].score) < 2e-4, `rank ${i}: score ${h.score}, formula ${want[i].score}`);
    const tied = want.filter((w) => Math.abs(w.score - want[i].score) < 1e-4).map((w) => w.id);
    assert.ok(tied.includes(h.id), `rank ${i}: ${h.text}`);
  });
  // Hybrid: the word list fused with the passages nearest in meaning to its best hit, so some
  // passages come by meaning alone (none of the words), and the best word match stays in.
  const hybrid = await find(page, "desert water", "hybrid");
  const byMeaning = hybrid.filter((h) => !hasWord(h.text, "desert") && !hasWord(h.text, "water"));
  assert.ok(byMeaning.length > 0, "hybrid brings passages sharing no word with the query");
  assert.ok(hybrid.some((h) => h.id === byWords[0].id), "the best word match is in the hybrid list");
  console.log(`BM25 "desert water": ${byWords[0].text}; hybrid adds by meaning: ${byMeaning[0].text}`);
  await page.screenshot({ path: join(shots, "1b-hybrid.png"), fullPage: true });

  await page.fill("#new-text", "puddle: a small pool of water left after rain");
  await page.click("#add-form button");
  await page.waitForFunction(() => document.body.dataset.count === "10001");
  await page.waitForSelector("#neighbours .tag:text('added')");
  await page.screenshot({ path: join(shots, "2-results.png"), fullPage: true });
  const addedId = await page.$eval("#neighbours li:has(.tag:text('added'))", (li) => li.dataset.id);
  const puddles = await find(page, "puddle rain");
  assert.equal(String(puddles[0]?.id), addedId, "an added passage is found by its words at once");
  await page.click(`#neighbours li[data-id="${addedId}"] [data-action=delete]`);
  await page.waitForFunction(() => document.body.dataset.count === "10000");
  console.log(`status: ${(await page.textContent("#s-latency")).trim()}`);
  checkErrors("on the first visit");
} finally {
  await context.close();
}

({ context, page } = await launch());
try {
  const started = Date.now();
  await ready(page);
  assert.equal(await page.evaluate(() => document.body.dataset.imported), "false", "no second import");
  assert.equal(await count(page), 10_000);
  const opened = await page.textContent("#s-open");
  console.log(`second visit: ready in ${Date.now() - started} ms; opened in ${opened}`);
  const again = await knownQuery(page);
  assert.deepEqual(again.ids, first.ids, "the same results after a browser restart");
  await page.screenshot({ path: join(shots, "3-second-visit.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, "4-phone-width.png"), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  checkErrors("on the second visit");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`e2e passed; screenshots in ${shots}`);
