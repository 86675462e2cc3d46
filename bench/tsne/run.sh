#!/usr/bin/env bash
# Side-by-side t-SNE benchmark: mixprobe vs openTSNE and scikit-learn on the same [n, d] matrix,
# with the same number of threads, each timed as the minimum of REPEATS runs, and the exact KL
# divergence of every map computed by one routine on one P (bench_opentsne.py), plus the KL of
# the other tools' maps under mixprobe's own P as a cross-check.
#
# Usage: bench/tsne/run.sh [INPUT.npy | INPUT.safetensors]
#   Without INPUT it builds out/tsne-bench/X.npy (PCA-50 of hashed TF-IDF of 5,000 real prompts
#   from ../shared/data, see make_input.py). Needs: pip install openTSNE scikit-learn
#   (and safetensors for a .safetensors input).
# Environment: THREADS (2), REPEATS (3), OUT (out/tsne-bench), TENSOR (name in a .safetensors),
#   SKIP_SKLEARN=1 to leave scikit-learn out (it is the slowest).
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
OUT=${OUT:-out/tsne-bench}
INPUT=${1:-$OUT/X.npy}
python3 -c "import openTSNE, sklearn" 2>/dev/null || { echo "needs: pip install openTSNE scikit-learn" >&2; exit 2; }
if [ ! -f "$INPUT" ]; then
    [ $# -eq 0 ] || { echo "no such input: $INPUT" >&2; exit 2; }
    python3 bench/tsne/make_input.py --out "$OUT"
fi
tensor=()
[ -z "${TENSOR:-}" ] || tensor=(--tensor "$TENSOR")
skip=()
[ -z "${SKIP_SKLEARN:-}" ] || skip=(--skip-sklearn)
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release --example tsne_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/tsne_bench
echo "== mixprobe (RAYON_NUM_THREADS=$THREADS)"
RAYON_NUM_THREADS=$THREADS "$bin" --input "$INPUT" "${tensor[@]}" --threads "$THREADS" --repeats "$REPEATS" --out "$OUT"
echo "== openTSNE / scikit-learn (n_jobs=$THREADS, OMP_NUM_THREADS=$THREADS)"
OMP_NUM_THREADS=$THREADS python3 bench/tsne/bench_opentsne.py --input "$INPUT" "${tensor[@]}" --out "$OUT" \
    --threads "$THREADS" --repeats "$REPEATS" --ours "$OUT/ours.npy" "${skip[@]}"
echo "== cross-check: the other maps' exact KL under mixprobe's P"
others=("$OUT/opentsne.npy")
[ -n "${SKIP_SKLEARN:-}" ] || others+=("$OUT/sklearn.npy")
kl_of=()
for f in "${others[@]}"; do kl_of+=(--kl-of "$f"); done
RAYON_NUM_THREADS=$THREADS "$bin" --input "$INPUT" "${tensor[@]}" --repeats 0 "${kl_of[@]}"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
