#!/usr/bin/env bash
# One-by-one forward (every hidden state), mixprobe vs transformers, in N interleaved rounds
# (mixprobe, transformers, mixprobe, ...) on the same 100 GSM8K questions and 2 threads. This VM's
# speed drifts by up to ±30 % between minutes, so one pair proves little: the script prints every
# round, the per-round ratios, the ratio of the medians and the ratio of the best rounds (noise
# only ever slows a run down, so the best round is the least disturbed estimate of each side).
#
# Usage: bash bench/model/pairs.sh [MODEL_DIR] [ROUNDS] [PROMPTS.jsonl]
#   defaults: /tmp/smollm2 5 ../shared/data/gsm8k/train.jsonl
#   MIXPROBE_BIN   the binary (default /work/target-rel/release/mixprobe; build with
#                  cargo build --release --target-dir /work/target-rel)
#   MIXPROBE_FLAGS extra flags for mixprobe's side, e.g. "--matmul-precision high"
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-/tmp/smollm2}
ROUNDS=${2:-5}
PROMPTS=${3:-../shared/data/gsm8k/train.jsonl}
BIN=${MIXPROBE_BIN:-/work/target-rel/release/mixprobe}
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
rate() { python3 -c "import json, sys; print(round(json.loads(sys.stdin.read().strip().splitlines()[-1])['tokens_per_s'], 1))"; }
ours=(); theirs=()
for r in $(seq 1 "$ROUNDS"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  a=$("$BIN" bench forward --model "$MODEL" --prompts "$PROMPTS" --limit 100 --batch 1 --threads 2 ${MIXPROBE_FLAGS:-} | rate)
  b=$(python3 bench/model/forward_transformers.py --model "$MODEL" --prompts "$PROMPTS" --limit 100 \
    --batch 1 --threads 2 2>/dev/null | rate)
  ours+=("$a"); theirs+=("$b")
  echo "round $r ($(date -u +%H:%M:%S), load $load): mixprobe $a, transformers $b tokens/s, ratio $(python3 -c "print(f'{$a / $b:.2f}')")"
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics as st, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
print(f"medians: mixprobe {st.median(a):.1f}, transformers {st.median(b):.1f} -> {st.median(a) / st.median(b):.2f}x")
print(f"best rounds: mixprobe {max(a):.1f}, transformers {max(b):.1f} -> {max(a) / max(b):.2f}x")
print(f"per-round ratios: median {st.median(x / y for x, y in zip(a, b)):.2f}x, min {min(x / y for x, y in zip(a, b)):.2f}x")
PY
