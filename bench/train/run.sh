#!/usr/bin/env bash
# Side by side: training throughput of mixprobe (the CPU training fast path, src/train/fast.rs, on
# gemm; MIXPROBE_TRAIN_GENERIC=1 measures burn 0.21 ndarray + autodiff instead) and PyTorch on the
# same ~20M LLaMA (hidden 256, 4 layers, 4 heads, MLP 1024, vocab 32000, untied head), batches of
# 8 × 128 random tokens, AdamW + clipping, same threads; prints both JSON lines and the ratio
# (mixprobe tokens/s ÷ PyTorch tokens/s).
#
# Usage: bash bench/train/run.sh [STEPS] [THREADS]
#   MIXPROBE_BIN   the binary (default target/release/mixprobe)
set -euo pipefail
STEPS=${1:-5}
THREADS=${2:-2}
BIN=${MIXPROBE_BIN:-target/release/mixprobe}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
ours=$("$BIN" bench train --steps "$STEPS" --threads "$THREADS")
theirs=$(python3 "$HERE/train_torch.py" --steps "$STEPS" --threads "$THREADS" | tail -1)
echo "$ours"; echo "$theirs"
python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(f'train: mixprobe {a[\"tokens_per_s\"]:.0f} vs pytorch {b[\"tokens_per_s\"]:.0f} tokens/s -> ratio {a[\"tokens_per_s\"]/b[\"tokens_per_s\"]:.2f}x')" "$ours" "$theirs"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
