#!/usr/bin/env python3
"""Compare `mixprobe model forward --out` files (ours.p{n}.safetensors) with make_model.py's
transformers reference: max abs difference per hidden state, relative to the reference's largest
magnitude, printed as one JSON line per prompt and a summary line; exit 1 beyond --tol (absolute)."""
import argparse, json, sys
from safetensors.numpy import load_file
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True)
    ap.add_argument("--ours", nargs="+", required=True, help="one file per prompt, in order")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    ref = load_file(args.reference)
    worst = 0.0
    for n, path in enumerate(args.ours):
        ours = load_file(path)
        layers = sum(1 for k in ref if k.startswith(f"p{n}.hidden."))
        diffs = {}
        for i in range(layers):
            a, b = ours[f"hidden.{i}"], ref[f"p{n}.hidden.{i}"]
            assert a.shape == b.shape, (path, i, a.shape, b.shape)
            diffs[f"hidden.{i}"] = float(np.abs(a - b).max())
        diffs["final_norm"] = float(np.abs(ours["final_norm"] - ref[f"p{n}.final_norm"]).max())
        top = max(diffs.values())
        worst = max(worst, top)
        scale = max(float(np.abs(ref[f"p{n}.hidden.{i}"]).max()) for i in range(layers))
        print(json.dumps({"prompt": n, "tokens": int(ref[f"p{n}.ids"].shape[0]), "max_abs_diff": top,
                          "worst": max(diffs, key=diffs.get), "largest_ref_value": scale,
                          "final_norm_diff": diffs["final_norm"]}))
    print(json.dumps({"prompts": len(args.ours), "max_abs_diff": worst, "tol": args.tol,
                      "ok": worst <= args.tol}))
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
