"""Build the t-SNE benchmark input: PCA-50 of hashed TF-IDF features of real prompts.

A stand-in for "PCA'd real embeddings" until hidden states exist: the first N/3 GSM8K train
questions, the first N/3 Code Alpaca instructions (with their input, if any) and the first
N/3 ShareGPT first human turns (non-empty, in file order), from ../shared/data. Features:
word unigrams+bigrams hashed to 2^18 columns (HashingVectorizer, lowercase, no sign
flipping), TF-IDF with sublinear tf and l2 norm; then PCA to 50 dimensions (implicitly centred,
ARPACK, random_state 0). Writes X.npy (float32 [N, 50]) and labels.npy (int64: 0 math, 1
code, 2 general).

Usage: python make_input.py [--shared ../shared] [--n 5000] [--out out/tsne-bench]
"""
import argparse
import gzip
import json
import os

import numpy as np
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer


def texts(shared, n):
    per = [n // 3, n // 3, n - 2 * (n // 3)]
    data = os.path.join(shared, "data")
    math = []
    with open(os.path.join(data, "gsm8k", "train.jsonl"), encoding="utf-8") as f:
        for line in f:
            if len(math) == per[0]:
                break
            math.append(json.loads(line)["question"])
    with open(os.path.join(data, "codealpaca", "code_alpaca_20k.json"), encoding="utf-8") as f:
        code = [
            (r["instruction"] + ("\n" + r["input"] if r["input"] else ""))
            for r in json.load(f)[: per[1]]
        ]
    general = []
    with gzip.open(os.path.join(data, "sharegpt", "sharegpt_v3_subset_10k.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            if len(general) == per[2]:
                break
            conv = json.loads(line)["conversations"]
            first = next((t["value"] for t in conv if t["from"] == "human" and t["value"].strip()), None)
            if first is not None:
                general.append(first)
    if [len(math), len(code), len(general)] != per:
        raise SystemExit(f"not enough texts: {len(math)}, {len(code)}, {len(general)} (wanted {per})")
    return math + code + general, np.repeat(np.arange(3), per)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--dims", type=int, default=50)
    ap.add_argument("--out", default="out/tsne-bench")
    a = ap.parse_args()
    docs, labels = texts(a.shared, a.n)
    hashed = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False, norm=None).transform(docs)
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(hashed)
    pca = PCA(n_components=a.dims, svd_solver="arpack", random_state=0)
    x = pca.fit_transform(tfidf).astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "X.npy"), np.ascontiguousarray(x))
    np.save(os.path.join(a.out, "labels.npy"), labels.astype(np.int64))
    print(f"wrote {a.out}/X.npy {x.shape} (explained variance {pca.explained_variance_ratio_.sum():.3f}) and labels.npy")


if __name__ == "__main__":
    main()
