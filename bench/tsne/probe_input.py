"""Build the t-SNE benchmark input from real hidden states: PCA-50 of a probe layer.

Reads a `mixprobe probe` output directory (e.g. from probes/tsne-bench.toml: 5,000 queries,
SmolLM2-135M layer 14), takes `layer.<L>` of one model's safetensors file ([n, hidden] f32),
z-scores every dimension (as `mixprobe metrics --standardize` does: SmolLM2's massive-activation
dimension 507 otherwise holds ~98 % of the variance), reduces it to 50 dimensions with
scikit-learn's PCA (centred, exact SVD) and writes X.npy and labels.npy (source index per row,
from index.json) for bench/tsne/run.sh. `--raw` skips the z-scoring.

    python3 bench/tsne/probe_input.py PROBE_DIR --out out/tsne-bench-real
"""
import argparse
import json
import os

import numpy as np
from safetensors.numpy import load_file
from sklearn.decomposition import PCA


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe_dir")
    ap.add_argument("--model", help="model name in index.json (default: the first)")
    ap.add_argument("--layer", type=int, help="layer (default: the model's only/first kept layer)")
    ap.add_argument("--dims", type=int, default=50)
    ap.add_argument("--out", default="out/tsne-bench-real")
    ap.add_argument("--raw", action="store_true", help="no z-scoring before PCA")
    a = ap.parse_args()
    index = json.load(open(os.path.join(a.probe_dir, "index.json")))
    models = index["models"]
    model = next((m for m in models if m["name"] == a.model), None) if a.model else models[0]
    if model is None:
        raise SystemExit(f"no model {a.model!r} in {a.probe_dir}/index.json")
    layer = a.layer if a.layer is not None else model["layers"][0]
    x = load_file(os.path.join(a.probe_dir, model["file"]))[f"layer.{layer}"].astype(np.float64)
    sources = sorted({e["source"] for e in index["examples"]}, key=[e["source"] for e in index["examples"]].index)
    labels = np.array([sources.index(e["source"]) for e in index["examples"]], dtype=np.int64)
    if not a.raw:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    pca = PCA(n_components=a.dims, svd_solver="full")
    y = pca.fit_transform(x).astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "X.npy"), np.ascontiguousarray(y))
    np.save(os.path.join(a.out, "labels.npy"), labels)
    print(f"wrote {a.out}/X.npy {y.shape} from {model['name']} layer {layer} "
          f"(explained variance {pca.explained_variance_ratio_.sum():.3f}) and labels.npy {sources}")


if __name__ == "__main__":
    main()
