#!/usr/bin/env bash
# Side by side: mixprobe vs transformers on the same prompts and threads, forward with every
# hidden state (one by one and length-bucketed batches) and greedy generation; prints each JSON
# line and the ratios (mixprobe tokens/s ÷ transformers tokens/s).
#
# Usage: bash bench/model/run.sh MODEL_DIR [PROMPTS.jsonl] [THREADS]
#   MIXPROBE_BIN   the binary (default target/release/mixprobe)
#   BATCH          batch size of the batched runs (default 8)
#   GEN_LIMIT, GEN_TOKENS   generation prompts and new tokens per prompt (default 10, 64)
set -euo pipefail
MODEL=${1:?usage: run.sh MODEL_DIR [PROMPTS] [THREADS]}
PROMPTS=${2:-../shared/data/gsm8k/train.jsonl}
THREADS=${3:-2}
BIN=${MIXPROBE_BIN:-target/release/mixprobe}
BATCH=${BATCH:-8}
GEN_LIMIT=${GEN_LIMIT:-10}
GEN_TOKENS=${GEN_TOKENS:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS

ratio() { python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); k=sys.argv[3]; print(f'{sys.argv[4]}: mixprobe {a[k]:.1f} vs transformers {b[k]:.1f} {k} -> ratio {a[k]/b[k]:.2f}x')" "$1" "$2" "$3" "$4"; }

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for b in 1 "$BATCH"; do
  ours=$("$BIN" bench forward --model "$MODEL" --prompts "$PROMPTS" --limit 100 --batch "$b" --threads "$THREADS")
  theirs=$(python3 "$HERE/forward_transformers.py" --model "$MODEL" --prompts "$PROMPTS" --limit 100 --batch "$b" --threads "$THREADS")
  echo "$ours"; echo "$theirs"
  ratio "$ours" "$theirs" tokens_per_s "forward batch $b"
done
for b in 1 "$BATCH"; do
  ours=$("$BIN" bench generate --model "$MODEL" --prompts "$PROMPTS" --limit "$GEN_LIMIT" --batch "$b" --max-new-tokens "$GEN_TOKENS" --threads "$THREADS")
  theirs=$(python3 "$HERE/generate_transformers.py" --model "$MODEL" --prompts "$PROMPTS" --limit "$GEN_LIMIT" --batch "$b" --max-new-tokens "$GEN_TOKENS" --threads "$THREADS")
  echo "$ours"; echo "$theirs"
  ratio "$ours" "$theirs" new_tokens_per_s "generate batch $b"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
