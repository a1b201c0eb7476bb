"""Qdrant Edge or zvec as the filtered-search peer of benches/filtered.rs: same vectors, same
payloads, same filters, one search thread.

Usage: python peers_filtered.py BASE QUERY FILTERS [--lib qdrant-edge|zvec] [--m 16]
       [--ef-construction 200] [--ef 64] [--queries N] [--indexed]

BASE and QUERY are .npy (float16/float32); FILTERS is the JSON list of {"name", "filter"} that
benches/filtered.rs measures itself on (Qdrant's filter JSON: must/should of match values and
ranges). Every point i gets the payload {"pct": i % 100, "tenant": "t{i % 10}",
"org": "o{i % 1000}"}, as ours does. Prints one JSON object per line: the build (upserts, then
the optimizer that builds the graph), the open (closed, then opened from its files until one
query is answered), then per filter the queries/s and recall@10 against
the peer's own exact answer for that filter (zvec's filters are its SQL-like expressions).
"""
import argparse
import json
import shutil
import tempfile
import time

import numpy as np


def load(path):
    return np.load(path).astype(np.float32)


def emit(**kv):
    print(json.dumps(kv), flush=True)


def payload(i):
    return {"pct": i % 100, "tenant": f"t{i % 10}", "org": f"o{i % 1000}"}


def qdrant_edge(a, base, path):
    """Builds the collection; returns its search function (vector, filter, exact) -> ids."""
    import qdrant_edge as q

    n, dim = base.shape
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
    t = time.perf_counter()
    if a.indexed:
        shard.update(q.UpdateOperation.create_field_index("pct", q.PayloadSchemaType.Integer))
        shard.update(q.UpdateOperation.create_field_index("tenant", q.PayloadSchemaType.Keyword))
        shard.update(q.UpdateOperation.create_field_index("org", q.PayloadSchemaType.Keyword))
    for start in range(0, n, 1000):
        batch = [q.Point(i, base[i].tolist(), payload(i)) for i in range(start, min(start + 1000, n))]
        shard.update(q.UpdateOperation.upsert_points(batch))
    upserted = time.perf_counter() - t
    shard.optimize()
    emit(lib="qdrant-edge", build_s=time.perf_counter() - t, upsert_s=upserted, n=n, dim=dim)
    # Opened again from its files, as an application's next start does, until one query is
    # answered.
    shard.close()
    t = time.perf_counter()
    shard = q.EdgeShard.load(path)
    shard.query(q.QueryRequest(limit=10, query=q.Query.Nearest(base[0].tolist())))
    emit(lib="qdrant-edge", open_s=time.perf_counter() - t)

    def condition(c):
        if "range" in c:
            return q.FieldCondition(c["key"], range=q.RangeFloat(**c["range"]))
        return q.FieldCondition(c["key"], match=q.MatchValue(c["match"]["value"]))

    def search(v, f, exact):
        flt = None
        if f is not None:
            flt = q.Filter(
                must=[condition(c) for c in f.get("must", [])] or None,
                should=[condition(c) for c in f.get("should", [])] or None,
            )
        request = q.QueryRequest(
            limit=10,
            query=q.Query.Nearest(v.tolist()),
            filter=flt,
            params=q.SearchParams(hnsw_ef=a.ef, exact=exact),
        )
        return lambda: {h.id for h in shard.query(request)}

    return search, shard.close


def zvec_collection(a, base, path):
    """zvec: the same, its filters as its SQL-like expressions."""
    import zvec

    n, dim = base.shape
    zvec.init(query_threads=1, optimize_threads=1)
    # Without --indexed the fields are stored but not indexed (zvec then filters by scanning
    # them during the search).
    index = lambda **kv: zvec.InvertIndexParam(**kv) if a.indexed else None
    schema = zvec.CollectionSchema(
        name="bench",
        fields=[
            zvec.FieldSchema("pct", zvec.DataType.INT32, index_param=index(enable_range_optimization=True)),
            zvec.FieldSchema("tenant", zvec.DataType.STRING, index_param=index()),
            zvec.FieldSchema("org", zvec.DataType.STRING, index_param=index()),
        ],
        vectors=zvec.VectorSchema(
            "emb",
            zvec.DataType.VECTOR_FP32,
            dimension=dim,
            index_param=zvec.HnswIndexParam(
                metric_type=zvec.MetricType.COSINE, m=a.m, ef_construction=a.ef_construction
            ),
        ),
    )
    collection = zvec.create_and_open(path=path + "/zvec", schema=schema)
    t = time.perf_counter()
    for start in range(0, n, 1000):
        docs = [
            zvec.Doc(id=str(i), vectors={"emb": base[i].tolist()}, fields=payload(i))
            for i in range(start, min(start + 1000, n))
        ]
        collection.insert(docs)
    upserted = time.perf_counter() - t
    collection.optimize()
    emit(lib="zvec", build_s=time.perf_counter() - t, upsert_s=upserted, n=n, dim=dim)
    collection.close()
    t = time.perf_counter()
    collection = zvec.open(path=path + "/zvec")
    first = zvec.Query(field_name="emb", vector=base[0].tolist(), param=zvec.HnswQueryParam(ef=a.ef))
    collection.query(first, topk=10)
    emit(lib="zvec", open_s=time.perf_counter() - t)

    def condition(c):
        if "range" in c:
            ops = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
            return " and ".join(f"{c['key']} {ops[k]} {v}" for k, v in c["range"].items())
        value = c["match"]["value"]
        return f"{c['key']} = '{value}'" if isinstance(value, str) else f"{c['key']} = {value}"

    def expression(f):
        parts = [condition(c) for c in f.get("must", [])]
        if f.get("should"):
            parts.append("(" + " or ".join(condition(c) for c in f["should"]) + ")")
        return " and ".join(parts)

    def search(v, f, exact):
        query = zvec.Query(
            field_name="emb", vector=v.tolist(), param=zvec.HnswQueryParam(ef=a.ef, is_linear=exact)
        )
        flt = None if f is None else expression(f)
        return lambda: {int(d.id) for d in collection.query(query, topk=10, filter=flt)}

    return search, collection.close


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("query")
    ap.add_argument("filters")
    ap.add_argument("--lib", choices=["qdrant-edge", "zvec"], default="qdrant-edge")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--indexed", action="store_true", help="payload indexes on pct, tenant, org")
    a = ap.parse_args()

    base = load(a.base)
    queries = load(a.query)[: a.queries]
    path = tempfile.mkdtemp(dir="/dev/shm" if shutil.os.path.isdir("/dev/shm") else None)
    build = {"qdrant-edge": qdrant_edge, "zvec": zvec_collection}[a.lib]
    search, close = build(a, base, path)
    try:
        with open(a.filters) as fl:
            filters = json.load(fl)
        for entry in filters:
            name, flt = entry["name"], entry["filter"]
            truth = [search(v, flt, True)() for v in queries]
            requests = [search(v, flt, False) for v in queries]
            # Rounds over the queries for at least a second: one round is too short to time
            # on a shared machine.
            t = time.perf_counter()
            rounds = 0
            while rounds == 0 or time.perf_counter() - t < 1.0:
                found = [r() for r in requests]
                rounds += 1
            qps = rounds * len(requests) / (time.perf_counter() - t)
            recall = float(np.mean([len(f & t) / max(1, len(t)) for f, t in zip(found, truth)]))
            emit(lib=a.lib, filter=name, qps=qps, recall=recall, indexed=a.indexed)
    finally:
        close()
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
