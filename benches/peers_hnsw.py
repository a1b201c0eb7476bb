"""HNSW peers for benches/hnsw.rs: hnswlib and faiss HNSWFlat, 1 thread, same vectors.

Usage: python peers_hnsw.py BASE QUERY [--m 16] [--ef-construction 200] [--queries N] --ef=16 ...
BASE and QUERY are .npy (float16/float32) or .fvecs. Prints one JSON object per line:
the build of each library, then recall@10 and queries/s per ef, against exact cosine top 10
computed here with numpy.
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss  # noqa: E402
import hnswlib  # noqa: E402
import numpy as np  # noqa: E402


def load(path):
    if path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype=np.int32)
        dim = raw[0]
        return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32).copy()
    return np.load(path).astype(np.float32)


def normalise(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def emit(**kv):
    print(json.dumps(kv), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("query")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", type=int, action="append", default=[])
    a = ap.parse_args()

    base = normalise(load(a.base))
    queries = normalise(load(a.query)[: a.queries])
    n, dim = base.shape
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]

    def recall(found):
        return float(np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)]))

    # hnswlib
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
    index.set_num_threads(1)
    t = time.perf_counter()
    index.add_items(base, np.arange(n))
    build = time.perf_counter() - t
    emit(lib="hnswlib", build_s=build, line=f"hnswlib: build {build:.1f} s (1 thread)")
    for ef in a.ef:
        index.set_ef(ef)
        t = time.perf_counter()
        labels, _ = index.knn_query(queries, k=10, num_threads=1)
        secs = time.perf_counter() - t
        r, qps = recall(labels), len(queries) / secs
        t = time.perf_counter()
        index.knn_query(queries, k=10, num_threads=os.cpu_count())
        qps_all = len(queries) / (time.perf_counter() - t)
        emit(lib="hnswlib", ef=ef, recall=r, qps=qps, qps_all=qps_all,
             line=f"hnswlib: ef {ef:>4}  recall@10 {r:.4}  {qps:>8.0f} q/s, {qps_all:>8.0f} on all threads")

    # faiss HNSWFlat (inner product on normalised vectors = cosine)
    faiss.omp_set_num_threads(1)
    findex = faiss.IndexHNSWFlat(dim, a.m, faiss.METRIC_INNER_PRODUCT)
    findex.hnsw.efConstruction = a.ef_construction
    t = time.perf_counter()
    findex.add(base)
    build = time.perf_counter() - t
    emit(lib="faiss", build_s=build, line=f"faiss: build {build:.1f} s (1 thread)")
    for ef in a.ef:
        findex.hnsw.efSearch = ef
        t = time.perf_counter()
        _, labels = findex.search(queries, 10)
        secs = time.perf_counter() - t
        r, qps = recall(labels), len(queries) / secs
        faiss.omp_set_num_threads(os.cpu_count())
        t = time.perf_counter()
        findex.search(queries, 10)
        qps_all = len(queries) / (time.perf_counter() - t)
        faiss.omp_set_num_threads(1)
        emit(lib="faiss", ef=ef, recall=r, qps=qps, qps_all=qps_all,
             line=f"faiss: ef {ef:>4}  recall@10 {r:.4}  {qps:>8.0f} q/s, {qps_all:>8.0f} on all threads")


if __name__ == "__main__":
    main()
