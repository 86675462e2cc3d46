#!/usr/bin/env bash
# GPU checks and benchmarks of a CUDA build, side by side with PyTorch / transformers on the same GPU.
# Run on a machine with an NVIDIA GPU, python3 with torch + transformers + safetensors; nothing is
# downloaded. Each step runs even if an earlier one failed; the exit code counts the failures.
#
# Usage: bash bench/gpu/run.sh BIN PARITY_TEST SHARED OUT [STEP...]   (default: every step, 0-5;
#   ROUNDS=N sets the forward rounds, default 2)
#   BIN          mixprobe built with `cargo build --release --features cuda`
#   PARITY_TEST  the tests/model_parity.rs binary built with `--features cuda`
#                (`cargo test --release --features cuda --test model_parity --no-run`)
#   SHARED       a directory laid out like ../shared with fixtures/tiny-llama, fixtures/tiny-qwen2,
#                fixtures/smollm2-135m-instruct/{config.json,tokenizer.json} and data/gsm8k/train.jsonl
#   OUT          where logs and JSON results go
#
# Steps: (1) the parity tests on burn's CUDA backend (tiny LLaMA and Qwen2 against the transformers
# fixtures: hidden states, logits, loss, gradients; padded batch = one by one); (2) a randomly
# initialised SmolLM2-135M-shaped model (bench/gpu/make_model.py): mixprobe's CUDA forward against
# transformers' CUDA forward on 3 GSM8K questions; (3) forward throughput with every hidden state,
# mixprobe vs transformers, 100 GSM8K questions, one by one and in batches of 8; (4) training
# throughput, mixprobe (burn autodiff on CUDA, f32 and bf16 mixed precision) vs PyTorch (fp32, TF32,
# bf16 autocast) on bench/train's ~20M model at 8 x 128 and 32 x 512 tokens per step; (5) an end-to-end `mixprobe train --device cuda` on the synthetic suite.
set -uo pipefail
BIN=$1 PARITY=$2 SHARED=$3 OUT=$4
shift 4
STEPS=${*:-0 1 2 3 4 5}
want() { [[ " $STEPS " == *" $1 "* ]]; }
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=/tmp/smollm2-random REF=/tmp/smollm2-random-ref.safetensors
mkdir -p "$OUT"
fails=0
step() { echo "== $*"; }
check() { if [ "$1" -ne 0 ]; then echo "FAILED ($2): exit $1"; fails=$((fails + 1)); fi; }

if want 0; then
step "0 machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
fi

if want 1; then
step "1 parity tests on CUDA"
MIXPROBE_SHARED=$SHARED MIXPROBE_REQUIRE_SHARED=1 MIXPROBE_REQUIRE_CUDA=1 \
  timeout 300 "$PARITY" --test-threads 1 --nocapture cuda 2>&1 | tee "$OUT/parity.log"
check "${PIPESTATUS[0]}" parity
fi

if want 2; then
step "2 SmolLM2-shaped model: mixprobe CUDA vs transformers CUDA hidden states"
python3 "$HERE/make_model.py" --config-dir "$SHARED/fixtures/smollm2-135m-instruct" --out "$MODEL" \
  --prompts "$SHARED/data/gsm8k/train.jsonl" --limit 3 --reference "$REF" --device cuda --tf32
check $? make_model
ours=()
for n in 0 1 2; do
  ids=$(python3 -c "from safetensors.numpy import load_file; print(','.join(map(str, load_file('$REF')['p$n.ids'])))")
  "$BIN" model forward "$MODEL" --ids "$ids" --device cuda --out "/tmp/ours.p$n.safetensors" 2>&1 | tail -2
  check "${PIPESTATUS[0]}" "model forward p$n"
  ours+=("/tmp/ours.p$n.safetensors")
done
python3 "$HERE/compare.py" --reference "$REF" --ours "${ours[@]}" --tol 1e-3 | tee "$OUT/smollm2_random_parity.jsonl"
check "${PIPESTATUS[0]}" compare
fi

if want 3; then
step "3 forward throughput (every hidden state), 100 GSM8K questions"
P="$SHARED/data/gsm8k/train.jsonl"
for batch in 1 8; do
  for round in $(seq "${ROUNDS:-2}"); do
    timeout 200 "$BIN" bench forward --model "$MODEL" --prompts "$P" --limit 100 --batch $batch --device cuda \
      | tee -a "$OUT/forward.jsonl"
    check "${PIPESTATUS[0]}" "bench forward b$batch"
    python3 "$HERE/../model/forward_transformers.py" --model "$MODEL" --prompts "$P" --limit 100 \
      --batch $batch --device cuda 2>>"$OUT/stderr.log" | tail -1 | tee -a "$OUT/forward.jsonl"
    check "${PIPESTATUS[0]}" "transformers forward b$batch"
  done
done
fi

if want 4; then
step "4 training throughput (bench/train's ~20M LLaMA)"
for shape in "8 128" "32 512"; do
  set -- $shape
  for precision in fp32 bf16; do
    timeout 200 "$BIN" bench train --steps 10 --batch "$1" --seq "$2" --device cuda --precision $precision \
      2>>"$OUT/stderr.log" | tee -a "$OUT/train.jsonl"
    check "${PIPESTATUS[0]}" "bench train $shape $precision"
  done
  for precision in fp32 tf32 bf16; do
    python3 "$HERE/../train/train_torch.py" --steps 10 --batch "$1" --seq "$2" --device cuda \
      --precision $precision 2>>"$OUT/stderr.log" | tail -1 | tee -a "$OUT/train.jsonl"
    check "${PIPESTATUS[0]}" "torch train $shape $precision"
  done
done
fi

if want 5; then
step "5 end to end: mixprobe train --device cuda (synthetic suite, tiny preset), fp32 and bf16"
"$BIN" data synth --out /tmp/synth --seed 1 > /dev/null
check $? synth
for precision in fp32 bf16; do
  "$BIN" train recipes/rq4-dmt.toml --data-dir /tmp/synth --preset tiny --device cuda \
    --precision $precision --out "/tmp/run-$precision" --max-steps 20 --limit-examples 400 \
    --holdout 20 --eval-limit 10 --vocab-size 300 --batch-size 8 --quiet 2>&1 | tail -3
  check "${PIPESTATUS[0]}" "train $precision"
  python3 -c "import json; r=json.load(open('/tmp/run-$precision/run.json')); print(json.dumps(r)[:1500])" \
    | tee -a "$OUT/train_e2e.jsonl"
done
fi

echo "== failures: $fails"
exit $fails
