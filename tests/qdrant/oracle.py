"""Answers Grape's conformance cases with Qdrant Edge: Qdrant's own segment code, embedded.

Run by tests/qdrant_conformance.rs (through the venv that scripts/test installs):

    python oracle.py CASES.json > ANSWERS.json

CASES.json is a list of collections, each
    {"distance": "Cosine" | "Dot" | "Euclid" | "Manhattan", "dimension": n,
     "text_keys": [key, ...], "points": [{"id", "vector", "payload"}, ...] or
     "points_file": a `grape export` file (validated with qdrant-client's REST models),
     "queries": [{"kind": "count" | "scroll" | "search", "filter": {Qdrant filter JSON} | null,
                  "vector": [...], "limit": n, "score_threshold": x | null}, ...]}
or, for sparse vectors, "sparse": {name: "idf" | "none"} (no dense vector on Qdrant's side;
points carry {"": [dense], name: {"indices", "values"}}), "deletes": [id, ...] applied after
the upsert, and queries {"kind": "sparse", "using": name, "vector": {"indices", "values"},
"offset": n, ...}; with "dimension" and "distance" as well, the dense vector too, and queries
{"kind": "hybrid", "prefetch": [{"query": dense or sparse, "using", "limit", "filter"}, ...],
"query": {"fusion": "rrf" | "dbsf"} or a dense vector, "filter", "limit", ...}; with "named":
{name: {"size": n, "distance": ...}}, named dense vectors beside the dense one (points carry
them by name, or not), searched by queries of kind "search" or "hybrid" with "using": name
and the answer is, per collection, one entry per query: {"count": n}, {"ids": [...]},
{"hits": [[id, score], ...]} or {"error": message} when Qdrant refuses the request.

The filter JSON is turned into qdrant_edge's objects one field at a time, so this file is the
only reading of Qdrant's JSON done on this side, and it is deliberately literal: every key of
the JSON must be consumed, or the case is reported as an error of this script.
"""

import json
import shutil
import sys
import tempfile
import uuid

import numpy
import qdrant_edge as q


class Unsupported(Exception):
    """The JSON has a shape this script does not translate (a bug of the generator)."""


def take(obj, key, default=None):
    return obj.pop(key) if key in obj else default


def done(obj, what):
    if obj:
        raise Unsupported(f"{what}: unknown keys {sorted(obj)}")


def point_id(value):
    if isinstance(value, int):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(value))


def match(m):
    m = dict(m)
    if "value" in m:
        value = take(m, "value")
        # The binding reads a Python bool as an integer; numpy's bool stays a bool.
        result = q.MatchValue(numpy.bool_(value) if isinstance(value, bool) else value)
    elif "any" in m:
        result = q.MatchAny(take(m, "any"))
    elif "except" in m:
        result = q.MatchExcept(take(m, "except"))
    elif "text" in m:
        result = q.MatchText(take(m, "text"))
    elif "text_any" in m:
        result = q.MatchTextAny(take(m, "text_any"))
    elif "phrase" in m:
        result = q.MatchPhrase(take(m, "phrase"))
    else:
        raise Unsupported(f"match {m}")
    done(m, "match")
    return result


def range_(r):
    r = dict(r)
    bounds = {k: take(r, k) for k in ("gt", "gte", "lt", "lte") if k in r}
    done(r, "range")
    if any(isinstance(v, str) for v in bounds.values()):
        return q.RangeDateTime(**bounds)
    return q.RangeFloat(**bounds)


def geo_point(p):
    return q.GeoPoint(lon=p["lon"], lat=p["lat"])


def field_condition(c):
    key = take(c, "key")
    args = {}
    if "match" in c:
        args["match"] = match(take(c, "match"))
    if "range" in c:
        args["range"] = range_(take(c, "range"))
    if "values_count" in c:
        args["values_count"] = q.ValuesCount(**take(c, "values_count"))
    if "geo_radius" in c:
        g = take(c, "geo_radius")
        args["geo_radius"] = q.GeoRadius(geo_point(g["center"]), g["radius"])
    if "geo_bounding_box" in c:
        g = take(c, "geo_bounding_box")
        args["geo_bounding_box"] = q.GeoBoundingBox(
            geo_point(g["top_left"]), geo_point(g["bottom_right"])
        )
    if "geo_polygon" in c:
        g = take(c, "geo_polygon")
        args["geo_polygon"] = q.GeoPolygon(
            [geo_point(p) for p in g["exterior"]["points"]],
            [[geo_point(p) for p in ring["points"]] for ring in g.get("interiors") or []]
            or None,
        )
    done(c, "field condition")
    return q.FieldCondition(key, **args)


