# Derive the per-code-point behaviour of HF tokenizers' BertNormalizer + BertPreTokenizer
# (the exact tables the reference used) by running them on every scalar value.
import sys, collections
from tokenizers import normalizers, pre_tokenizers
norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
pre = pre_tokenizers.BertPreTokenizer()
classes = collections.Counter(); mapped = 0; multi = 0; runs = 0; prev = None
for cp in range(0x110000):
    if 0xD800 <= cp <= 0xDFFF: continue
    c = chr(cp)
    n = norm.normalize_str("a" + c + "a")[1:-1]
    if n == "": k = "drop"
    elif n == " ": k = "space"
    elif n == f" {c} ": k = "cjk"
    else:
        parts = [p for p, _ in pre.pre_tokenize_str("a" + n + "a")]
        k = "punct" if len(parts) == 3 and parts[1] == n else ("other" if len(parts) == 1 else "mixed")
        if n != c: mapped += 1; multi += len(n) > 1
    classes[k] += 1
    if k != prev: runs += 1; prev = k
print("classes:", dict(classes))
print("code points whose normalized form differs (not drop/space/cjk):", mapped, "of which multi-char:", multi)
print("class runs over the code space (range-table entries):", runs)
