#!/usr/bin/env bash
# The project's test command (README.md; .ci/run calls exactly this). Installs what it needs,
# checks that the CUDA build (and the CUDA parity tests) compile (no GPU needed), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -n "${CI:-}" ]; then
  # In CI the shared data must be present: tests that need it fail instead of skipping.
  export MIXPROBE_REQUIRE_SHARED=1
  # ... and the tools the project's setup installs must be there: the report is checked in
  # headless Chromium and the book is built with mdbook.
  export MIXPROBE_REQUIRE_BROWSER=1 MIXPROBE_REQUIRE_BOOK=1
  [ -d ../shared/data ] || { echo "CI: ../shared/data is missing" >&2; exit 1; }
fi
# A one-shot build gains nothing from incremental caches, which cost disk (CI's linker once died
# of a full disk); a developer's own `cargo test` keeps them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# ... and the ~40 test binaries are built without debug info (std's included): each carried
# about 60 MB of it (panic messages still name the file and line of the failing assertion).
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-false}
export CARGO_PROFILE_DEV_STRIP=${CARGO_PROFILE_DEV_STRIP:-debuginfo}
echo "== disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"
echo "== cargo check --features cuda (the CUDA path must keep compiling)"
cargo check --features cuda --lib --bins --test model_parity --quiet
echo "== cargo test"
status=0
cargo test --all-targets --no-fail-fast "$@" || status=$?
echo "== disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}'); target/: $(du -sh target 2>/dev/null | cut -f1)"
exit $status
