#!/usr/bin/env bash
# Probe extraction throughput: `mixprobe probe` (release) vs transformers on the same model, the
# same 300 prompts (probes/paper.toml: 100 GSM8K train questions, 100 Code Alpaca instructions,
# 100 ShareGPT first turns), every layer kept and mean-pooled, 2 threads each, run one after the
# other. transformers runs one by one and in batches, each both as the causal-LM model (logits at
# every position, as `model(...)` computes them) and as the decoder alone (`--decoder-only`);
# the best of the four is the peer. Prints tokens/s of each and the ratio mixprobe / best.
# For the paper protocol (one layer) and repeated rounds: bench/probe/rounds.sh.
#
# Usage: bash bench/probe/run.sh [MODEL_DIR] [DATA_DIR] [BATCH_SIZE]
#   defaults: /tmp/smollm2 ../shared/data 8
# Needs a release build: cargo build --release --target-dir /work/target-rel
# (or MIXPROBE_BIN=path/to/mixprobe), and python3 with torch + transformers + safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-/tmp/smollm2}
DATA=${2:-../shared/data}
BS=${3:-8}
BIN=${MIXPROBE_BIN:-/work/target-rel/release/mixprobe}
OUT=$(mktemp -d /tmp/probe-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" probe --spec probes/paper.toml --data-dir "$DATA" --model "$MODEL" --name model \
  --out "$OUT" --layers all --batch-size "$BS" --quiet | grep '^model'
OURS=$(python3 -c "import json; m = json.load(open('$OUT/index.json'))['models'][0]; print(m['tokens'] / m['forward_seconds'])")
echo "mixprobe (batch $BS): $(printf '%.1f' "$OURS") tokens/s"
best=0
for tb in 1 "$BS"; do
  for variant in "" --decoder-only; do
    line=$(python3 bench/probe/extract_transformers.py --model "$MODEL" --probe-dir "$OUT" \
      --threads 2 --batch-size "$tb" --check "$OUT/model.safetensors" $variant)
    echo "$line"
    r=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['tokens_per_s'])" "$line")
    best=$(python3 -c "print(max($best, $r))")
  done
done
python3 -c "print(f'every layer: ratio mixprobe / best transformers = {$OURS / $best:.2f}x (goal >= 1.5x)')"

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
