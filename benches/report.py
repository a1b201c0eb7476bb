#!/usr/bin/env python3
"""The performance report of `scripts/bench`: reads the `RESULT {json}` lines the benchmarks
printed into RUN_DIR/*.txt, writes RUN_DIR/results.json (with the machine description), draws
the plots (SVG) and the tables, and puts the tables into PERFORMANCE.md between its GENERATED
markers, the plots into docs/perf/.

Usage: report.py RUN_DIR REPO_DIR
"""
import json
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Same figures, same bytes: fixed SVG element ids and no creation date, so a rerun only changes
# docs/perf/ when a figure changed.
matplotlib.rcParams["svg.hashsalt"] = "grape"
SVG_METADATA = {"Date": None}
import matplotlib.pyplot as plt  # noqa: E402

run, repo = Path(sys.argv[1]), Path(sys.argv[2])
results = []
current = "?"
for txt in sorted(run.glob("*.txt")):
    for line in txt.read_text(errors="replace").splitlines():
        m = re.search(r"RESULT (\{.*\})\s*$", line)
        if m:
            try:
                r = json.loads(m.group(1))
            except json.JSONDecodeError:
                continue
            r["source"] = txt.stem
            # Figures without a dataset belong to the last dataset named before them.
            if r["bench"] == "hnsw":
                if "dataset" in r:
                    current = r["dataset"]
                else:
                    r["dataset"] = current
            results.append(r)
machine = json.loads((run / "machine.json").read_text()) if (run / "machine.json").exists() else {}
# Parts neither run now nor carried over from a local earlier run (a fresh clone has none) keep
# the figures PERFORMANCE.md was last generated from, so running one part never drops the
# tables of the others.
committed = repo / "docs" / "perf" / "results.json"
carried_from_committed = set()
if committed.exists():
    old = json.loads(committed.read_text())
    ran = {r["source"] for r in results}
    kept = [r for r in old.get("results", []) if r.get("source") not in ran]
    if kept:
        results.extend(kept)
        carried_from_committed = {r["source"] for r in kept}
        origin = old.get("machine", {})
        with open(run / "carried-over.txt", "a") as f:
            for part in sorted(carried_from_committed):
                f.write(f"{part} from the committed report (run of {origin.get('date', '?')}, "
                        f"commit {origin.get('commit', '?')})\n")
(run / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1))


def pick(bench, name, **where):
    return [r for r in results if r["bench"] == bench and r["name"] == name
            and all(r.get(k) == v for k, v in where.items())]


def one(bench, name, **where):
    found = pick(bench, name, **where)
    return found[-1]["value"] if found else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "–"


out = []
plots = []
colors = {"ours": "#6b3fa0", "hnswlib": "#d08a1e", "faiss": "#2a7ab0"}

