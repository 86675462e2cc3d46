#!/usr/bin/env bash
# Interleaved rounds of the probe-extraction comparison (this VM's speed drifts by ±30 % between
# minutes, so single runs mislead). Each round runs, one after the other, on the 300 prompts of
# probes/paper.toml with 2 threads and batches of 8:
#   every layer:    mixprobe --layers all    vs transformers decoder-only (the best peer in run.sh)
#   paper protocol: mixprobe (layer 15/32)   vs transformers truncated to the blocks needed
#                                            (--blocks) and vs transformers every block
# and prints per-round tokens/s, then medians and ratios of medians.
#
# Usage: bash bench/probe/rounds.sh [MODEL_DIR] [DATA_DIR] [ROUNDS]
#   defaults: /tmp/smollm2 ../shared/data 3; MIXPROBE_BIN as in run.sh; MIXPROBE_FLAGS extra flags
#   for mixprobe's side, e.g. "--matmul-precision high"
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-/tmp/smollm2}
DATA=${2:-../shared/data}
ROUNDS=${3:-3}
BIN=${MIXPROBE_BIN:-/work/target-rel/release/mixprobe}
ALL=$(mktemp -d /tmp/probe-rounds.XXXXXX)
ONE=$(mktemp -d /tmp/probe-rounds.XXXXXX)
trap 'rm -rf "$ALL" "$ONE"' EXIT
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
ours() { # OUT [extra flags]: tokens/s of the forward passes, and the deepest layer kept
  local out=$1; shift
  rm -rf "${out:?}"/*
  "$BIN" probe --spec probes/paper.toml --data-dir "$DATA" --model "$MODEL" --name model \
    --out "$out" --batch-size 8 --quiet ${MIXPROBE_FLAGS:-} "$@" >/dev/null
  python3 -c "import json; m = json.load(open('$out/index.json'))['models'][0]; print(round(m['tokens'] / m['forward_seconds'], 1), max(m['layers']))"
}
theirs() { # OUT [extra flags]
  local out=$1; shift
  python3 bench/probe/extract_transformers.py --model "$MODEL" --probe-dir "$out" --threads 2 \
    --batch-size 8 "$@" 2>/dev/null | python3 -c "import json, sys; print(round(json.loads(sys.stdin.read())['tokens_per_s'], 1))"
}
rows=()
for r in $(seq 1 "$ROUNDS"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  read -r a _ < <(ours "$ALL" --layers all)
  b=$(theirs "$ALL" --decoder-only)
  read -r c upto < <(ours "$ONE")
  d=$(theirs "$ONE" --blocks "$upto")
  e=$(theirs "$ONE" --decoder-only)
  echo "round $r ($(date -u +%H:%M:%S), load $load): every layer: mixprobe $a, transformers $b | paper protocol (block $upto): mixprobe $c, transformers truncated $d, every block $e"
  rows+=("$a $b $c $d $e")
done
printf '%s\n' "${rows[@]}" | python3 -c '
import statistics as st, sys
cols = list(zip(*[[float(x) for x in l.split()] for l in sys.stdin if l.strip()]))
a, b, c, d, e = (st.median(x) for x in cols)
print(f"medians: every layer {a:.1f} vs {b:.1f} -> {a / b:.2f}x; paper protocol {c:.1f} vs truncated {d:.1f} -> {c / d:.2f}x, vs every block {e:.1f} -> {c / e:.2f}x")'
