#!/usr/bin/env bash
# Interleaved rounds of the probe-extraction comparison (this VM's speed drifts by ±30 % between
# minutes, so single runs mislead). Each round runs, one after the other, on the 300 prompts of
# probes/paper.toml with 2 threads and batches of 8, every layer kept and mean-pooled:
#   mixprobe as shipped       (`--matmul-precision high`, the default: bf16x3 on AMX tiles where
#                              the CPU has them, IEEE f32 elsewhere)
#   mixprobe IEEE f32         (`--matmul-precision highest`)
#   transformers f32          (decoder only, length-sorted batches: the best peer of run.sh)
#   transformers "medium"     (torch.set_float32_matmul_precision("medium"): oneDNN runs the f32
#                              products as ONE bf16 pass on AMX, less exact than bf16x3)
# and the paper protocol as shipped (one layer, 15/32 of the depth; mixprobe stops after the last
# block it needs) against transformers truncated to those blocks and transformers every block.
# Each transformers run also reports its largest absolute difference from mixprobe's shipped
# pooled vectors (the f32 run: how far the default moves them). Prints per-round tokens/s, then
# medians and ratios of medians.
#
# Usage: bash bench/probe/rounds.sh [MODEL_DIR] [DATA_DIR] [ROUNDS]
#   defaults: /tmp/smollm2 ../shared/data 3; MIXPROBE_BIN as in run.sh; MIXPROBE_FLAGS extra flags
#   for every mixprobe run
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-/tmp/smollm2}
DATA=${2:-../shared/data}
ROUNDS=${3:-3}
BIN=${MIXPROBE_BIN:-/work/target-rel/release/mixprobe}
ALL=$(mktemp -d /tmp/probe-rounds.XXXXXX)
F32=$(mktemp -d /tmp/probe-rounds.XXXXXX)
ONE=$(mktemp -d /tmp/probe-rounds.XXXXXX)
trap 'rm -rf "$ALL" "$F32" "$ONE"' EXIT
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
ours() { # OUT [extra flags]: tokens/s of the forward passes, the precision that ran, the deepest layer kept
  local out=$1; shift
  rm -rf "${out:?}"/*
  "$BIN" probe --spec probes/paper.toml --data-dir "$DATA" --model "$MODEL" --name model \
    --out "$out" --batch-size 8 --quiet ${MIXPROBE_FLAGS:-} "$@" >/dev/null
  python3 -c "import json; m = json.load(open('$out/index.json'))['models'][0]; print(round(m['tokens'] / m['forward_seconds'], 1), m['matmul_precision'], max(m['layers']))"
}
theirs() { # OUT [extra flags]: tokens/s [and the largest difference from OUT's vectors with --check]
  local out=$1; shift
  python3 bench/probe/extract_transformers.py --model "$MODEL" --probe-dir "$out" --threads 2 \
    --batch-size 8 "$@" 2>/dev/null | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
d = r.get('max_abs_diff_vs_mixprobe')
print(round(r['tokens_per_s'], 1), '' if d is None else round(d, 3))"
}
rows=()
for r in $(seq 1 "$ROUNDS"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  read -r a prec _ < <(ours "$ALL" --layers all)
  read -r b _ < <(ours "$F32" --layers all --matmul-precision highest)
  read -r c dc < <(theirs "$ALL" --decoder-only --check "$ALL/model.safetensors")
  read -r d dd < <(theirs "$ALL" --decoder-only --matmul-precision medium --check "$ALL/model.safetensors")
  read -r e _ upto < <(ours "$ONE")
  read -r f _ < <(theirs "$ONE" --blocks "$upto")
  read -r g _ < <(theirs "$ONE" --decoder-only)
  echo "round $r ($(date -u +%H:%M:%S), load $load): every layer: mixprobe $prec $a, mixprobe highest $b, transformers f32 $c (max |diff| vs mixprobe $dc), transformers medium $d (max |diff| $dd) | paper protocol (block $upto): mixprobe $e, transformers truncated $f, every block $g"
  rows+=("$a $b $c $d $e $f $g")
done
printf '%s\n' "${rows[@]}" | python3 -c '
import statistics as st, sys
cols = list(zip(*[[float(x) for x in l.split()] for l in sys.stdin if l.strip()]))
a, b, c, d, e, f, g = (st.median(x) for x in cols)
print(f"medians, every layer: mixprobe as shipped {a:.1f}, highest {b:.1f}; transformers f32 {c:.1f}, medium {d:.1f}")
print(f"  shipped / transformers f32 {a / c:.2f}x (goal >= 1.5x); highest / transformers f32 {b / c:.2f}x; shipped / transformers medium {a / d:.2f}x")
print(f"medians, paper protocol: mixprobe {e:.1f} vs truncated {f:.1f} -> {e / f:.2f}x, vs every block {g:.1f} -> {e / g:.2f}x")
r = [x / y for x, y in zip(cols[0], cols[2])]
print(f"per round, shipped / transformers f32: {' '.join(f'{x:.2f}' for x in r)} (median {st.median(r):.2f}x, lowest {min(r):.2f}x)")'
