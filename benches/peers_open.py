"""Open-time peers for benches/storage.rs: hnswlib load_index, usearch restore and view.

Usage: python peers_open.py BASE.npy WORKDIR
Prints one JSON object with the median seconds of each way to open, measured here on the same
vectors the Rust benchmark used.
"""
import json
import os
import statistics
import sys
import time

import hnswlib
import faiss
import numpy as np
from usearch.index import Index


def median_seconds(fn, runs=7):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        obj = fn()
        times.append(time.perf_counter() - t)
        del obj
    return statistics.median(times)


def main():
    base_path, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    base = np.load(base_path).astype(np.float32)
    n, dim = base.shape
    out = {"rows": n, "dim": dim}

    hnsw_path = os.path.join(work, "hnswlib.bin")
    if not os.path.exists(hnsw_path):
        index = hnswlib.Index(space="cosine", dim=dim)
        # ef_construction 100 keeps the set-up short; load time does not depend on it.
        index.init_index(max_elements=n, M=16, ef_construction=100)
        index.add_items(base, np.arange(n))
        index.save_index(hnsw_path)

    def load_hnsw():
        index = hnswlib.Index(space="cosine", dim=dim)
        index.load_index(hnsw_path, max_elements=n)
        return index

    out["hnswlib_load_index_s"] = median_seconds(load_hnsw)

    faiss_path = os.path.join(work, "faiss.index")
    if not os.path.exists(faiss_path):
        index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 100
        index.add(base / np.linalg.norm(base, axis=1, keepdims=True))
        faiss.write_index(index, faiss_path)
    out["faiss_read_index_s"] = median_seconds(lambda: faiss.read_index(faiss_path))

    usearch_path = os.path.join(work, "usearch.bin")
    if not os.path.exists(usearch_path):
        index = Index(ndim=dim, metric="cos", connectivity=16, dtype="f32")
        index.add(np.arange(n), base)
        index.save(usearch_path)
    out["usearch_restore_s"] = median_seconds(lambda: Index.restore(usearch_path))
    out["usearch_view_s"] = median_seconds(lambda: Index.restore(usearch_path, view=True))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