# --- HNSW: recall vs queries/s, build, memory -------------------------------------------------
datasets = sorted({r["dataset"] for r in pick("hnsw", "curve")})
if datasets:
    out.append("### Approximate search (HNSW), one thread\n")
    out.append("| data | at recall@10 | ours q/s / hnswlib | ours q/s / faiss | build 1 thread: ours, hnswlib, faiss (s) | build on all threads (s) | memory: ours / raw vectors |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for ds in datasets:
        ratios = {p: [r for r in pick("hnsw", "qps_ratio_at_equal_recall", dataset=ds, peer=p)
                      if r.get("quantization", "none") == "none"] for p in ("hnswlib", "faiss")}
        recall = next((r[0]["recall"] for r in ratios.values() if r), None)
        builds = [one("hnsw", "build_1_thread", dataset=ds, lib=lib) for lib in ("ours", "hnswlib", "faiss")]
        allb = pick("hnsw", "build_all_threads", dataset=ds)
        mem = pick("hnsw", "memory", dataset=ds)
        codes = mem[-1].get("quantization", "none") if mem else "none"
        mem_txt = (f"{mem[-1]['value']:.0f} MiB / {mem[-1]['raw_vectors_mib']:.0f} MiB "
                   f"({mem[-1]['bytes_per_vector']:.0f} B/vector"
                   + ("" if codes == "none" else f", {codes} codes included") + ")") if mem else "–"
        out.append(
            f"| {ds} | {fmt(recall, 3) if recall else '–'} | "
            f"{fmt(ratios['hnswlib'][-1]['value'], 2) + 'x' if ratios['hnswlib'] else '–'} | "
            f"{fmt(ratios['faiss'][-1]['value'], 2) + 'x' if ratios['faiss'] else '–'} | "
            f"{', '.join(fmt(b) for b in builds)} | "
            f"{fmt(allb[-1]['value']) + ' on ' + str(allb[-1]['threads']) if allb else '–'} | {mem_txt} |")
        fig, ax = plt.subplots(figsize=(6, 4))
        for lib in ("ours", "hnswlib", "faiss"):
            runs = pick("hnsw", "curve", dataset=ds, lib=lib)
            for mode in sorted({r.get("quantization", "none") for r in runs}):
                curve = sorted((r["recall"], r["value"]) for r in runs if r.get("quantization", "none") == mode)
                label = lib if lib != "ours" else "Grape Vector DB" + ("" if mode == "none" else f" ({mode})")
                ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=label,
                        color=colors[lib], linestyle="-" if mode == "none" else "--")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s (1 thread)")
        ax.set_yscale("log")
        ax.set_title(f"HNSW, {ds}, M=16, ef_construction=200")
        ax.grid(alpha=0.3)
        ax.legend()
        name = "recall-qps-" + re.sub(r"[^a-z0-9]+", "-", ds.lower()).strip("-") + ".svg"
        fig.tight_layout()
        fig.savefig(run / name, metadata=SVG_METADATA)
        plt.close(fig)
        plots.append((name, f"recall vs queries/s, {ds}"))
    out.append("")
    coded = pick("hnsw", "quantized_vs_f32")
    if coded:
        out.append("Quantized (one thread; the same graph walked by its codes and re-scored with the vectors, "
                   "against walking the vectors, alternating at each ef; and against the peers at their recall):\n")
        out.append("| data | codes | codes / vectors at recall@10 0.95, 0.97, 0.98, 0.99 | / hnswlib | / faiss | memory held (codes and vectors) |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for ds, mode in sorted({(r["dataset"], r["quantization"]) for r in coded}):
            by_recall = {r["recall"]: r["value"] for r in coded if r["dataset"] == ds and r["quantization"] == mode}
            peers = [[r for r in pick("hnsw", "qps_ratio_at_equal_recall", dataset=ds, peer=p)
                      if r.get("quantization") == mode] for p in ("hnswlib", "faiss")]
            mem = [r for r in pick("hnsw", "memory", dataset=ds) if r.get("quantization") == mode]
            out.append(f"| {ds} | {mode} | " + ", ".join(
                fmt(by_recall.get(x), 2) + ("x" if x in by_recall else "") for x in (0.95, 0.97, 0.98, 0.99)) + " | "
                + " | ".join(f"{fmt(p[-1]['value'], 2)}x at {p[-1]['recall']:.3f}" if p else "–" for p in peers)
                + f" | {fmt(mem[-1]['value']) + ' MiB' if mem else '–'} |")
        out.append("")
    if pick("hnsw", "curve_all_threads"):
        out.append("Queries/s on all threads (ours: one `search_batch` split over the thread pool; hnswlib "
                   "`knn_query(num_threads)`; faiss with OpenMP), at ef 64:\n")
        out.append("| data | ours | hnswlib | faiss | recall@10 (ours) |")
        out.append("| --- | --- | --- | --- | --- |")
        for ds in datasets:
            row = {lib: [r for r in pick("hnsw", "curve_all_threads", dataset=ds, lib=lib, ef=64)
                         if r.get("quantization", "none") == "none"] for lib in ("ours", "hnswlib", "faiss")}
            if not row["ours"]:
                continue
            out.append(f"| {ds} | {fmt(row['ours'][-1]['value'])} | "
                       f"{fmt(row['hnswlib'][-1]['value']) if row['hnswlib'] else '–'} | "
                       f"{fmt(row['faiss'][-1]['value']) if row['faiss'] else '–'} | {row['ours'][-1]['recall']:.4f} |")
        out.append("")
    filt = pick("hnsw", "filtered_qps")
    if filt:
        out.append("Filtered search (ours, one thread; the filter matches a share of the points):\n")
        out.append("| data | matching | recall@10 | queries/s | path |")
        out.append("| --- | --- | --- | --- | --- |")
        for r in filt:
            out.append(f"| {r['dataset']} | {r['selectivity_pct']}% | {r['recall']:.4f} | {fmt(r['value'])} | {r['path']} |")
        out.append("")

# --- Open / startup ----------------------------------------------------------------------------
reopen = pick("storage", "reopen")
if reopen:
    ours = one("storage", "reopen", lib="ours")
    out.append("### Opening a persisted 100K x 384 database (warm page cache)\n")
    out.append("| what | time (ms) | ours / it |")
    out.append("| --- | --- | --- |")
    for r in reopen:
        label = "Grape Vector DB open (+1,000 log records)" if r["lib"] == "ours" else r["lib"]
        out.append(f"| {label} | {fmt(r['value'])} | {ratio(ours, r['value']) if r['lib'] != 'ours' else ''} |")
    for warm in (False, True):
        v = one("lifecycle", "open", warmup=warm)
        if v is not None:
            out.append(f"| Grape Vector DB open, {'with' if warm else 'without'} warmup (no log) | {fmt(v)} | |")
    out.append("")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [("ours" if r["lib"] == "ours" else r["lib"]) for r in reopen]
    ax.barh(labels, [r["value"] for r in reopen], color=["#6b3fa0" if l == "ours" else "#999" for l in labels])
    ax.set_xlabel("ms")
    ax.set_title("Open 100K x 384 (warm cache)")
    fig.tight_layout()
    fig.savefig(run / "open.svg", metadata=SVG_METADATA)
    plt.close(fig)
    plots.append(("open.svg", "open times"))

# --- Writes -----------------------------------------------------------------------------------
ups = pick("storage", "upsert_single")
if ups:
    out.append("### Upserts per durability mode (100K x 384 database, HNSW on)\n")
    out.append("| durability | one point per call (points/s) | batches of 100 (points/s) |")
    out.append("| --- | --- | --- |")
    for r in ups:
        b = one("storage", "upsert_batch100", durability=r["durability"])
        out.append(f"| {r['durability']} | {fmt(r['value'])} | {fmt(b)} |")
    out.append(f"\nBulk load: {fmt(one('storage', 'bulk_upsert'))} points/s; checkpoint {fmt(one('storage', 'checkpoint'))} ms; "
               f"files {fmt(one('storage', 'files_vs_raw_vectors'), 3)}x the raw vectors.\n")

# --- Scan -------------------------------------------------------------------------------------
scan = pick("scan", "scan_throughput")
if scan:
    bw = one("scan", "memory_bandwidth")
    out.append("### Exact scan, 100K x 384, one query\n")
    out.append(f"Single-core read bandwidth measured in the same run: {fmt(bw)} GB/s.\n")
    out.append("| distance | scan GB/s | / memory bandwidth | batch of 64 (queries/s) |")
    out.append("| --- | --- | --- | --- |")
    for r in scan:
        out.append(f"| {r['distance']} | {fmt(r['value'])} | {ratio(r['value'], bw)} | "
                   f"{fmt(one('scan', 'exact_batch_qps', distance=r['distance']))} |")
    out.append("")

# --- Lifecycle ---------------------------------------------------------------------------------
closes = pick("lifecycle", "close_after_10k_unflushed")
if closes:
    out.append("### Lifecycle\n")
    out.append("| figure | value |")
    out.append("| --- | --- |")
    for warm in (False, True):
        fs = one("lifecycle", "first_filtered_search", warmup=warm)
        f1 = one("lifecycle", "first_search", warmup=warm)
        out.append(f"| first search / first filtered search after open, {'with' if warm else 'without'} warmup | {fmt(f1)} us / {fmt(fs)} us |")
    for r in closes:
        out.append(f"| close after 10,000 unflushed upserts, {r['durability']} | {fmt(r['value'], 2)} ms |")
    for r in pick("lifecycle", "search_p50"):
        p99 = one("lifecycle", "search_p99", **{"while": r["while"]})
        out.append(f"| search p50 / p99 while {r['while']} | {fmt(r['value'])} us / {fmt(p99)} us |")
    rss = pick("lifecycle", "rss")
    if rss:
        out.append("| resident memory over mixed operations (RSS, database-held) | " + "; ".join(
            f"{r['operations']:,}: {r['value']:.0f} MiB, {r['database_mib']:.1f} MiB" for r in rss) + " |")
    out.append("")

# --- Filtered search beside Qdrant Edge and zvec ------------------------------------------------
filtered = pick("filtered", "qps")
if filtered:
    peers = [(lib, label) for lib, label in (("qdrant-edge", "Qdrant Edge"), ("zvec", "zvec"))
             if any(r.get("lib") == lib for r in filtered)]
    indexed = next((r.get("indexed") for r in filtered if "indexed" in r), True)
    out.append("### Filtered search beside " + " and ".join(l for _, l in peers) +
               f" (one thread, ef 64, payload indexes {'on' if indexed else 'off'})\n")
    out.append("| data | filter | ours q/s | recall@10 |" +
               "".join(f" {l} q/s | recall@10 | ours / {l} |" for _, l in peers))
    out.append("|" + " --- |" * (4 + 3 * len(peers)))
    names = [r["filter"] for r in filtered if r.get("lib") == "ours"]
    dataset = next((r.get("dataset") for r in filtered if r.get("dataset")), "?")
    for name in dict.fromkeys(names):
        o = next((r for r in filtered if r.get("lib") == "ours" and r["filter"] == name), None)
        row = f"| {dataset} | {name} | {fmt(o and o['value'], 0)} | {fmt(o and o['recall'], 3)} |"
        for lib, _ in peers:
            t = next((r for r in filtered if r.get("lib") == lib and r["filter"] == name), None)
            row += (f" {fmt(t and t['value'], 0)} | {fmt(t and t['recall'], 3)} | "
                    f"{ratio(o and o['value'], t and t['value'])} |")
        out.append(row)
    opens = pick("filtered", "open_ms")
    if opens:
        times = [(label, next((r["value"] for r in opens if r.get("lib") == lib), None))
                 for lib, label in [("ours", "ours")] + peers]
        out.append("\nOpened from files to the first answer: " +
                   ", ".join(f"{label} {fmt(ms, 0)} ms" for label, ms in times) + ".")
    out.append("")

# --- Sparse and hybrid retrieval beside Qdrant Edge -------------------------------------------
if pick("sparse", "sparse_p50"):
    out.append("### Sparse and hybrid retrieval: WordNet passages (100K, BM25 of their text), one thread, beside Qdrant Edge\n")
    build, index = one("sparse", "bm25_build", lib="ours"), one("sparse", "bm25_index", lib="ours")
    peer_build = one("sparse", "build_with_dense", lib="qdrant-edge")
    out.append(f"BM25 index built in {fmt(build, 2)} s (text in), {fmt(index)} MiB; Qdrant Edge's BM25 "
               f"embedding, upsert and optimize (its dense HNSW too): {fmt(peer_build, 2)} s.\n")
    out.append("| query (top 10) | ours p50 / p99 (us) | Qdrant Edge p50 / p99 (us) | p50: Qdrant / ours | p99: Qdrant / ours |")
    out.append("| --- | --- | --- | --- | --- |")
    for name, label in (("sparse", "BM25 (text in)"), ("dense", "dense, ef 64"),
                        ("hybrid", "hybrid: dense + BM25 prefetches of 20, RRF")):
        o50, o99 = one("sparse", f"{name}_p50", lib="ours"), one("sparse", f"{name}_p99", lib="ours")
        t50, t99 = one("sparse", f"{name}_p50", lib="qdrant-edge"), one("sparse", f"{name}_p99", lib="qdrant-edge")
        out.append(f"| {label} | {fmt(o50)} / {fmt(o99)} | {fmt(t50)} / {fmt(t99)} | {ratio(t50, o50)} | {ratio(t99, o99)} |")
    out.append("")

# --- Memory in use, by quantization -------------------------------------------------------------
resident = pick("memory", "rss")
if resident:
    out.append(f"### Resident memory of a database in use ({resident[0]['set']} 100K x 384; opened in a fresh "
               "process, 1,000 queries answered; over the process before the open)\n")
    out.append("| codes | resident (MiB) | heap | mapped files | of which right after the open | held by `stats()` |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for r in resident:
        q = r["quantization"]
        cells = [one("memory", k, quantization=q) for k in ("anon", "file", "file_at_open", "held")]
        out.append(f"| {q} | {fmt(r['value'])} | " + " | ".join(fmt(c) for c in cells) + " |")
    versus = [(r["quantization"], r["value"]) for r in pick("memory", "vs_none")]
    if versus:
        out.append("\nResident over `none`: " + ", ".join(f"{q} {v:.2f}x" for q, v in versus)
                   + " (issue 19's goal for SQ8: 0.35x).")
    limits = sorted({r["limit_mib"] for r in pick("memory", "qps") if r.get("limit_mib")})
    if pick("memory", "qps"):
        out.append("\nQueries/s of the same searches, the files' cached pages dropped before the open "
                   "(which reads every page to verify it): the first round of 1,000, then the best of two more "
                   "(a round stops after 20 s)"
                   + (f"; also within a memory limit of {limits[0]:.0f} MiB (a cgroup holding the process "
                      "and the pages it reads)" if limits else "") + ":\n")
        out.append("| codes | first, no limit | then | first, limited | then |")
        out.append("| --- | --- | --- | --- | --- |")
        for q in sorted({r["quantization"] for r in pick("memory", "qps")}):
            cells = [one("memory", k, quantization=q, limit_mib=lim)
                     for lim in (None, limits[0] if limits else -1) for k in ("qps_cold", "qps")]
            out.append(f"| {q} | " + " | ".join(fmt(c) for c in cells) + " |")
    out.append("")

# --- Browser -----------------------------------------------------------------------------------
browser = pick("browser", "open")
if browser:
    out.append("### Browser (headless Chromium, dedicated worker, OPFS) vs native, same data (100K x 384 generated)\n")
    out.append("| figure | native | browser | browser / native |")
    out.append("| --- | --- | --- | --- |")
    for name, unit in (("open", "ms"), ("search_mean", "us"), ("scan_in_cache", "ns/vector"), ("build", "ms")):
        n = next((r["value"] for r in pick("browser", name) if r.get("where") == "native"), None)
        b = next((r["value"] for r in pick("browser", name) if r.get("where") != "native"), None)
        out.append(f"| {name.replace('_', ' ')} ({unit}) | {fmt(n)} | {fmt(b)} | {ratio(b, n)} |")
    if pick("browser", "bm25_mean"):
        out.append("\nSparse and hybrid on the WordNet passages (100K with their BM25 text, memory storage; "
                   "the browser through the JS API, `db.query`; means over the queries):\n")
        out.append("| figure | native | browser | browser / native |")
        out.append("| --- | --- | --- | --- |")
        for name, label in (("sparse_build", "build: vectors, BM25 text, HNSW (ms)"), ("bm25_mean", "BM25 query (us)"),
                            ("dense_mean", "dense query, ef 64 (us)"), ("hybrid_mean", "hybrid query, RRF (us)")):
            n = next((r["value"] for r in pick("browser", name) if r.get("where") == "native"), None)
            b = next((r["value"] for r in pick("browser", name) if r.get("where") != "native"), None)
            out.append(f"| {label} | {fmt(n)} | {fmt(b)} | {ratio(b, n)} |")
    sweep = pick("browser", "sweep")
    sets = [r.get("set") for r in sweep if r.get("where") != "native"]
    sweep = [r for r in sweep if sets and r.get("set") == sets[0]]
    if sweep:
        out.append(f"\nSQ8 on {sets[0]} 100K x 384 (issue 19's browser goal: search with SQ8 within 1.5x of "
                   "native `f32` at the same recall): one SQ8 database per side, its graph walked by the vectors "
                   "(`f32`) and by the codes re-scored (`sq8`), alternating at each ef; the fastest ef reaching "
                   "each recall@10, mean latency in us (ef).\n")
        out.append("| recall@10 | native f32 | native SQ8 | browser f32 | browser SQ8 | browser SQ8 / native f32 |")
        out.append("| --- | --- | --- | --- | --- | --- |")

        def fastest(native, mode, recall):
            return min((r for r in sweep if (r.get("where") == "native") == native
                        and r.get("mode") == mode and r.get("recall", 0) >= recall),
                       key=lambda r: r["value"], default=None)

        for recall in (0.95, 0.97, 0.98, 0.99):
            cells = [fastest(n, m, recall) for n, m in ((True, "f32"), (True, "sq8"), (False, "f32"), (False, "sq8"))]
            shown = [f"{fmt(c['value'])} ({c['ef']})" if c else "–" for c in cells]
            out.append(f"| {recall} | " + " | ".join(shown) + f" | {ratio(cells[3] and cells[3]['value'], cells[0] and cells[0]['value'])} |")
    million = pick("browser", "million")
    if million:
        imported = next((r["value"] for r in pick("browser", "million_import")), None)
        opened = next((r["value"] for r in pick("browser", "million_open")), None)
        peak = max((r.get("wasm_memory_mib", 0) for r in million), default=None)
        out.append(f"\n1M x 384 with SQ8 (generated: 1,000 clusters of 1,000), built natively, exported as one "
                   f"archive, imported into OPFS as it downloads ({fmt(imported and imported / 1000)} s with the "
                   f"open), opened again in {fmt(opened)} ms, searched with its vectors on disk (issue 19's goal: "
                   f"within 1 GiB of wasm memory at recall@10 >= 0.95). WebAssembly memory: {fmt(peak)} MiB. "
                   "Mean latency in us, re-scoring the whole beam or 3x `limit`:\n")
        out.append("| ef | re-scored | recall@10 | native | browser | browser / native |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for b in (r for r in million if r.get("where") != "native"):
            n = next((r for r in million if r.get("where") == "native" and r.get("ef") == b.get("ef")
                      and r.get("oversampling") == b.get("oversampling")), None)
            rescored = "beam" if b.get("oversampling") is None else f"{b['oversampling']:g}x limit"
            out.append(f"| {b.get('ef')} | {rescored} | {b.get('recall', 0):.4f} | {fmt(n and n['value'])} | "
                       f"{fmt(b['value'])} | {ratio(b['value'], n and n['value'])} |")
        writes = pick("browser", "million_write")
        if writes:
            w = writes[0]
            out.append(f"\nThen 1,000 writes, one point a call: {fmt(w['value'], 2)} ms each; WebAssembly memory "
                       f"after them {fmt(w.get('wasm_memory_mib'))} MiB (vectors held {fmt(w.get('vectors_held_mib'))} MiB).")
    size = (run / "pkg-size.txt").read_text().strip() if (run / "pkg-size.txt").exists() else ""
    if not size and "browser" in carried_from_committed:
        published = (repo / "PERFORMANCE.md").read_text() if (repo / "PERFORMANCE.md").exists() else ""
        size = next((l[len("Package: "):] for l in published.splitlines() if l.startswith("Package: ")), "")
    if size:
        out.append(f"\nPackage: {size}\n")

table = "\n".join(out)
(run / "report.md").write_text(table + "\n")

# Publish into the repository: plots and the tables of this run.
perf = repo / "docs" / "perf"
perf.mkdir(parents=True, exist_ok=True)
for name, _ in plots:
    shutil.copy(run / name, perf / name)
shutil.copy(run / "results.json", perf / "results.json")
doc = repo / "PERFORMANCE.md"
if doc.exists():
    text = doc.read_text()
    begin, end = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        m = machine
        carried = run / "carried-over.txt"
        carried = ("Parts carried over from an earlier run: " + "; ".join(carried.read_text().split("\n")).strip("; ")
                   + ".\n\n") if carried.exists() else ""
        gen = (f"{begin}\n\nRun of {m.get('date', '?')} on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
               f"{m.get('memory', '?')}; {m.get('rustc', '')}; commit {m.get('commit', '?')}.\n\n{carried}"
               + table + "\n\n" + "\n".join(f"![{alt}](docs/perf/{name})" for name, alt in plots) + f"\n\n{end}")
        doc.write_text(head + gen + tail)
print(table)
