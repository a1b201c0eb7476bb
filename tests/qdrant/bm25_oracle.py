"""BM25 sparse vectors from Qdrant Edge's own model, for tests/qdrant_conformance.rs.

    python bm25_oracle.py CASE.json > VECTORS.json

CASE.json is {"config": {"k": x, "b": x, "avg_len": x}, "documents": [text, ...],
"queries": [text, ...]}; the answer is {"documents": [[indices, values], ...], "queries": [...]},
each vector's pairs sorted by index. Grape's BM25 has no stemming and no stop words, so the model
is configured without them (Qdrant's default language is English).
"""

import json
import sys

import qdrant_edge as q


def pairs(vector):
    ordered = sorted(zip(vector.indices, vector.values))
    return [[i for i, _ in ordered], [v for _, v in ordered]]


def main():
    with open(sys.argv[1]) as f:
        case = json.load(f)
    config = case["config"]
    model = q.Bm25(
        q.Bm25Config(
            k=config["k"],
            b=config["b"],
            avg_len=config["avg_len"],
            stemmer=q.DisabledStemmer(),
            stopwords=q.StopwordsSet(languages=set(), custom=set()),
            lowercase=True,
        )
    )
    json.dump(
        {
            "documents": [pairs(model.embed_document(t)) for t in case["documents"]],
            "queries": [pairs(model.embed_query(t)) for t in case["queries"]],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
