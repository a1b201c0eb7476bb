import sys, collections, unicodedata
sys.path.insert(0, '/tmp/issue21')
from reference import WordPiece, DATA
from tokenizers import Tokenizer
import tokenizers
M = sys.argv[1]
tok = WordPiece(f"{M}/vocab.txt")
hf = Tokenizer.from_file(f"{M}/tokenizer.json"); hf.no_padding(); hf.no_truncation()
bad = 0; n = 0; lens = []; nonascii = collections.Counter(); unk = 0
for fn in ("base.txt", "query.txt"):
    for line in open(f"{DATA}/{fn}", encoding="utf-8"):
        t = line.rstrip("\n"); n += 1
        a = tok.encode(t, max_len=10**9); b = hf.encode(t).ids
        if a != b:
            bad += 1
            if bad <= 5: print("MISMATCH", repr(t[:80]), a[:20], b[:20])
        lens.append(len(b)); unk += b.count(100)
        for c in t:
            if ord(c) > 127: nonascii[c] += 1
lens.sort()
print(f"tokenizers {tokenizers.__version__}: {bad} mismatches in {n} passages (untruncated ids)")
print(f"len p50={lens[n//2]} p99={lens[int(n*.99)]} max={lens[-1]} >128: {sum(l>128 for l in lens)} >256: {sum(l>256 for l in lens)}; [UNK] count {unk}")
print("non-ASCII chars:", len(nonascii), nonascii.most_common(15))
# adversarial strings
tests = ["Héllo WÖRLD!! naïve café", "中文字符测试 mixed 日本語", "tab\there\u00a0nbsp\u200bzwsp\u0000nul", "İstanbul ǅ ß ﬁ Ⅻ ①", "e\u0301 a\u0300", "dont't ... ---<html>", "x"*101, "a"*100, "👍 emoji 😀", "\u3000ideographic space", "Ωmega ΣΊΣΥΦΟΣ", "ﬀ ﬃ ℌ ㎏", "\u2028line\u2029sep\u0085nel", "\ufffdreplacement", "\u00adsoft\u200dhyphen", "unassigned\u0378x \U000E0001tag \ue000pua", "\U0002B820\U0002B900 cjk-ext", "ǈ ǅ Dž titlecase", "x\u0345y \u0307dot", "¿¡«»„“” ‘’ — – · • … ¶ § © ® ™ ° ± × ÷", "$€£¥₹ +<=>^`|~", "Ⓐ ① ㊀ ¼ ² ᵃ", "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ", "ᾈ ῼ ǰ ẞ"]
tb = 0
for t in tests:
    a = tok.encode(t, 10**9); b = hf.encode(t).ids
    if a != b: tb += 1; print("ADV MISMATCH", repr(t), a, b)
print(f"adversarial: {tb}/{len(tests)} mismatches")
