#!/usr/bin/env python3
"""A peer classifier for the ShareGPT ablation labels: scikit-learn TF-IDF + logistic regression.

Is learned-v8's math ceiling (about 0.80 / 0.79 over every labelled conversation) a weakness of
mixprobe's hashed n-gram model, or of text classifiers on these labels? This script answers with
the classifier a researcher would reach for first, scored the way `data ablate-train` scores
learned-v8's nested estimate:

- the sections are the `# section NAME` blocks of the label files, as mixprobe reads them;
- for every section in turn (the outer loop), the regularization C and the decision threshold are
  chosen without that section: inner grouped cross-validation over the other sections (their
  sections dealt round-robin into --inner folds), maximizing min(precision, recall) of the pooled
  inner predictions, the criterion learned-v8 selects by;
- the TF-IDF vocabulary and weights are fitted on the outer training sections only;
- a model with the chosen C is fitted on all other sections and judges the left-out one at the
  chosen threshold; every labelled conversation gets exactly one out-of-sample verdict.

It prints per category the pooled precision / recall with tp fp fn, beside learned-v8's nested
row read from the detector file, and writes the same as JSON (--out).

Conversations: the reader's view of ../shared's ShareGPT file (a leading assistant turn dropped;
a record with an empty or whitespace-only turn, an unknown role or no assistant turn excluded,
as mixprobe's reader does). The script checks that it scores as many labelled conversations, and
as many positives, as the detector file records, and says so when it does not.

Usage (17 minutes on 2 cores, session 12):
  python3 bench/ablation/peer.py --data ../shared/data/sharegpt/sharegpt_v3_subset_10k.jsonl.gz \
      --labels tests/fixtures/ablation_labels.tsv,...,tests/fixtures/ablation_labels_active1.tsv \
      --detector data/ablation/detector-v8.json --out out/ablation-peer.json
Needs: pip install scikit-learn numpy scipy
"""

import argparse
import gzip
import json
import sys
import time

try:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
except ImportError:
    print("needs: pip install scikit-learn numpy scipy", file=sys.stderr)
    sys.exit(2)


def fail(message):
    """A user error: the message on stderr, exit code 2 (mixprobe's convention)."""
    print(f"peer.py: {message}", file=sys.stderr)
    sys.exit(2)

ROLES = {"human": "U", "user": "U", "gpt": "A", "chatgpt": "A", "assistant": "A", "bard": "A",
         "bing": "A", "system": "S"}


def read_labels(paths):
    """id -> (code, math, section), mixprobe's label format."""
    out = {}
    for path in paths:
        section = ""
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                name = line[len("# section "):].strip() if line.startswith("# section ") else ""
                if name and len(name.split()) == 1:
                    section = name
                if line.startswith("#") or not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 3 or fields[1].strip() not in ("0", "1") or fields[2].strip() not in ("0", "1"):
                    fail(f"{path}:{n}: expected id<TAB>code<TAB>math with 0/1 bits")
                cid = fields[0].strip()
                if cid in out:
                    fail(f"{path}:{n}: id {cid!r} is labelled twice")
                out[cid] = (int(fields[1]), int(fields[2]), section)
    return out


def conversation_text(record):
    """The reader's view as one text, or None where mixprobe's reader (src/data/read.rs,
    `sharegpt_turns`) excludes the record: an unknown role, a system turn after the start, no
    assistant turn once leading assistant turns are dropped, two turns in a row with one role,
    or a blank turn."""
    turns = []
    for t in record.get("conversations") or []:
        role = ROLES.get(str(t.get("from", "")).lower())
        value = t.get("value")
        if role is None or not isinstance(value, str):
            return None
        turns.append((role, value))
    if not turns or any(r == "S" for r, _ in turns[1:]):
        return None
    start = 1 if turns[0][0] == "S" else 0
    while start < len(turns) and turns[start][0] == "A":
        del turns[start]
    if not any(r == "A" for r, _ in turns):
        return None
    if any(a[0] == b[0] for a, b in zip(turns, turns[1:])):
        return None
    if any(not v.strip() for _, v in turns):
        return None
    return "\n".join(f"{r}: {v}" for r, v in turns)


def counts(pred, y):
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    return tp, fp, fn


def min_pr(pred, y):
    tp, fp, fn = counts(pred, y)
    return min(tp / max(tp + fp, 1), tp / max(tp + fn, 1))


THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the ShareGPT file the labels refer to")
    ap.add_argument("--labels", required=True, help="comma-separated label files")
    ap.add_argument("--detector", help="a detector file whose nested rows to print beside")
    ap.add_argument("--grid", default="4,16", help="regularization C values to choose from")
    ap.add_argument("--inner", type=int, default=6, help="inner grouped folds")
    ap.add_argument("--out", help="write the result as JSON")
    ap.add_argument("--smoke", type=int, default=0, help="score only the first N sections (a quick check)")
    args = ap.parse_args()

    try:
        labels = read_labels(args.labels.split(","))
    except OSError as e:
        fail(f"--labels: {e}")
    texts = {}
    opener = gzip.open if args.data.endswith(".gz") else open
    try:
        with opener(args.data, "rt", encoding="utf-8") as f:
            records = []
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    fail(f"{args.data}:{n}: not a JSON record ({e}); expected ShareGPT JSONL")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        fail(f"--data {args.data}: {e}")
    for r in records:
        if isinstance(r, dict) and r.get("id") in labels:
            t = conversation_text(r)
            if t is not None:
                texts[r["id"]] = t
    ids = [i for i in labels if i in texts]
    docs = [texts[i] for i in ids]
    sec = np.array([labels[i][2] for i in ids])
    sections = list(dict.fromkeys(sec))
    ys = {"code": np.array([labels[i][0] for i in ids]), "math": np.array([labels[i][1] for i in ids])}
    print(f"{len(ids)} labelled conversations scored ({len(labels) - len(ids)} excluded), "
          f"{len(sections)} sections; code positives {ys['code'].sum()}, math positives {ys['math'].sum()}")
    ref = None
    if args.detector:
        try:
            with open(args.detector, encoding="utf-8") as f:
                ref = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            fail(f"--detector {args.detector}: {e}")
        tr = ref["training"]
        want = (tr["labelled"], tr["code_positives"], tr["math_positives"])
        have = (len(ids), int(ys["code"].sum()), int(ys["math"].sum()))
        if want != have:
            print(f"NOTE: the detector file records {want} (labelled, code, math); this script has {have}")

    grid = [float(c) for c in args.grid.split(",")]
    verdicts = {c: np.zeros(len(ids), dtype=bool) for c in ys}
    chosen = {c: [] for c in ys}
    judged = np.zeros(len(ids), dtype=bool)
    t0 = time.time()
    outer = sections[: args.smoke] if args.smoke else sections
    for k, s in enumerate(outer):
        test = sec == s
        train = ~test
        judged |= test
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=300000,
                              token_pattern=r"(?u)\b\w+\b|[^\w\s]")
        xtr = vec.fit_transform([d for d, m in zip(docs, train) if m]).tocsr()
        xte = vec.transform([d for d, m in zip(docs, test) if m])
        inner_sections = [x for x in sections if x != s]
        fold_of = {x: j % args.inner for j, x in enumerate(inner_sections)}
        fold = np.array([fold_of[x] for x in sec[train]])
        for cat, y in ys.items():
            ytr = y[train]
            best = None
            for c in grid:
                p = np.zeros(len(ytr))
                for j in range(args.inner):
                    m = fold == j
                    if m.all() or not m.any() or ytr[~m].min() == ytr[~m].max():
                        continue
                    model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear")
                    p[m] = model.fit(xtr[~m], ytr[~m]).predict_proba(xtr[m])[:, 1]
                for t in THRESHOLDS:
                    score = min_pr(p >= t, ytr)
                    if best is None or score > best[0]:
                        best = (score, c, float(t))
            _, c, t = best
            model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear").fit(xtr, ytr)
            verdicts[cat][test] = model.predict_proba(xte)[:, 1] >= t
            chosen[cat].append({"section": s, "C": c, "threshold": t,
                                "counts": dict(zip(("tp", "fp", "fn"), counts(verdicts[cat][test], y[test])))})
        el = time.time() - t0
        print(f"  [{k + 1}/{len(outer)}] {s}: {el:.0f} s, ETA {el / (k + 1) * (len(outer) - k - 1):.0f} s",
              flush=True)

    if args.smoke:
        print(f"\nSMOKE: {int(judged.sum())} conversations of {len(outer)} sections judged; "
              "the reference row covers every section and is not comparable")
    result = {"labelled": len(ids), "judged": int(judged.sum()), "sections": len(sections), "grid": grid, "inner_folds": args.inner}
    scope = "the judged sections only" if args.smoke else "every labelled conversation"
    print(f"\nnested estimate over {scope} (P / R, tp fp fn)")
    for cat, y in ys.items():
        tp, fp, fn = counts(verdicts[cat][judged], y[judged])
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        line = f"  {cat}: scikit-learn TF-IDF + LR {p:.3f} / {r:.3f} ({tp} {fp} {fn})"
        result[cat] = {"precision": p, "recall": r, "tp": tp, "fp": fp, "fn": fn, "sections": chosen[cat]}
        if ref is not None:
            row = next(n for n in ref["nested"] if n["category"] == cat)["pooled_all"]
            rp = row["tp"] / max(row["tp"] + row["fp"], 1)
            rr = row["tp"] / max(row["tp"] + row["fn"], 1)
            line += f"; {ref['name']} {rp:.3f} / {rr:.3f} ({row['tp']} {row['fp']} {row['fn']})"
            result[cat]["reference"] = {"name": ref["name"], "precision": rp, "recall": rr, **row}
        print(line)
    if args.out:
        with open(args.out + ".tmp", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        import os
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
