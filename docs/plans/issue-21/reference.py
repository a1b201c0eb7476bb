#!/usr/bin/env python3
"""numpy-only reference for all-MiniLM-L6-v2 (no torch, no transformers).

  PYTHONPATH=/tmp/issue21/pylib python3 reference.py MODEL_DIR [N] [--f32] [--hf-tok]

Embeds the first N (default 5) lines of wordnet-minilm/base.txt and prints the cosine
against base.f16.npy.  Tokenisation is a pure-Python BertTokenizer (BertNormalizer +
BertPreTokenizer + WordPiece); --hf-tok uses the `tokenizers` package instead and
--check-tok compares both on all lines given.
"""
import json, struct, sys, unicodedata, math
import numpy as np

DATA = "/work/shared/data/wordnet-minilm"
MAX_LEN = 256  # sentence_bert_config.json max_seq_length (tokenizer.json says 128: overridden)

# ---------------------------------------------------------------- safetensors
def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        buf = f.read()
    dt = {"F32": np.float32, "I64": np.int64, "F16": np.float16}
    out = {}
    for name, m in header.items():
        if name == "__metadata__":
            continue
        a, b = m["data_offsets"]
        out[name] = np.frombuffer(buf[a:b], dtype=dt[m["dtype"]]).reshape(m["shape"])
    return out

# ---------------------------------------------------------------- tokenizer
def _is_control(c):
    if c in "\t\n\r":
        return False
    # tokenizers (Rust): unicode_categories' is_other() = Cc | Cf | Co only.  The slow Python
    # BertTokenizer drops every "C*" (also Cn unassigned, Cs); the fast one, which made the
    # reference vectors, keeps Cn.
    return unicodedata.category(c) in ("Cc", "Cf", "Co")

def _is_whitespace(c):
    if c in " \t\n\r":
        return True
    return unicodedata.category(c) == "Zs"

def _is_punct(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")

def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF  # sic (tokenizers)
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

class WordPiece:
    def __init__(self, vocab_path):
        self.vocab = {}
        with open(vocab_path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                self.vocab[line.rstrip("\n")] = i
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]

    def normalize(self, text):
        # BertNormalizer(clean_text, handle_chinese_chars, strip_accents=None->lowercase, lowercase)
        out = []
        for c in text:
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or _is_control(c):
                continue
            if _is_whitespace(c) or c.isspace():  # Rust char::is_whitespace (White_Space)
                out.append(" ")
            elif _is_cjk(cp):
                out.append(" " + c + " ")
            else:
                out.append(c)
        text = "".join(out)
        text = unicodedata.normalize("NFD", text)
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        # per-char lowercase like NormalizedString::lowercase (char::to_lowercase): no final-sigma
        # rule, unlike Python's str.lower() and Rust's str::to_lowercase()
        return "".join(c.lower() for c in text)

    def pre_tokenize(self, text):
        # BertPreTokenizer: split on whitespace (removed) and on punctuation (kept, isolated)
        words, cur = [], []
        for c in text:
            if c.isspace() or _is_whitespace(c):  # char::is_whitespace in Rust ~ White_Space prop
                if cur:
                    words.append("".join(cur)); cur = []
            elif _is_punct(c):
                if cur:
                    words.append("".join(cur)); cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word):
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_len=MAX_LEN):
        ids = []
        for w in self.pre_tokenize(self.normalize(text)):
            ids.extend(self.wordpiece(w))
        ids = ids[: max_len - 2]
        return [self.cls] + ids + [self.sep]

# ---------------------------------------------------------------- model
def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b

_erf = np.vectorize(math.erf)

def gelu(x):  # hidden_act "gelu" = exact erf form (not the tanh approximation)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))

class MiniLM:
    def __init__(self, model_dir, dtype=np.float64):
        cfg = json.load(open(f"{model_dir}/config.json"))
        self.L, self.H, self.nh = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.w = {k: v.astype(dtype) for k, v in load_safetensors(f"{model_dir}/model.safetensors").items()
                  if v.dtype != np.int64}
        self.dtype = dtype

    def lin(self, x, name):  # torch Linear: weight [out, in], y = x W^T + b
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed_one(self, ids):
        w, T, H, nh = self.w, len(ids), self.H, self.nh
        d = H // nh
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:T]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        for l in range(self.L):
            p = f"encoder.layer.{l}."
            q = self.lin(x, p + "attention.self.query").reshape(T, nh, d).transpose(1, 0, 2)
            k = self.lin(x, p + "attention.self.key").reshape(T, nh, d).transpose(1, 0, 2)
            v = self.lin(x, p + "attention.self.value").reshape(T, nh, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)          # [nh, T, T]; no padding -> no mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(T, H)
            x = layer_norm(self.lin(ctx, p + "attention.output.dense") + x,
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = gelu(self.lin(x, p + "intermediate.dense"))
            x = layer_norm(self.lin(h, p + "output.dense") + x,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        e = x.mean(0)                                            # mean pooling (all tokens real)
        return e / max(np.linalg.norm(e), 1e-12)                 # Normalize module (F.normalize)

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    model_dir = args[0]
    n = int(args[1]) if len(args) > 1 else 5
    tok = WordPiece(f"{model_dir}/vocab.txt")
    with open(f"{DATA}/base.txt", encoding="utf-8") as f:
        lines = [next(f).rstrip("\n") for _ in range(n)]
    hf = None
    if "--hf-tok" in flags or "--check-tok" in flags:
        from tokenizers import Tokenizer
        hf = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        hf.no_padding()
        hf.enable_truncation(MAX_LEN)
    if "--check-tok" in flags:
        bad = sum(tok.encode(t) != hf.encode(t).ids for t in lines)
        print(f"tokenizer mismatches vs tokenizers {__import__('tokenizers').__version__}: {bad}/{n}")
        return
    if "--summary" in flags:
        m64, m32 = MiniLM(model_dir, np.float64), MiniLM(model_dir, np.float32)
        ref = np.load(f"{DATA}/base.f16.npy", mmap_mode="r")[:n].astype(np.float64)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        cos, d32, lens = [], [], []
        for i, t in enumerate(lines):
            ids = tok.encode(t)
            e64 = m64.embed_one(ids); e32 = m32.embed_one(ids).astype(np.float64)
            cos.append(float(e64 @ ref[i])); d32.append(float(np.abs(e64 - e32).max())); lens.append(len(ids))
        print(f"n={n} tokens min/median/max={min(lens)}/{int(np.median(lens))}/{max(lens)}")
        print(f"cos(f64 numpy, stored f16): min={min(cos):.8f} mean={np.mean(cos):.8f}")
        print(f"max |f32 - f64| per component: {max(d32):.2e}")
        return
    model = MiniLM(model_dir, np.float32 if "--f32" in flags else np.float64)
    ref = np.load(f"{DATA}/base.f16.npy", mmap_mode="r")[:n].astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    for i, t in enumerate(lines):
        ids = hf.encode(t).ids if "--hf-tok" in flags else tok.encode(t)
        e = model.embed_one(ids).astype(np.float64)
        cos = float(e @ ref[i])
        print(f"{i}\ttokens={len(ids)}\tcos={cos:.9f}\tmaxabs={np.abs(e - ref[i]).max():.2e}\t{t[:60]}")

if __name__ == "__main__":
    main()