def condition(c):
    c = dict(c)
    if "key" in c:
        return field_condition(c)
    if "is_empty" in c:
        result = q.IsEmptyCondition(take(c, "is_empty")["key"])
    elif "is_null" in c:
        result = q.IsNullCondition(take(c, "is_null")["key"])
    elif "has_id" in c:
        result = q.HasIdCondition({point_id(i) for i in take(c, "has_id")})
    elif "has_vector" in c:
        result = q.HasVectorCondition(take(c, "has_vector"))
    elif "nested" in c:
        n = dict(take(c, "nested"))
        result = q.NestedCondition(take(n, "key"), filter_(take(n, "filter")))
        done(n, "nested")
    else:
        # A condition that is itself a filter (must/should/must_not/min_should), or {}.
        return filter_(c)
    done(c, "condition")
    return result


def conditions(value):
    if value is None:
        return None
    if isinstance(value, dict):  # Qdrant accepts one condition in place of a list
        value = [value]
    return [condition(c) for c in value]


def filter_(f):
    if f is None:
        return None
    f = dict(f)
    min_should = take(f, "min_should")
    result = q.Filter(
        must=conditions(take(f, "must")),
        should=conditions(take(f, "should")),
        must_not=conditions(take(f, "must_not")),
        min_should=None
        if min_should is None
        else q.MinShould(conditions(min_should["conditions"]), min_should["min_count"]),
    )
    done(f, "filter")
    return result


def answer(shard, query):
    try:
        flt = filter_(query.get("filter"))
    except Unsupported:
        raise
    except Exception as e:  # Qdrant's types refused the request
        return {"error": f"{type(e).__name__}: {e}"}
    try:
        kind = query["kind"]
        if kind == "count":
            return {"count": shard.count(q.CountRequest(exact=True, filter=flt))}
        if kind == "scroll":
            records, _ = shard.scroll(
                q.ScrollRequest(limit=query["limit"], filter=flt, with_payload=False)
            )
            return {"ids": [point_id(r.id) for r in records]}
        if kind == "select":
            # Every point's payload as `with_payload` selects its fields.
            paths = query["paths"]
            selector = (q.PayloadSelector.Include if query["include"] else q.PayloadSelector.Exclude)(paths)
            records, _ = shard.scroll(q.ScrollRequest(limit=query["limit"], with_payload=selector))
            return {"payloads": [[point_id(r.id), r.payload] for r in records]}
        if kind == "vectors":
            # Every point's vectors as `with_vector` (true or a list of names) selects them.
            records, _ = shard.scroll(
                q.ScrollRequest(limit=query["limit"], with_vector=query["with_vector"], with_payload=False)
            )

            def plain(v):
                if isinstance(v, dict):
                    return {name: plain(x) for name, x in v.items()}
                if isinstance(v, list):
                    return v
                return {"indices": list(v.indices), "values": list(v.values)}

            return {"vectors": [[point_id(r.id), plain(r.vector)] for r in records]}
        if kind == "search":
            hits = shard.query(
                q.QueryRequest(
                    limit=query["limit"],
                    query=q.Query.Nearest(query["vector"], using=query.get("using")),
                    filter=flt,
                    score_threshold=query.get("score_threshold"),
                    params=q.SearchParams(exact=True),
                    with_payload=False,
                )
            )
            return {"hits": [[point_id(h.id), h.score] for h in hits]}
        if kind == "sparse":
            v = query["vector"]
            hits = shard.query(
                q.QueryRequest(
                    limit=query["limit"],
                    offset=query.get("offset", 0),
                    query=q.Query.Nearest(
                        q.SparseVector(indices=v["indices"], values=v["values"]),
                        using=query["using"],
                    ),
                    filter=flt,
                    score_threshold=query.get("score_threshold"),
                    with_payload=False,
                )
            )
            return {"hits": [[point_id(h.id), h.score] for h in hits]}
        if kind == "hybrid":
            prefetches = [
                q.Prefetch(
                    query=nearest(p["query"], p.get("using")),
                    limit=p["limit"],
                    filter=filter_(p.get("filter")),
                )
                for p in query["prefetch"]
            ]
            hits = shard.query(
                q.QueryRequest(
                    prefetches=prefetches,
                    query=fused(query["query"], query.get("using")),
                    limit=query["limit"],
                    filter=flt,
                    score_threshold=query.get("score_threshold"),
                    with_payload=False,
                )
            )
            return {"hits": [[point_id(h.id), h.score] for h in hits]}
        raise Unsupported(f"query kind {kind}")
    except Unsupported:
        raise
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def exported(path):
    """The points of a `grape export` file, each line checked by qdrant-client's REST models as
    the body of Qdrant's point upsert; None without a file."""
    if path is None:
        return None
    from qdrant_client.http import models

    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for line in lines:
        extra = set(line) - {"id", "vector", "payload"}
        if extra:
            raise Unsupported(f"exported point has fields Qdrant does not take: {extra}")
    for start in range(0, len(lines), 256):
        models.PointsList.model_validate({"points": lines[start : start + 256]})
    return lines


