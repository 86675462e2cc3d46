"""Side-by-side t-SNE benchmark: openTSNE and scikit-learn on the same matrix as mixprobe.

Times openTSNE (TSNE defaults, n_jobs=THREADS) and scikit-learn (TSNE defaults, init="pca",
OpenMP limited to THREADS), min of --repeats runs each, and computes the exact KL divergence of
every map (openTSNE's, scikit-learn's and, with --ours, mixprobe's) with ONE routine on ONE P:
openTSNE's perplexity-30 affinities on exact nearest neighbours. Reads mixprobe's timings from
<out>/ours.json when present and prints the ratios.

Usage: python bench_opentsne.py --input X.npy|X.safetensors [--tensor NAME] [--out out/tsne-bench]
       [--threads 2] [--repeats 3] [--ours out/tsne-bench/ours.npy] [--skip-sklearn]
"""
import argparse
import json
import os
import time

import numpy as np


def exact_kl(P, Y):
    """KL(P||Q) with q_ij = (1+|y_i-y_j|^2)^-1 / Z over all pairs i != j (no approximation)."""
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    z = 0.0
    for s in range(0, n, 1024):
        d2 = ((Y[s:s + 1024, None, :] - Y[None, :, :]) ** 2).sum(-1)
        w = 1.0 / (1.0 + d2)
        w[np.arange(d2.shape[0]), np.arange(s, s + d2.shape[0])] = 0.0
        z += w.sum()
    P = P.tocoo()
    d2 = ((Y[P.row] - Y[P.col]) ** 2).sum(-1)
    return float(np.sum(P.data * np.log(P.data * z * (1.0 + d2))))


def load(path, tensor=None):
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if tensor is None:
            if len(tensors) != 1:
                raise SystemExit(f"{path} has {len(tensors)} tensors: pick one with --tensor")
            tensor = next(iter(tensors))
        x = tensors[tensor]
    else:
        x = np.load(path)
    return np.ascontiguousarray(x, dtype=np.float32)


def timed(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
        out = res if out is None else out
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help=".npy or .safetensors, rows = examples")
    ap.add_argument("--tensor", help="tensor name in a .safetensors input (default: its only tensor)")
    ap.add_argument("--out", default="out/tsne-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--ours", help="mixprobe's map (.npy) of the same input")
    ap.add_argument("--skip-sklearn", action="store_true")
    a = ap.parse_args()

    from openTSNE import TSNE as OpenTSNE
    from openTSNE.affinity import PerplexityBasedNN
    from threadpoolctl import threadpool_limits

    X = load(a.input, a.tensor)
    os.makedirs(a.out, exist_ok=True)
    print(f"input {a.input}: {X.shape[0]} x {X.shape[1]}, {a.threads} threads, min of {a.repeats}")
    rows = []  # (name, time or None, embedding, own KL estimate or None)

    def run_open():
        emb = OpenTSNE(n_jobs=a.threads, random_state=a.seed, perplexity=a.perplexity).fit(X)
        return np.asarray(emb), float(emb.kl_divergence)

    t, (y, kl_est) = timed(run_open, a.repeats)
    np.save(os.path.join(a.out, "opentsne.npy"), y.astype(np.float32))
    rows.append(("openTSNE", t, y, kl_est))

    if not a.skip_sklearn:
        from sklearn.manifold import TSNE as SkTSNE

        def run_sk():
            with threadpool_limits(a.threads):
                m = SkTSNE(perplexity=a.perplexity, init="pca", random_state=a.seed, n_jobs=a.threads)
                y = m.fit_transform(X)
            return y, float(m.kl_divergence_)

        t, (y, kl_est) = timed(run_sk, a.repeats)
        np.save(os.path.join(a.out, "sklearn.npy"), y.astype(np.float32))
        rows.append(("scikit-learn", t, y, kl_est))

    ours_json = os.path.join(a.out, "ours.json")
    ours_time = None
    if os.path.exists(ours_json):
        with open(ours_json) as f:
            ours_time = json.load(f)["min_s"]
    if a.ours:
        rows.append(("mixprobe", ours_time, np.load(a.ours), None))

    P = PerplexityBasedNN(X, perplexity=a.perplexity, method="exact", n_jobs=a.threads, random_state=a.seed).P
    print(f"\nshared P: openTSNE PerplexityBasedNN(perplexity={a.perplexity}, method='exact'), nnz {P.nnz}")
    print(f"{'tool':<14}{'time (s)':>10}{'exact KL':>10}{'own KL':>10}")
    res = {}
    for name, t, y, est in rows:
        kl = exact_kl(P, y)
        res[name] = (t, kl)
        print(f"{name:<14}{(f'{t:.3f}' if t else '-'):>10}{kl:>10.4f}{(f'{est:.4f}' if est else '-'):>10}")
    if "mixprobe" in res and res["mixprobe"][0]:
        t_ours, kl_ours = res["mixprobe"]
        for name in ("openTSNE", "scikit-learn"):
            if name in res:
                t, kl = res[name]
                print(f"{name} time / mixprobe time = {t / t_ours:.2f}x; mixprobe KL / {name} KL = {kl_ours / kl:.4f}")
    with open(os.path.join(a.out, "side_by_side.json"), "w") as f:
        json.dump({k: {"time_s": v[0], "exact_kl": v[1]} for k, v in res.items()}, f, indent=1)


if __name__ == "__main__":
    main()
