"""Qdrant Edge doing what benches/sparse.rs does: BM25 over the WordNet passages (its own Bm25
model, without stemming or stop words, as Grape's), sparse queries, dense queries and hybrid
queries (dense + BM25 prefetches fused by RRF), one thread. Prints one JSON object.

    python peers_sparse.py BASE.txt QUERY.txt BASE.npy QUERY.npy
"""

import json
import shutil
import sys
import tempfile
import time

import numpy
import qdrant_edge as q


def percentiles(latencies):
    xs = sorted(latencies)
    pick = lambda p: xs[round((len(xs) - 1) * p)] * 1e6
    return {"p50_us": pick(0.5), "p99_us": pick(0.99)}


def main():
    base_txt, query_txt, base_npy, query_npy = sys.argv[1:5]
    texts = open(base_txt, encoding="utf-8").read().splitlines()
    queries = open(query_txt, encoding="utf-8").read().splitlines()
    base = numpy.load(base_npy).astype(numpy.float32)
    qvecs = numpy.load(query_npy).astype(numpy.float32)
    texts = texts[: len(base)]
    model = q.Bm25(
        q.Bm25Config(
            stemmer=q.DisabledStemmer(),
            stopwords=q.StopwordsSet(languages=set(), custom=set()),
            lowercase=True,
        )
    )
    scratch = tempfile.mkdtemp(dir="/dev/shm" if shutil.os.path.isdir("/dev/shm") else None)
    out = {}
    try:
        config = q.EdgeConfig(
            vectors={"": q.EdgeVectorParams(size=base.shape[1], distance=q.Distance.Cosine)},
            sparse_vectors={"text": q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            optimizers=q.EdgeOptimizersConfig(
                default_segment_number=1, max_segment_size=10_000_000, indexing_threshold=1000
            ),
            max_search_threads=1,
            wal_enabled=False,
        )
        shard = q.EdgeShard.create(scratch, config)
        t = time.perf_counter()
        docs = [model.embed_document(text) for text in texts]
        out["embed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for start in range(0, len(texts), 1000):
            shard.update(
                q.UpdateOperation.upsert_points(
                    [
                        q.Point(i, {"": base[i].tolist(), "text": docs[i]}, {})
                        for i in range(start, min(start + 1000, len(texts)))
                    ]
                )
            )
        shard.optimize()
        out["build_s"] = time.perf_counter() - t
        sparse, dense, hybrid = [], [], []
        for text, vec in zip(queries, qvecs):
            v = vec.tolist()
            t = time.perf_counter()
            shard.query(
                q.QueryRequest(
                    query=q.Query.Nearest(model.embed_query(text), using="text"), limit=10
                )
            )
            sparse.append(time.perf_counter() - t)
            t = time.perf_counter()
            shard.query(
                q.QueryRequest(
                    query=q.Query.Nearest(v), limit=10, params=q.SearchParams(hnsw_ef=64)
                )
            )
            dense.append(time.perf_counter() - t)
            t = time.perf_counter()
            shard.query(
                q.QueryRequest(
                    prefetches=[
                        q.Prefetch(
                            query=q.Query.Nearest(v), limit=20, params=q.SearchParams(hnsw_ef=64)
                        ),
                        q.Prefetch(
                            query=q.Query.Nearest(model.embed_query(text), using="text"), limit=20
                        ),
                    ],
                    query=q.Fusion.Rrf(k=2),
                    limit=10,
                )
            )
            hybrid.append(time.perf_counter() - t)
        out["sparse"] = percentiles(sparse)
        out["dense"] = percentiles(dense)
        out["hybrid"] = percentiles(hybrid)
        shard.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