def point(p, dense):
    """A point of the case: its dense vector, or its vectors by name (dense ones as lists,
    sparse ones as indices and values; the one under "" only when the case has it)."""
    v = p["vector"]
    if isinstance(v, dict):
        v = {
            name: x if isinstance(x, list) else q.SparseVector(indices=x["indices"], values=x["values"])
            for name, x in v.items()
            if name != "" or dense
        }
    return q.Point(point_id(p["id"]), v, p.get("payload") or {})


def nearest(v, using):
    """A nearest query: a dense vector (a list) or a sparse one (indices and values), of the
    vector named `using` (None: the dense one named "")."""
    if isinstance(v, list):
        return q.Query.Nearest(v, using=using)
    return q.Query.Nearest(q.SparseVector(indices=v["indices"], values=v["values"]), using=using)


def fused(query, using):
    """The query of a request with prefetches: a fusion, or a vector (of the vector named
    `using`) to re-score by."""
    if isinstance(query, dict) and "fusion" in query:
        return {"rrf": q.Fusion.Rrf(k=2), "dbsf": q.Fusion.Dbsf()}[query["fusion"]]
    if isinstance(query, dict) and "rrf" in query:
        rrf = query["rrf"]
        return q.Fusion.Rrf(k=rrf.get("k", 2), weights=rrf.get("weights"))
    return nearest(query, using)


def collection(case, scratch):
    path = tempfile.mkdtemp(dir=scratch)
    sparse = case.get("sparse")  # {name: "idf" | "none"}: sparse vectors only, no dense one
    named = case.get("named", {})  # {name: {"size", "distance"}}: beside the dense one
    if sparse is None and not named:
        config = q.EdgeConfig(
            vectors=q.EdgeVectorParams(
                size=case["dimension"], distance=getattr(q.Distance, case["distance"])
            ),
            wal_enabled=False,
        )
    else:
        modifiers = {"idf": q.Modifier.Idf, "none": getattr(q.Modifier, "None")}
        dense = {}
        if "dimension" in case:
            dense[""] = q.EdgeVectorParams(
                size=case["dimension"], distance=getattr(q.Distance, case["distance"])
            )
        for name, v in named.items():
            dense[name] = q.EdgeVectorParams(size=v["size"], distance=getattr(q.Distance, v["distance"]))
        config = q.EdgeConfig(
            vectors=dense,
            sparse_vectors={
                name: q.EdgeSparseVectorParams(modifier=modifiers[m])
                for name, m in (sparse or {}).items()
            },
            # Qdrant's IDF counts deleted points until its optimizer vacuums them (ours counts
            # live points only): vacuum after any delete, and compare with that.
            optimizers=q.EdgeOptimizersConfig(deleted_threshold=0.0, vacuum_min_vector_number=1),
            wal_enabled=False,
        )
    shard = q.EdgeShard.create(path, config)
    try:
        for key in case.get("text_keys", []):
            # The default word tokenizer, lower-cased; phrases need positions.
            params = q.TextIndexParams(phrase_matching=True)
            shard.update(q.UpdateOperation.create_field_index(key, params))
        points = [
            point(p, "dimension" in case)
            for p in exported(case.get("points_file")) or case["points"]
        ]
        for start in range(0, len(points), 500):
            shard.update(q.UpdateOperation.upsert_points(points[start : start + 500]))
        deletes = [point_id(i) for i in case.get("deletes", [])]
        if deletes:
            shard.update(q.UpdateOperation.delete_points(deletes))
            shard.optimize()
        return [answer(shard, query) for query in case["queries"]]
    finally:
        shard.close()
        shutil.rmtree(path, ignore_errors=True)


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    # Shards fsync: a memory file system keeps the run fast when there is one.
    scratch = "/dev/shm" if shutil.os.path.isdir("/dev/shm") else None
    answers = [collection(case, scratch) for case in cases]
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
