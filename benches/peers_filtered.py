"""Qdrant Edge as the filtered-search peer of benches/hnsw.rs: same vectors, same payloads, same
filters, one search thread.

Usage: python peers_filtered.py BASE QUERY FILTERS [--m 16] [--ef-construction 200] [--ef 64]
       [--queries N] [--indexed]

BASE and QUERY are .npy (float16/float32); FILTERS is the JSON list of {"name", "filter"} that
benches/filtered.rs measures itself on (Qdrant's filter JSON: must/should of match values and
ranges). Every point i gets the payload {"pct": i % 100, "tenant": "t{i % 10}",
"org": "o{i % 1000}"}, as ours does. Prints one JSON object per line: the build (upserts, then
the optimizer that builds the graph), then per filter the queries/s and recall@10 against
Qdrant Edge's own exact answer for that filter.
"""
import argparse
import json
import shutil
import tempfile
import time

import numpy as np
import qdrant_edge as q

def load(path):
    return np.load(path).astype(np.float32)


def emit(**kv):
    print(json.dumps(kv), flush=True)


def condition(c):
    if "range" in c:
        return q.FieldCondition(c["key"], range=q.RangeFloat(**c["range"]))
    return q.FieldCondition(c["key"], match=q.MatchValue(c["match"]["value"]))


def to_filter(f):
    if f is None:
        return None
    return q.Filter(
        must=[condition(c) for c in f.get("must", [])] or None,
        should=[condition(c) for c in f.get("should", [])] or None,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("query")
    ap.add_argument("filters")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--indexed", action="store_true", help="payload indexes on pct, tenant, org")
    a = ap.parse_args()

    base = load(a.base)
    queries = load(a.query)[: a.queries]
    n, dim = base.shape
    path = tempfile.mkdtemp(dir="/dev/shm" if shutil.os.path.isdir("/dev/shm") else None)
    config = q.EdgeConfig(
        vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine),
        hnsw_config=q.HnswIndexConfig(
            m=a.m, ef_construct=a.ef_construction, full_scan_threshold=10_000, max_indexing_threads=1
        ),
        optimizers=q.EdgeOptimizersConfig(
            default_segment_number=1, max_segment_size=10_000_000, indexing_threshold=1000
        ),
        max_search_threads=1,
        wal_enabled=False,
    )
    shard = q.EdgeShard.create(path, config)
    try:
        t = time.perf_counter()
        if a.indexed:
            shard.update(q.UpdateOperation.create_field_index("pct", q.PayloadSchemaType.Integer))
            shard.update(q.UpdateOperation.create_field_index("tenant", q.PayloadSchemaType.Keyword))
            shard.update(q.UpdateOperation.create_field_index("org", q.PayloadSchemaType.Keyword))
        for start in range(0, n, 1000):
            batch = [
                q.Point(
                    i,
                    base[i].tolist(),
                    {"pct": i % 100, "tenant": f"t{i % 10}", "org": f"o{i % 1000}"},
                )
                for i in range(start, min(start + 1000, n))
            ]
            shard.update(q.UpdateOperation.upsert_points(batch))
        upserted = time.perf_counter() - t
        shard.optimize()
        emit(lib="qdrant-edge", build_s=time.perf_counter() - t, upsert_s=upserted, n=n, dim=dim)
        with open(a.filters) as fl:
            filters = json.load(fl)
        for entry in filters:
            name, flt = entry["name"], to_filter(entry["filter"])

            def request(v, exact):
                return q.QueryRequest(
                    limit=10,
                    query=q.Query.Nearest(v.tolist()),
                    filter=flt,
                    params=q.SearchParams(hnsw_ef=a.ef, exact=exact),
                )

            truth = [{h.id for h in shard.query(request(v, True))} for v in queries]
            requests = [request(v, False) for v in queries]
            t = time.perf_counter()
            found = [shard.query(r) for r in requests]
            qps = len(requests) / (time.perf_counter() - t)
            recall = float(np.mean([len({h.id for h in f} & t) / max(1, len(t)) for f, t in zip(found, truth)]))
            emit(lib="qdrant-edge", filter=name, qps=qps, recall=recall, indexed=a.indexed)
    finally:
        shard.close()
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
