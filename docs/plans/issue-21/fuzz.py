import sys, random, unicodedata, collections
sys.path.insert(0, '/tmp/issue21')
from reference import WordPiece
from tokenizers import Tokenizer
M = sys.argv[1]
tok = WordPiece(f"{M}/vocab.txt")
hf = Tokenizer.from_file(f"{M}/tokenizer.json"); hf.no_padding(); hf.no_truncation()
rng = random.Random(1)
bad = collections.Counter(); ex = {}
N = 20000
for i in range(N):
    cs = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.4: cs.append(chr(rng.randint(32, 126)))
        elif r < 0.8: cs.append(chr(rng.randint(0x80, 0x3000)))
        elif r < 0.95: cs.append(chr(rng.randint(0x3000, 0xFFFF)))
        else: cs.append(chr(rng.randint(0x10000, 0x2FFFF)))
    t = "".join(c for c in cs if not 0xD800 <= ord(c) <= 0xDFFF)
    a = tok.encode(t, 10**9); b = hf.encode(t).ids
    if a != b:
        # find culprit chars individually
        for c in set(t):
            if tok.encode(c, 10**9) != hf.encode(c).ids:
                bad[c] += 1; ex[c] = (tok.encode(c,10**9), hf.encode(c).ids)
print(f"fuzz: {N} random strings; distinct single chars that tokenize differently: {len(bad)}")
cats = collections.Counter(unicodedata.category(c) for c in bad)
print("their categories (Python unicodedata", unicodedata.unidata_version, "):", cats.most_common())
for c in list(bad)[:12]:
    print(hex(ord(c)), unicodedata.category(c), unicodedata.name(c, '?'), ex[c])
