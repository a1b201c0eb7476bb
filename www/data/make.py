#!/usr/bin/env python3
"""Builds the demo's data from ../shared/data/wordnet-minilm (run once; the output is committed).

Takes the first 10,000 passages of the base set with their all-MiniLM-L6-v2 vectors, quantises
each vector to int8 (scaled by 127 / its largest component: the demo's database uses cosine, so
the scale does not matter), guesses a part of speech from the gloss, and writes:
  vectors.i8   10,000 x 384 int8, row i = passage i
  passages.json  [{"lemma", "text", "pos"}] in the same order
and, for the end-to-end test, the exact nearest neighbour of a known passage.
Plain Python (no numpy), so it runs anywhere.
"""
import json, math, os, struct, sys
from pathlib import Path

N, DIM = 10_000, 384
data = os.environ.get("GRAPE_DATA") or Path(__file__).resolve().parents[3] / "shared/data"
src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(data) / "wordnet-minilm")
out = Path(__file__).resolve().parent

raw = (src / "base.f16.npy").read_bytes()
header_len = struct.unpack("<H", raw[8:10])[0]
start = 10 + header_len
values = struct.unpack(f"<{N * DIM}e", raw[start:start + N * DIM * 2])
texts = (src / "base.txt").read_text(encoding="utf-8").splitlines()[:N]

NOUN = {"a", "an", "the", "any", "one", "someone", "something", "small", "large", "type", "genus",
        "family", "member", "person", "plant", "tree", "shrub", "herb", "order", "town", "city",
        "river", "capital", "port", "game", "people", "group", "body", "piece", "part", "state"}
ADJ = {"of", "(of", "having", "not", "relating", "characterized", "being", "marked", "full",
       "lacking", "capable", "without", "resembling", "showing", "causing", "used", "able",
       "containing", "pertaining", "inclined", "like", "belonging", "consisting", "(used"}

def pos(text):
    lemmas, _, gloss = text.partition(": ")
    first = gloss.split(" ", 1)[0] if gloss else ""
    lemma = lemmas.split(",")[0]
    if lemma.endswith("ly") and first in {"in", "with", "to", "by", "at", "for"}:
        return "adverb"
    if first in ADJ:
        return "adjective"
    if first in NOUN or first[:1].isupper():
        return "noun"
    return "verb"

rows, passages = bytearray(), []
for i in range(N):
    v = values[i * DIM:(i + 1) * DIM]
    scale = 127 / max(abs(x) for x in v)
    rows += struct.pack(f"{DIM}b", *(max(-127, min(127, round(x * scale))) for x in v))
    lemma = texts[i].partition(": ")[0].split(",")[0]
    passages.append({"lemma": lemma, "text": texts[i], "pos": pos(texts[i])})
(out / "vectors.i8").write_bytes(bytes(rows))
(out / "passages.json").write_text(json.dumps(passages, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")

# The known query of the end-to-end test: the passage whose lemma is "dog" if present, else row 0,
# and its exact nearest other passage on the quantised vectors (what the page indexes).
def unit(i):
    v = struct.unpack_from(f"{DIM}b", rows, i * DIM)
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]
query = next((i for i, p in enumerate(passages) if p["lemma"] == "water"), 0)
q = unit(query)
best = max((sum(a * b for a, b in zip(q, unit(j))), j) for j in range(N) if j != query)
expected = {"query_id": query, "query_text": texts[query], "top_other_id": best[1],
            "top_other_text": texts[best[1]], "top_other_score": round(best[0], 4)}
(out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
counts = {}
for p in passages:
    counts[p["pos"]] = counts.get(p["pos"], 0) + 1
print("wrote", N, "passages;", counts, "; expected:", expected)
