#!/usr/bin/env bash
# mdbook, which builds the book (book/; `mdbook build book` writes target/book/). tests/book.rs
# builds the book when mdbook is installed and skips visibly otherwise, unless
# MIXPROBE_REQUIRE_BOOK=1 (CI), where a missing mdbook fails. Idempotent: installs the pinned
# version with cargo (a few minutes of compiling, once) only when no mdbook 0.4 is on PATH or in
# cargo's bin directory. Needs network access to crates.io the first time.
set -euo pipefail

MDBOOK_VERSION=0.4.52
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

have_mdbook() {
    local exe
    for exe in mdbook "$cargo_bin/mdbook"; do
        if command -v "$exe" >/dev/null 2>&1 && "$exe" --version 2>/dev/null | grep -q ' v0\.4\.'; then
            echo "setup-mdbook: $("$exe" --version) at $(command -v "$exe")"
            return 0
        fi
    done
    return 1
}

if ! have_mdbook; then
    if ! command -v cargo >/dev/null; then
        echo "setup-mdbook: cargo is missing; install a Rust toolchain first" >&2
        exit 1
    fi
    echo "setup-mdbook: installing mdbook $MDBOOK_VERSION with cargo (compiles for a few minutes)"
    # Only the `search` feature: the HTML renderer needs nothing else, and skipping the
    # live-reload server (`serve`, `watch`) halves the build.
    cargo install mdbook --locked --version "$MDBOOK_VERSION" \
        --no-default-features --features search --quiet
    have_mdbook
fi
